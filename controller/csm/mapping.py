"""The mapping function, towards the network: SLSs -> desired flows and meters (core).

For every customer device (host MAC) at its access switch, table 0 gets:
- IPv4 from the device: meter (the customer's SLS rate), DSCP of the class (Gold EF 46,
  Silver AF41 34, Bronze 0), the class's queue (set_queue), on to forwarding;
- anything else from the device: the same meter and queue, on to forwarding.
ARP and LLDP keep their higher-priority control flows. One meter per customer, on its
access switch, shared by all its devices: the SLS rate is the customer's, not a device's.
A customer's meter id is customer_meter_id(its index in the store), so it stays the same
across restarts; meters below METER_BASE are someone else's and left alone.

CustomerMapping is the desired-state contributor of component CSM
(controller.openflow.desired): it is kept up to date one customer at a time, from the
CustomerState each change event carries.
"""

import collections
from typing import Iterable

from controller.csm.model import DSCP, QUEUE, CustomerState, Sls
from controller.openflow.desired import Contribution
from controller.openflow.pipeline import (CLASSIFY_TABLE, ETH_TYPE_IP, FORWARDING_TABLE,
                                          METER_BASE, PRIORITY, Component, FlowEntry, MeterSpec,
                                          cookie_for)
from controller.openflow.reconcile import SwitchView

BURST_S = 0.1  # meter burst: 100 ms at the rate


def customer_meter_id(index: int) -> int:
    """The meter of the customer with this store index (1, 2, ...): the one place it is made."""
    return METER_BASE + index


def meter_at(meter_id: int, rate_bps: int) -> MeterSpec:
    """A drop meter at rate_bps with a burst of BURST_S at that rate (at least 16 kbit):
    every cems meter is made here, a customer's and the policy engine's."""
    rate_kbps = max(1, rate_bps // 1000)
    return MeterSpec(meter_id, rate_kbps, max(16, int(rate_kbps * BURST_S)))


def meter_for(sls: Sls, meter_id: int) -> MeterSpec:
    return meter_at(meter_id, sls.rate_bps)


def compute_customer_state(customers: list[CustomerState], dpids: set[int]
                           ) -> tuple[dict[int, set[FlowEntry]], dict[int, dict[int, MeterSpec]]]:
    """Customers -> (flows per switch, meters per switch), for the switches in `dpids`."""
    flows: dict[int, set[FlowEntry]] = {dpid: set() for dpid in dpids}
    meters: dict[int, dict[int, MeterSpec]] = {dpid: {} for dpid in dpids}
    for state in customers:
        dpid = state.customer.access_dpid
        if dpid not in dpids or not state.customer.hosts:
            continue
        meters[dpid][state.meter_id] = meter_for(state.sls, state.meter_id)
        dscp = DSCP[state.sls.service_class]
        queue = QUEUE[state.sls.service_class]
        for mac in state.customer.hosts:
            key = f"{state.customer.customer_id}:{mac}"
            to_forwarding = (("meter", state.meter_id), ("goto_table", FORWARDING_TABLE))
            flows[dpid].add(FlowEntry.make(
                CLASSIFY_TABLE, PRIORITY["customer_ip"],
                {"eth_type": ETH_TYPE_IP, "eth_src": mac},
                (("set_field", "ip_dscp", dscp), ("set_queue", queue)),
                cookie_for(Component.CSM, key + ":ip"), to_forwarding))
            flows[dpid].add(FlowEntry.make(
                CLASSIFY_TABLE, PRIORITY["customer_other"], {"eth_src": mac},
                (("set_queue", queue),), cookie_for(Component.CSM, key), to_forwarding))
    return flows, meters


class CustomerMapping:
    """Each customer's flows and meter, kept per access switch and updated one customer at a
    time, so that an SLS change costs the work of that customer, not of all of them."""

    component = Component.CSM

    def __init__(self):
        self._parts: dict[str, tuple[int, frozenset[FlowEntry], dict[int, MeterSpec]]] = {}
        self._sls: dict[str, Sls] = {}
        self._host_meters: dict[str, tuple[int, int]] = {}   # device MAC -> (switch, meter)
        self.meters_version = 0   # grows when a device's meter changes (new, moved, gone)
        self._hosts: dict[str, tuple[str, ...]] = {}
        self._by_switch: dict[int, set[str]] = collections.defaultdict(set)
        self._cache: dict[int, tuple[frozenset[FlowEntry], dict[int, MeterSpec]]] = {}

    def __len__(self) -> int:
        return len(self._parts)

    def replace_all(self, states: Iterable[CustomerState]) -> None:
        self._parts.clear()
        self._sls.clear()
        self._hosts.clear()
        self._host_meters.clear()
        self.meters_version += 1
        self._by_switch.clear()
        self._cache.clear()
        for state in states:
            self.update(state.customer.customer_id, state)

    def update(self, customer_id: str, state: CustomerState | None) -> None:
        """A customer changed (its new state) or was deleted (None)."""
        old = self._parts.pop(customer_id, None)
        self._sls.pop(customer_id, None)
        before = {mac.lower(): self._host_meters.pop(mac.lower())
                  for mac in self._hosts.pop(customer_id, ()) if mac.lower() in self._host_meters}
        if old is not None:
            self._by_switch[old[0]].discard(customer_id)
            self._cache.pop(old[0], None)
        if state is None:
            self.meters_version += bool(before)
            return
        dpid = state.customer.access_dpid
        flows, meters = compute_customer_state([state], {dpid})
        self._parts[customer_id] = (dpid, frozenset(flows[dpid]), meters[dpid])
        self._sls[customer_id] = state.sls
        self._hosts[customer_id] = state.customer.hosts
        after = {mac.lower(): (dpid, state.meter_id) for mac in state.customer.hosts} \
            if meters[dpid] else {}
        self._host_meters.update(after)
        self.meters_version += before != after
        self._by_switch[dpid].add(customer_id)
        self._cache.pop(dpid, None)

    def meter_of_host(self, mac: str, dpid: int) -> int | None:
        """The meter of the customer whose device `mac` is, when it is on switch `dpid`
        (the customer's access switch); None otherwise."""
        found = self._host_meters.get(mac.lower())
        return found[1] if found is not None and found[0] == dpid else None

    def hosts_of(self, customer_id: str) -> tuple[str, ...]:
        """MACs of a customer's devices (empty if unknown)."""
        return self._hosts.get(customer_id, ())

    def all_hosts(self) -> frozenset[str]:
        """MACs of every customer's devices."""
        return frozenset(mac for hosts in self._hosts.values() for mac in hosts)

    def sls(self, customer_id: str) -> Sls | None:
        return self._sls.get(customer_id)

    def committed_by_class(self) -> dict:
        """Sum of the customers' current SLS rates per class (bit/s)."""
        totals: dict = {}
        for sls in self._sls.values():
            totals[sls.service_class] = totals.get(sls.service_class, 0) + sls.rate_bps
        return totals

    def for_switch(self, dpid: int) -> tuple[frozenset[FlowEntry], dict[int, MeterSpec]]:
        """All customers' flows and meters on one switch."""
        if dpid not in self._cache:
            flows: set[FlowEntry] = set()
            meters: dict[int, MeterSpec] = {}
            for customer_id in self._by_switch.get(dpid, ()):
                _, part_flows, part_meters = self._parts[customer_id]
                flows |= part_flows
                meters.update(part_meters)
            self._cache[dpid] = (frozenset(flows), meters)
        return self._cache[dpid]

    def contribute(self, view: SwitchView, earlier=None) -> Contribution:
        """Desired state: every customer's flows and meter on its settled access switch."""
        parts = {dpid: self.for_switch(dpid) for dpid in view.settled}
        return Contribution({dpid: flows for dpid, (flows, _) in parts.items() if flows},
                            {dpid: meters for dpid, (_, meters) in parts.items() if meters})
