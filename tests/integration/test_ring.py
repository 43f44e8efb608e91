"""Failover on the ring: a ping stream survives a link going down."""

import re

from cems.v1 import status_pb2 as pb

from lab.emulation import wait_for
from mininet_topos import RingTopo

from tests.integration.conftest import running_network


def test_ping_stream_survives_a_link_going_down(controller):
    with running_network(RingTopo(n=4), controller) as net:
        h1, h2 = net.get("h1", "h2")
        assert net.ping([h1, h2], timeout=1) == 0.0
        # The shortest path h1 -> h2 is the direct s1-s2 link; the other way round is 3 hops.
        ping = h1.popen(["ping", "-n", "-i", "0.05", "-c", "160", "-W", "1", h2.IP()])
        wait_for(lambda: _forwarded_packets(controller, h1, h2) > 20, 10, "ping stream flowing")
        net.configLinkStatus("s1", "s2", "down")
        wait_for(lambda: controller.status().links == 6, 10, "the controller to drop the link")
        out, _ = ping.communicate(timeout=60)
        out = out.decode()
        received = [int(m) for m in re.findall(r"icmp_seq=(\d+)", out)]
        assert received, out
        # After reconvergence every echo is answered: the last 60 of 160 all came back.
        assert set(range(101, 161)) <= set(received), out
        lost = 160 - len(set(received))
        assert lost < 40, out  # 0.05 s apart: under 2 s of outage
        topo = controller.stub().GetTopology(pb.GetTopologyRequest())
        assert all({l.src_dpid, l.dst_dpid} != {1, 2} for l in topo.links)


def _forwarded_packets(controller, h1, h2) -> int:
    flows = controller.stub().ListFlows(pb.ListFlowsRequest(dpid=2)).flows
    match = f"eth_dst={h2.MAC()},eth_src={h1.MAC()}"
    return sum(f.packet_count for f in flows if f.match == match)
