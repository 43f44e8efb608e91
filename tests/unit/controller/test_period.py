"""A report's measured figures: loss, jitter, delay and quality over the period, from the
probe records the controller holds, compared with the class targets."""

import math

from controller.csm.model import ClassBounds, ServiceClass, Sla, Sls
from controller.csm.report import compute_report
from controller.monitor.experience import DEFAULT_TARGETS
from controller.monitor.kpis import KpiRecord
from controller.monitor.period import measure_period
from controller.monitor.quality import DelayEstimate, QualitySettings

S = ServiceClass.SILVER


def rtp(start, lost=0, expected=50, jitter=2.0, loss_ratio=None):
    kpis = {"rtp_lost": float(lost), "rtp_expected": float(expected),
            "rtp_loss_ratio": lost / expected if loss_ratio is None else loss_ratio,
            "rtp_jitter_max_ms": jitter, "rtp_jitter_ms": jitter / 2, "rtp_payload_type": 0.0,
            "rtp_mean_burst_packets": math.nan}
    return KpiRecord("p", "10.0.0.1", "10.0.0.2", 17, 4000, 5004, "rtp", start, start + 1.0,
                     expected - lost, 10_000, 80_000.0, 46, kpis, "c1", "voice")


def ts(start, packets=2000, lost=0):
    kpis = {"ts_packets": float(packets), "ts_lost_packets": float(lost), "ts_cc_errors": 0.0}
    return KpiRecord("p", "10.0.0.1", "10.0.0.3", 17, 4000, 1234, "mpegts", start, start + 1.0,
                     packets // 7, packets * 188, packets * 188 * 8.0, 0, kpis, "c1", "iptv")


def measure(records, delay=None, start=0.0, end=100.0, fps=25.0):
    return measure_period(records, start, end, delay, QualitySettings(fps), DEFAULT_TARGETS,
                          "silver")


def test_loss_is_summed_over_packets_jitter_is_the_peak_and_quality_per_service():
    calm = [rtp(t) for t in range(10, 20)]
    bad = [rtp(t, lost=10, jitter=9.0) for t in range(20, 25)]
    outside = [rtp(200.0, lost=50)]       # after the period: not counted
    m = measure(calm + bad + outside + [ts(t) for t in range(10, 20)],
                DelayEstimate(12.0, "stamp a1 -> 10.0.0.9"))
    assert m.loss_ratio == 50 / 750 and m.loss_source == "RTP sequence numbers"
    assert m.jitter_ms == 9.0
    assert (m.delay_ms, m.delay_source) == (12.0, "stamp a1 -> 10.0.0.9")
    assert (m.since_unix_s, m.until_unix_s) == (10.0, 25.0)
    voice = next(s for s in m.services if s.service == "voice")
    assert voice.intervals == 15 and voice.unknown == 0 and voice.bound == ""
    assert voice.worst < 3.0 < voice.mean and voice.time_below_target_s == 5.0
    assert "G.107" in voice.model and voice.target.minimum == 4.03
    iptv = next(s for s in m.services if s.service == "iptv")
    assert iptv.intervals == 10 and "G.1070" in iptv.model


def test_without_rtp_the_loss_comes_from_the_ts_and_without_a_delay_voice_is_a_bound():
    m = measure([ts(10.0, packets=990, lost=10)])
    assert m.loss_ratio == 10 / 1000 and m.loss_source == "MPEG-TS continuity"
    assert m.jitter_ms is None and m.delay_ms is None
    assert measure([rtp(10.0)]).services[0].bound == "upper"
    iptv = measure([ts(10.0)], fps=None).services[0]  # no frame rate configured: unknown
    assert iptv.intervals == 0 and iptv.unknown == 1 and math.isnan(iptv.mean)
    assert measure([]) is None and measure([rtp(500.0)]) is None


def test_the_report_names_what_misses_its_target_and_what_is_unknown():
    sla = Sla("c1", "gsb-business", {S: ClassBounds(1, 2)})
    history = [Sls("c1", S, 1, 0.0)]
    bad = measure([rtp(t, lost=10, jitter=60.0) for t in range(10, 20)])
    report = compute_report(sla, history, 0.0, 100.0, None, None, measured=bad)
    assert report.loss_ratio == 0.2 and report.jitter_ms == 60.0 and report.delay_ms is None
    assert report.measured_since_unix_s == 10.0
    assert [n.split(" ")[0] for n in report.not_met] == ["jitter_ms", "loss_ratio", "voice"]
    assert "above the target 0.001 (ITU-T Y.1541 Table 1, class 1)" in report.not_met[1]
    assert any(u.startswith("delay_ms: not measured") for u in report.unknown)
    assert any("upper bound" in u for u in report.unknown)
    good = measure([rtp(t) for t in range(10, 20)], DelayEstimate(5.0, "tcp rtt of 2 flows"))
    report = compute_report(sla, history, 0.0, 100.0, None, None, measured=good)
    assert report.not_met == () and report.delay_source == "tcp rtt of 2 flows"
    assert not any("delay" in u or "loss" in u for u in report.unknown)
