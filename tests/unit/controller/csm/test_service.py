"""The customer-service core without gRPC: the gate, the rules it applies, and the change
events that carry the customer's new state to the mapping."""

import pytest

from controller.csm.mapping import customer_meter_id
from controller.csm.model import ClassBounds, Customer, Principal, Role, ServiceClass, Sla, Sls
from controller.csm.rules import Refused, sls_within_sla
from controller.csm.service import CustomerService, Gate
from controller.csm.store import CsmStore
from controller.store import Store

from tests.unit.controller.fakes import build_topology

M = 1_000_000
MANAGER = Principal(Role.DOMAIN_MANAGER, "", "t0")


@pytest.fixture
def service(store_where):
    csm = CsmStore(Store(store_where))
    snapshot = build_topology({5: 4}, []).snapshot()
    changes = []
    yield CustomerService(csm, lambda: snapshot, capacities={(5, 3): 20 * M},
                          on_change=changes.append, clock=lambda: 1000.0), csm, changes
    csm.store.close()


def sla(customer_id="alice", gold=(2 * M, 8 * M)):
    return Sla(customer_id, "gsb-business", {ServiceClass.GOLD: ClassBounds(*gold),
                                             ServiceClass.SILVER: ClassBounds(2 * M, 10 * M)},
               min_change_interval_s=0)


def test_changes_carry_the_new_customer_state_with_its_meter(service):
    customers, _, changes = service
    state = customers.create_customer(Customer("alice", "Alice", access_dpid=5, access_port=3,
                                               hosts=("00:00:00:00:00:01",)), sla())
    assert state.meter_id == customer_meter_id(1) and state.sls.rate_bps == 2 * M
    customers.change_sls("alice", ServiceClass.GOLD, 8 * M)
    customers.update_sla(sla(gold=(2 * M, 4 * M)))  # the SLS is moved into the new bounds
    customers.delete_customer("alice")
    assert [(c.customer_id, c.state and c.state.sls.rate_bps) for c in changes] == [
        ("alice", 2 * M), ("alice", 8 * M), ("alice", 4 * M), ("alice", None)]
    assert changes[1].state.customer.hosts == ("00:00:00:00:00:01",)
    assert changes[1].state.meter_id == customer_meter_id(1)


def test_an_unknown_access_port_is_refused_before_anything_is_stored(service):
    customers, csm, changes = service
    with pytest.raises(Refused, match="not known to the controller"):
        customers.create_customer(Customer("bob", "Bob", access_dpid=5, access_port=9), sla("bob"))
    assert csm.count_customers() == 0 and changes == []


def test_the_gate_audits_every_outcome_and_defaults_to_the_callers_own_customer(service):
    customers, csm, _ = service
    gate = Gate(csm)
    customers.create_customer(Customer("alice", "Alice", access_dpid=5, access_port=3), sla())
    alice = Principal(Role.CUSTOMER, "alice", "t1")
    assert gate.run(alice, "read_sls", "", customers.sls, own=True).customer_id == "alice"
    with pytest.raises(Refused) as refused:
        gate.run(alice, "read_sls", "bob", customers.sls, own=True)
    assert refused.value.code == "PERMISSION_DENIED"
    with pytest.raises(Refused, match="customer_id is required"):
        gate.run(MANAGER, "read_sls", "", customers.sls, own=True)
    outcomes = [(row[2], row[4]) for row in csm.audit_log()]
    assert outcomes[:3] == [("read_sls", "refused:INVALID_ARGUMENT"),
                            ("read_sls", "refused:PERMISSION_DENIED"), ("read_sls", "ok")]


@pytest.mark.parametrize("current, expected", [
    (Sls("a", ServiceClass.GOLD, 6 * M, 0), None),                       # still fits
    (Sls("a", ServiceClass.GOLD, 9 * M, 0), (ServiceClass.GOLD, 8 * M)),  # clamped down
    (Sls("a", ServiceClass.GOLD, 1 * M, 0), (ServiceClass.GOLD, 2 * M)),  # clamped up
    (Sls("a", ServiceClass.BRONZE, 1 * M, 0), (ServiceClass.SILVER, 2 * M)),  # class gone
    (None, (ServiceClass.SILVER, 2 * M)),                                  # no SLS yet
])
def test_an_sla_change_moves_the_sls_into_its_bounds(current, expected):
    moved = sls_within_sla(sla("a"), current, 50.0)
    if expected is None:
        assert moved is None
    else:
        assert (moved.service_class, moved.rate_bps, moved.changed_unix_s, moved.source) == \
            (*expected, 50.0, "system")
