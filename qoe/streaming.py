"""Adaptive/HTTP video streaming: MOS from stalling (core, numpy).

Source: T. Hossfeld, M. Seufert, M. Hirth, T. Zinner, P. Tran-Gia, R. Schatz,
"Quantification of YouTube QoE via Crowdsourcing", IEEE International Symposium on
Multimedia (ISM) 2011, section V: for N stalling events of average length L seconds, an
IQX-type mapping f(L, N) = 3.50 exp(-(0.15 L + 0.19) N) + 1.50, fitted for videos of about
30 s with stalls of up to 4 s each and up to 6 events; outside that range the result is
flagged as extrapolated. The same study found initial delays (of a few seconds) to matter far
less than stalling, so the model has no initial-delay term; initial delay and bitrate are
reported beside the MOS, not folded into it.
"""

import dataclasses

import numpy as np

from qoe.errors import QoeInputError

MODEL = "Hossfeld et al., IEEE ISM 2011: 3.50 exp(-(0.15 L + 0.19) N) + 1.50"
VALIDATED_STALLS = (0, 6)
VALIDATED_STALL_LENGTH_S = (0.0, 4.0)


@dataclasses.dataclass(frozen=True)
class StreamingQoe:
    mos: object                    # float or array
    extrapolated: tuple[str, ...]
    initial_delay_s: object = None  # reported, not used by the model
    bitrate_bps: object = None      # reported, not used by the model


def stalling_mos(stalls, mean_stall_s, initial_delay_s=None, bitrate_bps=None) -> StreamingQoe:
    """MOS (1.5..5) for `stalls` stalling events of mean length `mean_stall_s` seconds."""
    n = np.asarray(stalls, dtype=np.float64)
    length = np.asarray(mean_stall_s, dtype=np.float64)
    for name, value, raw in (("stalls", n, stalls), ("mean_stall_s", length, mean_stall_s)):
        if np.isnan(value).any() or (value < 0).any():
            raise QoeInputError(name, raw, "0 or more (not NaN)")
    mos = 3.50 * np.exp(-(0.15 * length + 0.19) * n) + 1.50
    extrapolated = tuple(name for name, value, (lo, hi) in (
        ("stalls", n, VALIDATED_STALLS), ("mean_stall_s", length, VALIDATED_STALL_LENGTH_S))
        if (value < lo).any() or (value > hi).any())
    return StreamingQoe(float(mos) if np.ndim(mos) == 0 else mos, extrapolated,
                        initial_delay_s, bitrate_bps)
