"""Flow, port and meter statistics replies decoded straight from their wire bytes (core).

The framework's parser builds Python objects for every entry, match field, instruction and
action of a reply: 25,000-30,000 flow entries/s (bench/bench_stats.py), which caps per-flow
polling at some ten thousand flows a second per core. Here:

- `install_raw_stats()` makes the framework hand these three replies over unparsed: each
  part's body is one `RawStats` holding the bytes (the framework still reads the OpenFlow
  header and multipart flags, so replies reach the same handlers as before);
- `FlowStatsDecoder` reads each ofp_flow_stats' fixed fields with one struct call and
  decodes its match and instructions into the FlowEntry that `entry_from_stats()` gives for
  the framework's objects. A switch's flows are mostly the same from one poll to the next,
  so the decoded FlowEntry of each distinct (table, priority, cookie, match+instructions
  bytes) is kept for the next reply, and only new flows are decoded at all (their
  instruction lists, which many flows share, once each);
- port stats (fixed 112-byte entries) go through one NumPy structured view, meter stats
  (variable, with bands) through struct.

What this decoder does not know - an OXM class other than OpenFlow basic, an instruction
other than apply/write actions, goto-table and meter, an action other than output,
set-queue and set-field - is handed entry by entry to the framework's own parser and
`entry_from_stats()`, so the result is the same either way (tests/unit/controller/
test_wire_stats.py checks the two on the same bytes, unknown fields included).
Bytes that cannot be an entry raise StatsDecodeError naming the offset: the app logs and
counts it, and drops the whole reply rather than believe a partial flow table.
"""

import dataclasses
import socket
import struct
from typing import Iterable

import numpy as np

from controller.compat import ofproto_v1_3 as ofp
from controller.compat import ofproto_v1_3_parser as parser
from controller.network.rates import INT64_MAX, as_counters
from controller.openflow.messages import entry_from_stats
from controller.openflow.pipeline import FlowEntry


class StatsDecodeError(ValueError):
    """A statistics reply body that is not what OpenFlow 1.3 says it is."""


class RawStats:
    """The undecoded body of one multipart reply part, in place of the framework's objects."""

    __slots__ = ("data", "length")

    def __init__(self, data: bytes):
        self.data = data
        self.length = len(data)  # the framework's body loop steps on by this: to the end

    @classmethod
    def parser(cls, buf, offset: int) -> "RawStats":
        return cls(bytes(buf[offset:]))


_RAW_REPLIES = ("OFPFlowStatsReply", "OFPPortStatsReply", "OFPMeterStatsReply")
_ORIGINAL_BODY = {name: getattr(parser, name).cls_stats_body_cls for name in _RAW_REPLIES}


def install_raw_stats() -> None:
    """From now on the framework leaves flow, port and meter stats bodies as RawStats (the
    process's whole framework: the controller is its one user). `uninstall_raw_stats()`
    puts the framework's parsers back."""
    for name in _RAW_REPLIES:
        getattr(parser, name).cls_stats_body_cls = RawStats


def uninstall_raw_stats() -> None:
    for name, body_cls in _ORIGINAL_BODY.items():
        getattr(parser, name).cls_stats_body_cls = body_cls


def is_raw(bodies: list) -> bool:
    return bool(bodies) and isinstance(bodies[0], RawStats)


# -- flow stats ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FlowStatsBatch:
    """A complete flow stats reply as arrays: entry i is entries[i], its counters
    counters[i] (packets, bytes; -1 for a value of 2^63 or more, "not supported"), the raw
    counters packets[i] and bytes[i], and its age durations[i] in seconds."""

    entries: list
    counters: np.ndarray
    packets: list
    bytes: list
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def from_parsed(stats: list) -> "FlowStatsBatch":
        """The same batch from the framework's OFPFlowStats objects."""
        packets = [s.packet_count for s in stats]
        bytes_ = [s.byte_count for s in stats]
        return FlowStatsBatch([entry_from_stats(s) for s in stats],
                              _counters(packets, bytes_), packets, bytes_,
                              _durations(stats))


def _durations(stats: list) -> np.ndarray:
    """The ages of the framework's parsed entries, in seconds."""
    return np.array([s.duration_sec + s.duration_nsec * 1e-9 for s in stats], dtype=np.float64)


def _counters(packets: list, bytes_: list) -> np.ndarray:
    if not packets:
        return np.zeros((0, 2), dtype=np.int64)
    if max(max(packets), max(bytes_)) <= INT64_MAX:
        return np.array([packets, bytes_], dtype=np.int64).T.copy()
    return as_counters(zip(packets, bytes_), 2)


UINT64_MAX = (1 << 64) - 1
OFPP_MAX = ofp.OFPP_MAX  # the highest physical port number
_FLOW_HEAD = struct.Struct("!HBxIIH6x4xQQQ")  # ofp_flow_stats up to its match: 48 bytes
_FLOW_HEAD_LEN = _FLOW_HEAD.size
_U16 = struct.Struct("!H").unpack_from
_U16U16 = struct.Struct("!HH").unpack_from
_U32 = struct.Struct("!I").unpack_from
_OUTPUT = struct.Struct("!IH").unpack_from
_APPLY, _WRITE = ofp.OFPIT_APPLY_ACTIONS, ofp.OFPIT_WRITE_ACTIONS
_GOTO, _METER = ofp.OFPIT_GOTO_TABLE, ofp.OFPIT_METER
_OUTPUT_ACTION, _SET_QUEUE, _SET_FIELD = ofp.OFPAT_OUTPUT, ofp.OFPAT_SET_QUEUE, ofp.OFPAT_SET_FIELD
_CONTROLLER = ofp.OFPP_CONTROLLER
_OXM_BASIC = 0x8000
_OXM_NUM_BASE = _OXM_BASIC << 7  # how the framework numbers a basic field: (class << 7) | field


def _mac(raw: bytes) -> str:
    return raw.hex(":")


def _int(raw: bytes) -> int:
    return int.from_bytes(raw, "big")


def _descriptor_converter(descriptor):
    def convert(raw: bytes):
        return descriptor.to_user(raw)
    return convert


def _field_table() -> dict:
    """OXM basic field number -> (name, value length, converter to the framework's user
    value). Built from the framework's own field list; integers, MAC and IPv4 addresses are
    converted here, anything else with the framework's own converter."""
    table = {}
    for field in ofp.oxm_types:
        if not isinstance(field.num, int) or not 0 <= field.num - _OXM_NUM_BASE < 128:
            continue
        descriptor = field.type
        kind = descriptor.__name__ if isinstance(descriptor, type) else \
            type(descriptor).__name__
        size = descriptor.size
        convert = {"IntDescr": _int, "MacAddr": _mac, "IPv4Addr": socket.inet_ntoa}.get(
            kind) or _descriptor_converter(descriptor)
        table[field.num - _OXM_NUM_BASE] = (field.name, size, convert)
    return table


_FIELDS = _field_table()


class _Unknown(Exception):
    """Something this decoder leaves to the framework's parser."""


def _oxm(data: bytes, offset: int, end: int) -> tuple[str, object, int]:
    """One OXM TLV at `offset` -> (name, user value or (value, mask), next offset)."""
    if end - offset < 4:
        raise StatsDecodeError(f"truncated OXM header at byte {offset}")
    oxm_class = _U16(data, offset)[0]
    field, has_mask, length = data[offset + 2] >> 1, data[offset + 2] & 1, data[offset + 3]
    start, stop = offset + 4, offset + 4 + length
    if stop > end:
        raise StatsDecodeError(f"OXM field at byte {offset} runs past its match")
    known = _FIELDS.get(field) if oxm_class == _OXM_BASIC else None
    if known is None:
        raise _Unknown
    name, size, convert = known
    if length != (2 * size if has_mask else size):
        raise _Unknown  # the framework's own view of an odd length is its parser's
    if has_mask:
        return name, (convert(data[start:start + size]), convert(data[start + size:stop])), stop
    return name, convert(data[start:stop]), stop


def _match(data: bytes, offset: int, end: int) -> tuple[tuple, int]:
    """ofp_match at `offset` -> (sorted (name, value) pairs, offset of what follows)."""
    if end - offset < 4:
        raise StatsDecodeError(f"truncated match at byte {offset}")
    match_type, length = _U16U16(data, offset)
    if match_type != ofp.OFPMT_OXM:
        raise _Unknown
    if length < 4 or offset + length > end:
        raise StatsDecodeError(f"match at byte {offset} has length {length}")
    fields = []
    position, stop = offset + 4, offset + length
    while position < stop:
        name, value, position = _oxm(data, position, stop)
        fields.append((name, value))
    fields.sort()
    return tuple(fields), offset + (length + 7) // 8 * 8


def _actions(data: bytes, offset: int, end: int) -> tuple:
    actions = []
    while offset < end:
        if end - offset < 8:
            raise StatsDecodeError(f"truncated action at byte {offset}")
        kind, length = _U16U16(data, offset)
        if length < 8 or length % 8 or offset + length > end:
            raise StatsDecodeError(f"action at byte {offset} has length {length}")
        if kind == _OUTPUT_ACTION:
            port, max_len = _OUTPUT(data, offset + 4)
            actions.append(("controller", max_len) if port == _CONTROLLER else ("output", port))
        elif kind == _SET_QUEUE:
            actions.append(("set_queue", _U32(data, offset + 4)[0]))
        elif kind == _SET_FIELD:
            name, value, _ = _oxm(data, offset + 4, offset + length)
            if isinstance(value, tuple):
                raise _Unknown  # a masked set-field is not OpenFlow 1.3's
            actions.append(("set_field", name, value))
        else:
            raise _Unknown
        offset += length
    return tuple(actions)


def _instructions(data: bytes, offset: int, end: int) -> tuple:
    instructions = []
    while offset < end:
        if end - offset < 4:
            raise StatsDecodeError(f"truncated instruction at byte {offset}")
        kind, length = _U16U16(data, offset)
        if length < 8 or offset + length > end:
            raise StatsDecodeError(f"instruction at byte {offset} has length {length}")
        if kind == _APPLY or kind == _WRITE:
            actions = _actions(data, offset + 8, offset + length)
            if kind == _WRITE:
                instructions.append(("write_actions", actions))
            elif actions:  # an apply-actions with no actions is a drop, as no instruction
                instructions.append(("apply_actions", actions))
        elif kind == _GOTO:
            instructions.append(("goto_table", data[offset + 4]))
        elif kind == _METER:
            instructions.append(("meter", _U32(data, offset + 4)[0]))
        else:
            raise _Unknown
        offset += length
    return tuple(instructions)


class FlowStatsDecoder:
    """Flow stats bodies -> FlowStatsBatch, remembering the entries of the previous reply.

    One decoder per switch: the memory is exactly the flows of that switch's last reply, so
    it is bounded by its flow table and forgets removed flows at the next reply."""

    _INSTRUCTIONS_KEPT = 4096  # distinct instruction lists remembered (flows share them)

    def __init__(self):
        self._known: dict = {}
        self._instructions: dict = {}
        self.decoded = 0    # entries decoded from their bytes (new or changed flows)
        self.framework = 0  # entries with something this decoder leaves to the framework
        # the last reply's entries by how they were decoded (cems_flow_stats_entries_total)
        self.last = {"remembered": 0, "decoded": 0, "framework": 0}

    def decode(self, parts: Iterable[bytes]) -> FlowStatsBatch:
        known, seen = self._known, {}
        decoded, framework = self.decoded, self.framework
        entries, packets, bytes_, durations = [], [], [], []
        head = _FLOW_HEAD.unpack_from
        for data in parts:
            offset, end = 0, len(data)
            while offset < end:
                if end - offset < _FLOW_HEAD_LEN + 8:
                    raise StatsDecodeError(
                        f"flow stats entry at byte {offset} truncated ({end - offset} bytes)")
                length, table, seconds, nanoseconds, priority, cookie, n_packets, n_bytes = \
                    head(data, offset)
                if length < _FLOW_HEAD_LEN + 8 or offset + length > end:
                    raise StatsDecodeError(
                        f"flow stats entry at byte {offset} has length {length} "
                        f"({end - offset} bytes left)")
                key = (table, priority, cookie, data[offset + _FLOW_HEAD_LEN:offset + length])
                entry = known.get(key)
                if entry is None:
                    entry = self._entry(data, offset, length, table, priority, cookie)
                seen[key] = entry
                entries.append(entry)
                packets.append(n_packets)
                bytes_.append(n_bytes)
                durations.append(seconds + nanoseconds * 1e-9)
                offset += length
        self._known = seen
        decoded, framework = self.decoded - decoded, self.framework - framework
        self.last = {"remembered": len(entries) - decoded - framework, "decoded": decoded,
                     "framework": framework}
        return FlowStatsBatch(entries, _counters(packets, bytes_), packets, bytes_,
                              np.array(durations, dtype=np.float64))

    def _entry(self, data: bytes, offset: int, length: int, table: int, priority: int,
               cookie: int) -> FlowEntry:
        end = offset + length
        try:
            match, position = _match(data, offset + _FLOW_HEAD_LEN, end)
            if position > end:
                raise StatsDecodeError(f"match padding at byte {offset} runs past the entry")
            raw = data[position:end]
            instructions = self._instructions.get(raw)
            if instructions is None:
                instructions = _instructions(data, position, end)
                if len(self._instructions) >= self._INSTRUCTIONS_KEPT:
                    self._instructions.clear()
                self._instructions[raw] = instructions
        except _Unknown:
            self.framework += 1
            try:
                return entry_from_stats(_ORIGINAL_BODY["OFPFlowStatsReply"].parser(data, offset))
            except Exception as err:  # pylint: disable=broad-except
                raise StatsDecodeError(f"flow stats entry at byte {offset}: the framework's "
                                       f"parser failed too ({type(err).__name__}: {err})"
                                       ) from err
        self.decoded += 1
        return FlowEntry(table, priority, match, instructions, cookie)


# -- port and meter stats -------------------------------------------------------------------
_PORT_DTYPE = np.dtype([("port_no", ">u4"), ("pad", ">u4"), ("rx_packets", ">u8"),
                        ("tx_packets", ">u8"), ("rx_bytes", ">u8"), ("tx_bytes", ">u8"),
                        ("rx_dropped", ">u8"), ("tx_dropped", ">u8"), ("rx_errors", ">u8"),
                        ("tx_errors", ">u8"), ("rx_frame_err", ">u8"), ("rx_over_err", ">u8"),
                        ("rx_crc_err", ">u8"), ("collisions", ">u8"), ("duration_sec", ">u4"),
                        ("duration_nsec", ">u4")])
assert _PORT_DTYPE.itemsize == 112  # ofp_port_stats


@dataclasses.dataclass(frozen=True)
class PortStatsBatch:
    """A port stats reply as arrays: port_nos, raw counter rows (in `counters` order, as
    Python ints), counters as int64 (-1: not supported) and durations in seconds."""

    port_nos: list
    raw: list
    counters: np.ndarray
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.port_nos)

    def only(self, keep: np.ndarray) -> "PortStatsBatch":
        index = np.flatnonzero(keep)
        return PortStatsBatch([self.port_nos[i] for i in index], [self.raw[i] for i in index],
                              self.counters[index], self.durations[index])

    @staticmethod
    def from_parsed(stats: list, counters: tuple) -> "PortStatsBatch":
        raw = [tuple(getattr(s, name) for name in counters) for s in stats]
        return PortStatsBatch([s.port_no for s in stats], raw, as_counters(raw, len(counters)),
                              _durations(stats))


def decode_port_stats(parts: Iterable[bytes], counters: tuple) -> PortStatsBatch:
    """Port stats bodies -> PortStatsBatch with the named counters."""
    data = b"".join(parts)
    if len(data) % _PORT_DTYPE.itemsize:
        raise StatsDecodeError(f"port stats body of {len(data)} bytes is not a whole number "
                               f"of {_PORT_DTYPE.itemsize}-byte entries")
    rows = np.frombuffer(data, dtype=_PORT_DTYPE)
    values = np.stack([rows[name] for name in counters], axis=1) if len(rows) else \
        np.zeros((0, len(counters)), dtype=np.uint64)
    raw = [tuple(row) for row in values.tolist()]
    as_int64 = values.astype(np.int64)
    as_int64[values > INT64_MAX] = -1
    return PortStatsBatch(rows["port_no"].tolist(), raw, as_int64,
                          rows["duration_sec"] + rows["duration_nsec"] * 1e-9)


_METER_HEAD = struct.Struct("!IH6xIQQII")  # ofp_meter_stats up to its bands: 40 bytes
_BAND = struct.Struct("!QQ").unpack_from


@dataclasses.dataclass(frozen=True)
class MeterStatsBatch:
    """A meter stats reply: meter_ids, flow counts, raw rows (packets in, bytes in, band
    packets, band bytes; bands summed, capped at 2^64-1), counters as int64 and durations."""

    meter_ids: list
    flow_counts: list
    raw: list
    counters: np.ndarray
    durations: np.ndarray

    def __len__(self) -> int:
        return len(self.meter_ids)

    @staticmethod
    def from_parsed(stats: list) -> "MeterStatsBatch":
        raw = [(s.packet_in_count, s.byte_in_count,
                min(sum(b.packet_band_count for b in s.band_stats), UINT64_MAX),
                min(sum(b.byte_band_count for b in s.band_stats), UINT64_MAX)) for s in stats]
        return MeterStatsBatch([s.meter_id for s in stats], [int(s.flow_count) for s in stats],
                               raw, as_counters(raw, 4), _durations(stats))


def decode_meter_stats(parts: Iterable[bytes]) -> MeterStatsBatch:
    ids, flows, raw, durations = [], [], [], []
    head = _METER_HEAD.unpack_from
    for data in parts:
        offset, end = 0, len(data)
        while offset < end:
            if end - offset < _METER_HEAD.size:
                raise StatsDecodeError(f"meter stats entry at byte {offset} truncated")
            meter_id, length, flow_count, packets, bytes_, seconds, nanoseconds = \
                head(data, offset)
            if length < _METER_HEAD.size or (length - _METER_HEAD.size) % 16 or \
                    offset + length > end:
                raise StatsDecodeError(f"meter stats entry at byte {offset} has length "
                                       f"{length}")
            band_packets = band_bytes = 0
            for band in range(offset + _METER_HEAD.size, offset + length, 16):
                p, b = _BAND(data, band)
                band_packets += p
                band_bytes += b
            ids.append(meter_id)
            flows.append(flow_count)
            raw.append((packets, bytes_, min(band_packets, UINT64_MAX),
                        min(band_bytes, UINT64_MAX)))
            durations.append(seconds + nanoseconds * 1e-9)
            offset += length
    return MeterStatsBatch(ids, flows, raw, as_counters(raw, 4),
                           np.array(durations, dtype=np.float64))
