"""Benchmark of the passive probe's hot path on an in-memory capture.

The capture: voice (G.711 RTP), IPTV (MPEG-TS over UDP) and TCP flows, about 100,000
frames, written and read back through the pcap code. Measured in the same run:
- decode only (probes.decode.decode_frame);
- decode + per-flow KPIs (probes.flows.FlowTable), the probe's real work;
- a scapy-based decoder of the same frames (Ether(frame) and its layers), the baseline;
and memory per tracked flow. Live capture on a veth is not measured here yet.

Run: make bench   (or .venv/bin/python bench/bench_probe.py [--frames N])
"""

import argparse
import io
import os
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from probes import craft  # noqa: E402
from probes.decode import decode_frame  # noqa: E402
from probes.flows import FlowTable  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--scapy-frames", type=int, default=5_000)
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


if __name__ == "__main__":
    main()
