"""The passive probe's loop: frames from a pcap file or a live capture -> flow records (shell).

Both sources run the same core: the pure-Python reference (probes.decode, probes.flows) or
its compiled twin (probes/_fast.pyx, chosen by probes.hotpath); records come out once per
interval of capture time. Undecodable frames are counted by reason. Live frames come from
probes.capture (a TPACKET_V3 ring, or a recv_into socket) as (time, data) pairs.
"""

import collections
import dataclasses
import itertools
import json
import math
from typing import Callable, Iterable, Iterator, TextIO

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
               emit: Callable[[list[FlowRecord]], None], table=None,
               counters: ProbeCounters | None = None, max_gap_s: float = MAX_GAP_S
               ) -> ProbeCounters:
    """Feed (time, frame) pairs; emit records at every interval boundary and at the end.

    A frame of None is a tick: no frame arrived, but the time moves on (an idle live link
    still closes its intervals). A frame more than `max_gap_s` after the current interval
    (a corrupted timestamp, a capture paused for hours) closes that interval and starts a
    new one at its own time, instead of emitting every empty interval in between.
    `table` is a FlowTable or the compiled FastFlowTable (probes.hotpath.new_table()); the
    compiled one takes the frames in batches of BATCH (run_batches), the same records either
    way. Batching waits for BATCH frames, so it is for files and lists: a live capture goes
    through run_blocks (the ring, in place) or run_batches (a block or a frame at a time)."""
    if table is not None and hasattr(table, "feed"):
        return run_batches(_batches(frames), interval_s, emit, table, counters, max_gap_s)
    return run_batches(([pair] for pair in frames), interval_s, emit, table, counters,
                       max_gap_s)


BATCH = 4096  # frames of a file handed to the compiled path per call


def _batches(frames: Iterable, size: int = BATCH) -> Iterator[list]:
    iterator = iter(frames)
    while True:
        batch = list(itertools.islice(iterator, size))
        if not batch:
            return
        yield batch


class _Intervals:
    """Interval boundaries over capture time, shared by every runner: emits the records of
    each interval that a frame's (or tick's) time closes."""

    def __init__(self, interval_s: float, emit, table, counters: ProbeCounters,
                 max_gap_s: float):
        if not interval_s > 0 or not max_gap_s > 0:
            raise ValueError(f"interval_s ({interval_s}) and max_gap_s ({max_gap_s}) must be "
                             "> 0")
        self.interval_s, self.emit, self.table = interval_s, emit, table
        self.counters, self.max_gap_s = counters, max_gap_s
        self.boundary = None

    def advance(self, when: float) -> None:
        """Close every interval that ends at or before `when`."""
        if self.boundary is None:
            self.boundary = when + self.interval_s
        if when - self.boundary > self.max_gap_s:
            self.counters.time_jumps += 1
            self.emit(self.table.records(self.boundary))
            self.table.records(when)  # nothing in between: the next interval starts here
            self.boundary = when + self.interval_s
        while when >= self.boundary:
            self.emit(self.table.records(self.boundary))
            self.boundary += self.interval_s


def run_batches(batches: Iterable[list], interval_s: float,
                emit: Callable[[list[FlowRecord]], None], table=None,
                counters: ProbeCounters | None = None, max_gap_s: float = MAX_GAP_S
                ) -> ProbeCounters:
    """run_frames over lists of (time, frame) pairs (a ring block's frames, a slice of a
    file). A compiled table takes each run of frames inside the current interval in one
    call; interval boundaries, time jumps and ticks are handled here, for both paths."""
    table = table if table is not None else FlowTable()  # an empty table is falsy (len 0)
    counters = counters if counters is not None else ProbeCounters()
    intervals = _Intervals(interval_s, emit, table, counters, max_gap_s)
    feed = getattr(table, "feed", None)
    last = None
    for batch in batches:
        i, n = 0, len(batch)
        while i < n:
            if feed is not None and intervals.boundary is not None:
                i, taken = feed(batch, i, intervals.boundary, counters.malformed)
                if taken:
                    counters.frames += taken
                    last = batch[i - 1][0]
                if i >= n:
                    break
            when, frame = batch[i]
            i += 1
            intervals.advance(when)
            if frame is None:
                continue
            if feed is not None:
                i -= 1  # inside the interval now: the compiled path takes it
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


def run_blocks(blocks: Iterable[tuple], interval_s: float,
               emit: Callable[[list[FlowRecord]], None], table,
               counters: ProbeCounters | None = None, max_gap_s: float = MAX_GAP_S
               ) -> ProbeCounters:
    """run_frames for the compiled table on a ring read in place: `blocks` gives (ring,
    block offset) for each block (RingCapture.timed_blocks) or (None, time) for a tick, and
    FastFlowTable.feed_block reads the block's frames from the ring, stopping at each
    interval boundary. The same records as run_frames over the same frames."""
    counters = counters if counters is not None else ProbeCounters()
    intervals = _Intervals(interval_s, emit, table, counters, max_gap_s)
    last = None
    for ring, at in blocks:
        if ring is None:
            intervals.advance(at)
            continue
        index = 0
        while True:
            boundary = intervals.boundary if intervals.boundary is not None else -math.inf
            index, taken, taken_last, following = table.feed_block(ring, at, index, boundary,
                                                                   counters.malformed)
            if taken:
                counters.frames += taken
                last = taken_last
            if math.isnan(following):
                break
            intervals.advance(following)
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
