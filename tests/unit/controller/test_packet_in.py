import pytest
from hypothesis import given, settings, strategies as st

from controller.compat import arp, ethernet, ether_types, ipv4, packet
from controller.network.discovery import build_lldp_frame, parse_lldp
from controller.network.packet_in import handle_packet_in
from controller.network.topology import LinkKey, PortInfo

from tests.unit.controller.fakes import build_topology, mac

BROADCAST = "ff:ff:ff:ff:ff:ff"


def arp_frame(opcode, src_mac, src_ip, dst_ip, dst_mac=BROADCAST):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether_types.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=opcode, src_mac=src_mac, src_ip=src_ip,
                             dst_mac="00:00:00:00:00:00" if dst_mac == BROADCAST else dst_mac,
                             dst_ip=dst_ip))
    pkt.serialize()
    return bytes(pkt.data)


def ip_frame(src_mac, dst_mac, src_ip, dst_ip):
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether_types.ETH_TYPE_IP))
    pkt.add_protocol(ipv4.ipv4(src=src_ip, dst=dst_ip, proto=17))
    pkt.serialize()
    return bytes(pkt.data) + b"\x00" * 8


@pytest.fixture
def triangle():
    # three switches in a loop; port 1 and 4 are host ports, 2 and 3 inter-switch
    return build_topology({1: 4, 2: 4, 3: 4}, [(1, 2, 2, 3), (2, 2, 3, 3), (3, 2, 1, 3)])


def test_lldp_round_trip_discovers_the_link(triangle):
    frame = build_lldp_frame(0x1234, 7, mac(7))
    assert parse_lldp(packet.Packet(frame)) == (0x1234, 7)
    triangle.add_switch(0x1234, 0)
    triangle.set_port(0x1234, PortInfo(7))
    result = handle_packet_in(triangle, 1.0, 1, 4, frame, settled={1, 2, 3})
    assert result.new_link == LinkKey(0x1234, 7, 1, 4)


def test_unknown_arp_target_is_copied_to_edge_ports_only(triangle):
    frame = arp_frame(arp.ARP_REQUEST, mac(1), "10.0.0.1", "10.0.0.2")
    result = handle_packet_in(triangle, 0, 1, 1, frame, settled={1, 2, 3})
    assert result.learned.mac == mac(1) and result.learned.ipv4 == ("10.0.0.1",)
    outs = {(o.dpid, o.out_ports) for o in result.outputs}
    assert outs == {(1, (4,)), (2, (1, 4)), (3, (1, 4))}  # never ports 2 or 3


def test_known_arp_target_is_answered_by_the_controller(triangle):
    triangle.learn_host(mac(2), 2, 1, "10.0.0.2")
    frame = arp_frame(arp.ARP_REQUEST, mac(1), "10.0.0.1", "10.0.0.2")
    result = handle_packet_in(triangle, 0, 1, 1, frame, settled={1, 2, 3})
    (out,) = result.outputs
    assert (out.dpid, out.out_ports) == (1, (1,))
    reply = packet.Packet(out.data).get_protocol(arp.arp)
    assert (reply.opcode, reply.src_mac, reply.src_ip, reply.dst_mac) == \
        (arp.ARP_REPLY, mac(2), "10.0.0.2", mac(1))


def test_arp_reply_goes_straight_to_the_requester(triangle):
    triangle.learn_host(mac(1), 1, 1, "10.0.0.1")
    frame = arp_frame(arp.ARP_REPLY, mac(2), "10.0.0.2", "10.0.0.1", dst_mac=mac(1))
    result = handle_packet_in(triangle, 0, 2, 4, frame, settled={1, 2, 3})
    assert result.learned.mac == mac(2)
    assert [(o.dpid, o.out_ports) for o in result.outputs] == [(1, (1,))]


def test_nothing_is_learned_before_the_switch_settles_or_on_inter_switch_ports(triangle):
    frame = arp_frame(arp.ARP_REQUEST, mac(1), "10.0.0.1", "10.0.0.2")
    assert handle_packet_in(triangle, 0, 1, 1, frame, settled=set()).learned is None
    result = handle_packet_in(triangle, 0, 1, 2, frame, settled={1, 2, 3})
    assert result.learned is None and result.outputs == ()
    assert triangle.hosts() == []


def test_unicast_on_inter_switch_port_is_delivered_to_known_host(triangle):
    triangle.learn_host(mac(2), 2, 4)
    result = handle_packet_in(triangle, 0, 1, 2, ip_frame(mac(1), mac(2), "10.0.0.1", "10.0.0.2"),
                              settled={1, 2, 3})
    assert result.learned is None
    assert [(o.dpid, o.out_ports) for o in result.outputs] == [(2, (4,))]


def test_first_ip_packet_to_known_host_is_delivered(triangle):
    triangle.learn_host(mac(2), 3, 4)
    result = handle_packet_in(triangle, 0, 1, 1, ip_frame(mac(1), mac(2), "10.0.0.1", "10.0.0.2"),
                              settled={1, 2, 3})
    assert result.learned.ipv4 == ("10.0.0.1",)
    assert [(o.dpid, o.out_ports) for o in result.outputs] == [(3, (4,))]


def test_broadcast_ip_is_not_forwarded(triangle):
    result = handle_packet_in(triangle, 0, 1, 1,
                              ip_frame(mac(1), BROADCAST, "10.0.0.1", "10.255.255.255"), {1, 2, 3})
    assert result.outputs == () and result.ignored


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_garbage_frames_never_raise_nor_reach_inter_switch_ports(data):
    topology = build_topology({1: 4, 2: 4}, [(1, 2, 2, 2)])
    result = handle_packet_in(topology, 0, 1, 1, data, settled={1, 2})
    assert all(not topology.is_link_port(o.dpid, p) for o in result.outputs for p in o.out_ports)
    assert topology.links() == [LinkKey(1, 2, 2, 2), LinkKey(2, 2, 1, 2)]


def test_truncated_frame_is_reported_as_malformed(triangle):
    result = handle_packet_in(triangle, 0, 1, 1, b"\x00\x01", settled={1, 2, 3})
    assert result.malformed


def test_a_switch_ports_own_address_is_never_learned_and_a_mistake_can_be_forgotten(triangle):
    port_mac = triangle.port(2, 4).hw_addr  # a frame from switch 2's own port, seen by s1
    result = handle_packet_in(triangle, 10.0, 1, 1,
                              arp_frame(arp.ARP_REQUEST, port_mac, "10.0.0.9", "10.0.0.1"),
                              {1, 2, 3})
    assert result.learned is None and "switch port's own address" in result.ignored
    assert triangle.host(port_mac) is None
    handle_packet_in(triangle, 10.0, 1, 1, arp_frame(arp.ARP_REQUEST, mac(7), "10.0.0.7",
                                                     "10.0.0.1"), {1, 2, 3})
    version = triangle.version
    assert triangle.forget_host(mac(7)) and triangle.host(mac(7)) is None
    assert triangle.version > version and not triangle.forget_host(mac(7))
