"""Quality of each flow and interval, from the probes' records and the applications' reports
(core). Every result names its model and the inputs that produced it; a missing input is
named, never filled with a default-looking number.

- voice (RTP): ITU-T G.107 (qoe.estimate) with the interval's loss ratio and burst ratio, the
  codec from the RTP payload type (RFC 3551; G.113 Appendix I values), a jitter-buffer delay
  of twice the largest jitter estimate of the interval (an adaptive buffer grows to its
  peaks), and the one-way network delay from the best source there is for the customer: a
  STAMP test on its path (half its round-trip time), else its own TCP flows' round-trip time
  halved, else unknown. With the delay unknown the MOS is computed at the least possible
  delay (0 ms) and is an upper bound ("bound": "upper"), so that loss still counts;
- IPTV (MPEG-TS): ITU-T G.1070's video quality (qoe.estimate_iptv) from the TS loss ratio and
  the media bit rate, at the frame rate configured for the channel (a transport stream does
  not carry it; without one, unknown), with the TR 101 290 counters and MDI beside it;
- adaptive video: the stalling model (qoe.streaming, Hossfeld et al. 2011) from what a
  player reports; web: G.1030's opinion model (qoe.web) from a page's load time as a test
  client reports it; both come over gRPC as session reports, not from the probes;
- bulk: achieved throughput against the customer's SLS rate, a ratio, not a MOS.
"""

import dataclasses
import math
from typing import Iterable, Mapping

import numpy as np

from qoe import emodel, estimate, streaming, video
from qoe.errors import QoeInputError
from qoe.web import G1030_FIG_II4, MODEL as WEB_MODEL, WebAnchors, web_mos

MOS, RATIO = "MOS", "ratio"
TS_PACKET_BITS = 188 * 8
PACKET_MS = 20.0  # the packets' duration, when it is not measured (the usual 20 ms)
# RFC 3551 Table 4 payload types -> G.113 Appendix I codec rows (narrowband E-model)
VOICE_CODECS = {0: "g711", 8: "g711", 4: "g723.1-vad", 18: "g729a-vad"}
CODEC_NOTES = {"g711": "G.711 without packet-loss concealment (G.113 Table I.3 row)",
               "g729a-vad": "G.729 taken as G.729A + VAD, the G.113 Table I.3 row",
               "g723.1-vad": "G.723.1 taken as G.723.1 + VAD, the G.113 Table I.3 row"}


@dataclasses.dataclass(frozen=True)
class Quality:
    """The quality of one flow in one interval, or of one application session."""

    service: str
    score: float | None                 # None: unknown
    scale: str                          # "MOS" (1..5) or "ratio" (bulk)
    model: str
    inputs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    missing: tuple[str, ...] = ()       # inputs that were needed and not measured
    extrapolated: tuple[str, ...] = ()  # inputs outside the range the model was validated on
    assumptions: tuple[str, ...] = ()
    bound: str = ""                     # "upper": an unknown input was taken at its best
    details: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.score is not None


@dataclasses.dataclass(frozen=True)
class DelayEstimate:
    """A customer's one-way network delay and where it comes from."""

    one_way_ms: float
    source: str  # for example "stamp h1-agent -> 10.0.0.2" or "tcp rtt of 3 flows"


@dataclasses.dataclass(frozen=True)
class QualitySettings:
    iptv_frame_rate: float | None = None                  # every channel, unless named
    iptv_frame_rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    web_anchors: WebAnchors = G1030_FIG_II4


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) \
        else float(value)


def one_way_delay(records: Iterable) -> DelayEstimate | None:
    """The best one-way delay of a customer's path from its latest records: a STAMP test's
    round-trip time halved (the newest), else the mean round-trip time of its TCP flows
    halved, else None."""
    records = list(records)
    stamps = [r for r in records if r.kind == "stamp" and _number(r.kpis.get("stamp_rtt_ms"))
              is not None]
    if stamps:
        latest = max(stamps, key=lambda r: r.interval_end_unix_s)
        return DelayEstimate(latest.kpis["stamp_rtt_ms"] / 2,
                             f"STAMP {latest.probe_id} -> {latest.dst}: RTT/2")
    rtts = [r.kpis["tcp_rtt_ms"] for r in records if r.kind == "tcp"
            and _number(r.kpis.get("tcp_rtt_ms")) is not None]
    if rtts:
        return DelayEstimate(sum(rtts) / len(rtts) / 2, f"TCP: mean RTT of {len(rtts)} "
                                                        "flows / 2")
    return None


def voice_quality(record, delay: DelayEstimate | None) -> Quality:
    kpis = record.kpis
    model = estimate.EMODEL
    loss = _number(kpis.get("rtp_loss_ratio"))
    payload_type = _number(kpis.get("rtp_payload_type"))
    codec = VOICE_CODECS.get(int(payload_type)) if payload_type is not None else None
    jitter = _number(kpis.get("rtp_jitter_max_ms"))
    if jitter is None:
        jitter = _number(kpis.get("rtp_jitter_ms"))
    missing = tuple(name for name, value in (("loss_ratio", loss), ("codec", codec),
                                             ("jitter_ms", jitter)) if value is None)
    if missing:
        return Quality("voice", None, MOS, model, missing=missing)
    burst_ratio = 1.0
    mean_burst = _number(kpis.get("rtp_mean_burst_packets"))
    if loss > 0 and mean_burst is not None and loss < 1:
        # G.107 BurstR: observed mean burst length over the mean under random loss, 1/(1-p)
        burst_ratio = max(1.0, mean_burst * (1 - loss))
    frames = max(1, round(PACKET_MS / emodel.CODECS[codec].frame_ms))
    assumptions = [f"jitter-buffer delay: 2 x the interval's largest jitter estimate "
                   f"({2 * jitter:.1f} ms)", f"{PACKET_MS:g} ms packets", CODEC_NOTES[codec]]
    bound = ""
    if delay is None:
        one_way, bound = 0.0, "upper"
        assumptions.append("one-way network delay not measured: MOS at 0 ms, an upper bound")
    else:
        one_way = delay.one_way_ms
        assumptions.append(f"one-way network delay from {delay.source}")
    try:
        result = estimate.estimate_voice(loss, one_way, codec=codec, frames_per_packet=frames,
                                         burst_ratio=burst_ratio, jitter_buffer_ms=2 * jitter)
    except QoeInputError as err:  # a record the checks let through, outside the model
        return Quality("voice", None, MOS, model, missing=(f"valid inputs ({err})",))
    inputs = dict(result.inputs)
    return Quality("voice", result.mos, MOS, result.model, inputs,
                   ("one_way_delay_ms",) if bound else (), result.extrapolated,
                   tuple(assumptions) + result.assumptions, bound, result.details)


def iptv_quality(record, settings: QualitySettings) -> Quality:
    kpis = record.kpis
    ts_packets = _number(kpis.get("ts_packets"))
    lost = _number(kpis.get("ts_lost_packets"))
    span = record.interval_end_unix_s - record.interval_start_unix_s
    loss = lost / (ts_packets + lost) if ts_packets and lost is not None else None
    bitrate = ts_packets * TS_PACKET_BITS / span if ts_packets and span > 0 else None
    fps = settings.iptv_frame_rates.get(f"{record.dst}:{record.dport}",
                                        settings.iptv_frame_rate)
    side = {k: kpis[k] for k in ("ts_cc_errors", "ts_crc_errors", "ts_pat_errors",
                                 "ts_pmt_errors", "ts_pid_errors", "mdi_df_ms", "mdi_mlr_pps")
            if _number(kpis.get(k)) is not None}
    result = estimate.estimate_iptv(loss, bitrate, fps)
    missing = result.missing
    if "frame_rate" in missing:
        missing = tuple(m if m != "frame_rate" else
                        "frame_rate (qoe.iptv_frame_rate or qoe.iptv_frame_rates in the "
                        "controller's config; a transport stream does not carry it)"
                        for m in missing)
    return Quality("iptv", result.mos, MOS, result.model, dict(result.inputs), missing,
                   result.extrapolated, result.assumptions, "", {**result.details, **side})


def bulk_quality(throughput_bps: float, sls_rate_bps: int | None) -> Quality:
    """Achieved throughput over the customer's SLS rate (1.0: all it pays for)."""
    model = "achieved throughput / SLS rate"
    if not sls_rate_bps:
        return Quality("bulk", None, RATIO, model, missing=("sls_rate_bps",))
    return Quality("bulk", throughput_bps / sls_rate_bps, RATIO, model,
                   {"throughput_bps": throughput_bps, "sls_rate_bps": sls_rate_bps})


def web_quality(page_load_s: float, anchors: WebAnchors = G1030_FIG_II4) -> Quality:
    try:
        result = web_mos(page_load_s, anchors)
    except QoeInputError as err:
        return Quality("web", None, MOS, WEB_MODEL, missing=(f"a valid page load time ({err})",))
    return Quality("web", result.mos, MOS, WEB_MODEL,
                   {"page_load_s": page_load_s, "t_min_s": anchors.t_min_s,
                    "t_max_s": anchors.t_max_s},
                   (), ("page_load_s",) if result.clipped else (),
                   (f"anchors: {anchors.source}", "one page load stands for the session (the "
                    "weights of G.1030's session time are not known)"))


def video_quality(stalls: int, mean_stall_s: float, initial_delay_s: float | None = None,
                  bitrate_bps: float | None = None) -> Quality:
    try:
        result = streaming.stalling_mos(stalls, mean_stall_s, initial_delay_s, bitrate_bps)
    except QoeInputError as err:
        return Quality("video", None, MOS, streaming.MODEL,
                       missing=(f"a valid session report ({err})",))
    inputs = {"stalls": stalls, "mean_stall_s": mean_stall_s}
    if initial_delay_s is not None:
        inputs["initial_delay_s"] = initial_delay_s
    if bitrate_bps is not None:
        inputs["bitrate_bps"] = bitrate_bps
    return Quality("video", result.mos, MOS, streaming.MODEL, inputs, (), result.extrapolated,
                   ("initial delay and bit rate are reported beside the MOS, not in it",))


def voice_scores(records, delays) -> np.ndarray:
    """The voice_quality() scores of many RTP records at once (NaN where it is unknown), with
    the E-model on whole arrays: the same inputs and numbers as voice_quality(), for the
    samples of which only the score is kept. `delays[i]` is records[i]'s DelayEstimate."""
    n = len(records)
    loss = np.full(n, np.nan)
    jitter = np.full(n, np.nan)
    burst = np.ones(n)
    one_way = np.zeros(n)
    ie, bpl, frame_ms, lookahead = (np.zeros(n) for _ in range(4))
    for i, record in enumerate(records):
        kpis = record.kpis
        payload_type = _number(kpis.get("rtp_payload_type"))
        codec = VOICE_CODECS.get(int(payload_type)) if payload_type is not None else None
        value = _number(kpis.get("rtp_jitter_max_ms"))
        if value is None:
            value = _number(kpis.get("rtp_jitter_ms"))
        p = _number(kpis.get("rtp_loss_ratio"))
        if codec is None or value is None or p is None or not 0 <= p <= 1 or value < 0:
            continue   # unknown, or a record voice_quality() reports as invalid
        entry = emodel.CODECS[codec]
        loss[i], jitter[i] = p, value
        mean_burst = _number(kpis.get("rtp_mean_burst_packets"))
        if p > 0 and mean_burst is not None and p < 1:
            burst[i] = max(1.0, mean_burst * (1 - p))
        ie[i], bpl[i] = entry.ie, entry.bpl
        frame_ms[i], lookahead[i] = entry.frame_ms, entry.lookahead_ms
        if delays[i] is not None:
            one_way[i] = delays[i].one_way_ms
    known = ~np.isnan(loss) & (one_way >= 0) & (burst <= 1e6)
    scores = np.full(n, np.nan)
    if not known.any():
        return scores
    frames = np.maximum(1, np.round(PACKET_MS / frame_ms[known]))
    # qoe.emodel.mouth_to_ear_delay_ms per record: delay + jitter buffer + packets + look-ahead
    ta = one_way[known] + 2 * jitter[known] + frames * frame_ms[known] + lookahead[known]
    r = emodel.r_factor_array(ppl=loss[known] * 100, burstr=burst[known], ie=ie[known],
                              bpl=bpl[known], **emodel.voice_delays(ta))
    scores[known] = emodel.mos_from_r(r)
    return scores


def iptv_scores(records, settings: QualitySettings) -> np.ndarray:
    """The iptv_quality() scores of many MPEG-TS records at once (NaN where unknown), with
    G.1070's video quality on whole arrays: the same inputs and numbers as iptv_quality()."""
    n = len(records)
    loss, bitrate, fps = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i, record in enumerate(records):
        kpis = record.kpis
        ts_packets = _number(kpis.get("ts_packets"))
        lost = _number(kpis.get("ts_lost_packets"))
        span = record.interval_end_unix_s - record.interval_start_unix_s
        rate = settings.iptv_frame_rates.get(f"{record.dst}:{record.dport}",
                                             settings.iptv_frame_rate)
        if not ts_packets or lost is None or lost < 0 or span <= 0 or not rate:
            continue
        loss[i] = lost / (ts_packets + lost)
        bitrate[i] = ts_packets * TS_PACKET_BITS / span
        fps[i] = rate
    known = ~np.isnan(loss)
    scores = np.full(n, np.nan)
    if known.any():
        scores[known] = video.video_quality(bitrate[known] / 1000, fps[known],
                                            loss[known] * 100).mos
    return scores


def quality_of(record, delay: DelayEstimate | None, settings: QualitySettings
               ) -> Quality | None:
    """The quality of a probe record, for the services whose quality records give (voice,
    IPTV); None for the others (bulk is per customer, web and video come as reports)."""
    if record.service == "voice" and record.kind == "rtp":
        return voice_quality(record, delay)
    if record.service == "iptv" and record.kind == "mpegts":
        return iptv_quality(record, settings)
    return None
