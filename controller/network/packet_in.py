"""What to do with a packet sent to the controller: learn, discover, answer ARP (core).

handle_packet_in() updates the Topology it is given and returns what the app must send.
ARP requests for a known address are answered by the controller (proxy ARP); other ARP is
delivered to the known destination or copied to edge ports only, never to inter-switch
links, so a topology with loops cannot storm. Other broadcast and multicast is dropped.
"""

import dataclasses

from controller.compat import arp, ether_types, ethernet, ipv4, packet
from controller.network.discovery import parse_lldp
from controller.network.topology import HostInfo, LinkKey, Topology


@dataclasses.dataclass(frozen=True)
class PacketOut:
    dpid: int
    out_ports: tuple[int, ...]
    data: bytes


@dataclasses.dataclass(frozen=True)
class PacketInResult:
    learned: HostInfo | None = None
    new_link: LinkKey | None = None
    outputs: tuple[PacketOut, ...] = ()
    malformed: str = ""   # why the packet could not be decoded, if it could not
    ignored: str = ""     # why nothing was done, for debugging


def _is_multicast(mac: str) -> bool:
    return int(mac.split(":")[0], 16) & 1 == 1


def build_arp_reply(requester_mac: str, requester_ip: str, target_mac: str, target_ip: str) -> bytes:
    """ARP reply telling the requester that target_ip is at target_mac."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=requester_mac, src=target_mac,
                                       ethertype=ether_types.ETH_TYPE_ARP))
    pkt.add_protocol(arp.arp(opcode=arp.ARP_REPLY, src_mac=target_mac, src_ip=target_ip,
                             dst_mac=requester_mac, dst_ip=requester_ip))
    pkt.serialize()
    return bytes(pkt.data)


def _edge_flood(topology: Topology, settled: set[int], data: bytes,
                skip: tuple[int, int]) -> tuple[PacketOut, ...]:
    outputs = []
    for dpid in sorted(settled):
        ports = tuple(p for p in topology.edge_ports(dpid) if (dpid, p) != skip)
        if ports:
            outputs.append(PacketOut(dpid, ports, data))
    return tuple(outputs)


def handle_packet_in(topology: Topology, now: float, dpid: int, in_port: int, data: bytes,
                     settled: set[int]) -> PacketInResult:
    """One packet-in -> what was learned and which packet-outs to send.

    `settled` holds the switches whose links LLDP has had time to find; hosts are learned
    only on their edge ports, so a host is never learned on an inter-switch port.
    """
    try:
        pkt = packet.Packet(data)
    except Exception as err:  # os-ken's parsers raise many types on garbage
        return PacketInResult(malformed=f"undecodable frame ({type(err).__name__}: {err})")
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        return PacketInResult(malformed="no Ethernet header")

    if eth.ethertype == ether_types.ETH_TYPE_LLDP:
        sender = parse_lldp(pkt)
        if sender is None:
            return PacketInResult(ignored="LLDP not sent by cems")
        link = LinkKey(sender[0], sender[1], dpid, in_port)
        new = topology.observe_link(link, now)
        return PacketInResult(new_link=link if new else None)

    if dpid not in settled:
        return PacketInResult(ignored="switch not settled yet")
    if _is_multicast(eth.src):
        return PacketInResult(malformed=f"multicast source MAC {eth.src}")
    if eth.src.lower() in topology.port_addresses():
        # A switch's own port (its local stack, or a frame looped back while the switch
        # was cut off) is not a host: learning it would steer traffic into the switch.
        return PacketInResult(ignored=f"source {eth.src} is a switch port's own address")
    if topology.is_link_port(dpid, in_port):
        # A packet that met a switch whose path flows are not installed yet: deliver a
        # known unicast destination directly, learn nothing, never flood.
        dst = topology.host(eth.dst)
        if dst is None or dst.dpid not in settled:
            return PacketInResult(ignored="unknown destination on an inter-switch port")
        return PacketInResult(outputs=(PacketOut(dst.dpid, (dst.port_no,), data),))

    arp_pkt = pkt.get_protocol(arp.arp)
    ip_pkt = pkt.get_protocol(ipv4.ipv4)
    src_ip = arp_pkt.src_ip if arp_pkt else (ip_pkt.src if ip_pkt else None)
    learned = topology.learn_host(eth.src, dpid, in_port, src_ip)

    if arp_pkt is not None:
        outputs = _handle_arp(topology, settled, dpid, in_port, eth, arp_pkt, data)
        return PacketInResult(learned=learned, outputs=outputs)
    if _is_multicast(eth.dst):
        return PacketInResult(learned=learned, ignored="broadcast/multicast is not forwarded")
    dst = topology.host(eth.dst)
    if dst is None or dst.dpid not in settled:
        return PacketInResult(learned=learned, ignored="destination not known yet")
    # The path flows are being installed; deliver this first packet directly.
    return PacketInResult(learned=learned,
                          outputs=(PacketOut(dst.dpid, (dst.port_no,), data),))


def _handle_arp(topology, settled, dpid, in_port, eth, arp_pkt, data) -> tuple[PacketOut, ...]:
    if arp_pkt.opcode == arp.ARP_REQUEST:
        if arp_pkt.src_ip == arp_pkt.dst_ip:  # gratuitous: learning was all
            return ()
        target = topology.host_by_ipv4(arp_pkt.dst_ip)
        if target is not None and target.mac != eth.src:
            reply = build_arp_reply(eth.src, arp_pkt.src_ip, target.mac, arp_pkt.dst_ip)
            return (PacketOut(dpid, (in_port,), reply),)
        return _edge_flood(topology, settled, data, skip=(dpid, in_port))
    if not _is_multicast(eth.dst):
        dst = topology.host(eth.dst)
        if dst is not None and dst.dpid in settled:
            return (PacketOut(dst.dpid, (dst.port_no,), data),)
    return _edge_flood(topology, settled, data, skip=(dpid, in_port))
