"""What a principal may see of the network and the probes' records (core).

The domain manager sees everything. A customer (or peer domain) sees only what is its own:
its devices as hosts, the flows from or to them, its access port, its meter, the records of
its traffic, and the events about those. Switches and links are the operator's and are not
shown to customers. Every read of StatusService and ListKpis goes through a Scope.
"""

import dataclasses

from controller.csm.model import Principal, Role
from controller.events import (ExperienceChanged, FlowRates, HostLearned, KpiRecords,
                               PortChanged, ZoomChanged)
from controller.network.topology import SwitchPort, TopologySnapshot


@dataclasses.dataclass(frozen=True)
class Scope:
    customer_id: str | None = None  # None: everything
    macs: frozenset[str] = frozenset()
    access: SwitchPort | None = None
    meter_id: int | None = None

    @property
    def everything(self) -> bool:
        return self.customer_id is None

    def host(self, host) -> bool:
        return self.everything or host.mac in self.macs

    def flow(self, view) -> bool:
        if self.everything:
            return True
        match = dict(view.entry.match)
        return match.get("eth_src") in self.macs or match.get("eth_dst") in self.macs

    def port(self, dpid: int, port_no: int) -> bool:
        return self.everything or (dpid, port_no) == self.access

    def meter(self, dpid: int, meter_id: int) -> bool:
        return self.everything or (self.access is not None and dpid == self.access.dpid
                                   and meter_id == self.meter_id)

    def record(self, record) -> bool:
        return self.everything or record.customer_id == self.customer_id

    def topology(self, snapshot: TopologySnapshot) -> TopologySnapshot:
        if self.everything:
            return snapshot
        return TopologySnapshot((), (), tuple(h for h in snapshot.hosts if self.host(h)))

    def event(self, item):
        """The event as this principal may see it, or None."""
        if self.everything:
            return item
        if isinstance(item, HostLearned):
            return item if self.host(item.host) else None
        if isinstance(item, PortChanged):
            return item if self.port(item.dpid, item.port.port_no) else None
        if isinstance(item, FlowRates):
            flows = tuple(f for f in item.flows if self.flow(f))
            return dataclasses.replace(item, flows=flows) if flows else None
        if isinstance(item, KpiRecords):
            records = tuple(r for r in item.records if self.record(r))
            return dataclasses.replace(item, records=records) if records else None
        if isinstance(item, ExperienceChanged):
            return item if item.change.customer_id == self.customer_id else None
        if isinstance(item, ZoomChanged):
            return item if item.event.zoom.customer_id == self.customer_id else None
        return None  # switches, links and findings are the operator's


NOTHING = Scope(customer_id="")  # a principal that may see nothing of the network


def scope_of(principal: Principal | None, state_of) -> Scope:
    """The scope of a principal; `state_of(customer_id)` gives a CustomerState or None."""
    if principal is not None and principal.role == Role.DOMAIN_MANAGER:
        return Scope()
    if principal is None or principal.role not in (Role.CUSTOMER, Role.PEER_DOMAIN):
        return NOTHING
    state = state_of(principal.customer_id)
    if state is None:
        return Scope(principal.customer_id)
    customer = state.customer
    return Scope(principal.customer_id, frozenset(customer.hosts),
                 SwitchPort(customer.access_dpid, customer.access_port), state.meter_id)
