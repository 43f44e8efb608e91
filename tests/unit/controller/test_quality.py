"""Quality per flow and interval from records: each service's model, unknowns and bounds."""

import math

import pytest

from controller.monitor.kpis import KpiRecord
from controller.monitor.quality import (DelayEstimate, QualitySettings, bulk_quality,
                                        one_way_delay, quality_of, video_quality, web_quality)
from qoe import estimate


def record(kind="rtp", service="voice", **kpis) -> KpiRecord:
    base = {"rtp_loss_ratio": 0.0, "rtp_jitter_max_ms": 2.0, "rtp_jitter_ms": 1.0,
            "rtp_payload_type": 0.0, "rtp_mean_burst_packets": math.nan} if kind == "rtp" else {}
    base.update(kpis)
    return KpiRecord("p", "10.0.0.1", "10.0.0.2", 17 if kind != "tcp" else 6, 4000, 5004, kind,
                     10.0, 11.0, 50, 10_000, 80_000.0, 46, base, "c1", service)


def test_voice_with_a_measured_delay_is_the_e_model_with_its_inputs_named():
    delay = DelayEstimate(40.0, "STAMP a1 -> 10.0.0.2: RTT/2")
    quality = quality_of(record(), delay, QualitySettings())
    direct = estimate.estimate_voice(0.0, 40.0, codec="g711", frames_per_packet=160,
                                     jitter_buffer_ms=4.0)
    assert quality.score == pytest.approx(direct.mos) and quality.bound == ""
    assert "G.107" in quality.model and "g711" in quality.model
    assert quality.inputs["one_way_delay_ms"] == 40.0 and quality.inputs["jitter_buffer_ms"] == 4.0
    assert any("STAMP a1" in a for a in quality.assumptions)


def test_without_a_delay_the_voice_mos_is_an_upper_bound_and_loss_still_counts():
    clean = quality_of(record(), None, QualitySettings())
    lossy = quality_of(record(rtp_loss_ratio=0.05, rtp_mean_burst_packets=3.0), None,
                       QualitySettings())
    assert clean.bound == lossy.bound == "upper" and "one_way_delay_ms" in clean.missing
    measured = quality_of(record(), DelayEstimate(150.0, "x"), QualitySettings())
    assert clean.score > measured.score  # the bound is above what any delay gives
    assert lossy.score < clean.score - 1.0
    assert lossy.inputs["burst_ratio"] == pytest.approx(3.0 * 0.95)


def test_unknown_codec_or_no_loss_figure_is_unknown_naming_the_input():
    unknown = quality_of(record(rtp_payload_type=96.0), None, QualitySettings())
    assert not unknown.known and unknown.missing == ("codec",)
    nothing = quality_of(record(rtp_loss_ratio=math.nan), None, QualitySettings())
    assert not nothing.known and "loss_ratio" in nothing.missing


def test_the_delay_comes_from_stamp_first_then_from_tcp():
    tcp = record(kind="tcp", service="web", tcp_rtt_ms=30.0)
    stamp = record(kind="stamp", service="active-test", stamp_rtt_ms=8.0)
    assert one_way_delay([tcp, stamp]).one_way_ms == 4.0
    assert one_way_delay([tcp]).one_way_ms == 15.0 and "TCP" in one_way_delay([tcp]).source
    assert one_way_delay([record()]) is None


def test_iptv_needs_the_channels_frame_rate_and_carries_the_tr_101_290_counters():
    ts = record(kind="mpegts", service="iptv", ts_packets=2660.0, ts_lost_packets=0.0,
                ts_cc_errors=0.0, mdi_df_ms=8.0)
    unknown = quality_of(ts, None, QualitySettings())
    assert not unknown.known and unknown.missing[0].startswith("frame_rate (qoe.iptv_frame_rate")
    known = quality_of(ts, None, QualitySettings(iptv_frame_rates={"10.0.0.2:5004": 25.0}))
    assert known.known and known.inputs["frame_rate"] == 25.0
    assert known.inputs["bitrate_kbps"] == pytest.approx(2660 * 188 * 8 / 1000)
    assert known.details["mdi_df_ms"] == 8.0 and "bitrate_kbps" in known.extrapolated
    lossy = quality_of(record(kind="mpegts", service="iptv", ts_packets=2600.0,
                              ts_lost_packets=60.0), None, QualitySettings(iptv_frame_rate=25.0))
    assert lossy.score < known.score


def test_bulk_web_and_video():
    assert bulk_quality(8e6, 10_000_000).score == 0.8
    assert not bulk_quality(8e6, None).known
    assert web_quality(1.0).score == pytest.approx(4.2693, abs=1e-3)
    assert not web_quality(0.0).known
    assert video_quality(0, 0.0, 0.5).score == 5.0
    assert video_quality(3, 2.0).score < 3.0
    assert quality_of(record(kind="udp", service="web"), None, QualitySettings()) is None


def test_voice_scores_on_arrays_equal_voice_quality_record_by_record():
    import numpy as np
    from controller.monitor.quality import voice_quality, voice_scores
    rng = np.random.default_rng(7)
    records, delays = [], []
    for i in range(300):
        kpis = {"rtp_loss_ratio": float(rng.choice([0.0, rng.uniform(0, 0.3), 1.0])),
                "rtp_jitter_max_ms": float(rng.uniform(0, 80)),
                "rtp_payload_type": float(rng.choice([0, 8, 4, 18, 96])),
                "rtp_mean_burst_packets": float(rng.choice([math.nan, rng.uniform(1, 9)]))}
        if i % 17 == 0:
            kpis["rtp_loss_ratio"] = math.nan   # unknown
        if i % 23 == 0:
            kpis["rtp_jitter_max_ms"] = math.nan  # falls back to rtp_jitter_ms (1.0 here)
        records.append(record(**kpis))
        delays.append(DelayEstimate(float(rng.uniform(0, 300)), "stamp") if i % 2 else None)
    scores = voice_scores(records, delays)
    for r, d, score in zip(records, delays, scores):
        one = voice_quality(r, d)
        if one.known:
            assert math.isclose(one.score, score, rel_tol=1e-12), (r.kpis, d)
        else:
            assert math.isnan(score), (r.kpis, one.missing)
    assert np.isnan(scores).any() and (~np.isnan(scores)).sum() > 200


def test_iptv_scores_on_arrays_equal_iptv_quality_record_by_record():
    import numpy as np
    from controller.monitor.quality import iptv_quality, iptv_scores
    rng = np.random.default_rng(11)
    settings = QualitySettings(25.0, {"10.0.0.2:5004": 50.0})
    records = []
    for i in range(200):
        kpis = {"ts_packets": float(rng.choice([0, rng.integers(100, 5000)])),
                "ts_lost_packets": float(rng.choice([0, rng.integers(0, 300)]))}
        if i % 13 == 0:
            kpis["ts_lost_packets"] = math.nan
        records.append(record("mpegts", "iptv", **kpis))
    scores = iptv_scores(records, settings)
    for r, score in zip(records, scores):
        one = iptv_quality(r, settings)
        if one.known:
            assert math.isclose(one.score, score, rel_tol=1e-12), r.kpis
        else:
            assert math.isnan(score), (r.kpis, one.missing)
    assert np.isnan(scores).any() and (~np.isnan(scores)).sum() > 50
    assert np.isnan(iptv_scores(records[:5], QualitySettings())).all()  # no frame rate
