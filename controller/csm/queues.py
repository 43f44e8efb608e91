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
