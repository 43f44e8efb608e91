"""The experience engine's tick: statuses, zooms and findings, once a second (core).

The runtime calls tick() with the network facts of the moment (the topology graph, the
switch of each host address, the egress load of each port); the engine evaluates the
statuses of the ExperienceBook, decides zooms (ZoomBook) and, when any customer is
degraded, looks for the root cause (rootcause.find_causes) every `findings_every_s` or at
once when a status changed. It returns what changed; applying it (mirror rules, STAMP
tests, events) is the shell's. Only the runtime's ticker thread calls tick().
"""

import dataclasses
import functools
from typing import Mapping

import networkx as nx

from controller.monitor.experience import ExperienceBook, StatusChange
from controller.monitor.rootcause import Finding, PortLoad, customer_paths, find_causes
from controller.monitor.zoom import ZoomBook, ZoomEvent
from controller.network.forwarding import compute_paths


@dataclasses.dataclass(frozen=True)
class NetworkFacts:
    graph: nx.DiGraph
    host_switch: Mapping[str, int]             # IP address -> the switch of its host
    loads: Mapping[tuple[int, int], PortLoad]  # (dpid, port) -> its egress

    @functools.cached_property
    def paths(self) -> dict[int, dict[int, list[int]]]:
        """The forwarding paths between every two switches (compute_paths), made once per
        facts: root cause and the policy snapshot of the same tick share them."""
        return compute_paths(self.graph)


@dataclasses.dataclass(frozen=True)
class TickResult:
    changes: tuple[StatusChange, ...] = ()
    zooms: tuple[ZoomEvent, ...] = ()
    findings: tuple[Finding, ...] = ()         # new ones (an element or its scope changed)


class ExperienceEngine:
    def __init__(self, book: ExperienceBook, zooms: ZoomBook, kpis, directory,
                 findings_every_s: float = 5.0, max_findings: int = 20):
        self.book = book
        self.zooms = zooms
        self.kpis = kpis            # controller.monitor.kpis.KpiStore
        self.directory = directory  # controller.monitor.directory.CustomerDirectory
        self.findings_every_s = findings_every_s
        self.max_findings = max_findings
        self._findings: tuple[Finding, ...] = ()
        self._last_findings = float("-inf")

    def findings(self) -> tuple[Finding, ...]:
        return self._findings

    def _peers(self, customer_id: str, facts: NetworkFacts) -> set[int]:
        """The switches of the hosts the customer's flows talk to (its own switch among them;
        customer_paths leaves that out): from this instance's KPI store, and with customer
        partitions from the digest of the instance that takes the customer's records."""
        addresses = self.book.peer_addresses(customer_id)   # another instance's customer
        for record in self.kpis.select(customer_id, include_ended=True).records:
            addresses.update((record.src, record.dst))
        return {facts.host_switch[a] for a in addresses if a in facts.host_switch}

    def _causes(self, now: float, facts: NetworkFacts) -> tuple[Finding, ...]:
        statuses = self.book.statuses()
        degraded: dict[str, list[str]] = {}
        customers = set()
        for (customer, service), status in statuses.items():
            customers.add(customer)
            if status == "degraded":
                degraded.setdefault(customer, []).append(service)
        if not degraded:
            return ()
        access, peers = {}, {}
        for customer in customers:
            state = self.directory.state(customer)
            if state is None or state.customer.access_dpid not in facts.graph:
                continue
            access[customer] = (state.customer.access_dpid, state.customer.access_port)
            peers[customer] = self._peers(customer, facts)
        paths = customer_paths(facts.graph, access, peers, facts.paths)
        healthy = [c for c in customers if c not in degraded]
        return tuple(find_causes(paths, degraded, healthy, facts.loads, now)
                     [:self.max_findings])

    def tick(self, now: float, facts: NetworkFacts | None = None) -> TickResult:
        changes = tuple(self.book.evaluate(now))
        zooms = tuple(self.zooms.tick(now, self.book.statuses()))
        new: tuple[Finding, ...] = ()
        if facts is not None and (changes or now - self._last_findings >= self.findings_every_s):
            self._last_findings = now
            found = self._causes(now, facts)
            seen = {(f.element, f.affected_customers) for f in self._findings}
            new = tuple(f for f in found if (f.element, f.affected_customers) not in seen)
            self._findings = found
        return TickResult(changes, zooms, new)


class Experience:
    """What the API and the runtime share: the book, the assessor, the engine (its zooms and
    findings), and one lock around the engine. `on_zooms` (set by the runtime) applies zoom
    events: mirror rules, STAMP tests, events."""

    def __init__(self, book: ExperienceBook, assessor, engine: ExperienceEngine, clock=None):
        import threading  # pylint: disable=import-outside-toplevel
        import time  # pylint: disable=import-outside-toplevel
        self.book = book
        self.assessor = assessor
        self.engine = engine
        self.clock = clock or time.time
        self.on_zooms = lambda events: {}
        self._lock = threading.Lock()

    def tick(self, facts: NetworkFacts | None) -> TickResult:
        with self._lock:
            return self.engine.tick(self.clock(), facts)

    def request_zoom(self, customer_id: str, reason: str, seconds: float | None):
        """Zoom in on a customer now; returns (Zoom or None when refused, what it did)."""
        with self._lock:
            zoom, events = self.engine.zooms.request(customer_id, reason, seconds, self.clock())
        done = self.on_zooms(events) if events else {}
        return zoom, done.get(customer_id, ("", ""))

    def zooms(self) -> dict:
        with self._lock:
            return self.engine.zooms.active()

    def findings(self):
        with self._lock:
            return self.engine.findings()
