"""Quality estimates that say what they are based on, or what they lacked (core).

A QoeEstimate is either a score with the model and the inputs that produced it, or an
explicit unknown that names the missing inputs: never a default-looking number.
"""

import dataclasses
import math
from typing import Mapping

from qoe import emodel
from qoe import video
from qoe.errors import QoeInputError

EMODEL = "ITU-T G.107 (06/2015) E-model, Annex B MOS"
JITTER_BUFFER_FACTOR = 2.0  # jitter-buffer delay = 2 x RFC 3550 jitter when not measured


@dataclasses.dataclass(frozen=True)
class QoeEstimate:
    service: str
    mos: float | None               # None when unknown
    model: str
    inputs: Mapping[str, float]     # what the model used, with units in the names
    missing: tuple[str, ...] = ()   # inputs that were needed and not given
    extrapolated: tuple[str, ...] = ()  # inputs outside the model's validated range
    assumptions: tuple[str, ...] = ()
    details: Mapping[str, float] = dataclasses.field(default_factory=dict)

    @property
    def known(self) -> bool:
        return self.mos is not None


def _finite_or_missing(name: str, value) -> bool:
    if value is None:
        return False
    if isinstance(value, float) and math.isnan(value):
        return False
    return True


def estimate_voice(loss_ratio: float | None, one_way_delay_ms: float | None,
                   jitter_ms: float | None = None, codec: str = "g711",
                   frames_per_packet: int = 160, burst_ratio: float = 1.0,
                   jitter_buffer_ms: float | None = None) -> QoeEstimate:
    """Voice MOS from measured loss (ratio 0..1, per window), one-way network delay and
    jitter, with the E-model.

    Mouth-to-ear delay is network delay + jitter buffer + packetisation + look-ahead (see
    qoe.emodel); the jitter buffer is jitter_buffer_ms if known, else 2 x jitter (said in
    `assumptions`). A missing input gives an unknown estimate naming it.
    """
    missing = [name for name, value in (("loss_ratio", loss_ratio),
                                        ("one_way_delay_ms", one_way_delay_ms))
               if not _finite_or_missing(name, value)]
    if not _finite_or_missing("jitter_buffer_ms", jitter_buffer_ms) and \
            not _finite_or_missing("jitter_ms", jitter_ms):
        missing.append("jitter_ms")
    if missing:
        return QoeEstimate("voice", None, EMODEL, {}, tuple(missing))
    if not 0 <= loss_ratio <= 1:
        raise QoeInputError("loss_ratio", loss_ratio, "0 to 1 (a ratio, not a percentage)")
    if jitter_ms is not None and jitter_ms < 0:
        raise QoeInputError("jitter_ms", jitter_ms, "0 ms or more")
    assumptions = []
    if not _finite_or_missing("jitter_buffer_ms", jitter_buffer_ms):
        jitter_buffer_ms = JITTER_BUFFER_FACTOR * jitter_ms
        assumptions.append(f"jitter-buffer delay taken as {JITTER_BUFFER_FACTOR:g} x jitter")
    ie, bpl = emodel.codec(codec)
    ta = float(emodel.mouth_to_ear_delay_ms(one_way_delay_ms, jitter_buffer_ms, codec,
                                            frames_per_packet))
    assumptions.append("echo path at the far end: T = Ta, Tr = 2 Ta")
    result = emodel.evaluate(ppl=loss_ratio * 100, burstr=burst_ratio, ie=ie, bpl=bpl,
                             **emodel.voice_delays(ta))
    inputs = {"loss_ratio": loss_ratio, "ppl_pct": loss_ratio * 100,
              "one_way_delay_ms": one_way_delay_ms, "jitter_buffer_ms": jitter_buffer_ms,
              "mouth_to_ear_ms": ta, "burst_ratio": burst_ratio, "ie": ie, "bpl": bpl}
    if jitter_ms is not None:
        inputs["jitter_ms"] = jitter_ms
    return QoeEstimate("voice", result.mos, f"{EMODEL}, codec {codec}", inputs, (),
                       result.extrapolated, tuple(assumptions), dict(result.breakdown))


def estimate_iptv(loss_ratio: float | None, bitrate_bps: float | None,
                  frame_rate: float | None,
                  coefficients: video.G1070Coefficients = video.H264_VGA_9IN) -> QoeEstimate:
    """IPTV picture quality from the MPEG-TS packet loss ratio of a window (lost TS packets
    over expected, 0..1), the video bit rate and the frame rate, with G.1070's video quality
    function (qoe.video). The frame rate is not visible in the transport stream's headers:
    the operator gives it per channel or service; without it the estimate is unknown."""
    missing = tuple(name for name, value in (("loss_ratio", loss_ratio),
                                             ("bitrate_bps", bitrate_bps),
                                             ("frame_rate", frame_rate))
                    if not _finite_or_missing(name, value))
    if missing:
        return QoeEstimate("iptv", None, video.MODEL, {}, missing)
    if not 0 <= loss_ratio <= 1:
        raise QoeInputError("loss_ratio", loss_ratio, "0 to 1 (a ratio, not a percentage)")
    result = video.video_quality(bitrate_bps / 1000, frame_rate, loss_ratio * 100,
                                 coefficients)
    inputs = {"loss_ratio": loss_ratio, "ppl_pct": loss_ratio * 100,
              "bitrate_kbps": bitrate_bps / 1000, "frame_rate": frame_rate}
    return QoeEstimate("iptv", result.mos, f"{video.MODEL} ({coefficients.name})", inputs, (),
                       result.extrapolated, (), {"icoding": result.icoding})
