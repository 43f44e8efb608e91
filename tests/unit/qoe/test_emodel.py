import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from qoe import emodel
from qoe.errors import QoeInputError


def test_default_values_give_r_93_2():
    # G.107 (06/2015) clause 7: "the default values ... result in a very high quality with a
    # rating factor of R = 93.2".
    assert emodel.r_factor() == pytest.approx(93.2, abs=0.05)
    result = emodel.evaluate()
    assert result.extrapolated == ()
    parts = result.breakdown
    assert parts["r"] == pytest.approx(parts["ro"] - parts["is"] - parts["id"] - parts["ie_eff"]
                                       + parts["a"])
    assert parts["is"] == pytest.approx(parts["iolr"] + parts["ist"] + parts["iq"])
    assert parts["id"] == pytest.approx(parts["idte"] + parts["idle"] + parts["idd"])


@pytest.mark.parametrize("r, mos", [(90, 4.34), (80, 4.03), (70, 3.60), (60, 3.10), (50, 2.58)])
def test_annex_b_mos_at_the_category_limits(r, mos):
    # G.107 Annex B, Table B.1: lower limits of the user satisfaction categories, which
    # list B-4 rounded up to two decimals (R = 80 gives 4.024, listed as 4.03).
    assert math.ceil(emodel.mos_from_r(r) * 100 - 1e-9) / 100 == pytest.approx(mos)


def test_mos_ends_of_the_scale():
    assert emodel.mos_from_r(-5) == 1.0 and emodel.mos_from_r(120) == 4.5
    assert emodel.mos_from_r(3.0) == 1.0  # B-4 dips below 1 there; the scale does not
    assert emodel.mos_from_r(100) == pytest.approx(4.5)
    assert emodel.r_from_mos(4.5) == pytest.approx(100, abs=1e-6)


@given(st.floats(1.0, 4.5))
def test_r_from_mos_inverts_mos_from_r(mos):
    assert emodel.mos_from_r(emodel.r_from_mos(mos)) == pytest.approx(mos, abs=1e-9)


def test_g113_codec_values_and_unknown_codec():
    # G.113 Appendix I, Table I.3.
    assert emodel.codec("G711-PLC") == (0.0, 25.1)
    assert emodel.codec("g711") == (0.0, 4.3)
    assert emodel.codec("g729a-vad") == (11.0, 19.0)
    assert emodel.codec("g723.1-vad") == (15.0, 16.1)
    with pytest.raises(KeyError, match="known codecs: g711, g711-plc"):
        emodel.codec("opus")


def test_effective_equipment_impairment_formula():
    # G.107 clause 7.4: Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)
    ie, bpl = emodel.codec("g729a-vad")
    result = emodel.evaluate(ie=ie, bpl=bpl, ppl=2.0, burstr=1.5)
    assert result.breakdown["ie_eff"] == pytest.approx(11 + 84 * 2 / (2 / 1.5 + 19))


def test_delay_impairment_starts_above_100_ms():
    parts = emodel.evaluate(ta=100.0).breakdown
    assert parts["idd"] == 0.0
    parts = emodel.evaluate(ta=200.0).breakdown
    x = 1.0  # log2(200/100)
    expected = 25 * ((1 + x ** 6) ** (1 / 6) - 3 * (1 + (x / 3) ** 6) ** (1 / 6) + 2)
    assert parts["idd"] == pytest.approx(expected)


def test_mouth_to_ear_delay_and_echo_assumptions():
    # G.711 in 20 ms packets: 160 one-sample frames; G.729A: two 10 ms frames + 5 ms look-ahead.
    assert emodel.mouth_to_ear_delay_ms(40, 30, "g711", frames_per_packet=160) == pytest.approx(90)
    assert emodel.mouth_to_ear_delay_ms(40, 30, "g729a-vad", frames_per_packet=2) == \
        pytest.approx(95)
    delays = emodel.voice_delays(90.0)
    assert delays["t"] == 90.0 and delays["tr"] == 180.0
    with pytest.raises(QoeInputError, match="network_delay_ms"):
        emodel.mouth_to_ear_delay_ms(-1, 0, "g711")


def test_burst_ratio():
    assert emodel.burst_ratio(0.02, 1 / 0.98) == pytest.approx(1.0)
    assert emodel.burst_ratio(0.1, 3.0) == pytest.approx(2.7)
    assert emodel.burst_ratio(0.0, 5.0) == 1.0


@pytest.mark.parametrize("params, name", [({"ppl": 101}, "ppl"), ({"ta": -1}, "ta"),
                                          ({"ppl": math.nan}, "ppl"), ({"bpl": 0}, "bpl"),
                                          ({"burstr": 0.5}, "burstr")])
def test_inputs_outside_the_domain_name_the_input_and_range(params, name):
    with pytest.raises(QoeInputError) as err:
        emodel.r_factor(**params)
    assert err.value.name == name and "allowed" in str(err.value)


def test_unknown_parameter_names_are_refused():
    with pytest.raises(TypeError, match="unknown E-model parameters"):
        emodel.r_factor(delay=100)


def test_inputs_outside_table_3_are_computed_and_flagged():
    result = emodel.evaluate(ppl=30.0, ta=600.0)
    assert set(result.extrapolated) == {"ppl", "ta"}
    assert 0 < result.mos < 2


LOSS = st.floats(0, 20)
# Below about 1.2 ms of echo-path delay G.107 treats talker echo like sidetone and R rises
# slightly with T (93.206 at 0 ms, 93.264 at 0.85 ms); monotonicity holds from there on.
DELAY = st.floats(2, 500)


@settings(max_examples=200, deadline=None)
@given(LOSS, LOSS, DELAY, DELAY, st.floats(1, 8))
def test_more_loss_or_delay_never_raises_r(ppl1, ppl2, ta1, ta2, burstr):
    lo_ppl, hi_ppl = sorted((ppl1, ppl2))
    lo_ta, hi_ta = sorted((ta1, ta2))
    better = emodel.r_factor(ppl=lo_ppl, burstr=burstr, **emodel.voice_delays(lo_ta))
    worse = emodel.r_factor(ppl=hi_ppl, burstr=burstr, **emodel.voice_delays(hi_ta))
    assert worse <= better + 1e-9
    assert emodel.r_factor(ppl=hi_ppl, burstr=min(8, burstr + 1)) <= \
        emodel.r_factor(ppl=hi_ppl, burstr=burstr) + 1e-9
    assert 1.0 <= emodel.mos_from_r(worse) <= 4.5


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(LOSS, st.floats(0, 500), st.floats(1, 8), st.sampled_from(sorted(emodel.CODECS))),
                min_size=1, max_size=40))
def test_vectorised_equals_scalar(rows):
    ppl = np.array([r[0] for r in rows])
    ta = np.array([r[1] for r in rows])
    burstr = np.array([r[2] for r in rows])
    ie = np.array([emodel.codec(r[3])[0] for r in rows])
    bpl = np.array([emodel.codec(r[3])[1] for r in rows])
    vector = emodel.r_factor_array(ppl=ppl, burstr=burstr, ie=ie, bpl=bpl, **emodel.voice_delays(ta))
    scalar = [emodel.r_factor(ppl=float(p), burstr=float(b), ie=float(i), bpl=float(l),
                              **emodel.voice_delays(float(t)))
              for p, t, b, i, l in zip(ppl, ta, burstr, ie, bpl)]
    np.testing.assert_allclose(vector, scalar, rtol=1e-12)
    np.testing.assert_allclose(emodel.mos_from_r(vector), [emodel.mos_from_r(s) for s in scalar])
