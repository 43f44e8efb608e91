"""The IQX hypothesis: QoE = alpha * exp(-beta * QoS) + gamma, and fitting it (core, numpy).

Source: M. Fiedler, T. Hossfeld, P. Tran-Gia, "A generic quantitative relationship between
quality of experience and quality of service", IEEE Network 24(2), March/April 2010: the
change of QoE depends on the current QoE level, dQoE/dQoS = -beta (QoE - gamma), whose
solution is the exponential above (section "The IQX hypothesis"). For services with no
standard model, a curve fitted to subjective data with fit_iqx() is the cited model.
"""

import dataclasses

import numpy as np

from qoe.errors import QoeInputError


@dataclasses.dataclass(frozen=True)
class IqxCurve:
    alpha: float
    beta: float
    gamma: float
    qos_range: tuple[float, float]  # where the curve was fitted (outside: extrapolated)
    source: str = ""

    def __call__(self, qos):
        """QoE for a QoS value (scalar or array); NaN is an error naming the input."""
        values = np.asarray(qos, dtype=np.float64)
        if np.isnan(values).any():
            raise QoeInputError("qos", qos, "a number, not NaN")
        qoe = self.alpha * np.exp(-self.beta * values) + self.gamma
        return float(qoe) if np.ndim(qoe) == 0 else qoe

    def extrapolated(self, qos) -> bool:
        values = np.asarray(qos, dtype=np.float64)
        lo, hi = self.qos_range
        return bool((values < lo).any() or (values > hi).any())


def _linear_part(qos: np.ndarray, qoe: np.ndarray, beta: float) -> tuple[float, float, float]:
    """For a fixed beta the model is linear in alpha and gamma: least squares, return SSE."""
    design = np.column_stack([np.exp(-beta * qos), np.ones_like(qos)])
    (alpha, gamma), *_ = np.linalg.lstsq(design, qoe, rcond=None)
    residual = design @ np.array([alpha, gamma]) - qoe
    return float(alpha), float(gamma), float(residual @ residual)


def fit_iqx(qos, qoe, source: str = "", beta_bounds: tuple[float, float] = (1e-6, 1e3)
            ) -> IqxCurve:
    """Least-squares fit of the IQX curve to (QoS, QoE) pairs.

    Beta is found by golden-section search on log(beta) (the error is unimodal in practice
    for monotone data); alpha and gamma by linear least squares for each beta. Needs at
    least three distinct QoS values.
    """
    x = np.asarray(qos, dtype=np.float64)
    y = np.asarray(qoe, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("qos and qoe must be 1-D arrays of the same length")
    if np.isnan(x).any() or np.isnan(y).any():
        raise QoeInputError("qos/qoe", "NaN", "numbers, not NaN")
    if len(np.unique(x)) < 3:
        raise ValueError("fitting needs at least three distinct QoS values")
    scale = 1.0 / max(np.ptp(x), 1e-12)  # search beta relative to the data's range
    lo, hi = np.log(beta_bounds[0] / scale), np.log(beta_bounds[1] / scale)
    ratio = (np.sqrt(5) - 1) / 2

    def sse(log_beta: float) -> float:
        return _linear_part(x, y, float(np.exp(log_beta)) * scale)[2]

    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = sse(c), sse(d)
    for _ in range(200):
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = sse(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = sse(d)
        if b - a < 1e-10:
            break
    beta = float(np.exp((a + b) / 2)) * scale
    alpha, gamma, _ = _linear_part(x, y, beta)
    return IqxCurve(alpha, beta, gamma, (float(x.min()), float(x.max())), source)
