"""Checks of SLAs and SLS changes, admission of contracts, and who may do what (core).

Every check returns or raises with a message that says which constraint, where, and by how
much: the message goes to the person who asked.
"""

import dataclasses

from controller import validation
from controller.csm.model import (GSB_VARIANTS, SEGMENTS, Customer, Principal, Role, ServiceClass,
                                  Sla, Sls)


class Refused(Exception):
    """A request breaks a rule. `code` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str, retry_after_unix_s: float | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_unix_s = retry_after_unix_s


def _mbps(bps: float) -> str:
    return f"{bps / 1e6:g} Mbit/s"


MAX_RATE_BPS = 10 ** 12        # 1 Tbit/s
MAX_HOSTS = 64                 # devices of one customer
MAX_CHANGE_INTERVAL_S = 366 * 86_400
OFPP_MAX = 0xFFFFFF00          # the highest OpenFlow port number of a real port


def check_customer_id(customer_id: str) -> None:
    if not customer_id or len(customer_id) > 64 or not customer_id.isascii() or \
            not customer_id.replace("-", "").isalnum():
        raise Refused("INVALID_ARGUMENT", f"customer id {validation.shown(customer_id)} must be "
                      "1 to 64 letters, digits and '-'")


def check_customer(customer: Customer) -> None:
    check_customer_id(customer.customer_id)
    try:
        validation.text("name", customer.name, 200)
        validation.count("hosts", customer.hosts, MAX_HOSTS)
        validation.number("access_port", customer.access_port, 0, OFPP_MAX)
    except ValueError as err:
        raise Refused("INVALID_ARGUMENT", str(err)) from None
    if customer.segment not in SEGMENTS:
        raise Refused("INVALID_ARGUMENT", f"segment {customer.segment!r} is not one of "
                      f"{', '.join(SEGMENTS)}")
    for index, host in enumerate(customer.hosts):
        try:
            validation.mac_address(f"hosts[{index}]", host)
        except ValueError as err:
            raise Refused("INVALID_ARGUMENT", str(err)) from None
    if len(set(customer.hosts)) != len(customer.hosts):
        raise Refused("INVALID_ARGUMENT", "hosts lists a device twice")


def check_sla(sla: Sla, access_speed_bps: int | None) -> None:
    """An SLA's own consistency, and every class bound within the access link speed."""
    if sla.variant not in GSB_VARIANTS:
        raise Refused("INVALID_ARGUMENT", f"variant {sla.variant!r} is not one of "
                      f"{', '.join(GSB_VARIANTS)}")
    if not sla.bounds:
        raise Refused("INVALID_ARGUMENT", "an SLA must allow at least one class")
    default = GSB_VARIANTS[sla.variant].default_class
    if default not in sla.bounds:
        raise Refused("INVALID_ARGUMENT", f"variant {sla.variant} starts customers in "
                      f"{default.value}, which the SLA must allow")
    for service_class, bounds in sla.bounds.items():
        if bounds.max_bps > MAX_RATE_BPS:
            raise Refused("INVALID_ARGUMENT", f"{service_class.value}: max {bounds.max_bps} "
                          "bit/s is above 1 Tbit/s")
        if not 0 < bounds.min_bps <= bounds.max_bps:
            raise Refused("INVALID_ARGUMENT", f"{service_class.value}: bounds must satisfy "
                          f"0 < min ({bounds.min_bps} bit/s) <= max ({bounds.max_bps} bit/s)")
        if access_speed_bps and bounds.max_bps > access_speed_bps:
            raise Refused("FAILED_PRECONDITION", f"{service_class.value} maximum "
                          f"{_mbps(bounds.max_bps)} is above the customer's access link speed "
                          f"{_mbps(access_speed_bps)} by {_mbps(bounds.max_bps - access_speed_bps)}")
    if not 0 < sla.availability_target < 1:
        raise Refused("INVALID_ARGUMENT", f"availability_target {sla.availability_target} must "
                      "be between 0 and 1 (for example 0.999)")
    if not 0 <= sla.min_change_interval_s <= MAX_CHANGE_INTERVAL_S:
        raise Refused("INVALID_ARGUMENT", "min_change_interval_s must be 0 to a year "
                      f"({MAX_CHANGE_INTERVAL_S} s)")


def initial_sls(sla: Sla, now_unix_s: float) -> Sls:
    """The SLS a new contract starts with: the variant's default class at its minimum rate."""
    service_class = GSB_VARIANTS[sla.variant].default_class
    return Sls(sla.customer_id, service_class, sla.bounds[service_class].min_bps, now_unix_s,
               "system")


def check_sls_change(sla: Sla, last_change_unix_s: float | None, service_class: ServiceClass,
                     rate_bps: int, now_unix_s: float) -> Sls:
    """A requested SLS -> the new Sls, or Refused saying which bound or when to retry.

    `last_change_unix_s` is when the customer last changed its SLS (None if never): the
    minimum interval runs from there, not from changes the system made.
    """
    if service_class not in sla.bounds:
        allowed = ", ".join(c.value for c in sla.allowed_classes)
        raise Refused("INVALID_ARGUMENT", f"class {service_class.value} is not in your SLA; "
                      f"allowed: {allowed}")
    bounds = sla.bounds[service_class]
    if not bounds.min_bps <= rate_bps <= bounds.max_bps:
        raise Refused("INVALID_ARGUMENT", f"{_mbps(rate_bps)} is outside your "
                      f"{service_class.value} bounds {_mbps(bounds.min_bps)} to "
                      f"{_mbps(bounds.max_bps)}")
    if last_change_unix_s is not None:
        next_allowed = last_change_unix_s + sla.min_change_interval_s
        if now_unix_s < next_allowed:
            raise Refused("RESOURCE_EXHAUSTED",
                          f"the last change was {now_unix_s - last_change_unix_s:.0f} s ago; "
                          f"your SLA allows one change every {sla.min_change_interval_s:g} s, "
                          f"next at unix time {next_allowed:.0f} (in "
                          f"{next_allowed - now_unix_s:.0f} s)", next_allowed)
    return Sls(sla.customer_id, service_class, rate_bps, now_unix_s)


def sls_within_sla(sla: Sla, current: Sls | None, now_unix_s: float) -> Sls | None:
    """The SLS a customer is moved to when its SLA changes, or None when its current SLS still
    fits: a class the SLA no longer allows (or no SLS at all) starts over at the variant's
    default; a rate outside the class's new bounds is moved to the nearest bound."""
    if current is None or current.service_class not in sla.bounds:
        return initial_sls(sla, now_unix_s)
    bounds = sla.bounds[current.service_class]
    clamped = min(max(current.rate_bps, bounds.min_bps), bounds.max_bps)
    if clamped != current.rate_bps:
        return Sls(sla.customer_id, current.service_class, clamped, now_unix_s, "system")
    return None


@dataclasses.dataclass(frozen=True)
class LinkLoad:
    """A link on a customer's path: its capacity and the Gold+Silver already committed."""

    name: str
    capacity_bps: int
    committed_bps: int


def committed_bps(sla: Sla) -> int:
    """What a contract commits on its path: the highest Gold or Silver maximum it allows."""
    return max((sla.bounds[c].max_bps for c in (ServiceClass.GOLD, ServiceClass.SILVER)
                if c in sla.bounds), default=0)


def check_admission(sla: Sla, path: list[LinkLoad], replacing: Sla | None = None) -> None:
    """Admission of a contract: its committed Gold/Silver on every path link fits the capacity.

    `replacing` is the customer's current SLA when this one changes it (its commitment is
    already counted in the links' committed_bps and is taken out).
    """
    extra = committed_bps(sla) - (committed_bps(replacing) if replacing else 0)
    for link in path:
        total = link.committed_bps + extra
        if total > link.capacity_bps:
            raise Refused("FAILED_PRECONDITION",
                          f"link {link.name}: Gold/Silver committed would be {_mbps(total)}, "
                          f"above its capacity {_mbps(link.capacity_bps)} by "
                          f"{_mbps(total - link.capacity_bps)}")


_PEOPLE = {Role.DOMAIN_MANAGER, Role.CUSTOMER, Role.PEER_DOMAIN}
# action -> roles allowed; customer-scoped actions also need the principal's own customer
ACTIONS = {
    "manage": {Role.DOMAIN_MANAGER},
    "read_sla": _PEOPLE,
    "read_sls": _PEOPLE,
    "change_sls": {Role.CUSTOMER, Role.PEER_DOMAIN},
    "read_report": _PEOPLE,
    "read_status": _PEOPLE | {Role.PROBE},  # the controller's health and counts
    "read_network": _PEOPLE,   # topology, flows, ports, meters, events: a customer its own
    "read_kpis": _PEOPLE,      # probe records: a customer its own
    "probe": {Role.PROBE},     # export records and take tasks, under its own probe id
    "read_experience": _PEOPLE,  # quality and statuses: a customer its own
    "zoom": _PEOPLE,             # look closer at a customer: a customer at itself
    "report_session": {Role.PROBE, Role.CUSTOMER, Role.PEER_DOMAIN},  # application reports
    # applications asking before a session and for an advised bitrate: a customer for its
    # own hosts
    "ask_policy": {Role.PROBE, Role.CUSTOMER, Role.PEER_DOMAIN, Role.DOMAIN_MANAGER},
}


def authorize(principal: Principal | None, action: str, customer_id: str = "") -> None:
    """Raise Refused(UNAUTHENTICATED/PERMISSION_DENIED) unless the principal may do this."""
    if principal is None:
        raise Refused("UNAUTHENTICATED", "no valid bearer token in the request metadata "
                      "('authorization: Bearer <token>')")
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if principal.role not in ACTIONS[action]:
        raise Refused("PERMISSION_DENIED", f"role {principal.role.value} may not {action}")
    if principal.role in (Role.CUSTOMER, Role.PEER_DOMAIN) and customer_id and \
            customer_id != principal.customer_id:
        raise Refused("PERMISSION_DENIED", f"{principal.role.value} {principal.customer_id} "
                      f"may not {action} of customer {customer_id}")


def hours_per_class(history: list[Sls], start_unix_s: float, end_unix_s: float
                    ) -> dict[ServiceClass, float]:
    """Hours spent in each class in [start, end), from the SLS history (sorted by time)."""
    hours = {c: 0.0 for c in ServiceClass}
    for i, sls in enumerate(history):
        begin = max(sls.changed_unix_s, start_unix_s)
        finish = history[i + 1].changed_unix_s if i + 1 < len(history) else end_unix_s
        finish = min(finish, end_unix_s)
        if finish > begin:
            hours[sls.service_class] += (finish - begin) / 3600
    return hours


def charges(variant_name: str, hours: dict[ServiceClass, float]) -> dict[ServiceClass, float]:
    """Charges per class for a month's hours: hours beyond the included ones at the price."""
    variant = GSB_VARIANTS[variant_name]
    out = {}
    for service_class, spent in hours.items():
        included = variant.included_hours.get(service_class)
        price = variant.price_per_hour.get(service_class, 0.0)
        extra = 0.0 if included is None else max(0.0, spent - included)
        out[service_class] = round(extra * price, 6)
    return out

