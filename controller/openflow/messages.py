"""Compile FlowEntry data and reconciliation changes into OpenFlow 1.3 messages, and read
flow stats back into FlowEntry data (core: the one message builder).

Messages are built without a datapath (as FAUCET does); the app's one send method attaches
the datapath and sends. Nothing here does I/O. This and the packet codecs of
controller.network are the only cores that use the OpenFlow framework, and only its
message and packet libraries.
"""

from typing import Any

from controller.compat import ofproto_v1_3 as ofp
from controller.compat import ofproto_v1_3_parser as parser
from controller.openflow.pipeline import COOKIE_BASE, COOKIE_BASE_MASK, FlowEntry, MeterSpec
from controller.openflow.reconcile import FlowMod, MeterMod, StateRequest

_FULL_COOKIE_MASK = 0xFFFFFFFFFFFFFFFF


def _build_action(action: tuple):
    kind = action[0]
    if kind == "output":
        return parser.OFPActionOutput(action[1])
    if kind == "controller":
        return parser.OFPActionOutput(ofp.OFPP_CONTROLLER, action[1])
    if kind == "set_field":
        return parser.OFPActionSetField(**{action[1]: action[2]})
    if kind == "set_queue":
        return parser.OFPActionSetQueue(action[1])
    raise ValueError(f"unknown action {action!r}")


def _build_instruction(instruction: tuple):
    kind = instruction[0]
    if kind == "apply_actions":
        return parser.OFPInstructionActions(
            ofp.OFPIT_APPLY_ACTIONS, [_build_action(a) for a in instruction[1]])
    if kind == "meter":
        return parser.OFPInstructionMeter(instruction[1], ofp.OFPIT_METER)
    if kind == "goto_table":
        return parser.OFPInstructionGotoTable(instruction[1])
    raise ValueError(f"unknown instruction {instruction!r}")


def build_flow_add(entry: FlowEntry):
    """FlowEntry -> OFPFlowMod(ADD) that creates or overwrites it; datapath unset."""
    return parser.OFPFlowMod(
        datapath=None, cookie=entry.cookie, table_id=entry.table_id,
        command=ofp.OFPFC_ADD, priority=entry.priority, buffer_id=ofp.OFP_NO_BUFFER,
        match=parser.OFPMatch(**dict(entry.match)),
        instructions=[_build_instruction(i) for i in entry.instructions])


def build_flow_delete(entry: FlowEntry):
    """FlowEntry -> OFPFlowMod(DELETE_STRICT) removing exactly it (same cookie)."""
    return parser.OFPFlowMod(
        datapath=None, cookie=entry.cookie, cookie_mask=_FULL_COOKIE_MASK,
        table_id=entry.table_id, command=ofp.OFPFC_DELETE_STRICT, priority=entry.priority,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**dict(entry.match)))


def build_delete_all_cems_flows():
    """OFPFlowMod deleting every cems flow in every table (anything else stays)."""
    return parser.OFPFlowMod(
        datapath=None, cookie=COOKIE_BASE, cookie_mask=COOKIE_BASE_MASK,
        table_id=ofp.OFPTT_ALL, command=ofp.OFPFC_DELETE, out_port=ofp.OFPP_ANY,
        out_group=ofp.OFPG_ANY, match=parser.OFPMatch())


def build_flow_stats_request():
    """Flow stats request for every cems flow in every table."""
    return parser.OFPFlowStatsRequest(
        datapath=None, table_id=ofp.OFPTT_ALL, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        cookie=COOKIE_BASE, cookie_mask=COOKIE_BASE_MASK, match=parser.OFPMatch())


def build_port_stats_request():
    return parser.OFPPortStatsRequest(datapath=None, port_no=ofp.OFPP_ANY)


def build_meter_stats_request():
    return parser.OFPMeterStatsRequest(datapath=None, meter_id=ofp.OFPM_ALL)


def build_port_desc_request():
    return parser.OFPPortDescStatsRequest(datapath=None)


def build_role_request(master: bool, generation: int):
    """This controller's role on the switch: MASTER or SLAVE, with the cluster's generation
    id (a switch refuses a request whose generation is older than one it has seen)."""
    role = ofp.OFPCR_ROLE_MASTER if master else ofp.OFPCR_ROLE_SLAVE
    return parser.OFPRoleRequest(datapath=None, role=role,
                                 generation_id=generation & 0xFFFFFFFFFFFFFFFF)


def build_async_config():
    """What the switch sends this controller as MASTER and as SLAVE: as a slave, also the
    packet-ins of its flows (LLDP among them, so that a standby instance knows the links
    when it takes over) and port changes; flow removals only as master."""
    packet_in = (1 << ofp.OFPR_NO_MATCH) | (1 << ofp.OFPR_ACTION)
    master_packet_in = packet_in | (1 << ofp.OFPR_INVALID_TTL)   # what a master has anyway
    ports = (1 << ofp.OFPPR_ADD) | (1 << ofp.OFPPR_DELETE) | (1 << ofp.OFPPR_MODIFY)
    removed = (1 << ofp.OFPRR_IDLE_TIMEOUT) | (1 << ofp.OFPRR_HARD_TIMEOUT) | \
        (1 << ofp.OFPRR_DELETE) | (1 << ofp.OFPRR_GROUP_DELETE)
    return parser.OFPSetAsync(datapath=None, packet_in_mask=[master_packet_in, packet_in],
                              port_status_mask=[ports, ports],
                              flow_removed_mask=[removed, 0])


def build_barrier_request():
    return parser.OFPBarrierRequest(datapath=None)


def build_packet_out(in_port: int | None, out_ports: list[int], data: bytes):
    """Packet-out of raw `data` to each of `out_ports` (no buffer)."""
    return parser.OFPPacketOut(
        datapath=None, buffer_id=ofp.OFP_NO_BUFFER,
        in_port=ofp.OFPP_CONTROLLER if in_port is None else in_port,
        actions=[parser.OFPActionOutput(port) for port in out_ports], data=data)


def _normal_action(action) -> tuple:
    if isinstance(action, parser.OFPActionOutput):
        if action.port == ofp.OFPP_CONTROLLER:
            return ("controller", action.max_len)
        return ("output", action.port)
    if isinstance(action, parser.OFPActionSetField):
        return ("set_field", action.key, action.value)
    if isinstance(action, parser.OFPActionSetQueue):
        return ("set_queue", action.queue_id)
    return ("unknown", type(action).__name__)


def _normal_instruction(instruction) -> tuple:
    if isinstance(instruction, parser.OFPInstructionActions):
        if instruction.type == ofp.OFPIT_APPLY_ACTIONS:
            return ("apply_actions", tuple(_normal_action(a) for a in instruction.actions))
        return ("write_actions", tuple(_normal_action(a) for a in instruction.actions))
    if isinstance(instruction, parser.OFPInstructionMeter):
        return ("meter", instruction.meter_id)
    if isinstance(instruction, parser.OFPInstructionGotoTable):
        return ("goto_table", instruction.table_id)
    return ("unknown", type(instruction).__name__)


def _normal_value(value: Any) -> Any:
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, list):
        return tuple(value)
    return value


def entry_from_stats(stat) -> FlowEntry:
    """One OFPFlowStats -> the FlowEntry it represents (for reconciliation and rates)."""
    match = tuple(sorted((k, _normal_value(v)) for k, v in stat.match.items()))
    instructions = tuple(_normal_instruction(i) for i in stat.instructions)
    # An apply-actions instruction with no actions is a drop, the same as no instruction.
    instructions = tuple(i for i in instructions if i != ("apply_actions", ()))
    return FlowEntry(stat.table_id, stat.priority, match, instructions, stat.cookie)


def format_match(match) -> str:
    """Readable match: 'eth_dst=00:00:00:00:00:02,eth_src=...' ('*' for match-all)."""
    return ",".join(f"{k}={v}" for k, v in match) or "*"


def format_actions(instructions) -> str:
    """Readable instructions: 'output:2', 'controller:65535', 'meter:3,output:1', 'drop'."""
    parts = []
    for instruction in instructions:
        if instruction[0] in ("apply_actions", "write_actions"):
            for action in instruction[1]:
                if action[0] == "set_field":
                    parts.append(f"set_field:{action[2]}->{action[1]}")
                else:
                    parts.append(":".join(str(x) for x in action))
        else:
            parts.append(":".join(str(x) for x in instruction))
    return ",".join(parts) or "drop"


_ERROR_CODE_PREFIX = {
    "OFPET_HELLO_FAILED": "OFPHFC_", "OFPET_BAD_REQUEST": "OFPBRC_",
    "OFPET_BAD_ACTION": "OFPBAC_", "OFPET_BAD_INSTRUCTION": "OFPBIC_",
    "OFPET_BAD_MATCH": "OFPBMC_", "OFPET_FLOW_MOD_FAILED": "OFPFMFC_",
    "OFPET_GROUP_MOD_FAILED": "OFPGMFC_", "OFPET_PORT_MOD_FAILED": "OFPPMFC_",
    "OFPET_TABLE_MOD_FAILED": "OFPTMFC_", "OFPET_QUEUE_OP_FAILED": "OFPQOFC_",
    "OFPET_SWITCH_CONFIG_FAILED": "OFPSCFC_", "OFPET_ROLE_REQUEST_FAILED": "OFPRRFC_",
    "OFPET_METER_MOD_FAILED": "OFPMMFC_", "OFPET_TABLE_FEATURES_FAILED": "OFPTFFC_",
}


def describe_error(error_type: int, code: int) -> tuple[str, str]:
    """OpenFlow 1.3 error type and code numbers -> their names (numbers if unknown)."""
    type_name = next((name for name in _ERROR_CODE_PREFIX if getattr(ofp, name) == error_type),
                     f"type{error_type}")
    prefix = _ERROR_CODE_PREFIX.get(type_name)
    code_name = next((name for name in dir(ofp) if prefix and name.startswith(prefix)
                      and getattr(ofp, name) == code), f"code{code}")
    return type_name, code_name


def build_meter_mod(command: str, meter_id: int, rate_kbps: int = 0, burst_kbits: int = 0):
    """OFPMeterMod: command 'add', 'modify' or 'delete' of a drop-band kbit/s meter."""
    commands = {"add": ofp.OFPMC_ADD, "modify": ofp.OFPMC_MODIFY, "delete": ofp.OFPMC_DELETE}
    if command == "delete":
        return parser.OFPMeterMod(datapath=None, command=ofp.OFPMC_DELETE, flags=0,
                                  meter_id=meter_id, bands=[])
    return parser.OFPMeterMod(
        datapath=None, command=commands[command],
        flags=ofp.OFPMF_KBPS | ofp.OFPMF_BURST | ofp.OFPMF_STATS, meter_id=meter_id,
        bands=[parser.OFPMeterBandDrop(rate=rate_kbps, burst_size=burst_kbits)])


def build_meter_config_request():
    return parser.OFPMeterConfigStatsRequest(datapath=None, meter_id=ofp.OFPM_ALL)


def meter_from_config(stat) -> MeterSpec:
    """One OFPMeterConfigStats -> the MeterSpec of its drop band (rate and burst 0 when it has
    none: such a meter is not one cems made)."""
    drops = [b for b in stat.bands if isinstance(b, parser.OFPMeterBandDrop)]
    if not drops:
        return MeterSpec(stat.meter_id, 0, 0)
    return MeterSpec(stat.meter_id, drops[0].rate, drops[0].burst_size)


def compile_item(item):
    """A reconciliation change or state request -> its OpenFlow message (datapath unset);
    anything else is taken to be a message already."""
    if isinstance(item, FlowMod):
        return build_flow_add(item.entry) if item.command == "add" else \
            build_flow_delete(item.entry)
    if isinstance(item, MeterMod):
        meter = item.meter
        return build_meter_mod(item.command, meter.meter_id, meter.rate_kbps, meter.burst_kbits)
    if isinstance(item, StateRequest):
        return build_flow_stats_request() if item.kind == "flows" else \
            build_meter_config_request()
    return item


def describe_item(item) -> str:
    """What was sent, for an operator reading an error: readable for cems' own changes."""
    if isinstance(item, FlowMod):
        e = item.entry
        component = e.component.name.lower() if e.component else "other"
        return (f"OFPFlowMod {item.command} ({component}) table {e.table_id} priority "
                f"{e.priority} match {format_match(e.match)} actions "
                f"{format_actions(e.instructions)} cookie {e.cookie:#x}")
    if isinstance(item, MeterMod):
        m = item.meter
        return (f"OFPMeterMod {item.command} meter {m.meter_id} at {m.rate_kbps} kbit/s, burst "
                f"{m.burst_kbits} kbit")
    if isinstance(item, StateRequest):
        return ("OFPFlowStatsRequest (cems flows)" if item.kind == "flows"
                else "OFPMeterConfigStatsRequest")
    return repr(item)
