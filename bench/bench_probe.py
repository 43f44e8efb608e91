"""Benchmark of the passive probe's hot path on an in-memory capture.

The capture: voice (G.711 RTP), IPTV (MPEG-TS over UDP) and TCP flows, about 100,000
frames, written and read back through the pcap code. Measured in the same run:
- decode only (probes.decode.decode_frame), and the compiled path's decode_frame;
- decode + per-flow KPIs: the pure-Python reference (probes.flows.FlowTable) and the compiled
  hot path (probes/_fast.pyx, FastFlowTable, fed in batches), the probe's real work (aim for
  the compiled one: at least 1,000,000 frames/s on one core);
- a scapy-based decoder of the same frames (Ether(frame) and its layers), the baseline;
and memory per tracked flow of both paths.

Live, on a veth pair made for the run (root only; skipped otherwise): the same frames are
sent into one end while the reader at the other end is open but not reading, so the kernel
queues all of them; then the reader drains them against the clock. That measures what each
reader can do, independent of how fast Python can send. Kernel drop counters are checked to
be 0 (else the figure would flatter the reader). Readers, in the same run:
- TPACKET_V3 ring, receive only (take the (time, frame) pairs, nothing else);
- recv_into socket, receive only (the receive-only raw-socket loop);
- ring + decode + per-flow KPIs: the probe's own loop (probes.passive.run_frames), with the
  Python path, and with the compiled one fed each block's frames as a list and reading each
  block in place in the ring (run_blocks, what the probe runs; aim: at least 0.8 of the
  ring's receive-only loop);
- socket + decode + per-flow KPIs;
- scapy's decoder on frames from the ring.

Run: make bench   (or .venv/bin/python bench/bench_probe.py [--frames N] [--live-frames N])
"""

import argparse
import collections
import io
import itertools
import os
import socket
import struct
import subprocess
import sys
import time
import tracemalloc
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from probes import craft  # noqa: E402
from probes.capture import RingCapture, SocketCapture  # noqa: E402
from probes.decode import decode_frame  # noqa: E402
from probes.flows import FlowTable  # noqa: E402
from probes.passive import run_batches, run_blocks, run_frames  # noqa: E402
from probes import hotpath  # noqa: E402
from probes.pcap import read_pcap, write_pcap  # noqa: E402
from probes.tsgen import TsMuxer  # noqa: E402
from timing import best_of  # noqa: E402


def make_capture(frames: int) -> list[tuple[float, bytes]]:
    out = []
    ts = [d for d, _ in TsMuxer().datagrams(frames // 3)]
    for i in range(frames):
        t = i * 1e-4
        kind = i % 3
        if kind == 0:
            frame = craft.udp_frame("10.0.0.1", f"10.1.{(i // 3) % 50}.2", 4000 + (i // 3) % 50,
                                    5004, craft.rtp_packet(i // 150, i * 160, ssrc=(i // 3) % 50))
        elif kind == 1:
            frame = craft.udp_frame("10.0.0.9", "239.1.1.1", 5000, 1234, ts[(i // 3) % len(ts)])
        else:
            frame = craft.tcp_frame("10.0.0.5", "10.2.0.7", 40000 + (i // 3) % 20, 80,
                                    i * 1448, 1, 0x10, b"d" * 1448)
        out.append((t, frame))
    buffer = io.BytesIO()
    write_pcap(buffer, out)
    buffer.seek(0)
    return [(t, data) for t, data, _ in read_pcap(buffer)]


def run_probe(capture) -> FlowTable:
    table = FlowTable()
    for when, frame in capture:
        packet, _ = decode_frame(frame)
        if packet is not None:
            table.observe(packet, frame, when)
    table.records(capture[-1][0])
    return table


def _drain(capture, count: int, consume) -> tuple[float, int]:
    """Seconds for consume() to take `count` (time, data) pairs out of an already filled
    capture; returns (seconds, frames it saw)."""
    seen = [0]

    def counted():
        for pair in itertools.islice(capture.timed(idle_s=0.5), count):
            if pair[1] is None:
                return  # ran dry: fewer frames than sent
            seen[0] += 1
            yield pair
    start = time.perf_counter()
    consume(counted())
    return time.perf_counter() - start, seen[0]


def _drain_batches(capture, count: int, consume) -> tuple[float, int]:
    """_drain for block batches (RingCapture.timed_batches)."""
    seen = [0]

    def counted():
        for batch in capture.timed_batches(idle_s=0.5):
            if batch[-1][1] is None:
                return
            seen[0] += len(batch)
            yield batch
            if seen[0] >= count:
                return
    start = time.perf_counter()
    consume(counted())
    return time.perf_counter() - start, seen[0]


def _drain_blocks(capture, count: int, consume) -> tuple[float, int]:
    """_drain for blocks read in place (RingCapture.timed_blocks); counts the frames from
    the block headers."""
    seen = [0]

    def counted():
        for ring, offset in capture.timed_blocks(idle_s=0.5):
            if ring is None:
                return
            seen[0] += int.from_bytes(ring[offset + 12:offset + 16], sys.byteorder)
            yield ring, offset
            if seen[0] >= count:
                return
    start = time.perf_counter()
    consume(counted())
    return time.perf_counter() - start, seen[0]


def live(frames: list[bytes], scapy_sample: int, repeats: int = 3) -> None:
    """The veth part; see the module docstring."""
    if os.geteuid() != 0:
        print("live on a veth pair: needs root, skipped")
        return
    name = f"cemsb{uuid.uuid4().hex[:5]}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True)
    try:
        for end in (name, name + "p"):
            subprocess.run(["ip", "link", "set", end, "up", "mtu", "1500"], check=True)
        sender = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        sender.bind((name + "p", 0))
        ring_bytes = sum(len(f) + 64 for f in frames)
        blocks = max(4, -(-ring_bytes * 3 // 2 // (4 << 20)))

        def run_once(make, work, count, drain):
            with make() as capture:
                start = time.perf_counter()
                for frame in frames[:count]:
                    sender.send(frame)
                sent_s = time.perf_counter() - start
                time.sleep(1.3)
                seconds, got = drain(capture, count, work)
                stats = capture.read_stats()
            return got / seconds, got, stats.dropped, count / sent_s

        def run(make, work, count=len(frames), drain=_drain):
            """The median run of `repeats` (the machine is shared: one run can be off by 2x)."""
            runs = sorted((run_once(make, work, count, drain) for _ in range(repeats)),
                          key=lambda r: r[0])
            rate, got, _, send_rate = runs[len(runs) // 2]
            return rate, got, sum(r[2] for r in runs), send_rate

        def ring():
            # A 1 s block timeout (the probe uses 10 ms): blocks are handed over full while
            # the frames are sent, and the last, partly filled one a second later.
            return RingCapture(name, snaplen=2048, bpf="udp or tcp", blocks=blocks,
                               block_timeout_ms=1000)

        def sock():
            return SocketCapture(name, snaplen=2048, bpf="udp or tcp", rcvbuf=1 << 30)

        def receive_only(pairs):
            collections.deque(pairs, maxlen=0)

        def probe(pairs):  # the passive probe's own loop, records every second
            run_frames(pairs, 1.0, lambda records: None, FlowTable())

        def compiled(batches):  # the compiled path fed each block's frames as a list
            run_batches(batches, 1.0, lambda records: None, hotpath.fast.FastFlowTable())

        def in_place(blocks):  # the compiled path reading each block in the ring (the probe)
            run_blocks(blocks, 1.0, lambda records: None, hotpath.fast.FastFlowTable())
        results = {
            "ring, receive only": run(ring, receive_only),
            "socket (recv_into), receive only": run(sock, receive_only),
            "ring + decode + per-flow KPIs": run(ring, probe),
            "socket + decode + per-flow KPIs": run(sock, probe),
        }
        if hotpath.fast is not None:
            results["ring + compiled KPIs (block lists)"] = run(ring, compiled,
                                                                drain=_drain_batches)
            results["ring + compiled KPIs (in place)"] = run(ring, in_place, drain=_drain_blocks)
        try:
            from scapy.layers.l2 import Ether  # pylint: disable=import-outside-toplevel

            def scapy(pairs):
                for _, data in pairs:
                    packet = Ether(data)
                    _ = packet.payload.payload.sport if packet.payload.payload else None
            results["ring + scapy decoder"] = run(ring, scapy, scapy_sample)
        except ImportError:
            pass
        sender.close()
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
    print(f"live on a veth pair, {len(frames):,} frames queued by the kernel, then drained "
          f"(median of {repeats} runs; drops summed over them)")
    for label, (rate, got, dropped, send_rate) in results.items():
        print(f"  {label:<34} {rate:>12,.0f} frames/s  (got {got:,}, kernel dropped "
              f"{dropped}, sent at {send_rate:,.0f}/s)")
    probe = results["ring + decode + per-flow KPIs"][0]
    print(f"  probe / ring receive-only          {probe / results['ring, receive only'][0]:>12.2f}")
    if "ring + compiled KPIs (in place)" in results:
        fast_rate = results["ring + compiled KPIs (in place)"][0]
        print(f"  compiled / ring receive-only       "
              f"{fast_rate / results['ring, receive only'][0]:>12.2f}   (aim 0.8)")
        print(f"  compiled / Python probe on ring    {fast_rate / probe:>12.1f} x")
    print(f"  probe / socket receive-only        "
          f"{probe / results['socket (recv_into), receive only'][0]:>12.2f}")
    if "ring + scapy decoder" in results:
        print(f"  probe / scapy                      "
              f"{probe / results['ring + scapy decoder'][0]:>12.1f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--scapy-frames", type=int, default=5_000)
    parser.add_argument("--live-frames", type=int, default=100_000,
                        help="frames for the veth part (0 to skip it)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of each live reader, of which the median is printed")
    args = parser.parse_args()
    capture = make_capture(args.frames)
    frames = [f for _, f in capture]
    decode_s = best_of(lambda: [decode_frame(f) for f in frames])
    probe_s = best_of(lambda: run_probe(capture))
    try:
        from scapy.layers.l2 import Ether  # pylint: disable=import-outside-toplevel
        sample = frames[:args.scapy_frames]

        def scapy_decode():
            for frame in sample:
                packet = Ether(frame)
                _ = packet.payload.payload.sport if packet.payload.payload else None
        scapy_rate = len(sample) / best_of(scapy_decode, repeat=1)
    except ImportError:
        scapy_rate = None
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table = FlowTable()
    for i in range(20_000):
        frame = craft.udp_frame("10.0.0.1", "10.0.0.2", 1024 + i % 60000, 9 + i // 60000, b"x")
        packet, _ = decode_frame(frame)
        table.observe(packet, frame, float(i))
    per_flow = (tracemalloc.get_traced_memory()[0] - before) / len(table)
    tracemalloc.stop()
    print(f"passive probe hot path, {len(frames):,} frames (voice RTP, MPEG-TS, TCP), one core")
    print(f"  decode only                  {len(frames) / decode_s:>12,.0f} frames/s")
    print(f"  decode + per-flow KPIs       {len(frames) / probe_s:>12,.0f} frames/s")
    if scapy_rate:
        print(f"  scapy decoder (baseline)     {scapy_rate:>12,.0f} frames/s "
              f"(on {min(len(frames), args.scapy_frames):,})")
        print(f"  probe / scapy                {len(frames) / probe_s / scapy_rate:>12,.1f} x")
    else:
        print("  scapy decoder: scapy is not installed (make setup installs it)")
    print(f"  memory per tracked flow      {per_flow:>12,.0f} bytes")
    if hotpath.fast is None:
        print(f"  compiled hot path: not measured, {hotpath.HOTPATH_REASON}")
    else:
        fast = hotpath.fast
        fast_decode_s = best_of(lambda: [fast.decode_frame(f) for f in frames])
        fast_s = best_of(lambda: run_frames(capture, 1.0, lambda records: None,
                                            fast.FastFlowTable()))
        python_rate, fast_rate = len(frames) / probe_s, len(frames) / fast_s
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        table = fast.FastFlowTable()
        flows = [(i * 1e-5, craft.udp_frame("10.0.0.1", "10.0.0.2", 1024 + i % 60000,
                                            9 + i // 60000, b"x")) for i in range(20_000)]
        frames_bytes = tracemalloc.get_traced_memory()[0] - before
        run_batches([flows], 1e9, lambda records: None, table)
        fast_per_flow = (tracemalloc.get_traced_memory()[0] - before - frames_bytes) / len(table)
        tracemalloc.stop()
        print("compiled hot path (probes/_fast.pyx), the same frames, same run")
        print(f"  decode only (decode_frame)   {len(frames) / fast_decode_s:>12,.0f} frames/s")
        print(f"  decode + per-flow KPIs       {fast_rate:>12,.0f} frames/s   "
              f"{fast_rate / python_rate:.1f}x the Python path (aim 1,000,000/s)")
        if scapy_rate:
            print(f"  compiled / scapy             {fast_rate / scapy_rate:>12,.1f} x")
        print(f"  memory per tracked flow      {fast_per_flow:>12,.0f} bytes")
        # nDPI on each conversation's first packets: the same capture (long flows), and one
        # where every frame is a new conversation's (DNS queries from 20,000 ports)
        ndpi_tables = []

        def with_ndpi(frames_in):
            table = fast.FastFlowTable(ndpi=True)
            ndpi_tables.append(table)
            run_frames(frames_in, 1.0, lambda records: None, table)
        ndpi_s = best_of(lambda: with_ndpi(capture))
        query = struct.pack("!HHHHHH", 1, 0x0100, 1, 0, 0, 0) + b"\x07example\x03com\x00" + \
            struct.pack("!HH", 1, 1)
        lookups = [(i * 1e-5, craft.udp_frame("10.0.0.1", "10.0.0.53", 1024 + i, 53, query))
                   for i in range(20_000)]
        plain_dns_s = best_of(lambda: run_frames(lookups, 1.0, lambda records: None,
                                                 fast.FastFlowTable()))
        ndpi_dns_s = best_of(lambda: with_ndpi(lookups))
        handed = ndpi_tables[-1].ndpi.packets
        print(f"  with nDPI, the same capture  {len(frames) / ndpi_s:>12,.0f} frames/s   "
              f"{fast_s / ndpi_s:.2f} of without ({(ndpi_s - fast_s) / len(frames) * 1e9:,.0f}"
              " ns a frame)")
        print(f"  with nDPI, a new flow a frame {len(lookups) / ndpi_dns_s:>11,.0f} frames/s   "
              f"({(ndpi_dns_s - plain_dns_s) / handed * 1e9:,.0f} ns a packet nDPI looks at; "
              f"{handed:,} of {len(lookups):,})")
    if args.live_frames:
        live([f for _, f in make_capture(args.live_frames)], args.scapy_frames, args.repeats)


if __name__ == "__main__":
    main()
