"""What traffic is copied to the probe's port, and the flows that copy it (core).

A MirrorRule chooses traffic of one customer: all of it, one service of it, or a sample of
it. The copy is made on the probe's switch (where the probe hangs off a port):

- all traffic: the customer's host-pair flows on that switch get a second output to the
  probe port (`add_mirror`);
- one service: for each such host pair, extra flows at a higher priority match the
  service's well-known ports (qoe.classify.DEFAULT_PORTS, IPv4 and IPv6, either direction)
  and output to the same port as the pair's flow, then to the probe;
- a sample: a share of the customer's host pairs, chosen by a stable hash of the pair, so
  the same pairs stay mirrored across restarts and reroutes. OpenFlow 1.3 has no per-packet
  sampling action; sampling is per host pair (the flow the switch knows about).

In every case the original output comes first and is unchanged: mirroring never changes
where the original traffic goes.
"""

import dataclasses
import zlib

from controller.openflow.pipeline import FORWARDING_TABLE, PRIORITY, Component, FlowEntry, cookie_for
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


def _with_probe(entry: FlowEntry, probe_port: int) -> tuple:
    actions = entry.instructions[0][1] if entry.instructions else ()
    return actions + (("output", probe_port),)


def mirror_flows(flows: set[FlowEntry], probe_port: int,
                 rules: tuple[tuple[MirrorRule, frozenset[str]], ...]) -> set[FlowEntry]:
    """Forwarding flows of the probe's switch -> the same with copies to the probe port for
    the traffic the rules choose; `rules` pairs each rule with its customer's MACs.

    A flow that already goes to the probe port (traffic for the probe host itself) is left
    as it is. When a pair is chosen both whole and for a service, the whole copy wins (a
    service flow would only copy the same packets twice)."""
    out = set()
    for entry in flows:
        match = dict(entry.match)
        src, dst = match.get("eth_src"), match.get("eth_dst")
        actions = entry.instructions[0][1] if entry.instructions else ()
        chosen = [rule for rule, macs in rules
                  if (src in macs or dst in macs) and sampled(src, dst, rule.sample_percent)]
        if not chosen or src is None or dst is None or ("output", probe_port) in actions:
            out.add(entry)
            continue
        if any(not rule.service for rule in chosen):
            out.add(dataclasses.replace(
                entry, instructions=(("apply_actions", _with_probe(entry, probe_port)),)))
            continue
        out.add(entry)
        for service in sorted({rule.service for rule in chosen}):
            cookie = cookie_for(Component.MIRROR, f"{src}>{dst}:{service}")
            for extra in service_matches(service):
                out.add(FlowEntry.make(FORWARDING_TABLE, PRIORITY["mirror"],
                                       {**match, **extra}, _with_probe(entry, probe_port),
                                       cookie))
    return out


def add_mirror(flows: set[FlowEntry], probe_port: int, macs: frozenset[str]) -> set[FlowEntry]:
    """All traffic from or to `macs` copied to the probe port (one whole-traffic rule)."""
    return mirror_flows(flows, probe_port, ((MirrorRule("*"), macs),))
