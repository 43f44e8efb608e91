"""Reconciliation: what cems believes each switch holds, and what to send so that it holds
the desired state (core).

"Reconcile, don't fire and forget" (../shared/DESIGN.md): the app never decides what to
send. It hands this module the desired state (controller.openflow.desired) and the replies
the switch gave, and sends the changes it gets back, in the order they come:

1. meters added or changed (a switch refuses a flow whose meter does not exist),
2. flows deleted,
3. flows added (an add with the table, priority and match of a believed flow overwrites it),
4. meters deleted (a switch also removes the flows of a meter it deletes).

A switch that has not settled yet (just connected; cems does not know the topology around
it) only gets what is missing; a settled one gets exactly the desired state, and cems flows
and meters nobody wants are removed. Flows and meters that are not cems' (other cookies,
meter ids below METER_BASE) are never touched.

What cems believes comes from what it sent and is corrected by the switch's own answers
to meter-config and flow-stats requests (asked in that order: a missing meter takes its
flows with it, so the flows are sent again after the meter, not refused before it). Such an answer is the switch's real state only if
no flow or meter change was sent between the request and the answer: otherwise it may not
include that change (a stale reply), and it is not believed.

Flows that use a meter are sent only when the switch's meters are known (after its first
meter-config answer) and the meter is there or is added before them; until then they wait
("held") and the believed ones are kept. Nothing here does I/O: the app compiles the
changes with controller.openflow.messages, sends them and reports each one back with its
transaction id (SwitchLedger.sent), so that replies and errors can be matched to requests.
"""

import collections
import dataclasses
from typing import Any, Iterable, Mapping

from controller.openflow.pipeline import (FlowEntry, MeterSpec, apply_diff, diff_flows,
                                          diff_meters, is_cems_meter, meters_used)

SENT_MEMORY = 256          # requests remembered per switch, to explain OpenFlow errors
STATE_REQUESTS_KEPT = 16   # unanswered flow-stats / meter-config requests remembered


@dataclasses.dataclass(frozen=True)
class FlowMod:
    """Add (create or overwrite) or delete exactly one cems flow."""

    command: str  # "add" or "delete"
    entry: FlowEntry


@dataclasses.dataclass(frozen=True)
class MeterMod:
    """Add, modify or delete one cems meter (a delete carries the spec it removes)."""

    command: str  # "add", "modify" or "delete"
    meter: MeterSpec


@dataclasses.dataclass(frozen=True)
class StateRequest:
    """Ask a switch what it holds: "flows" (every cems flow) or "meters" (every meter)."""

    kind: str


Change = FlowMod | MeterMod


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one reconciliation of one switch sends, in order, and what it had to hold back."""

    dpid: int
    changes: tuple[Change, ...] = ()
    held: tuple[tuple[FlowEntry, str], ...] = ()  # desired flows not sent, and why

    def count(self, kind: type, command: str) -> int:
        return sum(1 for c in self.changes if isinstance(c, kind) and c.command == command)

    @property
    def flows_added(self) -> int:
        return self.count(FlowMod, "add")

    @property
    def flows_deleted(self) -> int:
        return self.count(FlowMod, "delete")

    def __bool__(self) -> bool:
        return bool(self.changes)


@dataclasses.dataclass(frozen=True)
class FlowReport:
    """An authoritative flow-stats answer, compared with what cems believed."""

    missing: int      # believed but not on the switch
    unexpected: int   # on the switch but not believed

    @property
    def differs(self) -> bool:
        return bool(self.missing or self.unexpected)


@dataclasses.dataclass(frozen=True)
class MeterReport:
    """An authoritative meter-config answer."""

    first: bool    # the first answer since the switch connected: its meters are now known
    differs: bool  # the switch's cems meters are not what cems believed


@dataclasses.dataclass(frozen=True)
class OpenFlowError:
    """An error a switch sent, matched to the request that caused it."""

    dpid: int
    xid: int
    offending: Any          # what was sent with that xid (a Change, StateRequest, message)
    first: bool             # the first error of this type and code from this switch


def _meter_reason(entry: FlowEntry, missing: list[int], known: bool) -> str:
    ids = ", ".join(str(m) for m in missing)
    if not known:
        return f"uses meter {ids}; the switch's meters are not known yet"
    return f"uses meter {ids}, which no component asks for on this switch"


class SwitchLedger:
    """Per connected switch: believed flows and meters, and the bookkeeping of requests.

    A switch that reconnects gets a new ledger: nothing believed, meters unknown.
    """

    def __init__(self, dpid: int, connected_at: float):
        self.dpid = dpid
        self.connected_at = connected_at
        self.flows: set[FlowEntry] = set()          # cems flows believed on the switch
        self.meters: dict[int, MeterSpec] = {}      # cems meters believed on the switch
        self.meters_known = False                   # a meter-config answer told what it holds
        self.reconciled_once = False                # settled and reconciled at least once
        self._mods_sent = 0                         # flow and meter changes sent so far
        self._state_requests: collections.OrderedDict[int, tuple[str, int]] = \
            collections.OrderedDict()               # xid -> (kind, changes sent before it)
        self._parts: dict[int, list] = {}           # xid -> multipart bodies so far
        self._sent: collections.OrderedDict[int, Any] = collections.OrderedDict()

    # -- deciding ------------------------------------------------------------------------
    def reconcile(self, flows: Iterable[FlowEntry], meters: Mapping[int, MeterSpec],
                  full: bool) -> Plan:
        """The changes that make the switch hold `flows` and `meters` (all of them cems'),
        and the belief updated as if they were applied. With `full` False only what is
        missing is added (nothing removed)."""
        meter_add: list[MeterSpec] = []
        meter_modify: list[MeterSpec] = []
        meter_delete: list[int] = []
        if self.meters_known:
            meter_add, meter_modify, meter_delete = diff_meters(meters, self.meters, full)
            available = set(self.meters) | {m.meter_id for m in meter_add}
            available -= set(meter_delete)
        else:
            available = set()
        want: set[FlowEntry] = set()
        held: list[tuple[FlowEntry, str]] = []
        for entry in flows:
            missing = [m for m in meters_used(entry) if m not in available]
            if missing:
                held.append((entry, _meter_reason(entry, missing, self.meters_known)))
            else:
                want.add(entry)
        if not self.meters_known:
            # Until the switch says which meters it has, the flows that use them stay as
            # they are: neither sent (the meter may be missing) nor removed.
            want |= {entry for entry in self.flows if meters_used(entry)}
        if not full:
            want |= self.flows
        to_add, to_delete = diff_flows(want, self.flows)
        changes = ([MeterMod("add", m) for m in meter_add]
                   + [MeterMod("modify", m) for m in meter_modify]
                   + [FlowMod("delete", e) for e in to_delete]
                   + [FlowMod("add", e) for e in to_add]
                   + [MeterMod("delete", self.meters[i]) for i in meter_delete])
        for meter in meter_add + meter_modify:
            self.meters[meter.meter_id] = meter
        for meter_id in meter_delete:
            del self.meters[meter_id]
        self.flows = apply_diff(self.flows, to_add, to_delete)
        return Plan(self.dpid, tuple(changes), tuple(sorted(held)))

    # -- what went out -------------------------------------------------------------------
    def sent(self, xid: int, item: Any) -> None:
        """`item` (a Change, a StateRequest or any other message) left with `xid`."""
        self._sent[xid] = item
        while len(self._sent) > SENT_MEMORY:
            self._sent.popitem(last=False)
        if isinstance(item, (FlowMod, MeterMod)):
            self._mods_sent += 1
        elif isinstance(item, StateRequest):
            self._state_requests[xid] = (item.kind, self._mods_sent)
            while len(self._state_requests) > STATE_REQUESTS_KEPT:
                self._state_requests.popitem(last=False)

    def explain(self, xid: int) -> Any:
        """What was sent with `xid`, if it is still remembered (else None)."""
        return self._sent.get(xid)

    # -- what came back ------------------------------------------------------------------
    def collect(self, xid: int, bodies: Iterable, more: bool) -> list | None:
        """One part of a multipart reply; all bodies once the last part arrived."""
        self._parts.setdefault(xid, []).extend(bodies)
        if more:
            return None
        return self._parts.pop(xid)

    def _authoritative(self, xid: int, kind: str) -> bool:
        request = self._state_requests.pop(xid, None)
        return request is not None and request == (kind, self._mods_sent)

    def flows_reported(self, xid: int, entries: Iterable[FlowEntry]) -> FlowReport | None:
        """A complete flow-stats answer. If it is the switch's real state (no change was
        sent since it was asked for), cems believes it from now on and a FlowReport says how
        it differed; otherwise (stale, or not an answer to our request) None."""
        if not self._authoritative(xid, "flows"):
            return None
        actual = set(entries)
        report = FlowReport(len(self.flows - actual), len(actual - self.flows))
        self.flows = actual
        return report

    def meters_reported(self, xid: int, meters: Iterable[MeterSpec]) -> MeterReport | None:
        """A complete meter-config answer: as flows_reported, for the cems meters."""
        if not self._authoritative(xid, "meters"):
            return None
        actual = {m.meter_id: m for m in meters if is_cems_meter(m.meter_id)}
        report = MeterReport(first=not self.meters_known,
                             differs=self.meters_known and actual != self.meters)
        self.meters = actual
        self.meters_known = True
        # A flow cannot be on a switch without its meter (the switch refuses it, and removes
        # a meter's flows with the meter): flows of a missing meter are not there either.
        self.flows = {e for e in self.flows
                      if all(m in actual for m in meters_used(e) if is_cems_meter(m))}
        return report


@dataclasses.dataclass(frozen=True)
class SwitchView:
    """Which switches desired state is computed for: connected ones, and those settled.

    `fabric` is what paths and actions are computed across: the settled switches and, in a
    cluster, those other instances master that this one has watched long enough to know
    their ports and links. Flows are computed for every switch of the fabric (so that each
    instance computes the same paths) and sent only to the connected ones, this instance's.
    Empty means the settled switches."""

    connected: frozenset[int] = frozenset()
    settled: tuple[int, ...] = ()
    fabric: tuple[int, ...] = ()

    def across(self) -> tuple[int, ...]:
        """The switches paths and actions are computed across."""
        return self.fabric or self.settled


class Reconciler:
    """The ledgers of all connected switches and when each counts as settled."""

    def __init__(self, settle_s: float):
        self.settle_s = settle_s
        self._ledgers: dict[int, SwitchLedger] = {}
        self._errors_seen: set[tuple[int, int, int]] = set()  # (dpid, type, code), ever

    def connect(self, dpid: int, now: float) -> SwitchLedger:
        """A switch connected (or reconnected: what was believed of it is forgotten)."""
        ledger = self._ledgers[dpid] = SwitchLedger(dpid, now)
        return ledger

    def disconnect(self, dpid: int) -> None:
        self._ledgers.pop(dpid, None)

    def ledger(self, dpid: int) -> SwitchLedger | None:
        return self._ledgers.get(dpid)

    def __contains__(self, dpid: int) -> bool:
        return dpid in self._ledgers

    def connected(self) -> frozenset[int]:
        return frozenset(self._ledgers)

    def ready(self) -> frozenset[int]:
        """Switches that settled and were reconciled in full at least once."""
        return frozenset(d for d, ledger in self._ledgers.items() if ledger.reconciled_once)

    def view(self, now: float, watched: Iterable[int] = ()) -> SwitchView:
        """The view now; `watched`: settled switches another instance masters."""
        settled = tuple(sorted(d for d, ledger in self._ledgers.items()
                               if now - ledger.connected_at >= self.settle_s))
        return SwitchView(frozenset(self._ledgers), settled,
                          tuple(sorted(set(settled) | set(watched))))

    def newly_settled(self, now: float) -> list[int]:
        """Switches settling now for the first time (marked reconciled from here on)."""
        out = []
        for dpid in self.view(now).settled:
            ledger = self._ledgers[dpid]
            if not ledger.reconciled_once:
                ledger.reconciled_once = True
                out.append(dpid)
        return out

    def converge(self, view: SwitchView, flows_of, meters_of,
                 only: Iterable[int] | None = None, failed=None) -> list[Plan]:
        """Plans for every connected switch (or those in `only`) towards the desired state,
        given as flows_of(dpid) and meters_of(dpid); settled switches in `view` in full.

        A switch whose desired state cannot be planned (bad data: `failed(dpid, error)` is
        told) is left as it is; the others are planned all the same."""
        settled = set(view.settled)
        dpids = sorted(self._ledgers if only is None else set(only) & set(self._ledgers))
        plans = []
        for dpid in dpids:
            ledger = self._ledgers[dpid]
            before = (set(ledger.flows), dict(ledger.meters))
            try:
                plans.append(ledger.reconcile(flows_of(dpid), meters_of(dpid), dpid in settled))
            except Exception as err:  # pylint: disable=broad-except
                ledger.flows, ledger.meters = before  # nothing was decided for it
                if failed is None:
                    raise
                failed(dpid, err)
        return plans

    def error(self, dpid: int, xid: int, error_type: int, code: int) -> OpenFlowError:
        """An OpenFlow error from a switch, with what caused it and whether it is new.

        A refused flow or meter stays believed until the switch's next authoritative
        answer shows it missing; the next reconciliation then sends it again (and the
        switch refuses it again: counted every time, worth logging once)."""
        ledger = self._ledgers.get(dpid)
        key = (dpid, error_type, code)
        first = key not in self._errors_seen
        self._errors_seen.add(key)
        return OpenFlowError(dpid, xid, ledger.explain(xid) if ledger else None, first)
