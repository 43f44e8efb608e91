import math

import pytest

from qoe import emodel
from qoe.errors import QoeInputError
from qoe.estimate import estimate_voice


def test_a_missing_input_is_an_explicit_unknown():
    estimate = estimate_voice(loss_ratio=0.01, one_way_delay_ms=None, jitter_ms=math.nan)
    assert not estimate.known and estimate.mos is None
    assert estimate.missing == ("one_way_delay_ms", "jitter_ms")


def test_voice_estimate_uses_the_e_model_and_says_how():
    estimate = estimate_voice(loss_ratio=0.02, one_way_delay_ms=60, jitter_ms=5,
                              codec="g711-plc")
    ta = 60 + 10 + 20  # network + 2 x jitter + 20 ms packet
    expected = emodel.mos_from_r(emodel.r_factor(ppl=2.0, ie=0, bpl=25.1,
                                                 **emodel.voice_delays(ta)))
    assert estimate.mos == pytest.approx(expected)
    assert estimate.inputs["mouth_to_ear_ms"] == pytest.approx(90)
    assert estimate.inputs["ppl_pct"] == pytest.approx(2.0)
    assert any("2 x jitter" in a for a in estimate.assumptions)
    assert "G.107" in estimate.model and "g711-plc" in estimate.model


def test_heavy_loss_is_not_stuck_at_4_5_and_loss_is_a_ratio():
    assert estimate_voice(0.3, 50, 5).mos < 2.0
    with pytest.raises(QoeInputError, match="a ratio, not a percentage"):
        estimate_voice(loss_ratio=5, one_way_delay_ms=50, jitter_ms=5)
    flagged = estimate_voice(0.3, 50, 5)
    assert "ppl" in flagged.extrapolated
