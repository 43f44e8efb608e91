"""The twin's M/M/1/K egress against the queue's stationary distribution computed directly,
and its predictions' direction."""

import math

import pytest

from controller.policy.model import Element, PairTraffic
from controller.policy.twin import MEAN_PACKET_BYTES, mm1k, predict, service_score


def direct(rho: float, places: int) -> tuple[float, float]:
    """P(full) and the mean number in the system from p_n proportional to rho^n, n = 0..N
    (Kleinrock 1975, 3.6), summed term by term."""
    weights = [rho ** n for n in range(places + 1)]
    total = sum(weights)
    return weights[-1] / total, sum(n * w for n, w in enumerate(weights)) / total


@pytest.mark.parametrize("rho", [0.1, 0.5, 0.9, 0.99, 1.0, 1.01, 1.2, 2.0, 5.0])
@pytest.mark.parametrize("queue", [1, 25, 64])
def test_loss_and_delay_are_those_of_the_stationary_distribution(rho, queue):
    capacity = 30e6
    figures = mm1k(rho * capacity, capacity, queue)
    full, in_system = direct(rho, queue + 1)
    assert figures.loss_ratio == pytest.approx(full, rel=1e-6, abs=1e-12)
    arrivals = rho * capacity / (MEAN_PACKET_BYTES * 8)
    # Little's law on the packets that get in
    assert figures.delay_ms == pytest.approx(in_system / (arrivals * (1 - full)) * 1000,
                                             rel=1e-6)
    assert figures.utilisation == pytest.approx(rho)


def test_an_overload_far_beyond_capacity_does_not_overflow():
    figures = mm1k(1e12, 1e6, 1000)
    assert figures.loss_ratio == pytest.approx(1 - 1e-6, rel=1e-6)
    assert math.isfinite(figures.delay_ms)
    assert mm1k(0, 1e6, 10).loss_ratio == 0.0
    assert mm1k(1e6, 0, 10).loss_ratio == 1.0


def test_voice_gets_worse_as_the_load_grows():
    scores = [service_score("voice", mm1k(r * 30e6, 30e6, 64)) for r in (0.5, 0.95, 1.0, 1.1)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 4.3 and scores[-1] < 2.5
    assert service_score("bulk", mm1k(3e6, 30e6, 64)) is None
    assert service_score("iptv", mm1k(3e6, 30e6, 64), 4e6, None) is None
    assert service_score("iptv", mm1k(3e6, 30e6, 64), 4e6, 25) > \
        service_score("iptv", mm1k(33e6, 30e6, 64), 4e6, 25)


def test_a_prediction_takes_the_withheld_rate_off_the_element():
    element = Element("e", 1, 1, 30e6, 33e6)
    voice = PairTraffic("a", "b", "g", "voice", "gold", 0.1e6, (1, 2), ("e",))
    bulk = PairTraffic("c", "d", "z", "bulk", "bronze", 32.9e6, (1, 2), ("e",))
    elsewhere = PairTraffic("e", "f", "y", "bulk", "bronze", 50e6, (1, 3), ("other",))
    out = predict(element, (voice, bulk, elsewhere), [("g", "voice")],
                  rates_after={bulk.key: 20e6, elsewhere.key: 0.0})
    assert out.utilisation_before == pytest.approx(1.1)
    assert out.utilisation_after == pytest.approx((33e6 - 12.9e6) / 30e6)
    assert out.loss_after < out.loss_before
    assert out.scores_after[("g", "voice")] > out.scores_before[("g", "voice")]
    assert out.gain > 0
