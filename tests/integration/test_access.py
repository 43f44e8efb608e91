"""The access topology on real OVS and Mininet: reachability, gRPC topology, TCP, flow rates."""

import json
import time

import grpc
import pytest
from cems.v1 import status_pb2 as pb

from lab.emulation import wait_for
from mininet_topos import AccessTopo

from tests.integration.conftest import running_network


@pytest.fixture
def access(controller):
    with running_network(AccessTopo(), controller) as net:
        yield net


def mininet_links(net) -> set[tuple]:
    """Directed (dpid, port, dpid, port) of every switch-to-switch link in Mininet."""
    links = set()
    for link in net.links:
        a, b = link.intf1, link.intf2
        if a.node in net.switches and b.node in net.switches:
            pa, pb_ = a.node.ports[a], b.node.ports[b]
            da, db = int(a.node.dpid, 16), int(b.node.dpid, 16)
            links |= {(da, pa, db, pb_), (db, pb_, da, pa)}
    return links


def test_access_network_forwards_and_grpc_topology_matches(controller, access):
    net = access
    net.pingAll(timeout=1)  # first round: hosts are learned from their ARP
    loss = net.pingAll(timeout=1)
    assert loss == 0.0
    # The topology has loops: a broadcast storm would show as packet-ins by the million.
    # LLDP (16 links a second), ARP and first packets of 240 pairs stay in the low thousands.
    assert controller.status().packet_in_total < 5000

    topo = controller.stub().GetTopology(pb.GetTopologyRequest())
    assert sorted(s.dpid for s in topo.switches) == sorted(int(s.dpid, 16) for s in net.switches)
    assert all(s.connected for s in topo.switches)
    got_links = {(l.src_dpid, l.src_port, l.dst_dpid, l.dst_port) for l in topo.links}
    assert got_links == mininet_links(net)
    expected_hosts = {}
    for host in net.hosts:
        intf = host.defaultIntf()
        link = intf.link
        other = link.intf2 if link.intf1 is intf else link.intf1
        expected_hosts[host.MAC()] = (host.IP(), int(other.node.dpid, 16), other.node.ports[other])
    got_hosts = {h.mac: (list(h.ipv4)[0] if h.ipv4 else "", h.dpid, h.port_no) for h in topo.hosts}
    assert got_hosts == expected_hosts
    # Every switch port in Mininet is known, with its speed.
    for switch in topo.switches:
        assert all(p.curr_speed_kbps > 0 for p in switch.ports if p.up)


def test_tcp_between_two_customers(access):
    client, server = access.get("c1pc"), access.get("c4pc")
    server_proc = server.popen(["iperf3", "-s", "-1", "-p", "5201"])
    try:
        wait_for(lambda: "5201" in server.cmd("ss -ltn"), 10, "iperf3 server listening")
        out = client.cmd(f"iperf3 -c {server.IP()} -p 5201 -t 3 --json")
        result = json.loads(out)
        received_bps = result["end"]["sum_received"]["bits_per_second"]
        # 20 Mbit/s customer lines: TCP must get a real share of them.
        assert received_bps > 5e6, out
    finally:
        server_proc.kill()
        server_proc.wait()


def test_flow_rate_over_grpc_matches_iperf3_udp(controller, access):
    client, server = access.get("c2pc"), access.get("c3phone")
    access.ping([client, server], timeout=1)
    server_proc = server.popen(["iperf3", "-s", "-1", "-p", "5202"])
    try:
        wait_for(lambda: "5202" in server.cmd("ss -ltn"), 10, "iperf3 server listening")
        client_proc = client.popen(["iperf3", "-c", server.IP(), "-p", "5202", "-u", "-b", "4M",
                                    "-l", "1000", "-t", "14", "--json"])
        dst_dpid = 6  # c3phone is on access switch s6
        match = f"eth_dst={server.MAC()},eth_src={client.MAC()}"
        samples = []
        deadline = time.monotonic() + 20
        while client_proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                flows = controller.stub().ListFlows(pb.ListFlowsRequest(dpid=dst_dpid)).flows
            except grpc.RpcError:
                continue
            rates = [f.bytes_per_second for f in flows if f.match == match and f.rate_known]
            if rates and rates[0] > 0:
                samples.append(rates[0])
        out, _ = client_proc.communicate(timeout=20)
        end = json.loads(out)["end"]["sum"]
    finally:
        server_proc.kill()
        server_proc.wait()
    # Steady state only: drop the first and last two seconds of samples. Open vSwitch's
    # userspace datapath pushes flow counters to OpenFlow rules in bursts (revalidation, about
    # twice a second), so single intervals swing by half a burst; ten seconds of them
    # average that out to a few percent.
    steady = samples[4:-4]
    assert len(steady) >= 12, samples
    measured = sum(steady) / len(steady)
    received_packets = end["packets"] - end["lost_packets"]
    # The switch counts whole frames: 1000 bytes of UDP payload + 8 UDP + 20 IP + 14 Ethernet.
    frame_bytes = end["bytes"] + received_packets * 42
    expected = frame_bytes * (1 - end["lost_percent"] / 100) / end["seconds"]
    assert measured == pytest.approx(expected, rel=0.10), (samples, end)


def test_bad_grpc_requests_against_the_running_controller(controller, access):
    stub = controller.stub()
    with pytest.raises(grpc.RpcError) as err:
        stub.ListFlows(pb.ListFlowsRequest(dpid=0xdead))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    raw = controller._channel.unary_unary("/cems.v1.StatusService/ListPorts")  # pylint: disable=protected-access
    with pytest.raises(grpc.RpcError) as err:
        raw(b"\x0a\xff")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        controller._channel.unary_unary("/cems.v1.NoSuchService/Get")(b"")  # pylint: disable=protected-access
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert stub.GetStatus(pb.GetStatusRequest()).switches_connected == 6
