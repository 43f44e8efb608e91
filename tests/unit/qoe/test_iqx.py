import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qoe.errors import QoeInputError
from qoe.iqx import IqxCurve, fit_iqx


@settings(max_examples=40, deadline=None)
@given(st.floats(0.5, 4.0), st.floats(0.5, 50.0), st.floats(1.0, 2.0))
def test_fit_recovers_a_known_curve(alpha, beta, gamma):
    truth = IqxCurve(alpha, beta, gamma, (0, 1))
    qos = np.linspace(0, 3 / beta, 25)
    fitted = fit_iqx(qos, truth(qos))
    assert fitted.alpha == pytest.approx(alpha, rel=1e-4)
    assert fitted.beta == pytest.approx(beta, rel=1e-4)
    assert fitted.gamma == pytest.approx(gamma, abs=1e-4)


def test_fit_with_noise_and_the_curve_is_monotone():
    rng = np.random.default_rng(7)
    qos = np.repeat(np.linspace(0, 0.2, 11), 5)
    qoe = 3.0 * np.exp(-20 * qos) + 1.2 + rng.normal(0, 0.05, qos.size)
    curve = fit_iqx(qos, qoe, source="synthetic")
    assert curve.beta == pytest.approx(20, rel=0.1)
    values = curve(np.linspace(0, 0.2, 50))
    assert (np.diff(values) <= 0).all()
    assert not curve.extrapolated(0.1) and curve.extrapolated(0.3)


def test_bad_inputs():
    with pytest.raises(ValueError, match="three distinct"):
        fit_iqx([0, 0, 1], [3, 3, 2])
    with pytest.raises(QoeInputError):
        IqxCurve(1, 1, 1, (0, 1))(float("nan"))
