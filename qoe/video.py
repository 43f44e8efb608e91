"""Video quality from bit rate, frame rate and packet loss: ITU-T G.1070 (core, numpy).

Source: Recommendation ITU-T G.1070, "Opinion model for video-telephony applications",
clause 11.3, video quality estimation function:

    Vq     = 1 + Icoding * exp(-PplV / DPplV)
    Icoding = IOfr * exp(-(ln FrV - ln Ofr)^2 / (2 DFrV^2))
    Ofr    = v1 + v2 BrV                    (frame rate that is best at this bit rate)
    IOfr   = v3 - v3 / (1 + (BrV / v4)^v5)  (the best quality at this bit rate)
    DFrV   = v6 + v7 BrV                    (robustness to a frame rate away from Ofr)
    DPplV  = v10 + v11 exp(-FrV / v8) + v12 exp(-BrV / v9)   (robustness to loss)

with BrV the video bit rate in kbit/s, FrV the frame rate in frames/s and PplV the packet
loss in percent. The coefficients v1..v12 depend on codec, resolution and display; the
set here is G.1070's provisional set for H.264 at VGA on a 9.2-inch display (Appendix B,
2012 data). The Recommendation's own text was not available where this was written; the
equations above and this coefficient set were cross-checked against two independent public
implementations that cite G.1070 and agree with each other. That set was fitted for bit
rates of about 400 to 2,000 kbit/s: outside, the result is computed and flagged as
extrapolated. IPTV at SD or HD rates is above that range, so its scores are extrapolated
and say so. G.1070 has no jitter input: for IPTV, jitter matters through the loss it causes
at the set-top box (qoe.mpegts counts it).
"""

import dataclasses

import numpy as np

from qoe.errors import QoeInputError

MODEL = "ITU-T G.1070 clause 11.3 video quality, H.264 VGA 9.2-inch coefficients"


@dataclasses.dataclass(frozen=True)
class G1070Coefficients:
    name: str
    v: tuple[float, ...]                   # v1..v12
    validated_bitrate_kbps: tuple[float, float]


H264_VGA_9IN = G1070Coefficients(
    "H.264, VGA, 9.2-inch display",
    (5.517, 1.29e-2, 3.459, 178.53, 1.02, 1.15, 3.55e-4, 0.114, 513.77, 0.736, -6.451, 13.684),
    (400.0, 2000.0))


@dataclasses.dataclass(frozen=True)
class VideoQuality:
    mos: object                     # float or array, 1..5 by construction of the model
    icoding: object                 # quality without loss, 0..v3
    extrapolated: tuple[str, ...]


def _check(name: str, raw, value: np.ndarray, low: float, high: float | None, allowed: str):
    if np.isnan(value).any() or (value < low).any() or (high is not None and
                                                         (value > high).any()):
        raise QoeInputError(name, raw, allowed)


def video_quality(bitrate_kbps, frame_rate, loss_percent,
                  coefficients: G1070Coefficients = H264_VGA_9IN) -> VideoQuality:
    """G.1070 Vq for scalars or numpy arrays (broadcast); see the module docstring.

    bitrate_kbps > 0; frame_rate > 0 frames/s; loss_percent 0..100 (percent, as in G.1070).
    """
    br = np.asarray(bitrate_kbps, dtype=np.float64)
    fr = np.asarray(frame_rate, dtype=np.float64)
    ppl = np.asarray(loss_percent, dtype=np.float64)
    _check("bitrate_kbps", bitrate_kbps, br, 0.0, None, "above 0 kbit/s")
    if (br == 0).any():
        raise QoeInputError("bitrate_kbps", bitrate_kbps, "above 0 kbit/s")
    _check("frame_rate", frame_rate, fr, 0.0, None, "above 0 frames/s")
    if (fr == 0).any():
        raise QoeInputError("frame_rate", frame_rate, "above 0 frames/s")
    _check("loss_percent", loss_percent, ppl, 0.0, 100.0, "0 to 100 (percent)")
    v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12 = coefficients.v
    ofr = v1 + v2 * br
    iofr = v3 - v3 / (1 + (br / v4) ** v5)
    dfrv = v6 + v7 * br
    icoding = iofr * np.exp(-(np.log(fr) - np.log(ofr)) ** 2 / (2 * dfrv ** 2))
    dpplv = v10 + v11 * np.exp(-fr / v8) + v12 * np.exp(-br / v9)
    mos = 1 + icoding * np.exp(-ppl / dpplv)
    low, high = coefficients.validated_bitrate_kbps
    extrapolated = ("bitrate_kbps",) if ((br < low) | (br > high)).any() else ()
    scalar = np.ndim(mos) == 0
    return VideoQuality(float(mos) if scalar else mos, float(icoding) if scalar else icoding,
                        extrapolated)
