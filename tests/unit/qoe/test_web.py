import math

import pytest

from qoe.errors import QoeInputError
from qoe.web import G1030_FIG_II4, WebAnchors, web_mos


@pytest.mark.parametrize("seconds, mos", [(1, 4.2693), (2, 3.0046), (3, 2.2647), (4, 1.7398),
                                          (0.5, 5.0), (8, 1.0)])
def test_the_check_points_of_the_cited_anchor_pair(seconds, mos):
    """../shared/SOURCES.md: check points computed from G.1030 eq. II-2 for Tmin 0.67 s,
    Tmax 6 s (a = 4.2693, b = 1.8246)."""
    result = web_mos(seconds, G1030_FIG_II4)
    assert result.mos == pytest.approx(mos, abs=5e-4)
    assert (result.a, result.b) == (pytest.approx(4.2693, abs=5e-4),
                                    pytest.approx(1.8246, abs=5e-4))
    assert result.clipped == (seconds in (0.5, 8))


def test_anchors_give_mos_5_and_1_and_bad_inputs_are_refused():
    anchors = WebAnchors(1.0, 10.0, "test")
    assert web_mos(1.0, anchors).mos == pytest.approx(5.0)
    assert web_mos(10.0, anchors).mos == pytest.approx(1.0)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(QoeInputError):
            web_mos(bad)
    with pytest.raises(QoeInputError):
        WebAnchors(6.0, 1.0, "backwards")
