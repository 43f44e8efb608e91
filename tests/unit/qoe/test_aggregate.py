import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qoe.aggregate import PERCENTILES, aggregate_windows
from qoe.errors import QoeInputError


def test_groups_statistics_and_unknowns():
    time_s = [0, 1, 2, 3, 11, 12, 0, 5]
    customer = [1, 1, 1, 1, 1, 1, 2, 2]
    service = [0, 0, 0, 0, 0, 0, 1, 1]
    score = [4.0, 3.0, np.nan, 2.0, 4.5, 4.5, 1.0, 3.0]
    result = aggregate_windows(time_s, customer, service, score, [1.0] * 8, window_s=10,
                               threshold=3.1)
    assert list(result.customer) == [1, 1, 2]
    assert list(result.window_start_s) == [0, 10, 0]
    assert list(result.count) == [3, 2, 2] and list(result.unknown) == [1, 0, 0]
    assert result.mean[0] == pytest.approx(3.0) and result.worst[0] == 2.0
    assert result.time_below_s[0] == 2.0 and result.time_below_s[1] == 0.0
    np.testing.assert_allclose(result.percentiles[0], np.percentile([4, 3, 2], PERCENTILES))


def test_a_group_with_only_unknown_scores_has_no_numbers():
    result = aggregate_windows([0, 1], [1, 1], [0, 0], [np.nan, np.nan], [1, 1], 10, 3.1)
    assert result.count[0] == 0 and result.unknown[0] == 2
    assert np.isnan(result.mean[0]) and np.isnan(result.worst[0])
    assert np.isnan(result.percentiles[0]).all()


def test_bad_inputs_name_the_input():
    with pytest.raises(QoeInputError, match="duration_s"):
        aggregate_windows([0], [1], [0], [3.0], [-1.0], 10, 3.1)
    with pytest.raises(QoeInputError, match="window_s"):
        aggregate_windows([0], [1], [0], [3.0], [1.0], 0, 3.1)
    assert len(aggregate_windows([], [], [], [], [], 10, 3.1)) == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 3), st.integers(0, 2),
                          st.one_of(st.floats(1, 5), st.just(float("nan"))), st.floats(0, 2)),
                min_size=1, max_size=60))
def test_vectorised_equals_a_per_group_loop(rows):
    t, c, s, v, d = (np.array(col) for col in zip(*rows))
    result = aggregate_windows(t, c, s, v, d, window_s=10.0, threshold=3.0)
    groups = {}
    for row in rows:
        groups.setdefault((row[1], row[2], int(row[0] // 10)), []).append(row)
    assert len(result) == len(groups)
    for i in range(len(result)):
        key = (result.customer[i], result.service[i], int(result.window_start_s[i] // 10))
        members = groups[key]
        known = [r[3] for r in members if not np.isnan(r[3])]
        assert result.count[i] == len(known) and result.unknown[i] == len(members) - len(known)
        if known:
            assert result.mean[i] == pytest.approx(np.mean(known))
            assert result.worst[i] == min(known)
            np.testing.assert_allclose(result.percentiles[i], np.percentile(known, PERCENTILES))
        below = sum(r[4] for r in members if not np.isnan(r[3]) and r[3] < 3.0)
        assert result.time_below_s[i] == pytest.approx(below)
