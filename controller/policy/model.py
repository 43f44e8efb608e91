"""What the policy engine decides from and what it decides: plain, frozen data (core).

A Snapshot is everything one evaluation looks at: the egresses traffic crosses (Element,
with the load the port statistics measure and the capacity the operator configured), each
host pair's traffic (PairTraffic: who sends it, its service and class, its rate, its path),
each customer's contract (Contract: class, SLS rate, the SLA's floor), the sustained
degradations and root-cause findings of the experience engine (controller.monitor), the
latest score of every customer and service, and the switch graph for other paths.

An Intent is one change to the network with its reason and its predicted effect; an Action
is an intent in force (or, in dry-run, one that would be). A Decision is a line of the
decision log: an action taken, refused by a guardrail, reverted, rolled back, or its
observed outcome.
"""

import dataclasses
from typing import Mapping, NamedTuple

from controller.csm.model import DSCP, QUEUE  # noqa: F401  (keyed by class; "gold" works too)

# Kinds of intent, cheapest first: what the engine tries in this order.
PRIORITY = "priority"   # re-mark the affected service's flows to a higher class the SLA allows
METER = "meter"         # meter competing lower-class traffic that crosses the element
REROUTE = "reroute"     # move competing traffic to a path with spare capacity
KINDS = (PRIORITY, METER, REROUTE)
COST = {PRIORITY: 1.0, METER: 2.0, REROUTE: 3.0}

CLASS_RANK = {"gold": 0, "silver": 1, "bronze": 2}


@dataclasses.dataclass(frozen=True)
class Element:
    """An egress traffic crosses: a link's source port or an access port (names as
    controller.monitor.rootcause gives them)."""

    name: str
    dpid: int
    port: int
    capacity_bps: float | None
    load_bps: float
    dropped_per_s: float = 0.0
    queue_packets: int = 64
    has_classes: bool = False   # egress HTB classes by DSCP (controller.csm.queues)

    @property
    def utilisation(self) -> float | None:
        return self.load_bps / self.capacity_bps if self.capacity_bps else None


class PairTraffic(NamedTuple):
    """One host pair's traffic in one direction, as the flow statistics and the probes see
    it: the customer it belongs to (its sender's, else its receiver's; '' for none) and that
    customer's class, its service and rate, the switches it crosses from the sender's switch
    to the receiver's, and the elements on the way. A NamedTuple: a snapshot holds one per
    host pair, and they are made every second."""

    src_mac: str
    dst_mac: str
    customer_id: str
    service: str
    service_class: str
    rate_bps: float
    path: tuple[int, ...]
    elements: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return self[:2]   # (src_mac, dst_mac); a slice is the cheapest way there


@dataclasses.dataclass(frozen=True)
class Contract:
    """What a customer bought: its class and SLS rate now, the classes its SLA allows and the
    SLA's minimum rate for its class (the floor no action may go below), and where it is."""

    customer_id: str
    service_class: str
    sls_rate_bps: int
    sla_min_bps: int
    allowed_classes: tuple[str, ...]
    access_dpid: int
    meter_id: int
    hosts: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Degradation:
    """A sustained degraded status of one customer's service (never a single sample)."""

    customer_id: str
    service: str
    service_class: str
    since_unix_s: float
    score: float
    target: float


@dataclasses.dataclass(frozen=True)
class Suspect:
    """A root-cause finding: the element, its score and the customers it affects."""

    element: str
    score: float
    affected_customers: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Snapshot:
    now: float
    elements: Mapping[str, Element]
    pairs: tuple[PairTraffic, ...]
    contracts: Mapping[str, Contract]
    degraded: tuple[Degradation, ...]
    suspects: tuple[Suspect, ...]
    scores: Mapping[tuple[str, str], float]     # (customer, service) -> latest 10 s mean
    links: Mapping[tuple[int, int], tuple[int, str]] = dataclasses.field(default_factory=dict)
    # (dpid, next dpid) -> (egress port, element name), for other paths
    host_ports: Mapping[str, tuple[int, int]] = dataclasses.field(default_factory=dict)
    # MAC -> (switch, port) where the host is attached


@dataclasses.dataclass(frozen=True)
class Prediction:
    """What the twin expects of an element and of the affected services, before and after."""

    element: str
    utilisation_before: float
    utilisation_after: float
    loss_before: float
    loss_after: float
    delay_ms_before: float
    delay_ms_after: float
    scores_before: Mapping[tuple[str, str], float]
    scores_after: Mapping[tuple[str, str], float]
    model: str

    @property
    def gain(self) -> float:
        """Mean predicted score gain over the affected services that have a model."""
        keys = [k for k in self.scores_after if k in self.scores_before]
        if not keys:
            return 0.0
        return sum(self.scores_after[k] - self.scores_before[k] for k in keys) / len(keys)


@dataclasses.dataclass(frozen=True)
class Intent:
    """One change: what, on which element, for whom, why, and what it should do.

    priority: `pairs` are the affected customer's pairs of `service` that enter the network
    at `switch`, re-marked there to `service_class`, and `rate_bps` is their rate (what the
    class's egress guarantee grows by, controller.policy.compile.committed_with_policy); meter: `pairs` are a competitor's pairs
    that cross the element and enter at `switch`, metered there together at `rate_bps`;
    reroute: `pairs` move to `path` (switches, sender's first), leaving each switch of it
    by the port `hops` gives ((switch, port), ..., the last one to the host)."""

    kind: str
    element: str
    customer_id: str            # whose traffic changes (the competitor for meter/reroute)
    pairs: tuple[tuple[str, str], ...]
    reason: str
    prediction: Prediction
    for_services: tuple[tuple[str, str], ...]   # the degraded (customer, service)s it is for
    service: str = ""
    service_class: str = ""
    rate_bps: int = 0
    path: tuple[int, ...] = ()
    switch: int = 0
    hops: tuple[tuple[int, int], ...] = ()

    @property
    def target(self) -> str:
        """What cooldowns are kept per: the element and the customer whose traffic changes."""
        return f"{self.element}|{self.customer_id}"


@dataclasses.dataclass(frozen=True)
class Action:
    """An intent in force since `applied_unix_s` (dry-run: one that would be)."""

    action_id: int
    intent: Intent
    applied_unix_s: float
    baseline: Mapping[tuple[str, str], float]   # observed scores when it was applied
    dry_run: bool = False
    observed: bool = False                      # its outcome has been recorded
    calm_since_unix_s: float | None = None      # since when its cause has been gone


ACT, REFUSE, REVERT, ROLLBACK, OUTCOME = "act", "refuse", "revert", "rollback", "outcome"
ADVISE = "advise"          # an advised bitrate given to an application changed
ADMISSION = "admission"    # the intent kind of a refused session (controller.policy.whatif)


@dataclasses.dataclass(frozen=True)
class Decision:
    """A line of the decision log."""

    time_unix_s: float
    kind: str                     # act, refuse, revert, rollback, outcome, advise
    action_id: int                # 0 when no action was made (a refusal)
    intent_kind: str
    element: str
    customer_id: str
    reason: str
    inputs: Mapping[str, float] = dataclasses.field(default_factory=dict)
    predicted: Mapping[str, float] = dataclasses.field(default_factory=dict)
    observed: Mapping[str, float] = dataclasses.field(default_factory=dict)
    dry_run: bool = False
    for_customers: tuple[str, ...] = ()   # the degraded customers it was for
