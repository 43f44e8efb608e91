"""The customer model of GSB (Gold/Silver/Bronze) IP transport: plain, frozen data (core).

An SLA is the contract the domain manager sets; an SLS is the part the customer (or a peer
domain) changes within it. Bandwidths are in bit/s, times in seconds (unix time where a
wall-clock instant is meant, because contracts and bills are about calendar time).
"""

import dataclasses
import enum
from typing import NamedTuple


class ServiceClass(str, enum.Enum):
    GOLD = "gold"
    SILVER = "silver"
    BRONZE = "bronze"


# ../shared/DESIGN.md "Service classes (GSB)": Gold EF (46), Silver AF41 (34), Bronze 0.
DSCP = {ServiceClass.GOLD: 46, ServiceClass.SILVER: 34, ServiceClass.BRONZE: 0}
# Egress queue per class for switches whose ports have queues (set_queue); on Open vSwitch's
# userspace datapath the action is accepted and has no effect, and HTB classes by DSCP do
# the work (controller/csm/queues.py).
QUEUE = {ServiceClass.GOLD: 1, ServiceClass.SILVER: 2, ServiceClass.BRONZE: 0}


class Role(str, enum.Enum):
    DOMAIN_MANAGER = "domain-manager"
    CUSTOMER = "customer"
    PEER_DOMAIN = "peer-domain"
    PROBE = "probe"  # a passive probe or an active-test agent: writes records, takes tasks


# A peer domain (another operator buying transport) is a customer of segment "peer-domain":
# its own SLA, usually with a shorter minimum time between SLS changes, and peer-domain tokens.
SEGMENTS = ("residential", "soho", "business", "peer-domain")


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who makes a request: a role and, for customers and peer domains, their customer id;
    for a probe its probe id. It comes from a credential, never from a message."""

    role: Role
    customer_id: str = ""
    token_id: str = ""
    probe_id: str = ""

    def describe(self) -> str:
        who = self.probe_id if self.role == Role.PROBE else self.customer_id
        return f"{self.role.value}:{who or '-'}:{self.token_id}"


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    """A bearer token as it can be listed: everything but the token itself."""

    token_id: str
    role: Role
    customer_id: str
    probe_id: str
    created_unix_s: float
    expires_unix_s: float | None  # None: never


@dataclasses.dataclass(frozen=True)
class Variant:
    """A service variant (GSB business, GSB economy): default class, included hours per class
    and month, and the price of each further hour (in the operator's currency unit)."""

    name: str
    default_class: ServiceClass
    included_hours: dict  # ServiceClass -> hours per month; absent means unlimited
    price_per_hour: dict  # ServiceClass -> price of an hour beyond the included ones


GSB_VARIANTS = {
    "gsb-business": Variant("gsb-business", ServiceClass.SILVER,
                            {ServiceClass.GOLD: 10.0}, {ServiceClass.GOLD: 2.0}),
    "gsb-economy": Variant("gsb-economy", ServiceClass.BRONZE,
                           {ServiceClass.SILVER: 5.0, ServiceClass.GOLD: 0.0},
                           {ServiceClass.SILVER: 1.0, ServiceClass.GOLD: 5.0}),
}


@dataclasses.dataclass(frozen=True)
class ClassBounds:
    min_bps: int
    max_bps: int


@dataclasses.dataclass(frozen=True)
class Customer:
    customer_id: str
    name: str
    segment: str = "residential"
    vip: bool = False
    access_dpid: int = 0
    access_port: int = 0
    hosts: tuple[str, ...] = ()  # MAC addresses of the customer's devices


@dataclasses.dataclass(frozen=True)
class Sla:
    customer_id: str
    variant: str
    bounds: dict  # ServiceClass -> ClassBounds; its keys are the allowed classes
    availability_target: float = 0.999
    min_change_interval_s: float = 60.0

    @property
    def allowed_classes(self) -> tuple[ServiceClass, ...]:
        return tuple(c for c in ServiceClass if c in self.bounds)


@dataclasses.dataclass(frozen=True)
class Sls:
    customer_id: str
    service_class: ServiceClass
    rate_bps: int
    changed_unix_s: float
    source: str = "customer"  # "customer" (or peer domain) or "system" (creation, SLA update)


class CustomerState(NamedTuple):
    """What the mapping needs of one customer: who, where, its current SLS and its meter id
    (controller.csm.mapping.customer_meter_id). The store returns it after every change and
    change events carry it, so that nobody has to read the store again to act on a change."""

    customer: Customer
    sls: Sls
    meter_id: int

    @property
    def customer_id(self) -> str:
        return self.customer.customer_id
