"""ITU-T G.107 E-model: transmission rating factor R and MOS for voice (core, numpy).

Source: ITU-T Recommendation G.107 (06/2015), "The E-model: a computational model for use in
transmission planning". Clause 7 gives R = Ro - Is - Id - Ie,eff + A (7.1 basic signal-to-
noise ratio Ro, 7.2 simultaneous impairments Is, 7.3 delay impairments Id, 7.4 effective
equipment impairment Ie,eff, 7.5 advantage factor A); Table 3 gives the default values and
the ranges over which the model was validated; Annex B converts R to MOS (conversational
quality, MOS-CQE). Codec values come from ITU-T G.113 Appendix I (see CODECS).

Every function takes G.107's parameters by their symbols in lower case (slr, rlr, stmr, lstr,
ds, dr, telr, wepl, t, ta, tr, qdu, ie, bpl, ppl, burstr, nc, nfor, ps, pr, a), with ppl in
percent as in the standard and delays in milliseconds. Each may be a number or a numpy array
(arrays broadcast), so the same code is the scalar and the vectorised form.

Mouth-to-ear delay: G.107 needs the absolute one-way delay Ta (mouth to ear), the mean
one-way delay T from the receive side to the point where echo arises, and the round-trip
delay Tr of the listener echo loop. mouth_to_ear_delay_ms() assembles Ta as
    network one-way delay + jitter-buffer delay + packetisation (frames per packet x frame)
    + codec look-ahead,
and voice_delays() sets T = Ta (echo assumed at the far end) and Tr = 2 Ta, the usual
planning assumption for a packet path between two terminals.
"""

import dataclasses
import math

import numpy as np

from qoe.errors import QoeInputError


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One G.107 input: default (Table 3), domain where the formulas make sense, and the range
    of Table 3 over which the model was validated."""

    default: float
    domain: tuple[float, float]
    validated: tuple[float, float]
    meaning: str


_INF = math.inf
PARAMETERS: dict[str, Parameter] = {
    "slr": Parameter(8.0, (-_INF, _INF), (0.0, 18.0), "send loudness rating, dB"),
    "rlr": Parameter(2.0, (-_INF, _INF), (-5.0, 14.0), "receive loudness rating, dB"),
    "stmr": Parameter(15.0, (-_INF, _INF), (10.0, 20.0), "sidetone masking rating, dB"),
    "lstr": Parameter(18.0, (-_INF, _INF), (13.0, 23.0), "listener sidetone rating, dB"),
    "ds": Parameter(3.0, (-_INF, _INF), (-3.0, 3.0), "D-value of telephone, send side"),
    "dr": Parameter(3.0, (-_INF, _INF), (-3.0, 3.0), "D-value of telephone, receive side"),
    "telr": Parameter(65.0, (-_INF, _INF), (5.0, 65.0), "talker echo loudness rating, dB"),
    "wepl": Parameter(110.0, (-_INF, _INF), (5.0, 110.0), "weighted echo path loss, dB"),
    "t": Parameter(0.0, (0.0, _INF), (0.0, 500.0), "mean one-way delay of the echo path, ms"),
    "ta": Parameter(0.0, (0.0, _INF), (0.0, 500.0), "absolute (mouth-to-ear) delay, ms"),
    "tr": Parameter(0.0, (0.0, _INF), (0.0, 1000.0), "round-trip delay in a 4-wire loop, ms"),
    "qdu": Parameter(1.0, (1.0, _INF), (1.0, 14.0), "quantising distortion units"),
    "ie": Parameter(0.0, (0.0, 95.0), (0.0, 40.0), "equipment impairment factor"),
    "bpl": Parameter(4.3, (1e-9, _INF), (1.0, 40.0), "packet-loss robustness factor"),
    "ppl": Parameter(0.0, (0.0, 100.0), (0.0, 20.0), "random packet-loss probability, %"),
    "burstr": Parameter(1.0, (1.0, _INF), (1.0, 8.0), "burst ratio"),
    "nc": Parameter(-70.0, (-_INF, _INF), (-80.0, -40.0), "circuit noise, dBm0p"),
    "nfor": Parameter(-64.0, (-_INF, _INF), (-_INF, _INF), "noise floor at receive side, dBmp"),
    "ps": Parameter(35.0, (-_INF, _INF), (35.0, 85.0), "room noise at send side, dB(A)"),
    "pr": Parameter(35.0, (-_INF, _INF), (35.0, 85.0), "room noise at receive side, dB(A)"),
    "a": Parameter(0.0, (0.0, _INF), (0.0, 20.0), "advantage factor"),
}


@dataclasses.dataclass(frozen=True)
class EModelResult:
    """R, its MOS, what each impairment removed (R points) and inputs outside Table 3's ranges.

    Each number is a float for scalar inputs and a numpy array for array inputs.
    """

    r: object
    mos: object
    breakdown: dict
    extrapolated: tuple[str, ...]


def _inputs(params: dict) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    unknown = set(params) - set(PARAMETERS)
    if unknown:
        raise TypeError(f"unknown E-model parameters {sorted(unknown)}; "
                        f"known: {', '.join(PARAMETERS)}")
    values, extrapolated = {}, []
    for name, spec in PARAMETERS.items():
        value = np.asarray(params.get(name, spec.default), dtype=np.float64)
        if np.isnan(value).any():
            raise QoeInputError(name, params.get(name), f"a number ({spec.meaning}), not NaN")
        lo, hi = spec.domain
        if (value < lo).any() or (value > hi).any():
            raise QoeInputError(name, params.get(name), f"{lo} to {hi} ({spec.meaning})")
        vlo, vhi = spec.validated
        if (value < vlo).any() or (value > vhi).any():
            extrapolated.append(name)
        values[name] = value
    return values, tuple(extrapolated)


def _components(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The terms of G.107 clause 7, each as an array (broadcast over the inputs)."""
    slr, rlr = p["slr"], p["rlr"]
    olr = slr + rlr
    # 7.1 Basic signal-to-noise ratio Ro
    nos = p["ps"] - slr - p["ds"] - 100 + 0.004 * (p["ps"] - olr - p["ds"] - 14) ** 2
    pre = p["pr"] + 10 * np.log10(1 + 10 ** ((10 - p["lstr"]) / 10))
    nor = rlr - 121 + pre + 0.008 * (pre - 35) ** 2
    nfo = p["nfor"] + rlr
    no = 10 * np.log10(10 ** (p["nc"] / 10) + 10 ** (nos / 10) + 10 ** (nor / 10)
                       + 10 ** (nfo / 10))
    ro = 15 - 1.5 * (slr + no)
    # 7.2 Simultaneous impairment factor Is = Iolr + Ist + Iq
    xolr = olr + 0.2 * (64 + no - rlr)
    iolr = 20 * ((1 + (xolr / 8) ** 8) ** (1 / 8) - xolr / 8)
    stmro = -10 * np.log10(10 ** (-p["stmr"] / 10) + np.exp(-p["t"] / 4) * 10 ** (-p["telr"] / 10))
    ist = (12 * (1 + ((stmro - 13) / 6) ** 8) ** (1 / 8)
           - 28 * (1 + ((stmro + 1) / 19.4) ** 35) ** (1 / 35)
           - 13 * (1 + ((stmro - 3) / 33) ** 13) ** (1 / 13) + 29)
    q = 37 - 15 * np.log10(p["qdu"])
    g = 1.07 + 0.258 * q + 0.0602 * q ** 2
    y = (ro - 100) / 15 + 46 / 8.4 - g / 9
    z = 46 / 30 - g / 40
    iq = 15 * np.log10(1 + 10 ** y + 10 ** z)
    # 7.3 Delay impairment factor Id = Idte + Idle + Idd
    t = p["t"]
    terv = p["telr"] - 40 * np.log10((1 + t / 10) / (1 + t / 150)) + 6 * np.exp(-0.3 * t ** 2)
    terv = np.where(p["stmr"] < 9, terv + ist / 2, terv)  # TERVs for STMR < 9 dB
    roe = -1.5 * (no - rlr)
    re = 80 + 2.5 * (terv - 14)
    idte = ((roe - re) / 2 + np.sqrt((roe - re) ** 2 / 4 + 100) - 1) * (1 - np.exp(-t))
    rle = 10.5 * (p["wepl"] + 7) * (p["tr"] + 1) ** -0.25
    idle = (ro - rle) / 2 + np.sqrt((ro - rle) ** 2 / 4 + 169)
    ta = p["ta"]
    x = np.log10(np.maximum(ta, 100) / 100) / np.log10(2)
    idd = np.where(ta > 100,
                   25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2), 0.0)
    # 7.4 Effective equipment impairment factor Ie,eff
    ppl, ie = p["ppl"], p["ie"]
    ie_eff = ie + (95 - ie) * ppl / (ppl / p["burstr"] + p["bpl"])
    r = ro - (iolr + ist + iq) - (idte + idle + idd) - ie_eff + p["a"]
    return {"ro": ro, "iolr": iolr, "ist": ist, "iq": iq, "is": iolr + ist + iq,
            "idte": idte, "idle": idle, "idd": idd, "id": idte + idle + idd,
            "ie_eff": ie_eff, "a": p["a"], "r": r}


def _out(value: np.ndarray, scalar: bool):
    return float(value) if scalar else value


def evaluate(**params) -> EModelResult:
    """R, MOS and the R points each impairment removes, for G.107 parameters (see module).

    Raises QoeInputError for an input outside its domain; inputs outside the ranges of
    G.107 Table 3 are computed and named in `extrapolated`.
    """
    values, extrapolated = _inputs(params)
    scalar = all(np.ndim(v) == 0 for v in values.values())
    parts = _components(values)
    shape = np.broadcast(*values.values()).shape
    breakdown = {k: _out(np.broadcast_to(v, shape), scalar) for k, v in parts.items()}
    return EModelResult(breakdown["r"], mos_from_r(breakdown["r"]), breakdown, extrapolated)


def r_factor(**params) -> float:
    """Transmission rating factor R for scalar G.107 parameters (defaults: Table 3)."""
    result = evaluate(**params)
    if not isinstance(result.r, float):
        raise TypeError("r_factor() takes scalars; use r_factor_array() for arrays")
    return result.r


def r_factor_array(**params) -> np.ndarray:
    """R for numpy arrays of G.107 parameters (broadcast together); same numbers as r_factor()."""
    values, _ = _inputs(params)
    shape = np.broadcast(*values.values()).shape
    return np.broadcast_to(_components(values)["r"], shape).copy()


def mos_from_r(r):
    """G.107 Annex B (B-4): R -> MOS-CQE; 1 below R = 0, 4.5 above R = 100.

    The polynomial dips slightly below 1 for 0 < R < 6.5; MOS is held at 1 there, the
    lowest value the scale has. Scalar in, float out; array in, array out.
    """
    values = np.asarray(r, dtype=np.float64)
    if np.isnan(values).any():
        raise QoeInputError("r", r, "a number, not NaN")
    mos = 1 + 0.035 * values + values * (values - 60) * (100 - values) * 7e-6
    mos = np.where(values < 0, 1.0, np.where(values > 100, 4.5, np.maximum(mos, 1.0)))
    return float(mos) if np.ndim(mos) == 0 else mos


# B-4 equals 1 again where 0.035 + 7e-6 (R - 60)(100 - R) = 0, i.e. R^2 - 160 R + 1000 = 0.
_R_AT_MOS_1 = (160 - math.sqrt(160 ** 2 - 4 * 1000)) / 2  # 6.515


def r_from_mos(mos):
    """Inverse of mos_from_r() on 1 < MOS < 4.5 (bisection on B-4, which rises there).

    MOS 1 gives the lowest R above 0 with MOS 1 (6.515), MOS 4.5 gives 100.
    """
    values = np.asarray(mos, dtype=np.float64)
    if np.isnan(values).any() or (values < 1).any() or (values > 4.5).any():
        raise QoeInputError("mos", mos, "1 to 4.5")
    lo = np.full(values.shape, _R_AT_MOS_1)
    hi = np.full(values.shape, 100.0)
    for _ in range(60):
        mid = (lo + hi) / 2
        below = mos_from_r(mid) < values
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    r = (lo + hi) / 2
    return float(r) if np.ndim(r) == 0 else r


@dataclasses.dataclass(frozen=True)
class Codec:
    """Equipment impairment Ie and packet-loss robustness Bpl of a codec (G.113 Appendix I),
    with its frame and look-ahead delays for the mouth-to-ear delay."""

    ie: float
    bpl: float
    frame_ms: float
    lookahead_ms: float
    source: str


# ITU-T G.113 (11/2007) Appendix I: Table I.1 (Ie of codecs) and Table I.3 (Ie and Bpl under
# random packet loss, with the packet sizes used there). Codecs G.113 lists without a Bpl
# (for example G.723.1 at 5.3 kbit/s) are not here, since Ie,eff needs both.
CODECS: dict[str, Codec] = {
    "g711": Codec(0.0, 4.3, 0.125, 0.0, "G.113 Table I.3: G.711, no packet loss concealment"),
    "g711-plc": Codec(0.0, 25.1, 0.125, 0.0,
                      "G.113 Table I.3: G.711 with PLC of G.711 Appendix I"),
    "g729a-vad": Codec(11.0, 19.0, 10.0, 5.0, "G.113 Table I.3: G.729A + VAD, 8 kbit/s"),
    "g723.1-vad": Codec(15.0, 16.1, 30.0, 7.5, "G.113 Table I.3: G.723.1 + VAD, 6.3 kbit/s"),
    "gsm-efr": Codec(5.0, 10.0, 20.0, 0.0, "G.113 Table I.3: GSM-EFR (AMR-NB 12.2 kbit/s)"),
}


def codec(name: str) -> tuple[float, float]:
    """(ie, bpl) of a codec from G.113 Appendix I; an unknown name lists the known ones."""
    try:
        entry = CODECS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown codec '{name}'; known codecs: {', '.join(CODECS)}") from None
    return entry.ie, entry.bpl


def mouth_to_ear_delay_ms(network_delay_ms, jitter_buffer_ms, codec_name: str,
                          frames_per_packet: int = 1):
    """Ta = network one-way delay + jitter-buffer delay + packetisation + codec look-ahead.

    Packetisation is frames_per_packet x the codec's frame (G.711 frames are one sample;
    a 20 ms G.711 packet is frames_per_packet=160). Arrays broadcast.
    """
    entry = CODECS[codec_name.lower()] if codec_name.lower() in CODECS else None
    if entry is None:
        codec(codec_name)  # raises with the list of known codecs
    for name, value in (("network_delay_ms", network_delay_ms),
                        ("jitter_buffer_ms", jitter_buffer_ms)):
        array = np.asarray(value, dtype=np.float64)
        if np.isnan(array).any() or (array < 0).any():
            raise QoeInputError(name, value, "0 ms or more")
    if frames_per_packet < 1:
        raise QoeInputError("frames_per_packet", frames_per_packet, "1 or more")
    return (np.asarray(network_delay_ms, dtype=np.float64) + jitter_buffer_ms
            + frames_per_packet * entry.frame_ms + entry.lookahead_ms)


def voice_delays(ta_ms) -> dict:
    """G.107 delay inputs for a packet path between two terminals: T = Ta, Tr = 2 Ta."""
    return {"ta": ta_ms, "t": ta_ms, "tr": 2 * np.asarray(ta_ms, dtype=np.float64)}


def burst_ratio(loss_ratio, mean_burst_packets):
    """G.107 BurstR (clause 7.4): observed mean loss-burst length over the mean length under
    random loss, 1 / (1 - p). Random loss gives 1; at p = 0 BurstR is 1 by definition."""
    p = np.asarray(loss_ratio, dtype=np.float64)
    if np.isnan(p).any() or (p < 0).any() or (p >= 1).any():
        raise QoeInputError("loss_ratio", loss_ratio, "0 to below 1")
    burst = np.asarray(mean_burst_packets, dtype=np.float64)
    if np.isnan(burst).any() or (burst < 1).any():
        raise QoeInputError("mean_burst_packets", mean_burst_packets, "1 or more")
    value = np.where(p > 0, np.maximum(burst * (1 - p), 1.0), 1.0)
    return float(value) if np.ndim(value) == 0 else value
