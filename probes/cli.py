"""cems-probe: the probes' command line (shell).

    cems-probe passive (--pcap FILE | --iface IF [--bpf EXPR] [--no-ring]) [--interval S]
                       [--controller ADDR]   (JSON lines of flow records on stdout)
    cems-probe gen-voice|gen-iptv --target HOST:PORT [--seconds S]   (prints what it sent)
    cems-probe agent --controller ADDR [--probe-id ID] [--reflect PORT]   (active tests)
    cems-probe stamp-reflector [--bind HOST:PORT]
    cems-probe stamp-sender --target HOST:PORT [--count N] [--interval S] [--json]
"""

import argparse
import dataclasses
import json
import signal
import socket
import sys
import threading
import time

from cems.v1 import probe_pb2

from probes.agent import ProbeAgent
from probes.capture import CaptureError, open_capture
from probes.export import RecordExporter
from probes.flows import FlowTable
from probes.gen import send_iptv, send_voice
from probes.passive import ProbeCounters, live_frames, pcap_frames, run_frames, write_records
from probes.pcap import PcapError
from probes.stamp import DEFAULT_PORT
from probes.stamp_io import Reflector, run_sender


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, for example 10.0.0.3:862")
    return host, int(port)


def run_passive(args) -> int:
    table = FlowTable(max_flows=args.max_flows)
    counters = ProbeCounters()
    to_stdout = write_records(sys.stdout)
    exporter = RecordExporter(args.controller, args.probe_id).start() if args.controller else None
    capture = None
    if args.iface:
        try:
            capture = open_capture(args.iface, args.snaplen, args.bpf, ring=not args.no_ring)
        except CaptureError as err:
            print(f"cems-probe: {err}", file=sys.stderr)
            return 1
    source = (f"{'ring' if hasattr(capture, 'ring') else 'socket'}:{args.iface}" if capture
              else f"pcap:{args.pcap}")

    def health() -> probe_pb2.ProbeHealth:
        kernel = capture.read_stats() if capture is not None else None
        return probe_pb2.ProbeHealth(
            time_unix_s=time.time(), source=source, frames=counters.frames,
            malformed=counters.malformed_total, flows_tracked=len(table),
            flows_evicted=table.evicted,
            kernel_received=kernel.received if kernel else 0,
            kernel_dropped=kernel.dropped if kernel else 0)

    def emit(records):
        to_stdout(records)
        if exporter is not None:
            exporter.offer(records)
            exporter.set_health(health())
    if args.pcap:
        try:
            run_frames(pcap_frames(args.pcap), args.interval, emit, table, counters)
        except (OSError, PcapError) as err:
            print(f"cems-probe: {args.pcap}: {err}", file=sys.stderr)
            return 1
    else:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(f"cems-probe: capturing on {source}", file=sys.stderr, flush=True)
        with capture:
            run_frames(live_frames(capture.frames(stop.is_set), time.time), args.interval, emit,
                       table, counters)
    final = health()
    summary = {"source": source, "frames": counters.frames, "malformed": dict(counters.malformed),
               "flows_evicted": table.evicted, "kernel_received": final.kernel_received,
               "kernel_dropped": final.kernel_dropped}
    if exporter is not None:
        exporter.set_health(final)
        exporter.close()
        summary.update(exported=exporter.sent, export_rejected=exporter.rejected,
                       export_dropped=exporter.dropped, export_pending=exporter.pending())
    print(json.dumps(summary), file=sys.stderr)
    return 0


def run_agent(args) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    exporter = RecordExporter(args.controller, args.probe_id).start()
    reflector = None
    if args.reflect is not None:
        reflector = Reflector("0.0.0.0", args.reflect)
        threading.Thread(target=reflector.serve, args=(stop,), daemon=True).start()
    agent = ProbeAgent(args.controller, args.probe_id, exporter.offer)
    print(f"cems-probe agent {args.probe_id}: waiting for tests from {args.controller}"
          + (f", reflecting STAMP on port {reflector.address[1]}" if reflector else ""),
          file=sys.stderr, flush=True)
    agent.serve(stop)
    exporter.close()
    summary = {"tests": len(agent.tests), "exported": exporter.sent,
               "export_rejected": exporter.rejected, "export_dropped": exporter.dropped,
               "errors": agent.errors}
    if reflector is not None:
        summary.update(reflected=reflector.reflected, reflect_malformed=reflector.malformed)
    print(json.dumps(summary), file=sys.stderr)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cems-probe", description="cems probes")
    sub = parser.add_subparsers(dest="command", required=True)
    passive = sub.add_parser("passive", help="flow KPIs from a capture or an interface")
    source = passive.add_mutually_exclusive_group(required=True)
    source.add_argument("--pcap", metavar="FILE", help="read a pcap file")
    source.add_argument("--iface", metavar="IF", help="capture on an interface (root)")
    passive.add_argument("--interval", type=float, default=1.0, metavar="SECONDS")
    passive.add_argument("--max-flows", type=int, default=100_000)
    passive.add_argument("--snaplen", type=int, default=2048,
                         help="bytes kept per frame (MPEG-TS needs whole datagrams)")
    passive.add_argument("--bpf", default="", metavar="EXPR",
                         help="capture filter in tcpdump syntax, applied in the kernel")
    passive.add_argument("--no-ring", action="store_true",
                         help="read with recv_into instead of a TPACKET_V3 ring")
    passive.add_argument("--controller", metavar="HOST:PORT",
                         help="also export the records to the cems controller's gRPC address")
    passive.add_argument("--probe-id", default=socket.gethostname())
    for kind in ("voice", "iptv"):
        gen = sub.add_parser(f"gen-{kind}", help=f"send {kind} test traffic, print what was sent")
        gen.add_argument("--target", type=_address, required=True)
        gen.add_argument("--seconds", type=float, default=10.0)
    agent = sub.add_parser("agent", help="run the active tests the controller starts")
    agent.add_argument("--controller", required=True, metavar="HOST:PORT|unix:PATH")
    agent.add_argument("--probe-id", default=socket.gethostname())
    agent.add_argument("--reflect", type=int, metavar="PORT",
                       help="also answer STAMP on this UDP port (862 is the standard one)")
    reflector = sub.add_parser("stamp-reflector", help="answer STAMP test packets (RFC 8762)")
    reflector.add_argument("--bind", type=_address, default=("0.0.0.0", DEFAULT_PORT))
    sender = sub.add_parser("stamp-sender", help="run one STAMP session and print its result")
    sender.add_argument("--target", type=_address, required=True)
    sender.add_argument("--count", type=int, default=100)
    sender.add_argument("--interval", type=float, default=0.01, metavar="SECONDS")
    sender.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS")
    sender.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.command in ("gen-voice", "gen-iptv"):
        send = send_voice if args.command == "gen-voice" else send_iptv
        print(json.dumps(dataclasses.asdict(send(*args.target, args.seconds))))
        return 0
    if args.command == "passive":
        return run_passive(args)
    if args.command == "agent":
        return run_agent(args)
    if args.command == "stamp-reflector":
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        server = Reflector(*args.bind)
        print(f"STAMP reflector on {server.address[0]}:{server.address[1]}", flush=True)
        server.serve(stop)
        print(f"reflected {server.reflected}, malformed {server.malformed}", flush=True)
        return 0
    if args.count < 1 or args.interval < 0:
        parser.error("--count must be at least 1 and --interval not negative")
    result = run_sender(*args.target, count=args.count, interval_s=args.interval,
                        timeout_s=args.timeout)
    summary = {"sent": result.sent, "received": result.received, "lost": result.lost,
               "loss_ratio": result.loss_ratio, "duplicates": result.duplicates,
               "reordered": result.reordered, "malformed": result.malformed,
               "rtt_mean_ms": result.rtt_mean_ms, "jitter_ms": result.jitter_ms,
               "rtt_max_ms": max(result.rtt_ms, default=None)}
    if args.json:
        print(json.dumps(summary))
    else:
        print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in summary.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
