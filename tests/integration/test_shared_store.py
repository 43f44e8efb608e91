"""The PostgreSQL store end to end: a controller whose store is a PostgreSQL server (started
by the test, on 127.0.0.1) applies an SLS change to the switch; killed with SIGKILL, it is
replaced by a new controller process with an empty work directory of its own and the same
store.url, which puts back exactly the same meters and customer flows, and knows the
customer, its SLS and its token."""

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from lab.emulation import wait_for
from lab.servers import postgres
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network
from tests.integration.feeds import create_customers
from tests.integration.test_customer_service import meters_and_customer_flows, ofctl

M = 1_000_000


def change_sls(controller, token: str, rate_bps: int) -> None:
    """The customer whose token it is asks `controller` for gold at `rate_bps`."""
    with controller.channel() as channel:
        pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
            service_class=pb.SERVICE_CLASS_GOLD, rate_bps=rate_bps),
            metadata=(("authorization", f"Bearer {token}"),))


def test_a_new_instance_on_the_same_postgresql_store_puts_back_every_sls(make_controller,
                                                                         tmp_path):
    with postgres() as url:
        first = make_controller(store_url=url)
        with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), first, 64) as net:
            assert net.pingAll(timeout=1) == 0.0
            l1, l2, s1 = net.get("l1", "l2", "s1")
            tokens = create_customers(first, s1, {"alice": l1, "bob": l2})
            change_sls(first, tokens["alice"], 8 * M)
            wait_for(lambda: "rate=8000" in ofctl("dump-meters", "s1"), 15,
                     "alice's 8 Mbit/s meter on s1")
            before = meters_and_customer_flows("s1")
            assert len(before[0]) == 2 and len(before[1]) == 4
            first.stop(kill=True)

            # another process, another directory: only the PostgreSQL store is shared
            second = make_controller(store_url=url, workdir=str(tmp_path / "second"),
                                     openflow_port=first.openflow_port)  # where switches are
            wait_for(lambda: second.status().switches_ready == 2, 30,
                     "the switches ready with the second controller")
            wait_for(lambda: meters_and_customer_flows("s1") == before, 30,
                     "the same meters and customer flows from the second controller")
            with second.channel() as channel:
                sls = pb_grpc.SlsServiceStub(channel).GetSls(
                    pb.GetSlsRequest(), metadata=(("authorization",
                                                   f"Bearer {tokens['alice']}"),)).sls
                customers = pb_grpc.SlaServiceStub(channel).ListCustomers(
                    pb.ListCustomersRequest()).customers
            assert (sls.service_class, sls.rate_bps) == (pb.SERVICE_CLASS_GOLD, 8 * M)
            assert sorted(c.customer_id for c in customers) == ["alice", "bob"]
            assert not (tmp_path / "second" / "cems.sqlite").exists()
            assert second.status().store == f"postgresql {url}"   # no password in this URL


def test_a_change_made_through_one_instance_is_applied_by_the_one_the_switches_use(
        make_controller, tmp_path):
    """Instance A has no switch (its configuration knows the access ports' capacities, so it
    can take the customer); the switches are connected to instance B. A customer created and
    its SLS changed through A's gRPC reach B through the store, and B puts the meter on s1."""
    with postgres() as url:
        capacities = ", ".join(f'"1:{port}" = 100000000' for port in (2, 3))
        # the front end's policy engine is off: only the instance with the switches may act
        # on them and keep the engine's memory in the shared store (README)
        front = make_controller(store_url=url, workdir=str(tmp_path / "a"),
                                extra_config=f"[csm]\nlink_capacity_bps = {{ {capacities} }}\n"
                                             '[policy]\nmode = "off"\n')
        switches = make_controller(store_url=url, workdir=str(tmp_path / "b"))
        with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), switches, 64) as net:
            assert net.pingAll(timeout=1) == 0.0
            l1, s1 = net.get("l1", "s1")
            tokens = create_customers(front, s1, {"alice": l1})
            wait_for(lambda: "rate=2000" in ofctl("dump-meters", "s1"), 15,
                     "alice's first meter, put on s1 by the instance the switch uses")
            change_sls(front, tokens["alice"], 6 * M)
            wait_for(lambda: "rate=6000" in ofctl("dump-meters", "s1"), 15,
                     "the 6 Mbit/s meter after the change made through the other instance")
            with switches.channel() as channel:
                sls = pb_grpc.SlsServiceStub(channel).GetSls(
                    pb.GetSlsRequest(customer_id="alice")).sls
            assert sls.rate_bps == 6 * M
            assert front.status().switches_connected == 0
