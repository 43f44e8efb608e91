import numpy as np
import pytest
from hypothesis import given, strategies as st

from qoe.errors import QoeInputError
from qoe.streaming import stalling_mos


def test_published_mapping():
    # Hossfeld et al., ISM 2011: f(L, N) = 3.50 exp(-(0.15 L + 0.19) N) + 1.50.
    assert stalling_mos(0, 0).mos == pytest.approx(5.0)
    assert stalling_mos(1, 1).mos == pytest.approx(3.50 * np.exp(-0.34) + 1.50)
    assert stalling_mos(3, 2).mos == pytest.approx(3.50 * np.exp(-0.49 * 3) + 1.50)
    result = stalling_mos(10, 8)
    assert set(result.extrapolated) == {"stalls", "mean_stall_s"} and result.mos > 1.5


@given(st.integers(0, 6), st.integers(0, 6), st.floats(0, 4), st.floats(0, 4))
def test_more_or_longer_stalls_never_raise_the_score(n1, n2, l1, l2):
    lo_n, hi_n = sorted((n1, n2))
    lo_l, hi_l = sorted((l1, l2))
    assert stalling_mos(hi_n, hi_l).mos <= stalling_mos(lo_n, lo_l).mos + 1e-12
    assert 1.5 <= stalling_mos(hi_n, hi_l).mos <= 5.0


def test_vectorised_and_inputs():
    arr = stalling_mos(np.array([0, 1, 2]), np.array([0.0, 1.0, 2.0])).mos
    np.testing.assert_allclose(arr, [stalling_mos(n, l).mos for n, l in ((0, 0), (1, 1), (2, 2))])
    with pytest.raises(QoeInputError, match="stalls"):
        stalling_mos(-1, 0)
    assert stalling_mos(0, 0, initial_delay_s=2.0, bitrate_bps=3e6).initial_delay_s == 2.0
