"""The passive probe's loops: frames from a pcap file or a raw socket -> flow records (shell).

Both run the same core (probes.decode, probes.flows); records come out once per interval
of capture time, as JSON lines here. Undecodable frames are counted by reason.
"""

import collections
import dataclasses
import json
import math
import socket
import time
from typing import Callable, Iterable, TextIO

from probes.decode import decode_frame
from probes.flows import FlowRecord, FlowTable
from probes.pcap import read_pcap

ETH_P_ALL = 0x0003


@dataclasses.dataclass
class ProbeCounters:
    frames: int = 0
    malformed: collections.Counter = dataclasses.field(default_factory=collections.Counter)


def record_json(record: FlowRecord) -> str:
    data = dataclasses.asdict(record)
    data["kpis"] = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                    for k, v in record.kpis.items()}
    return json.dumps(data, sort_keys=True)


def run_frames(frames: Iterable[tuple[float, bytes]], interval_s: float,
               emit: Callable[[list[FlowRecord]], None], table: FlowTable | None = None
               ) -> ProbeCounters:
    """Feed (time, frame) pairs; emit records at every interval boundary and at the end."""
    table = table or FlowTable()
    counters = ProbeCounters()
    boundary = None
    last = None
    for when, frame in frames:
        if boundary is None:
            boundary = when + interval_s
        while when >= boundary:
            emit(table.records(boundary))
            boundary += interval_s
        counters.frames += 1
        packet, reason = decode_frame(frame)
        if packet is None:
            counters.malformed[reason] += 1
        else:
            table.observe(packet, frame, when)
        last = when
    if last is not None:
        emit(table.records(last))
    return counters


def pcap_frames(path: str) -> Iterable[tuple[float, bytes]]:
    with open(path, "rb") as stream:
        for when, data, _original in read_pcap(stream):
            yield when, data


def live_frames(iface: str, snaplen: int = 2048, stop: Callable[[], bool] = lambda: False
                ) -> Iterable[tuple[float, bytes]]:
    """Frames from a raw AF_PACKET socket on `iface` (recv_into a reused buffer).

    MPEG-TS analysis needs whole datagrams; a snap length of about 128 bytes is enough when
    only RTP and TCP headers matter, and cheaper."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sock.bind((iface, 0))
    sock.settimeout(0.2)
    buffer = bytearray(snaplen)
    view = memoryview(buffer)
    try:
        while not stop():
            try:
                length = sock.recv_into(buffer)
            except socket.timeout:
                yield time.time(), b""  # lets the interval close on an idle link
                continue
            yield time.time(), bytes(view[:length])
    finally:
        sock.close()


def write_records(out: TextIO) -> Callable[[list[FlowRecord]], None]:
    def emit(records: list[FlowRecord]) -> None:
        for record in records:
            out.write(record_json(record) + "\n")
        out.flush()
    return emit
