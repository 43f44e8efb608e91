"""Policy benchmark: one evaluation of the closed loop for 10,000 customers and 100,000 flows.

    .venv/bin/python bench/bench_policy.py [--customers 10000] [--pairs-per-customer 10]

An access network: a core switch with the servers, 10 aggregation switches, 100 access
switches (each under two aggregation switches), `--customers` customers spread over the
access switches (20 % Gold, 30 % Silver, 50 % Bronze), each with `--pairs-per-customer`
host pairs from the servers. Ten aggregation-access links are congested at 130 % by their
Bronze customers' traffic, and the Gold customers' voice behind them is degraded.

Figures (best of 3):
- build_snapshot: the Snapshot from the flow statistics (one table-1 flow per pair on each
  of three switches), hosts, port loads, contracts and findings, as the loop makes it: scoped
  to the suspects (the pairs across them, their rates read on the suspects' switches); and
  unscoped, every pair from every switch, as what-if, admission and advice need it;
- decide: the engine's evaluation of that snapshot (candidates for each suspect with the
  twin's predictions, guardrails, the log);
- baseline: one plain pass over the pairs that sums each element's load, the least any
  evaluation must do; the ratio says what the engine costs beyond it.
Aim: one full evaluation (snapshot and decide) under 100 ms.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import networkx as nx  # noqa: E402

from controller.events import FlowView  # noqa: E402
from controller.monitor.engine import NetworkFacts  # noqa: E402
from controller.monitor.rootcause import Finding, PortLoad, link_name  # noqa: E402
from controller.network.topology import HostInfo  # noqa: E402
from controller.openflow.pipeline import FORWARDING_TABLE, Component, FlowEntry, \
    cookie_for  # noqa: E402
from controller.policy.engine import PolicyConfig, PolicyMemory, decide  # noqa: E402
from controller.policy.model import Contract, Degradation  # noqa: E402
from controller.policy.observe import build_snapshot  # noqa: E402
from timing import best_of  # noqa: E402

AGGREGATION, ACCESS, CONGESTED = 10, 100, 10
CAPACITY = 1e9


def mac(n: int) -> str:
    return ":".join(f"{b:02x}" for b in n.to_bytes(6, "big"))


def world(customers: int, per_customer: int):
    graph = nx.DiGraph()
    core = 1
    aggs = list(range(2, 2 + AGGREGATION))
    accesses = list(range(100, 100 + ACCESS))
    port = {}

    def link(a, b):
        port[a] = port.get(a, 0) + 1
        graph.add_edge(a, b, port=port[a])
    for agg in aggs:
        link(core, agg)
        link(agg, core)
    for i, acc in enumerate(accesses):
        for agg in (aggs[i % AGGREGATION], aggs[(i + 1) % AGGREGATION]):
            link(agg, acc)
            link(acc, agg)
    servers = [HostInfo(mac(0xF000 + s), core, 100 + s, (f"10.255.0.{s}",))
               for s in range(per_customer)]
    hosts = list(servers)
    contracts, owner = {}, {}
    for c in range(customers):
        klass = ("gold", "silver", "bronze", "bronze", "silver", "bronze", "gold", "bronze",
                 "silver", "bronze")[(c // ACCESS) % 10]
        acc = accesses[c % ACCESS]
        device = HostInfo(mac(c + 1), acc, 100 + c // ACCESS, (f"10.{c >> 16}.{(c >> 8) & 255}."
                                                              f"{c & 255}",))
        hosts.append(device)
        name = f"c{c}"
        contracts[name] = Contract(name, klass, 50_000_000, 2_000_000, (klass,), acc,
                                   0x10000 + c, (device.mac,))
        owner[device.mac] = name
    paths = nx.single_source_shortest_path(graph, core)
    loads, flows = {}, {}
    congested = {accesses[i * (ACCESS // CONGESTED)] for i in range(CONGESTED)}
    offered: dict[tuple[int, int], float] = {}
    for device in hosts[per_customer:]:
        customer = owner[device.mac]
        bronze = contracts[customer].service_class == "bronze"
        hot = device.dpid in congested and bronze
        for server in servers:
            rate = 20e6 if hot else 50e3
            path = paths[device.dpid]
            for a, b in zip(path, path[1:]):
                key = (a, graph[a][b]["port"])
                offered[key] = offered.get(key, 0.0) + rate
            entry = FlowEntry.make(FORWARDING_TABLE, 1000,
                                   {"eth_src": server.mac, "eth_dst": device.mac},
                                   (("output", 1),),
                                   cookie_for(Component.FORWARDING, server.mac + device.mac))
            for dpid in path:
                flows.setdefault(dpid, []).append(FlowView(dpid, entry, 0, 0, 1.0, rate / 8))
    for a, b, data in graph.edges(data=True):
        key = (a, data["port"])
        loads[key] = PortLoad(min(CAPACITY, offered.get(key, 0.0)), CAPACITY)
    facts = NetworkFacts(graph, {h.ipv4[0]: h.dpid for h in hosts}, loads)
    degraded, scores, findings = [], {}, []
    for acc in sorted(congested):
        agg = paths[acc][-2]
        element = link_name(agg, graph[agg][acc]["port"], acc)
        sick = [owner[h.mac] for h in hosts[per_customer:] if h.dpid == acc
                and contracts[owner[h.mac]].service_class == "gold"]
        degraded += [Degradation(c, "voice", "gold", 0.0, 3.0, 4.03) for c in sick]
        scores.update({(c, "voice"): 3.0 for c in sick})
        findings.append(Finding(element, 1.0, (), tuple(sick), ("voice",), 0.0, {}))
    services = {(servers[0].ipv4[0], h.ipv4[0]): "voice" for h in hosts[per_customer:]}
    return (facts, hosts, {d: tuple(v) for d, v in flows.items()}, contracts, owner, services,
            degraded, scores, findings)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--pairs-per-customer", type=int, default=10)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    facts, hosts, flows, contracts, owner, services, degraded, scores, findings = world(
        args.customers, args.pairs_per_customer)
    print(f"world: {args.customers} customers, "
          f"{sum(len(v) for v in flows.values())} flow entries on {len(flows)} switches, "
          f"{len(degraded)} degraded services behind {len(findings)} congested links "
          f"(built in {time.perf_counter() - started:.1f} s)")

    scope = [f.element for f in findings]

    def snapshot(scoped=True):
        return build_snapshot(1000.0, facts, hosts, flows, contracts, owner, services,
                              degraded, scores, findings, scope=scope if scoped else None)
    snap = snapshot()
    config = PolicyConfig(max_customers_per_evaluation=100, max_changes_per_minute=100)
    result = decide(snap, PolicyMemory(), config)

    def baseline():
        load: dict[str, float] = {}
        for pair in snap.pairs:
            for name in pair.elements:
                load[name] = load.get(name, 0.0) + pair.rate_bps
        return load
    t_snapshot = best_of(snapshot)
    t_full = best_of(lambda: snapshot(False))
    full = snapshot(False)
    full_result = decide(full, PolicyMemory(), config)
    assert [d.reason for d in full_result.decisions] == [d.reason for d in result.decisions], \
        "the scoped snapshot must decide what the full one does"
    t_decide = best_of(lambda: decide(snap, PolicyMemory(), config))
    t_base = best_of(baseline)
    acts = [d for d in result.decisions if d.kind == "act"]
    print(f"elements: {len(snap.elements)}; "
          f"decisions: {len(result.decisions)} ({len(acts)} actions: "
          f"{', '.join(sorted({a.intent_kind for a in acts}))})")
    print(f"build_snapshot, scoped to the suspects: {t_snapshot * 1000:.1f} ms "
          f"({len(snap.pairs)} pairs); unscoped: {t_full * 1000:.1f} ms ({len(full.pairs)} "
          f"pairs), {t_full / t_snapshot:.1f}x; both decide the same")
    print(f"decide:         {t_decide * 1000:.1f} ms")
    print(f"baseline (one pass over the pairs): {t_base * 1000:.1f} ms; decide is "
          f"{t_decide / t_base:.1f}x the baseline")
    total = t_snapshot + t_decide
    print(f"one full evaluation: {total * 1000:.1f} ms (aim 100 ms: "
          f"{'met' if total < 0.1 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
