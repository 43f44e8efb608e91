"""LLDP frames for link discovery: build one per switch port, parse the ones that come back (core).

Chassis ID carries "dpid:<16 hex digits>" (locally assigned), Port ID the port number as
4 bytes. Frames that do not look like ours are ignored by returning None.
"""

import struct

from controller.compat import ether_types, ethernet, lldp, packet

LLDP_DST = lldp.LLDP_MAC_NEAREST_BRIDGE
_CHASSIS_PREFIX = b"dpid:"


def build_lldp_frame(dpid: int, port_no: int, hw_addr: str, ttl_s: int = 120) -> bytes:
    """LLDP frame announcing (dpid, port_no), sent from the port's MAC."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=LLDP_DST, src=hw_addr or "00:00:00:00:00:00",
                                       ethertype=ether_types.ETH_TYPE_LLDP))
    tlvs = (
        lldp.ChassisID(subtype=lldp.ChassisID.SUB_LOCALLY_ASSIGNED,
                       chassis_id=_CHASSIS_PREFIX + b"%016x" % dpid),
        lldp.PortID(subtype=lldp.PortID.SUB_PORT_COMPONENT, port_id=struct.pack("!I", port_no)),
        lldp.TTL(ttl=ttl_s),
        lldp.End(),
    )
    pkt.add_protocol(lldp.lldp(tlvs))
    pkt.serialize()
    return bytes(pkt.data)


def parse_lldp(pkt) -> tuple[int, int] | None:
    """A decoded Packet holding LLDP -> (dpid, port_no) that sent it, or None if not ours."""
    frame = pkt.get_protocol(lldp.lldp)
    if frame is None or len(frame.tlvs) < 2:
        return None
    chassis, port = frame.tlvs[0], frame.tlvs[1]
    if not isinstance(chassis, lldp.ChassisID) or not isinstance(port, lldp.PortID):
        return None
    chassis_id = chassis.chassis_id
    if not chassis_id.startswith(_CHASSIS_PREFIX) or len(port.port_id) != 4:
        return None
    try:
        dpid = int(chassis_id[len(_CHASSIS_PREFIX):], 16)
    except ValueError:
        return None
    return dpid, struct.unpack("!I", port.port_id)[0]
