"""The same app on Ryu 4.34 through the launcher: forwarding and gRPC work as on os-ken."""

import pytest
from cems.v1 import status_pb2 as pb

from lab.emulation import ryu_unavailable_reason, wait_for
from mininet_topos import RingTopo

from tests.integration.conftest import running_network

REASON = ryu_unavailable_reason()


@pytest.mark.skipif(bool(REASON), reason=REASON or "Ryu available")
def test_ring_on_ryu(make_controller):
    controller = make_controller(runtime="ryu")
    assert controller.status().openflow_runtime == "ryu"
    with running_network(RingTopo(n=3), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0

        def rates_known():
            flows = controller.stub().ListFlows(pb.ListFlowsRequest(component="forwarding")).flows
            pairs = [f for f in flows if "eth_type=2054" not in f.match]   # not the ARP ones
            return len(pairs) == 6 * 2 and all(f.rate_known for f in flows)
        # every ordered pair of 3 hosts crosses at most 2 switches on a 3-ring: 6 pairs
        wait_for(rates_known, 15, "rates of the 6 host pairs' flows")
