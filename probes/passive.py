"""The passive probe's loop: frames from a pcap file or a live capture -> flow records (shell).

Both sources run the same core (probes.decode, probes.flows); records come out once per
interval of capture time. Undecodable frames are counted by reason. Live frames come from
probes.capture (a TPACKET_V3 ring, or a recv_into socket) as (time, data) pairs.
"""

import collections
import dataclasses
import json
import math
from typing import Callable, Iterable, TextIO

from probes.decode import decode_frame
from probes.flows import FlowRecord, FlowTable
from probes.pcap import read_pcap


MAX_GAP_S = 60.0  # a jump in capture time beyond this starts a new interval


@dataclasses.dataclass
class ProbeCounters:
    frames: int = 0
    malformed: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    time_jumps: int = 0  # frames whose time jumped more than the allowed gap ahead

    @property
    def malformed_total(self) -> int:
        return sum(self.malformed.values())


def record_json(record: FlowRecord) -> str:
    data = dataclasses.asdict(record)
    data["kpis"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in record.kpis.items()}
    return json.dumps(data, sort_keys=True)


def run_frames(frames: Iterable[tuple[float, bytes | None]], interval_s: float,
               emit: Callable[[list[FlowRecord]], None], table: FlowTable | None = None,
               counters: ProbeCounters | None = None, max_gap_s: float = MAX_GAP_S
               ) -> ProbeCounters:
    """Feed (time, frame) pairs; emit records at every interval boundary and at the end.

    A frame of None is a tick: no frame arrived, but the time moves on (an idle live link
    still closes its intervals). A frame more than `max_gap_s` after the current interval
    (a corrupted timestamp, a capture paused for hours) closes that interval and starts a
    new one at its own time, instead of emitting every empty interval in between."""
    if not interval_s > 0 or not max_gap_s > 0:
        raise ValueError(f"interval_s ({interval_s}) and max_gap_s ({max_gap_s}) must be > 0")
    table = table if table is not None else FlowTable()  # an empty table is falsy (len 0)
    counters = counters if counters is not None else ProbeCounters()
    boundary = None
    last = None
    for when, frame in frames:
        if boundary is None:
            boundary = when + interval_s
        if when - boundary > max_gap_s:
            counters.time_jumps += 1
            emit(table.records(boundary))
            table.records(when)  # nothing in between: the next interval starts here
            boundary = when + interval_s
        while when >= boundary:
            emit(table.records(boundary))
            boundary += interval_s
        if frame is None:
            continue
        counters.frames += 1
        packet, reason = decode_frame(frame)
        if packet is None:
            counters.malformed[reason] += 1
        else:
            table.observe(packet, frame, when)
        last = when
    if last is not None:
        emit(table.records(last, final=True))
    return counters


def pcap_frames(path: str) -> Iterable[tuple[float, bytes]]:
    with open(path, "rb") as stream:
        for when, data, _original in read_pcap(stream):
            yield when, data


def write_records(out: TextIO) -> Callable[[list[FlowRecord]], None]:
    def emit(records: list[FlowRecord]) -> None:
        for record in records:
            out.write(record_json(record) + "\n")
        out.flush()
    return emit
