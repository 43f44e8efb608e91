"""Root cause and scope: which network element the degraded customers have in common (core).

Each customer's path is the set of elements its traffic crosses: its access port, the
switches and the directed inter-switch links between its devices and the hosts its flows
talk to (shortest paths, as forwarding installs them). An element is suspect when it is on
the path of many degraded customers and few healthy ones:

    coverage = degraded customers whose path has it / degraded customers
    exposure = healthy customers whose path has it / healthy customers (0 without any)
    score    = coverage * (1 - exposure), raised by what the port statistics say:
               utilisation of the element's egress against its capacity, and drops;
               lowered (x IDLE_FACTOR) when they speak against it: an egress under
               IDLE utilisation with no drops and no errors is unlikely to hurt anyone

Elements with a score of at least MIN_SCORE become findings, best first; an element that
a more specific one explains (a switch whose suspect link it holds) is left out. Each
finding names the element, the evidence with its figures, the affected customers and
services, and every input of its score. No degraded customer: no finding.
"""

import dataclasses
from typing import Iterable, Mapping

import networkx as nx

from controller.network.forwarding import compute_paths

MIN_SCORE = 0.5
BUSY = 0.8   # utilisation above which an egress counts as congested
IDLE = 0.5   # utilisation below which an egress without drops or errors counts as idle
IDLE_FACTOR = 0.7


@dataclasses.dataclass(frozen=True)
class PortLoad:
    """What the statistics say of the egress of an element (a link's source port, an access
    port towards the customer)."""

    tx_bps: float
    capacity_bps: float | None
    tx_dropped_per_s: float = 0.0
    errors_per_s: float = 0.0

    @property
    def utilisation(self) -> float | None:
        return self.tx_bps / self.capacity_bps if self.capacity_bps else None


@dataclasses.dataclass(frozen=True)
class Finding:
    element: str
    score: float
    evidence: tuple[str, ...]
    affected_customers: tuple[str, ...]
    services: tuple[str, ...]
    time_unix_s: float
    inputs: Mapping[str, float]


def link_name(src_dpid: int, src_port: int, dst_dpid: int) -> str:
    return f"link {src_dpid:016x}:{src_port}->{dst_dpid:016x}"


def access_name(dpid: int, port: int) -> str:
    return f"access port {dpid:016x}:{port}"


def switch_name(dpid: int) -> str:
    return f"switch {dpid:016x}"


def path_elements(graph: nx.DiGraph, ends: Iterable[tuple[int, int]], paths=None
                  ) -> dict[str, tuple]:
    """Elements between pairs of switches (src, dst): name -> (kind, dpid, port) where the
    port is the element's egress (links: the source port)."""
    paths = paths if paths is not None else compute_paths(graph)
    out: dict[str, tuple] = {}
    for src, dst in ends:
        hops = paths.get(src, {}).get(dst)
        if hops is None:
            continue
        for dpid in hops:
            out[switch_name(dpid)] = ("switch", dpid, None)
        for here, nxt in zip(hops, hops[1:]):
            port = graph[here][nxt]["port"]
            out[link_name(here, port, nxt)] = ("link", here, port)
    return out


def find_causes(paths: Mapping[str, Mapping[str, tuple]], degraded: Mapping[str, Iterable[str]],
                healthy: Iterable[str], loads: Mapping[tuple[int, int], PortLoad],
                now_unix_s: float) -> list[Finding]:
    """`paths`: customer -> its elements (name -> (kind, dpid, egress port)); `degraded`:
    degraded customer -> its degraded services; `healthy`: customers with no degraded
    service; `loads`: (dpid, port) -> PortLoad."""
    sick = [c for c in degraded if c in paths]
    well = [c for c in healthy if c in paths and c not in degraded]
    if not sick:
        return []
    elements: dict[str, tuple] = {}
    for customer in sick:
        elements.update(paths[customer])
    findings = []
    for name, (kind, dpid, port) in elements.items():
        affected = sorted(c for c in sick if name in paths[c])
        exposed = sum(1 for c in well if name in paths[c])
        coverage = len(affected) / len(sick)
        exposure = exposed / len(well) if well else 0.0
        score = coverage * (1 - exposure)
        evidence = [f"on the path of {len(affected)} of {len(sick)} degraded customers and "
                    f"{exposed} of {len(well)} healthy ones"]
        inputs = {"coverage": coverage, "exposure": exposure, "degraded": len(sick),
                  "healthy": len(well)}
        load = loads.get((dpid, port)) if port is not None else None
        if load is not None:
            utilisation = load.utilisation
            inputs.update(tx_bps=load.tx_bps, tx_dropped_per_s=load.tx_dropped_per_s)
            if utilisation is not None:
                inputs["utilisation"] = utilisation
                evidence.append(f"egress at {utilisation:.0%} of {load.capacity_bps / 1e6:g} "
                                f"Mbit/s")
                if utilisation >= BUSY:
                    score = min(1.0, score * 1.2 + 0.1)
            if load.tx_dropped_per_s > 0:
                evidence.append(f"{load.tx_dropped_per_s:.0f} packets/s dropped on egress")
                score = min(1.0, score * 1.1 + 0.05)
            if load.errors_per_s > 0:
                evidence.append(f"{load.errors_per_s:.0f} errors/s")
            if utilisation is not None and utilisation < IDLE and not load.tx_dropped_per_s \
                    and not load.errors_per_s:
                evidence.append("idle, without drops or errors: the statistics speak "
                                "against it")
                score *= IDLE_FACTOR
        if kind == "switch":
            score *= 0.9  # a link or a port on it says more than the switch itself
        inputs["score"] = score
        if score >= MIN_SCORE:
            services = sorted({s for c in affected for s in degraded[c]})
            findings.append(Finding(name, round(score, 4), tuple(evidence), tuple(affected),
                                    tuple(services), now_unix_s, inputs))
    findings.sort(key=lambda f: (-f.score, -f.inputs.get("utilisation", 0.0), f.element))
    # a switch is explained by a suspect link or port of its own with as high a coverage
    kept = []
    for finding in findings:
        if finding.element.startswith("switch "):
            dpid = finding.element.split()[1]
            if any(dpid in other.element and other.affected_customers ==
                   finding.affected_customers for other in kept):
                continue
        kept.append(finding)
    return kept


def customer_paths(graph: nx.DiGraph, access: Mapping[str, tuple[int, int]],
                   peers: Mapping[str, Iterable[int]], paths=None) -> dict[str, dict[str, tuple]]:
    """Each customer's elements: its access port, and the switches and links from its
    access switch to the switches of the hosts its flows talk to, both ways (`paths`:
    compute_paths(graph), when the caller has them)."""
    paths = paths if paths is not None else compute_paths(graph)
    out = {}
    for customer, (dpid, port) in access.items():
        ends = [(dpid, p) for p in peers.get(customer, ()) if p != dpid]
        ends += [(peer, src) for src, peer in list(ends)]
        elements = path_elements(graph, ends, paths)
        elements[access_name(dpid, port)] = ("access", dpid, port)
        elements.setdefault(switch_name(dpid), ("switch", dpid, None))
        out[customer] = elements
    return out
