"""Building Ethernet/IPv4/IPv6 UDP and TCP frames with struct, for captures and tests (core).

Checksums are left zero: the probe does not verify them (mirrored copies of a userspace
datapath often carry none), and the frames are for reading, not for sending.
"""

import socket
import struct

MAC_A, MAC_B = b"\x02\x00\x00\x00\x00\x01", b"\x02\x00\x00\x00\x00\x02"


def _ether(ethertype: int, vlan: int | None = None) -> bytes:
    if vlan is None:
        return MAC_B + MAC_A + struct.pack("!H", ethertype)
    return MAC_B + MAC_A + struct.pack("!HHH", 0x8100, vlan, ethertype)


def ipv4(src: str, dst: str, proto: int, l4: bytes, dscp: int = 0, ident: int = 0,
         fragment_offset: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, dscp << 2, 20 + len(l4), ident,
                         fragment_offset & 0x1FFF, 64, proto, 0, socket.inet_aton(src),
                         socket.inet_aton(dst))
    return header + l4


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes = b"",
        window: int = 65535) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4,
                       flags, window, 0, 0) + payload


def udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes, dscp: int = 0,
              vlan: int | None = None) -> bytes:
    return _ether(0x0800, vlan) + ipv4(src, dst, 17, udp(sport, dport, payload), dscp)


def tcp_frame(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
              payload: bytes = b"", window: int = 65535) -> bytes:
    return _ether(0x0800) + ipv4(src, dst, 6, tcp(sport, dport, seq, ack, flags, payload,
                                                  window))


def udp6_frame(src: str, dst: str, sport: int, dport: int, payload: bytes,
               hop_by_hop: bool = False) -> bytes:
    l4 = udp(sport, dport, payload)
    next_header = 17
    extension = b""
    if hop_by_hop:
        extension = bytes([17, 0]) + bytes(6)  # next header UDP, length 0 (8 octets)
        next_header = 0
    header = struct.pack("!IHBB16s16s", 6 << 28, len(extension) + len(l4), next_header, 64,
                         socket.inet_pton(socket.AF_INET6, src),
                         socket.inet_pton(socket.AF_INET6, dst))
    return _ether(0x86DD) + header + extension + l4


def rtp_packet(sequence: int, timestamp: int, ssrc: int = 0x1234, payload_type: int = 0,
               payload: bytes = b"\xd5" * 160) -> bytes:
    return struct.pack("!BBHII", 0x80, payload_type, sequence & 0xFFFF, timestamp & 0xFFFFFFFF,
                       ssrc) + payload
