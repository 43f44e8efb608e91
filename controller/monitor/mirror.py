"""What traffic is copied to the probe's port, and the flows that copy it (core).

A MirrorRule chooses traffic of one customer: all of it, one service of it, or a sample of
it. The copy is made on the probe's switch (where the probe hangs off a port), by flows of
component MIRROR above the host pair's forwarding flow, which output to the same port as
the pair's flow and then to the probe:

- all traffic: one flow per chosen host pair with the pair's match;
- one service: for each chosen host pair, flows that also match the service's well-known
  ports (qoe.classify.DEFAULT_PORTS, IPv4 and IPv6, either direction);
- a sample: a share of the customer's host pairs, chosen by a stable hash of the pair, so
  the same pairs stay mirrored across restarts and reroutes. OpenFlow 1.3 has no per-packet
  sampling action; sampling is per host pair (the flow the switch knows about).

In every case the original output comes first and is unchanged: mirroring never changes
where the original traffic goes, and the forwarding flows themselves are left as they are.
MirrorCopies is the desired-state contributor of component MIRROR
(controller.openflow.desired); it reads the forwarding flows the earlier contributor gave.
"""

import dataclasses
import zlib
from typing import Callable, Iterable

from controller.network.topology import SwitchPort
from controller.openflow.desired import Contribution, DesiredState
from controller.openflow.pipeline import FORWARDING_TABLE, PRIORITY, Component, FlowEntry, cookie_for
from controller.openflow.reconcile import SwitchView
from qoe.classify import DEFAULT_PORTS

_IP_PROTO = {"tcp": 6, "udp": 17}
SERVICES = tuple(sorted(set(DEFAULT_PORTS.values())))


@dataclasses.dataclass(frozen=True, order=True)
class MirrorRule:
    customer_id: str
    service: str = ""          # "" for all of the customer's traffic
    sample_percent: int = 100  # share of the customer's host pairs, 1..100
    origin: str = "api"        # "config" (from the config file) or "api" (set over gRPC)

    @property
    def key(self) -> tuple[str, str]:
        return (self.customer_id, self.service)

    def describe(self) -> str:
        what = f"{self.service} traffic" if self.service else "all traffic"
        sample = f", {self.sample_percent}% of its host pairs" if self.sample_percent < 100 else ""
        return f"{what} of customer {self.customer_id}{sample}"


def check_rule(rule: MirrorRule) -> str:
    """'' if the rule can be compiled, else what is wrong with it."""
    if not rule.customer_id:
        return "customer_id is required"
    if len(rule.customer_id) > 64:
        return f"customer_id {rule.customer_id[:40]!r}... is longer than 64 characters"
    if rule.service and rule.service not in SERVICES:
        return f"service {rule.service!r} is not one of {', '.join(SERVICES)} (or empty for all)"
    if not 1 <= rule.sample_percent <= 100:
        return f"sample_percent must be 1..100, got {rule.sample_percent}"
    return ""


def parse_rule(text: str, origin: str = "config") -> MirrorRule:
    """'CUSTOMER[:SERVICE[:PERCENT]]' (SERVICE '*' or empty for all) -> MirrorRule.

    Raises ValueError naming the problem."""
    customer, _, rest = text.partition(":")
    service, _, percent = rest.partition(":")
    service = "" if service == "*" else service
    if percent and not percent.isdigit():
        raise ValueError(f"{text!r}: the sample percentage {percent!r} is not a whole number")
    rule = MirrorRule(customer, service, int(percent) if percent else 100, origin)
    problem = check_rule(rule)
    if problem:
        raise ValueError(f"{text!r}: {problem}")
    return rule


def sampled(src_mac: str, dst_mac: str, percent: int) -> bool:
    """Whether the host pair falls in a `percent` sample; stable across runs and machines."""
    if percent >= 100:
        return True
    return zlib.crc32(f"{src_mac}>{dst_mac}".encode()) % 100 < percent


def service_matches(service: str) -> list[dict]:
    """The match fields (beyond the host pair) that pick out `service` by its ports."""
    out = []
    for (transport, port), name in sorted(DEFAULT_PORTS.items()):
        if name != service:
            continue
        for eth_type in (0x0800, 0x86DD):
            for side in ("src", "dst"):
                out.append({"eth_type": eth_type, "ip_proto": _IP_PROTO[transport],
                            f"{transport}_{side}": port})
    return out


@dataclasses.dataclass(frozen=True)
class ChosenTraffic:
    """A rule with the MAC addresses of its customer's devices."""

    rule: MirrorRule
    macs: frozenset[str]


@dataclasses.dataclass(frozen=True)
class MirrorPlan:
    """What is copied where: the probe's port and the chosen traffic."""

    probe: SwitchPort
    chosen: tuple[ChosenTraffic, ...]


def plan_mirror(probe: SwitchPort | None, rules: Iterable[MirrorRule],
                hosts_of: Callable[[str], Iterable[str]], baseline_percent: int = 0,
                all_hosts: Iterable[str] = ()) -> MirrorPlan | None:
    """The plan for the rules in force, given each customer's device MACs, and a baseline
    sample of every customer's host pairs (`baseline_percent`, 0: none); None when there is
    no probe or nothing to mirror."""
    if probe is None:
        return None
    chosen = tuple(ChosenTraffic(rule, frozenset(hosts_of(rule.customer_id))) for rule in rules)
    if baseline_percent:
        chosen += (ChosenTraffic(MirrorRule("*", "", baseline_percent, "baseline"),
                                 frozenset(all_hosts)),)
    chosen = tuple(c for c in chosen if c.macs)
    return MirrorPlan(probe, chosen) if chosen else None


def _with_probe(entry: FlowEntry, probe_port: int) -> tuple:
    actions = entry.instructions[0][1] if entry.instructions else ()
    return actions + (("output", probe_port),)


def mirror_flows(flows: Iterable[FlowEntry], probe_port: int,
                 chosen: Iterable[ChosenTraffic]) -> set[FlowEntry]:
    """Forwarding flows of the probe's switch -> the MIRROR flows that copy the traffic the
    rules choose to the probe port, above the pair flows they copy.

    A pair whose flow already goes to the probe port (traffic for the probe host itself) is
    left alone. When a pair is chosen both whole and for a service, the whole copy wins (a
    service flow would only copy the same packets twice)."""
    chosen = tuple(chosen)
    out = set()
    for entry in flows:
        if entry.component != Component.FORWARDING:
            continue
        match = dict(entry.match)
        src, dst = match.get("eth_src"), match.get("eth_dst")
        actions = entry.instructions[0][1] if entry.instructions else ()
        if src is None or dst is None or ("output", probe_port) in actions:
            continue
        rules = [c.rule for c in chosen
                 if (src in c.macs or dst in c.macs) and sampled(src, dst, c.rule.sample_percent)]
        if not rules:
            continue
        if any(not rule.service for rule in rules):
            out.add(FlowEntry.make(FORWARDING_TABLE, PRIORITY["mirror_pair"], match,
                                   _with_probe(entry, probe_port),
                                   cookie_for(Component.MIRROR, f"{src}>{dst}")))
            continue
        for service in sorted({rule.service for rule in rules}):
            cookie = cookie_for(Component.MIRROR, f"{src}>{dst}:{service}")
            for extra in service_matches(service):
                out.add(FlowEntry.make(FORWARDING_TABLE, PRIORITY["mirror"],
                                       {**match, **extra}, _with_probe(entry, probe_port),
                                       cookie))
    return out


class MirrorCopies:
    """Contributor: the plan's copies on the probe's switch, once it has settled."""

    component = Component.MIRROR

    def __init__(self, plan: MirrorPlan | None = None):
        self.plan = plan
        self._cached: tuple[tuple, Contribution] = ((), Contribution())

    def contribute(self, view: SwitchView, earlier: DesiredState) -> Contribution:
        plan = self.plan
        if plan is None or plan.probe.dpid not in view.settled:
            return Contribution()
        forwarding = earlier.part(Component.FORWARDING).flows.get(plan.probe.dpid, frozenset())
        key = (plan, forwarding)
        if self._cached[0] != key:
            flows = frozenset(mirror_flows(forwarding, plan.probe.port_no, plan.chosen))
            self._cached = (key, Contribution({plan.probe.dpid: flows} if flows else {}))
        return self._cached[1]
