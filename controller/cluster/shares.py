"""Which instance should be master of which switch, and what this instance should do about it
(core: plain data in, plain data out; controller/cluster/leader.py asks etcd).

Every instance computes the same assignment from the same inputs: the instances alive, the
switches known and who holds each now (assign). Shares are even, none above
ceil(switches / instances); a switch stays where it is while its holder is alive and within
its share, and new or orphaned switches go by rendezvous hashing (a hash of switch and
instance). So an instance dying moves only its own switches, and one joining takes only
what evens the shares.

An instance claims a switch nobody holds when the switch is assigned to it, or when nobody
has taken it for a while (the instance it is assigned to may not be connected to it). It
hands a switch back when the switch is assigned to another instance that is connected to it,
one switch per round, so that a rejoining instance gets its share a switch at a time.
"""

import dataclasses
import hashlib
import math
from typing import Iterable, Mapping


def _rank(dpid: int, instance: str) -> bytes:
    return hashlib.sha256(f"{dpid:016x}|{instance}".encode()).digest()


def _preference(dpid: int, members) -> list[str]:
    return sorted(members, key=lambda m: _rank(dpid, m), reverse=True)


def assign(switches: Iterable[int], instances: Iterable[str],
           holders: Mapping[int, str] | None = None) -> dict[int, str]:
    """dpid -> the instance that should master it. A function of its inputs alone (any
    order in, the same answer out), so every instance computes the same.

    A switch stays with the instance alive that holds it, as long as that instance has no
    more than its share, ceil(switches / instances). The others go, in dpid order, to the
    instance that ranks them highest among those below their share (rendezvous hashing).
    Then, while an instance has fewer than floor(switches / instances), the most loaded
    gives it the switch it ranks highest. So a failure moves only the dead instance's
    switches, and a newcomer takes only what evens the shares."""
    members = sorted(set(instances))
    dpids = sorted(set(switches))
    if not members:
        return {}
    share, floor = math.ceil(len(dpids) / len(members)), len(dpids) // len(members)
    load = {member: 0 for member in members}
    out: dict[int, str] = {}
    for dpid in dpids:        # who holds it keeps it, up to its share
        holder = (holders or {}).get(dpid)
        if holder in load and load[holder] < share:
            load[holder] += 1
            out[dpid] = holder
    for dpid in dpids:
        if dpid in out:
            continue
        member = next(m for m in _preference(dpid, members) if load[m] < share)
        load[member] += 1
        out[dpid] = member
    while True:
        poorest = min(members, key=lambda m: (load[m], m))
        richest = max(members, key=lambda m: (load[m], m))
        if load[poorest] >= floor or load[richest] <= floor:
            return out
        dpid = max((d for d, m in out.items() if m == richest),
                   key=lambda d: _rank(d, poorest))
        out[dpid] = poorest
        load[poorest] += 1
        load[richest] -= 1


@dataclasses.dataclass(frozen=True)
class SwitchPlan:
    """What this instance does this round."""

    claim: tuple[int, ...] = ()     # create the switch's key (nobody holds it)
    release: tuple[int, ...] = ()   # delete this instance's key: another should have it


def plan_switches(me: str, members: Iterable[str], seen: Iterable[int],
                  holders: Mapping[int, str], connected: Mapping[str, frozenset[int]],
                  unheld_long: Iterable[int] = ()) -> SwitchPlan:
    """This instance's claims and hand-backs.

    `members`: the instances alive (this one among them); `seen`: the switches connected to
    this instance; `holders`: dpid -> instance holding its key; `connected`: what each member
    says it is connected to; `unheld_long`: switches nobody has held for a while."""
    members = set(members) | {me}
    seen = set(seen)
    switches = seen | set(holders)
    for dpids in connected.values():
        switches |= set(dpids)
    wanted = assign(switches, members, holders)
    unheld_long = set(unheld_long)
    claim = tuple(sorted(d for d in seen if d not in holders
                         and (wanted.get(d) == me or d in unheld_long)))
    release = ()
    if not claim:
        for dpid in sorted(d for d, holder in holders.items() if holder == me):
            owner = wanted.get(dpid, me)
            if owner != me and dpid in connected.get(owner, frozenset()):
                release = (dpid,)
                break
    return SwitchPlan(claim, release)
