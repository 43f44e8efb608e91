"""The experience twin: what an element's load does to loss, delay and quality (core).

Each element (an egress port) is an M/M/1/K queue: Poisson packet arrivals at the offered
rate, exponential service at the capacity, room for K packets in the queue plus the one in
service (L. Kleinrock, Queueing Systems, Vol. 1, 1975, section 3.6, "M/M/1/K: finite
storage"). With rho = offered / capacity and N = K + 1 places:

    P(full) = (1 - rho) rho^N / (1 - rho^(N+1))     (1 / (N + 1) at rho = 1)
    L       = rho / (1 - rho) - (N + 1) rho^(N+1) / (1 - rho^(N+1))   (N / 2 at rho = 1)
    W       = L / (lambda (1 - P(full)))            (Little's law)

A packet that finds the system full is lost, so the loss ratio is P(full) and the queueing
delay is W. Assumptions, stated because they matter: packets of MEAN_PACKET_BYTES on
average; an M/M/1 sojourn time is exponential, so its standard deviation (taken as the
jitter) equals its mean; the rest of the one-way delay is BASE_DELAY_MS. Under strict
priority (egress classes, controller.csm.queues) a class is modelled as if alone with the
traffic of its own and higher classes, each class with its own short queue.

From loss and delay the quality models give the score: voice with the E-model
(qoe.estimate.estimate_voice), IPTV with G.1070 (qoe.estimate.estimate_iptv, given the
stream's bit rate and the configured frame rate). Other services have no model here; their
predictions carry the element's figures only. The twin's error against what is observed
after an action is measured and reported by the engine (controller.policy.engine).
"""

import dataclasses
import math
from typing import Iterable, Mapping

from controller.policy.model import CLASS_RANK, Element, PairTraffic, Prediction
from qoe.estimate import estimate_iptv, estimate_voice

MODEL = "M/M/1/K per egress (Kleinrock 1975, 3.6) -> E-model (G.107) / G.1070"
MEAN_PACKET_BYTES = 1000.0
BASE_DELAY_MS = 5.0
CLASS_QUEUE_PACKETS = 25   # controller.edge.LEAF_LIMIT_PACKETS


@dataclasses.dataclass(frozen=True)
class QueueFigures:
    utilisation: float
    loss_ratio: float
    delay_ms: float


def mm1k(offered_bps: float, capacity_bps: float, queue_packets: int,
         packet_bytes: float = MEAN_PACKET_BYTES) -> QueueFigures:
    """Loss ratio and mean queueing delay of an M/M/1/K egress (see the module text)."""
    if capacity_bps <= 0:
        return QueueFigures(math.inf, 1.0, 0.0)
    offered = max(0.0, offered_bps)
    rho = offered / capacity_bps
    places = max(1, int(queue_packets)) + 1
    if rho == 0:
        return QueueFigures(0.0, 0.0, 0.0)
    if abs(rho - 1.0) < 1e-9:
        full = 1.0 / (places + 1)
        in_system = places / 2.0
    elif rho < 1.0:
        top = rho ** (places + 1)
        full = (1 - rho) * rho ** places / (1 - top)
        in_system = rho / (1 - rho) - (places + 1) * top / (1 - top)
    else:  # the same, divided through by rho^(N+1), so that it cannot overflow
        small = (1.0 / rho) ** (places + 1)
        full = (rho - 1) / rho / (1 - small)
        in_system = rho / (1 - rho) + (places + 1) / (1 - small)
    arrivals_pps = offered / (packet_bytes * 8)
    delay_s = in_system / (arrivals_pps * (1 - full)) if full < 1 else 0.0
    return QueueFigures(rho, min(1.0, max(0.0, full)), delay_s * 1000)


def element_figures(element: Element, offered_bps: float) -> QueueFigures:
    if not element.capacity_bps:
        return QueueFigures(0.0, 0.0, 0.0)
    return mm1k(offered_bps, element.capacity_bps, element.queue_packets)


def class_figures(element: Element, pairs: Iterable[PairTraffic], service_class: str,
                  offered_bps: Mapping[tuple[str, str], float]) -> QueueFigures:
    """Figures of one class under strict priority: its own and higher classes' traffic on
    the element, with the class's short queue."""
    rank = CLASS_RANK.get(service_class, 2)
    load = sum(offered_bps.get(p.key, p.rate_bps) for p in pairs
               if element.name in p.elements and CLASS_RANK.get(p.service_class, 2) <= rank)
    return mm1k(load, element.capacity_bps or 0.0, CLASS_QUEUE_PACKETS)


def service_score(service: str, figures: QueueFigures, rate_bps: float = 0.0,
                  frame_rate: float | None = None) -> float | None:
    """The score a service would have with these element figures; None without a model."""
    delay_ms = BASE_DELAY_MS + figures.delay_ms
    if service == "voice":
        return estimate_voice(figures.loss_ratio, delay_ms, figures.delay_ms).mos
    if service == "iptv" and rate_bps > 0 and frame_rate:
        return estimate_iptv(figures.loss_ratio, rate_bps, frame_rate).mos
    return None


def predict(element: Element, pairs: tuple[PairTraffic, ...],
            affected: Iterable[tuple[str, str]],
            rates_after: Mapping[tuple[str, str], float] | None = None,
            classes_after: Mapping[tuple[str, str], str] | None = None,
            frame_rate: float | None = None) -> Prediction:
    """The element and the affected (customer, service) scores now and after an action
    that changes some pairs' rates on the element (`rates_after`, pair -> rate: a meter
    lowers them, a reroute takes them to 0 here) or their class (`classes_after`, pair ->
    class: a re-marking)."""
    rates_after = rates_after or {}
    classes_after = classes_after or {}
    crossing = [p for p in pairs if element.name in p.elements]
    mine_of: dict[tuple[str, str], list[PairTraffic]] = {}
    for p in crossing:
        mine_of.setdefault((p.customer_id, p.service), []).append(p)
    scored: dict[tuple, float | None] = {}

    def score(service: str, figures: QueueFigures, rate: float) -> float | None:
        key = (service, figures, rate if service == "iptv" else 0.0)
        if key not in scored:
            scored[key] = service_score(service, figures, rate, frame_rate)
        return scored[key]
    withheld = sum(p.rate_bps - rates_after[p.key] for p in crossing if p.key in rates_after)
    load_after = max(0.0, element.load_bps - withheld)
    before = element_figures(element, element.load_bps)
    after = element_figures(element, load_after)
    rates = {p.key: p.rate_bps for p in crossing}
    new_rates = {**rates, **{k: v for k, v in rates_after.items() if k in rates}}
    remarked = tuple(p._replace(service_class=classes_after[p.key])
                     if p.key in classes_after else p for p in crossing)
    scores_before, scores_after = {}, {}
    for customer, service in affected:
        mine = mine_of.get((customer, service), [])
        rate = sum(p.rate_bps for p in mine)
        now_fig, then_fig = before, after
        if element.has_classes and mine:
            now_fig = class_figures(element, crossing, mine[0].service_class, rates)
            then_fig = class_figures(element, remarked,
                                     classes_after.get(mine[0].key, mine[0].service_class),
                                     new_rates)
        score_now = score(service, now_fig, rate)
        score_then = score(service, then_fig, rate)
        if score_now is not None and score_then is not None:
            scores_before[(customer, service)] = round(score_now, 3)
            scores_after[(customer, service)] = round(score_then, 3)
    return Prediction(element.name, before.utilisation, after.utilisation, before.loss_ratio,
                      after.loss_ratio, before.delay_ms, after.delay_ms, scores_before,
                      scores_after, MODEL)
