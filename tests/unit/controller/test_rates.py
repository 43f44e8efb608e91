import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from controller.network.rates import CounterRates


def test_first_sample_has_no_rate_then_delta_over_measured_time():
    rates = CounterRates(("packets", "bytes"))
    first = rates.update(10.0, ["a"], np.array([[10, 1000]]))
    assert np.isnan(first).all()
    second = rates.update(12.0, ["a"], np.array([[30, 5000]]))
    np.testing.assert_allclose(second, [[10.0, 2000.0]])
    assert rates.latest("a")[0] == 12.0


def test_counter_reset_uses_new_value_over_time_since_reset():
    rates = CounterRates(("bytes",))
    rates.update(0.0, ["f"], np.array([[1_000_000]]), durations_s=np.array([100.0]))
    # The flow was deleted and re-added 0.5 s ago; it has counted 500 bytes since.
    out = rates.update(1.0, ["f"], np.array([[500]]), durations_s=np.array([0.5]))
    assert out[0, 0] == pytest.approx(1000.0)
    # Counter went backwards without duration: still a reset, over the whole interval.
    plain = CounterRates(("bytes",))
    plain.update(0.0, ["p"], np.array([[900]]))
    assert plain.update(2.0, ["p"], np.array([[100]]))[0, 0] == pytest.approx(50.0)


def test_removed_flows_are_forgotten_on_complete_replies():
    rates = CounterRates(("bytes",))
    rates.update(0.0, ["a", "b"], np.array([[1], [2]]))
    rates.update(1.0, ["a"], np.array([[3]]), complete=True)
    assert "b" not in rates and "a" in rates and len(rates) == 1
    # "b" coming back starts from scratch: no rate from its old counters.
    out = rates.update(2.0, ["a", "b"], np.array([[4], [100]]))
    assert out[0, 0] == pytest.approx(1.0) and math.isnan(out[1, 0])


def test_window_is_bounded_and_ordered():
    rates = CounterRates(("bytes",), window=3)
    for t in range(6):
        rates.update(float(t), ["a"], np.array([[t * 10]]))
    times, values = rates.history("a")
    assert list(times) == [3.0, 4.0, 5.0]
    np.testing.assert_allclose(values[:, 0], [10.0, 10.0, 10.0])


def test_capacity_grows_and_freed_rows_are_reused():
    rates = CounterRates(("bytes",), capacity=2)
    keys = [f"k{i}" for i in range(10)]
    rates.update(0.0, keys, np.arange(10).reshape(10, 1))
    rates.update(1.0, keys[:3], np.arange(3).reshape(3, 1) + 5, complete=True)
    assert len(rates) == 3
    before = rates.nbytes()
    rates.update(2.0, [f"n{i}" for i in range(7)], np.zeros((7, 1)))
    assert rates.nbytes() == before  # the 7 freed rows were reused


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 10), st.integers(0, 10**12)), min_size=2, max_size=20))
def test_rates_match_a_scalar_reference(samples):
    rates = CounterRates(("bytes",))
    now, prev = 0.0, None
    for dt, value in samples:
        now += dt
        out = rates.update(now, ["x"], np.array([[value]]))[0, 0]
        if prev is None:
            assert math.isnan(out)
        else:
            delta = value - prev if value >= prev else value
            assert out == pytest.approx(delta / dt, rel=1e-9)
            assert out >= 0
        prev = value
