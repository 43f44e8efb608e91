"""G.1070 video quality (qoe.video) and the IPTV estimate built on it."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qoe.errors import QoeInputError
from qoe.estimate import estimate_iptv
from qoe.video import H264_VGA_9IN, video_quality


def test_worked_example_from_the_equations():
    # BrV 1000 kbit/s, FrV 30 frames/s, no loss, worked by hand from clause 11.3:
    # Ofr = 5.517 + 0.0129 * 1000 = 18.417; IOfr = 3.459 - 3.459 / (1 + 5.6013^1.02) = 2.950;
    # DFrV = 1.15 + 0.355 = 1.505; Icoding = 2.950 exp(-(ln 30 - ln 18.417)^2 / 4.530) = 2.799
    result = video_quality(1000, 30, 0)
    assert result.icoding == pytest.approx(2.799, abs=0.002)
    assert result.mos == pytest.approx(3.799, abs=0.002)
    assert result.extrapolated == ()
    # 1 % loss: DPplV = 0.736 - 6.451 exp(-30/0.114) + 13.684 exp(-1000/513.77) = 2.683
    assert video_quality(1000, 30, 1).mos == pytest.approx(1 + 2.799 * np.exp(-1 / 2.683),
                                                          abs=0.003)


@settings(max_examples=200, deadline=None)
@given(st.floats(50, 20_000), st.floats(5, 60), st.floats(0, 100), st.floats(0, 50))
def test_more_loss_never_helps_and_scores_stay_in_range(bitrate, fps, loss, more):
    a = video_quality(bitrate, fps, loss).mos
    b = video_quality(bitrate, fps, min(100.0, loss + more)).mos
    assert b <= a + 1e-12
    assert 1.0 <= b <= a <= 1 + H264_VGA_9IN.v[2]


def test_vectorised_equals_scalar_and_flags_the_fitted_range():
    bitrate = np.array([300.0, 800.0, 1500.0, 4000.0])
    result = video_quality(bitrate, 25.0, np.array([0.0, 0.5, 1.0, 2.0]))
    for i, (br, loss) in enumerate(zip(bitrate, [0.0, 0.5, 1.0, 2.0])):
        assert result.mos[i] == video_quality(br, 25.0, loss).mos
    assert result.extrapolated == ("bitrate_kbps",)
    assert video_quality(4000, 25, 0).extrapolated == ("bitrate_kbps",)


@pytest.mark.parametrize("args, name", [((0, 25, 0), "bitrate_kbps"), ((1000, -1, 0), "frame_rate"),
                                        ((1000, 25, 101), "loss_percent"),
                                        ((1000, 25, float("nan")), "loss_percent")])
def test_inputs_outside_the_domain_are_named(args, name):
    with pytest.raises(QoeInputError) as err:
        video_quality(*args)
    assert err.value.name == name


def test_iptv_estimate_says_what_it_lacked_and_what_it_used():
    unknown = estimate_iptv(0.001, 4_000_000, None)
    assert unknown.mos is None and unknown.missing == ("frame_rate",)
    known = estimate_iptv(0.001, 1_500_000, 25)
    assert known.known and known.inputs["ppl_pct"] == pytest.approx(0.1)
    assert known.mos == pytest.approx(video_quality(1500, 25, 0.1).mos)
    assert "G.1070" in known.model and known.extrapolated == ()
    assert estimate_iptv(0.0, 4_000_000, 25).extrapolated == ("bitrate_kbps",)
    with pytest.raises(QoeInputError, match="not a percentage"):
        estimate_iptv(5.0, 1_500_000, 25)
