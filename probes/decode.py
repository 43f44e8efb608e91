"""Frame decoding for the passive probe's hot path: fixed offsets, no objects per layer (core).

decode_frame() reads Ethernet (with up to two VLAN tags), IPv4 or IPv6 (skipping the usual
extension headers), and UDP or TCP headers straight from the buffer with struct, and returns
one tuple; a frame it cannot decode returns the reason instead, for counting. Scapy is for
crafting test frames, never for this path (../shared/ENVIRONMENT.md: about 4,500 packets/s).
"""

import socket
import struct

ETH_IPV4, ETH_IPV6, ETH_VLAN, ETH_QINQ = 0x0800, 0x86DD, 0x8100, 0x88A8
TCP, UDP = 6, 17
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options
_U16 = struct.Struct("!H").unpack_from
_IPV4 = struct.Struct("!BBHHHBBH4s4s").unpack_from  # the 20 fixed bytes, addresses as bytes
_UDP = struct.Struct("!HHH").unpack_from
_TCP = struct.Struct("!HHIIBBH").unpack_from

# Field positions of a decoded packet tuple.
SRC, DST, PROTO, SPORT, DPORT, IP_LEN, DSCP, PAYLOAD_OFFSET, PAYLOAD_LEN, TCP_SEQ, TCP_ACK, \
    TCP_FLAGS, TCP_WINDOW = range(13)

TCP_FIN, TCP_SYN, TCP_RST, TCP_ACK_FLAG = 0x01, 0x02, 0x04, 0x10


def decode_frame(frame, length: int | None = None):
    """(packet tuple, "") for a decodable IPv4/IPv6 UDP or TCP frame, else (None, reason).

    Addresses are the raw 4 or 16 bytes (format them with format_address only for output).
    Non-first IPv4 fragments and other protocols decode with ports 0 and no payload.
    """
    n = len(frame) if length is None else length
    if n < 14:
        return None, "truncated ethernet"
    offset = 12
    ethertype = _U16(frame, offset)[0]
    for _ in range(2):
        if ethertype not in (ETH_VLAN, ETH_QINQ):
            break
        offset += 4
        if n < offset + 2:
            return None, "truncated vlan"
        ethertype = _U16(frame, offset)[0]
    offset += 2
    if ethertype == ETH_IPV4:
        if n < offset + 20:
            return None, "truncated ipv4"
        first, tos, total, _, fragment, _, proto, _, src, dst = _IPV4(frame, offset)
        ihl = (first & 0x0F) * 4
        if first >> 4 != 4 or ihl < 20:
            return None, "bad ipv4 header length"
        if total < ihl or n < offset + ihl:
            return None, "bad ipv4 total length"
        end = min(n, offset + total)
        dscp = tos >> 2
        l4 = offset + ihl
        ip_len = total
        if fragment & 0x1FFF:
            return (src, dst, proto, 0, 0, ip_len, dscp, end, 0, 0, 0, 0, 0), ""
    elif ethertype == ETH_IPV6:
        if n < offset + 40:
            return None, "truncated ipv6"
        if frame[offset] >> 4 != 6:
            return None, "bad ipv6 version"
        dscp = ((_U16(frame, offset)[0] >> 4) & 0xFF) >> 2
        payload = _U16(frame, offset + 4)[0]
        proto = frame[offset + 6]
        src, dst = bytes(frame[offset + 8:offset + 24]), bytes(frame[offset + 24:offset + 40])
        l4 = offset + 40
        end = min(n, l4 + payload)
        ip_len = payload + 40
        while proto in _IPV6_EXTENSIONS:
            if end < l4 + 8:
                return None, "truncated ipv6 extension"
            proto, l4 = frame[l4], l4 + (frame[l4 + 1] + 1) * 8
    else:
        return None, "not ip"
    if proto == UDP:
        if end < l4 + 8:
            return None, "truncated udp"
        sport, dport, udp_len = _UDP(frame, l4)
        if udp_len < 8:
            return None, "bad udp length"
        start = l4 + 8
        return (src, dst, proto, sport, dport, ip_len, dscp, start,
                max(0, min(end, l4 + udp_len) - start), 0, 0, 0, 0), ""
    if proto == TCP:
        if end < l4 + 20:
            return None, "truncated tcp"
        sport, dport, seq, ack, data_offset, flags, window = _TCP(frame, l4)
        header = (data_offset >> 4) * 4
        if header < 20 or end < l4 + header:
            return None, "bad tcp header length"
        start = l4 + header
        return (src, dst, proto, sport, dport, ip_len, dscp, start, end - start, seq, ack,
                flags, window), ""
    return (src, dst, proto, 0, 0, ip_len, dscp, end, 0, 0, 0, 0, 0), ""


def format_address(raw: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)
