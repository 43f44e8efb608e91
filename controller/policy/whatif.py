"""Questions put to the twin without acting: what-if, admission and advised bitrates (core).

- what_if(): the predicted effect of a change an operator proposes (a meter on a customer's
  traffic, a re-marking of one of its services, an SLS change of class and rate, or a
  reroute of its traffic around an element over the path the engine would choose) on
  every element the customer's traffic crosses (a reroute: the element and the new
  paths), for every service there with a model.
  The twin assumes the traffic stays what it is now, capped at a proposed rate: it cannot
  know how much more a customer would send if allowed to.
- admit(): whether a new session (for example a unicast IPTV stream) may start on the
  path between two hosts. It is refused when it would take an element of the path above
  `admission_utilisation`, unless lower-class traffic across that element (not its
  voice or IPTV) could be metered, down to its customers' SLA floors, to make room.
- advise(): the bitrate an adaptive video of a customer should stay at or below: the
  room its path has at `target_utilisation` besides the other traffic, when some
  element of the path is short of room; none when it is not.

Pure functions of a Snapshot (controller.policy.model); the shell gives them the latest.
"""

import collections
import dataclasses
import math

from controller.monitor.rootcause import access_name
from controller.policy.engine import detour
from controller.policy.model import CLASS_RANK, PairTraffic, Prediction, Snapshot
from controller.policy.twin import predict

METER, PRIORITY, SLS, REROUTE = "meter", "priority", "sls", "reroute"
PROPOSALS = (METER, PRIORITY, SLS, REROUTE)
REAL_TIME = ("voice", "iptv")
MODELLED = ("voice", "iptv")


class Unanswerable(ValueError):
    """The question cannot be answered from this snapshot; the message says why."""


@dataclasses.dataclass(frozen=True)
class Proposal:
    kind: str              # meter, priority, sls or reroute
    customer_id: str
    rate_bps: int = 0      # meter, sls: 0 leaves the rate as it is
    service_class: str = ""   # priority, sls
    service: str = ""      # priority: the service re-marked ('' for all)
    element: str = ""      # reroute: the element the customer's traffic is moved around


def what_if(snapshot: Snapshot, proposal: Proposal, frame_rate: float | None = None,
            target_utilisation: float = 0.8) -> tuple[Prediction, ...]:
    """One prediction per element the customer's traffic crosses (with a known capacity),
    busiest first."""
    if proposal.kind not in PROPOSALS:
        raise Unanswerable(f"a proposal is one of {', '.join(PROPOSALS)}, not "
                           f"{proposal.kind!r}")
    if proposal.customer_id not in snapshot.contracts:
        raise Unanswerable(f"customer {proposal.customer_id!r} has no contract in the "
                           "network now")
    if proposal.service_class and proposal.service_class not in CLASS_RANK:
        raise Unanswerable(f"class {proposal.service_class!r} is not one of "
                           f"{', '.join(CLASS_RANK)}")
    mine = [p for p in snapshot.pairs if p.customer_id == proposal.customer_id]
    if proposal.kind == PRIORITY:
        mine = [p for p in mine if not proposal.service or p.service == proposal.service]
    if not mine:
        raise Unanswerable(f"no traffic of {proposal.customer_id}"
                           f"{' ' + proposal.service if proposal.service else ''} crosses the "
                           "network now: there is nothing for the twin to move")
    rates_after: dict[tuple[str, str], float] = {}
    total = sum(p.rate_bps for p in mine)
    if proposal.kind in (METER, SLS) and proposal.rate_bps and total > proposal.rate_bps:
        rates_after = {p.key: p.rate_bps * proposal.rate_bps / total for p in mine}
    classes_after = {p.key: proposal.service_class for p in mine} \
        if proposal.service_class and proposal.kind in (PRIORITY, SLS) else {}
    if proposal.kind == METER and not proposal.rate_bps:
        raise Unanswerable("a proposed meter needs its rate")
    if proposal.kind == REROUTE:
        return _reroute(snapshot, proposal, mine, target_utilisation, frame_rate)
    return _predictions(snapshot, {n for p in mine for n in p.elements}, rates_after,
                        classes_after, frame_rate)


def _reroute(snapshot: Snapshot, proposal: Proposal, mine, target_utilisation: float,
             frame_rate) -> tuple[Prediction, ...]:
    """The customer's pairs across the element moved to the paths the engine would give
    them: the element without them, and each link of the new paths with them."""
    if proposal.element not in snapshot.elements:
        raise Unanswerable(f"a proposed reroute names the element to go around; "
                           f"{proposal.element!r} is none the network has now")
    across = [p for p in mine if proposal.element in p.elements]
    if not across:
        raise Unanswerable(f"no traffic of {proposal.customer_id} crosses {proposal.element}")
    moved, names = [], set()
    for pair in across:
        path = detour(snapshot, pair, proposal.element, target_utilisation)
        if path is None:
            raise Unanswerable(f"no other path for {pair.src_mac} -> {pair.dst_mac} has room "
                               f"under {target_utilisation:.0%}")
        links = tuple(snapshot.links[hop][1] for hop in zip(path, path[1:]))
        host = snapshot.host_ports.get(pair.dst_mac)
        moved.append(PairTraffic(pair.src_mac + " (moved)", pair.dst_mac, pair.customer_id,
                                 pair.service, pair.service_class, 0.0, path,
                                 links + ((access_name(*host),) if host else ())))
        names.update(links)
    rates_after = {p.key: 0.0 for p in across}
    rates_after.update({m.key: p.rate_bps for m, p in zip(moved, across)})
    return _predictions(snapshot, names | {proposal.element}, rates_after, {}, frame_rate,
                        extra=tuple(moved))


def _predictions(snapshot: Snapshot, names, rates_after, classes_after, frame_rate,
                 extra: tuple[PairTraffic, ...] = ()) -> tuple[Prediction, ...]:
    by_element = collections.defaultdict(list)
    for pair in snapshot.pairs + extra:
        for name in pair.elements:
            if name in names:
                by_element[name].append(pair)
    out = []
    for name in names:
        element = snapshot.elements.get(name)
        if element is None or not element.capacity_bps:
            continue
        pairs = tuple(by_element[name])
        affected = sorted({(p.customer_id, p.service) for p in pairs
                           if p.service in MODELLED and p.customer_id})
        out.append(predict(element, pairs, affected, rates_after=rates_after,
                           classes_after=classes_after, frame_rate=frame_rate))
    return tuple(sorted(out, key=lambda p: (-p.utilisation_after, p.element)))


@dataclasses.dataclass(frozen=True)
class Session:
    customer_id: str
    service: str
    rate_bps: float
    src_mac: str
    dst_mac: str


@dataclasses.dataclass(frozen=True)
class Admission:
    admitted: bool
    reason: str
    element: str = ""             # the element that decided a refusal (or was closest)
    prediction: Prediction | None = None


def path_of(snapshot: Snapshot, src_mac: str, dst_mac: str) -> tuple[tuple[int, ...],
                                                                   tuple[str, ...]]:
    """The switches and elements between two hosts: the path their traffic takes now; else
    the path of traffic between the same two switches (forwarding takes one path per pair
    of switches); else the fewest hops over the switch graph."""
    for pair in snapshot.pairs:
        if pair.key == (src_mac, dst_mac):
            return pair.path, pair.elements
    if src_mac not in snapshot.host_ports or dst_mac not in snapshot.host_ports:
        unknown = src_mac if src_mac not in snapshot.host_ports else dst_mac
        raise Unanswerable(f"host {unknown} has not been seen on any switch")
    start, goal = snapshot.host_ports[src_mac][0], snapshot.host_ports[dst_mac][0]
    last = access_name(*snapshot.host_ports[dst_mac])
    for pair in snapshot.pairs:
        if pair.path and (pair.path[0], pair.path[-1]) == (start, goal) and \
                all(hop in snapshot.links for hop in zip(pair.path, pair.path[1:])):
            return pair.path, tuple(snapshot.links[hop][1] for hop in
                                    zip(pair.path, pair.path[1:])) + (last,)
    nexts = collections.defaultdict(list)
    for (a, b) in sorted(snapshot.links):
        nexts[a].append(b)
    came = {start: None}
    queue = collections.deque([start])
    while queue and goal not in came:
        here = queue.popleft()
        for b in nexts[here]:
            if b not in came:
                came[b] = here
                queue.append(b)
    if goal not in came:
        raise Unanswerable(f"no path between the switches of {src_mac} and {dst_mac}")
    path = [goal]
    while came[path[-1]] is not None:
        path.append(came[path[-1]])
    path.reverse()
    names = tuple(snapshot.links[(a, b)][1] for a, b in zip(path, path[1:]))
    return tuple(path), names + (access_name(*snapshot.host_ports[dst_mac]),)


def admit(snapshot: Snapshot, session: Session, admission_utilisation: float = 0.9,
          frame_rate: float | None = None) -> Admission:
    contract = snapshot.contracts.get(session.customer_id)
    rank = CLASS_RANK.get(contract.service_class, 2) if contract else 2
    path, names = path_of(snapshot, session.src_mac, session.dst_mac)
    # the new session beside whatever the two hosts already exchange (its own key)
    new = PairTraffic(session.src_mac + " (new)", session.dst_mac, session.customer_id,
                      session.service, contract.service_class if contract else "", 0.0,
                      path, names)
    tightest, tightest_after = "", -math.inf
    for name in names:
        element = snapshot.elements.get(name)
        if element is None or not element.capacity_bps:
            continue
        limit = admission_utilisation * element.capacity_bps
        after = element.load_bps + session.rate_bps
        if after / element.capacity_bps > tightest_after:
            tightest, tightest_after = name, after / element.capacity_bps
        if after <= limit:
            continue
        room = _meterable(snapshot, name, rank)
        prediction = _predictions(snapshot, {name}, {new.key: session.rate_bps}, {},
                                  frame_rate, extra=(new,))[0]
        if after - room <= limit:
            return Admission(True, f"admitted: {name} would be at {after / element.capacity_bps:.0%} "
                             f"of {element.capacity_bps / 1e6:g} Mbit/s, but "
                             f"{room / 1e6:.1f} Mbit/s of lower-class traffic there can be "
                             "metered to make room", name, prediction)
        return Admission(False, (
            f"refused: a new {session.service} session of {session.rate_bps / 1e6:.1f} Mbit/s "
            f"for {session.customer_id or 'a host without a customer'} would take {name} to "
            f"{after / element.capacity_bps:.0%} of {element.capacity_bps / 1e6:g} Mbit/s "
            f"(admission limit {admission_utilisation:.0%})"
            + (f"; lower-class traffic there could free only {room / 1e6:.1f} Mbit/s"
               if room else "")), name, prediction)
    return Admission(True, "admitted: every element of the path has room"
                     + (f" ({tightest} would be at {tightest_after:.0%})" if tightest else ""),
                     tightest)


def _meterable(snapshot: Snapshot, name: str, rank: int) -> float:
    """What metering lower-class traffic across the element to its customers' floors could
    free (their voice and IPTV are never metered)."""
    per_customer = collections.defaultdict(float)
    for pair in snapshot.pairs:
        if name in pair.elements and pair.service not in REAL_TIME and pair.customer_id \
                and CLASS_RANK.get(pair.service_class, 2) > rank:
            per_customer[pair.customer_id] += pair.rate_bps
    room = 0.0
    for customer, rate in per_customer.items():
        contract = snapshot.contracts.get(customer)
        floor = contract.sla_min_bps if contract else rate
        room += max(0.0, rate - floor)
    return room


@dataclasses.dataclass(frozen=True)
class Advice:
    bitrate_bps: int              # 0: no advice, play as the player sees fit
    reason: str
    element: str = ""


def advise(snapshot: Snapshot, customer_id: str, service: str = "video",
           host_mac: str = "", target_utilisation: float = 0.8,
           floor_bps: int = 300_000) -> Advice:
    """The bitrate the customer's `service` flows (to `host_mac` when given) should stay at
    or below for their path to stay at `target_utilisation`."""
    mine = [p for p in snapshot.pairs if p.customer_id == customer_id and
            p.service == service and (not host_mac or host_mac in p.key)]
    if not mine:
        return Advice(0, f"no {service} of {customer_id} crosses the network now")
    rate = sum(p.rate_bps for p in mine)
    best, where = math.inf, ""
    for name in {n for p in mine for n in p.elements}:
        element = snapshot.elements.get(name)
        if element is None or not element.capacity_bps:
            continue
        room = target_utilisation * element.capacity_bps - (element.load_bps - rate)
        if room < best:
            best, where = room, name
    if where == "" or best >= rate:
        return Advice(0, f"the path of {customer_id}'s {service} has room for "
                      f"{rate / 1e6:.1f} Mbit/s", where)
    advised = int(max(floor_bps, best))
    element = snapshot.elements[where]
    return Advice(advised, f"{where} is at {element.utilisation:.0%} of "
                  f"{element.capacity_bps / 1e6:g} Mbit/s: {customer_id}'s {service} "
                  f"({rate / 1e6:.1f} Mbit/s now) should stay at or below "
                  f"{advised / 1e6:.2f} Mbit/s", where)
