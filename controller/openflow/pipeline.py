"""The cems OpenFlow pipeline: tables, priority bands, cookies and desired flows (core).

A flow that cems installs is a FlowEntry: plain, hashable data with no datapath. Its cookie
says which part of cems wants it:

    bits 63..48  0xCE35, marks the flow as a cems flow (cookie mask COOKIE_BASE_MASK)
    bits 47..40  the Component
    bits 39..0   a stable id derived from what the flow is for (for example a host pair)

Because the id is derived, not allocated, a restarted controller computes the same cookies
and reconciliation finds nothing to change.

Meters are cems' from METER_BASE up (a customer's meter is METER_BASE + its index, see
controller.csm.mapping.customer_meter_id); meters below it belong to someone else.
"""

import dataclasses
import enum
import hashlib
from typing import Any, Iterable

COOKIE_BASE = 0xCE35 << 48
COOKIE_BASE_MASK = 0xFFFF << 48
_COMPONENT_SHIFT = 40
_ID_MASK = (1 << _COMPONENT_SHIFT) - 1


class Component(enum.IntEnum):
    """Which part of cems installed a flow (bits 47..40 of the cookie)."""

    CONTROL = 1      # table-miss, LLDP and ARP to the controller
    FORWARDING = 2   # shortest-path unicast per host pair
    POLICY = 3       # reserved for the policy engine (controller/policy)
    MIRROR = 4       # copies of chosen traffic to the probe port
    CSM = 5          # customers' meters, DSCP marks and queues


# Ethernet types and the "send the whole packet" length of an output to the controller
# (OFPCML_NO_BUFFER), so that cores build flows without the OpenFlow framework.
ETH_TYPE_IP = 0x0800
ETH_TYPE_ARP = 0x0806
ETH_TYPE_IPV6 = 0x86DD
ETH_TYPE_LLDP = 0x88CC
CONTROLLER_NO_BUFFER = 0xFFFF
METER_BASE = 0x10000


@dataclasses.dataclass(frozen=True)
class Table:
    """A flow table and the match fields flows in it may use."""

    table_id: int
    name: str
    match_fields: frozenset[str]


# Table 0 classifies: control traffic to the controller, customers' traffic metered and
# marked (customer service management); everything goes on to table 1, which forwards.
CLASSIFY_TABLE = 0
FORWARDING_TABLE = 1
TABLES = {
    CLASSIFY_TABLE: Table(CLASSIFY_TABLE, "classify",
                          frozenset({"in_port", "eth_type", "eth_src", "eth_dst", "arp_spa",
                                     "arp_sha"})),
    FORWARDING_TABLE: Table(FORWARDING_TABLE, "forwarding",
                            frozenset({"in_port", "eth_type", "eth_src", "eth_dst", "ip_proto",
                                       "tcp_src", "tcp_dst", "udp_src", "udp_dst"})),
}

PRIORITY = {
    "table_miss": 0,
    "forwarding": 1000,
    "mirror_pair": 1400,  # all of a host pair's traffic copied to the probe, above its pair flow
    "mirror": 1500,  # a host pair's service traffic copied to the probe, above its pair flow
    "policy_route": 1600,  # a host pair moved to another path by the policy engine
    "customer_other": 1900,
    "customer_ip": 2000,
    "policy_mark": 2100,  # a host pair metered or re-marked by the policy engine
    "arp_to_controller": 50000,
    "arp_forward": 55000,  # unicast ARP of a known host (its own binding), or from a link
    "lldp_to_controller": 60000,
}

# OpenFlow 1.3 executes instructions in this order whatever order they are listed in, and
# switches report them in it; desired entries use it too, so they compare equal.
_INSTRUCTION_ORDER = {"meter": 0, "apply_actions": 1, "clear_actions": 2, "write_actions": 3,
                      "write_metadata": 4, "goto_table": 5}


def cookie_for(component: Component, key: str) -> int:
    """Stable cookie for a flow of `component` identified by `key` (same key, same cookie)."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    flow_id = int.from_bytes(digest, "big") & _ID_MASK
    return COOKIE_BASE | (int(component) << _COMPONENT_SHIFT) | flow_id


def component_of(cookie: int) -> Component | None:
    """Component that owns a cookie, or None when it is not a cems cookie."""
    if cookie & COOKIE_BASE_MASK != COOKIE_BASE:
        return None
    try:
        return Component((cookie >> _COMPONENT_SHIFT) & 0xFF)
    except ValueError:
        return None


Match = tuple[tuple[str, Any], ...]
# Actions: ("output", port) | ("controller", max_len) | ("set_field", field, value)
#        | ("set_queue", queue_id)
Action = tuple
# Instructions: ("apply_actions", (Action, ...)) | ("meter", meter_id) | ("goto_table", table)
Instruction = tuple


@dataclasses.dataclass(frozen=True, order=True)
class FlowEntry:
    """A flow as cems wants it on a switch. Equal entries are the same flow on the device."""

    table_id: int
    priority: int
    match: Match
    instructions: tuple[Instruction, ...]
    cookie: int

    @staticmethod
    def make(table_id: int, priority: int, match: dict[str, Any],
             actions: Iterable[Action], cookie: int,
             instructions: Iterable[Instruction] = ()) -> "FlowEntry":
        """Build an entry with canonical match (sorted, lower-case strings, as flow stats
        report it), an apply-actions instruction for `actions` (if any) and the other
        `instructions` (meter, goto_table), in OpenFlow's execution order."""
        table = TABLES[table_id]
        unknown = set(match) - table.match_fields
        if unknown:
            raise ValueError(f"table {table.name} does not declare match fields {sorted(unknown)}")
        acts = tuple(actions)
        every = tuple(instructions) + ((("apply_actions", acts),) if acts else ())
        for instruction in every:
            if instruction[0] == "goto_table" and instruction[1] <= table_id:
                raise ValueError(f"table {table.name} may only go to a later table")
        instructions = tuple(sorted(every, key=lambda i: _INSTRUCTION_ORDER[i[0]]))
        canonical = tuple(sorted((k, v.lower() if isinstance(v, str) else v)
                                 for k, v in match.items()))
        return FlowEntry(table_id, priority, canonical, instructions, cookie)

    @property
    def component(self) -> Component | None:
        return component_of(self.cookie)


def diff_flows(desired: Iterable[FlowEntry], actual: Iterable[FlowEntry]
               ) -> tuple[list[FlowEntry], list[FlowEntry]]:
    """Desired and actual cems flows of one switch -> (to_add, to_delete), both sorted.

    Only flows with a cems cookie in `actual` are considered: anything else on the switch
    belongs to someone else and is left alone. A flow whose actions or cookie changed (same
    table, match and priority) is replaced by its add (OFPFC_ADD overwrites), so it is not
    also in to_delete.
    """
    want = set(desired)
    have = {entry for entry in actual if entry.component is not None}
    to_add = sorted(want - have)
    replaced = {(entry.table_id, entry.priority, entry.match) for entry in to_add}
    to_delete = sorted(entry for entry in have - want
                       if (entry.table_id, entry.priority, entry.match) not in replaced)
    return to_add, to_delete


def apply_diff(flows: Iterable[FlowEntry], to_add: Iterable[FlowEntry],
               to_delete: Iterable[FlowEntry]) -> set[FlowEntry]:
    """What a switch holds after the diff is applied: deletes go, and an add replaces any
    entry with its table, priority and match (OFPFC_ADD overwrites)."""
    added = set(to_add)
    replaced = {(e.table_id, e.priority, e.match) for e in added}
    gone = set(to_delete)
    return {e for e in flows
            if e not in gone and (e.table_id, e.priority, e.match) not in replaced} | added


@dataclasses.dataclass(frozen=True, order=True)
class MeterSpec:
    """A cems meter as it should be on a switch: one drop band at rate_kbps."""

    meter_id: int
    rate_kbps: int
    burst_kbits: int


def is_cems_meter(meter_id: int) -> bool:
    return meter_id >= METER_BASE


def meters_used(entry: FlowEntry) -> tuple[int, ...]:
    """The meter ids a flow's instructions send its packets through."""
    return tuple(i[1] for i in entry.instructions if i[0] == "meter")


def diff_meters(desired: dict[int, MeterSpec], actual: dict[int, MeterSpec], allow_delete: bool
                ) -> tuple[list[MeterSpec], list[MeterSpec], list[int]]:
    """(to_add, to_modify, to_delete) that make a switch's cems meters the desired ones."""
    to_add = [m for i, m in sorted(desired.items()) if i not in actual]
    to_modify = [m for i, m in sorted(desired.items()) if i in actual and actual[i] != m]
    to_delete = sorted(i for i in actual if i not in desired) if allow_delete else []
    return to_add, to_modify, to_delete
