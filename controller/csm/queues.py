"""Egress classes by DSCP on switch ports: the HTB plan for an interface (core).

The userspace datapath of Open vSwitch ignores set_queue (../shared/ENVIRONMENT.md), so the
GSB classes are enforced on the egress interface by Linux HTB classes selected by u32
filters on the DSCP the access switch marked: Gold (EF 46) and Silver (AF41 34) are
guaranteed the sum of their customers' current SLS rates, Bronze gets the rest, and every
class may borrow up to the link rate (work-conserving), with Gold served first.
"""

import dataclasses

from controller.csm.model import DSCP, ServiceClass

MIN_SHARE = 0.05  # every class keeps at least 5 % of the link
CLASS_MINOR = {ServiceClass.GOLD: 0x10, ServiceClass.SILVER: 0x20, ServiceClass.BRONZE: 0x30}
CLASS_PRIO = {ServiceClass.GOLD: 0, ServiceClass.SILVER: 1, ServiceClass.BRONZE: 2}


@dataclasses.dataclass(frozen=True)
class ClassQueue:
    service_class: ServiceClass
    minor: int        # HTB class 1:<minor>
    rate_bps: int     # guaranteed
    ceil_bps: int     # may borrow up to
    prio: int
    dscp: int | None  # selected by this DSCP; None: the default class


@dataclasses.dataclass(frozen=True)
class EgressPlan:
    ifname: str
    link_bps: int
    queues: tuple[ClassQueue, ...]


def plan_egress(ifname: str, link_bps: int, committed_bps: dict[ServiceClass, int]) -> EgressPlan:
    """HTB classes for one interface from the Gold and Silver rates customers hold now."""
    if link_bps <= 0:
        raise ValueError(f"{ifname}: link rate must be positive, got {link_bps}")
    floor = int(link_bps * MIN_SHARE)
    room = link_bps - floor  # what Gold and Silver may be guaranteed together
    gold = min(max(committed_bps.get(ServiceClass.GOLD, 0), floor), room - floor)
    silver = min(max(committed_bps.get(ServiceClass.SILVER, 0), floor), room - gold)
    bronze = max(link_bps - gold - silver, floor)
    rates = {ServiceClass.GOLD: gold, ServiceClass.SILVER: silver, ServiceClass.BRONZE: bronze}
    queues = tuple(ClassQueue(c, CLASS_MINOR[c], rates[c], link_bps, CLASS_PRIO[c],
                              None if c is ServiceClass.BRONZE else DSCP[c])
                   for c in ServiceClass)
    return EgressPlan(ifname, link_bps, queues)


@dataclasses.dataclass(frozen=True)
class TrafficControl:
    """One interface's root qdisc as cems wants it: `plan` in network namespace `netns`
    (None: the controller's own namespace)."""

    netns: str | None
    plan: EgressPlan

    @property
    def place(self) -> str:
        return f"{self.netns}:{self.plan.ifname}" if self.netns else self.plan.ifname


def plan_traffic_control(egress_interfaces, edge_shaping, committed_bps: dict[ServiceClass, int],
                         sls_rate_bps) -> list[TrafficControl]:
    """Everything cems wants of Linux traffic control: GSB classes on each configured egress
    interface (ifname, link_bps) and, for each configured edge host (customer_id, netns,
    ifname) whose customer has an SLS (`sls_rate_bps(customer_id)` is not None), the host's
    interface shaped to the SLS rate (a plan with the link class alone)."""
    out = [TrafficControl(None, plan_egress(ifname, link_bps, committed_bps))
           for ifname, link_bps in egress_interfaces]
    for customer_id, netns, ifname in edge_shaping:
        rate_bps = sls_rate_bps(customer_id)
        if rate_bps is not None:
            out.append(TrafficControl(netns, EgressPlan(ifname, rate_bps, ())))
    return out
