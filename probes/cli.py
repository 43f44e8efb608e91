"""cems-probe: the probes' command line (shell).

    cems-probe passive (--pcap FILE | --iface IF [--bpf EXPR] [--no-ring]) [--interval S]
                       [--controller ADDR] [--no-ndpi]   (JSON lines of flow records)
    cems-probe --version   (which hot path runs: compiled with nDPI, or the Python one)
    cems-probe gen-voice|gen-iptv --target HOST:PORT [--seconds S]   (prints what it sent;
                       gen-iptv --controller ADDR asks admission first, exit 3 if refused)
    cems-probe web-server [--bind HOST:PORT] [--tls-cert F --tls-key F]
                       | web-client --url URL [--pages N] [--ca F]   (http:// or https://)
    cems-probe video-server [--bind HOST:PORT] | video-player --url URL   (adaptive video;
                       with --controller it follows the advised bitrate)
    cems-probe agent --controller ADDR [--probe-id ID] [--reflect PORT]   (active tests)
    cems-probe stamp-reflector [--bind HOST:PORT]
    cems-probe stamp-sender --target HOST:PORT [--count N] [--interval S] [--json]
"""

import argparse
import dataclasses
import json
import signal
import sys
import threading
import time

import grpc
from cems.v1 import probe_pb2

from client.channel import Credentials, TokenError, add_arguments as add_client_arguments
from client.stream import read_password
from probes.agent import ProbeAgent
from probes.capture import CaptureError, open_capture
from probes.export import RecordExporter
from probes.stream import StreamExporter
from probes import hotpath
from probes.gen import IPTV_BITRATE_BPS, send_iptv, send_voice
from probes.passive import (ProbeCounters, pcap_frames, run_batches, run_blocks, run_frames,
                            write_records)
from probes.report import PolicyClient, SessionReporter, local_address_towards
from probes.pcap import PcapError
from probes.stamp import DEFAULT_PORT
from probes.stamp_io import Reflector, run_sender
from probes.video import SegmentServer, play
from probes.web import WebServer, load_page


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, for example 10.0.0.3:862")
    return host, int(port)


def _bounded(kind, low, high):
    """An argparse type: a number of `kind` in [low, high], or a message saying the range."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind.__name__}") from None
        if not low <= value <= high:  # also refuses NaN
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value
    return parse


SECONDS = _bounded(float, 0.001, 86_400)
PROBE_ID_HELP = ("the probe's id, to check it against the credential (the controller takes "
                 "the probe id from the probe token or certificate; default: that one)")


def make_exporter(args):
    """The records' way out, started: the controller's gRPC, NATS JetStream or none."""
    if args.controller:
        return RecordExporter(args.controller, args.probe_id,
                              credentials=Credentials.from_args(args)).start()
    if not args.nats:
        return None
    if not args.probe_id:
        raise ValueError("--nats needs --probe-id: the records are published on "
                         "cems.records.PROBE_ID")
    if bool(args.nats_user) != bool(args.nats_password_file):
        raise ValueError("--nats-user and --nats-password-file go together")
    token = Credentials.from_args(args).token
    if not token:
        raise ValueError("--nats needs the probe token ($CEMS_TOKEN or --token-file): "
                         "every batch is signed with it")
    return StreamExporter(args.nats, args.probe_id, token, args.nats_user,
                          read_password(args.nats_password_file), args.nats_tls_ca).start()


def run_passive(args) -> int:
    table = hotpath.new_table(max_flows=args.max_flows, ndpi=not args.no_ndpi)
    counters = ProbeCounters()
    to_stdout = write_records(sys.stdout)
    try:
        exporter = make_exporter(args)
    except (ValueError, OSError, TokenError) as err:
        print(f"cems-probe: {err}", file=sys.stderr)
        return 2
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
            flows_evicted=table.evicted, hot_path=hotpath.HOTPATH,
            kernel_received=kernel.received if kernel else 0,
            kernel_dropped=kernel.dropped if kernel else 0)

    def emit(records):
        to_stdout(records)
        if exporter is not None:
            exporter.offer(records)
            exporter.set_health(health())
    if args.pcap:
        try:
            run_frames(pcap_frames(args.pcap), args.interval, emit, table, counters,
                       args.max_gap)
        except (OSError, PcapError) as err:
            print(f"cems-probe: {args.pcap}: {err}", file=sys.stderr)
            return 1
    else:
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        print(f"cems-probe: capturing on {source}", file=sys.stderr, flush=True)
        with capture:
            if hasattr(table, "feed_block") and hasattr(capture, "timed_blocks"):
                # the compiled path reads each ring block in place, one call per block
                run_blocks(capture.timed_blocks(stop.is_set), args.interval, emit, table,
                           counters, args.max_gap)
            else:
                run_batches(capture.timed_batches(stop.is_set), args.interval, emit, table,
                            counters, args.max_gap)
    final = health()
    summary = {"source": source, "hot_path": hotpath.HOTPATH, "frames": counters.frames, "malformed": dict(counters.malformed),
               "flows_evicted": table.evicted, "kernel_received": final.kernel_received,
               "kernel_dropped": final.kernel_dropped, "time_jumps": counters.time_jumps}
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
    credentials = Credentials.from_args(args)
    exporter = RecordExporter(args.controller, args.probe_id, credentials=credentials).start()
    reflector = None
    if args.reflect is not None:
        reflector = Reflector("0.0.0.0", args.reflect)
        threading.Thread(target=reflector.serve, args=(stop,), daemon=True).start()
    agent = ProbeAgent(args.controller, args.probe_id, exporter.offer, credentials=credentials)
    print(f"cems-probe agent {args.probe_id or '(named by its token)'}: waiting for tests from {args.controller}"
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


def parse_rate(text: str) -> int:
    """'500k', '2M', '1G' or bit/s -> bit/s."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower(), 1)
    try:
        value = float(text[:-1] if scale != 1 else text) * scale
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {text!r}: use bit/s or a k/M/G suffix") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate {text!r} must be positive")
    return int(value)


def _serve_until_signal(server, what: str) -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"{what} on {server.address[0]}:{server.address[1]}", flush=True)
    stop.wait()
    server.stop()
    return 0


def _reporter(args):
    """A SessionReporter when --controller is given (else None)."""
    if not getattr(args, "controller", None):
        return None
    return SessionReporter(args.controller, Credentials.from_args(args))


def _refused_by_admission(args) -> dict | None:
    """Ask PolicyService.AdmitSession for the stream gen-iptv is about to send: None when
    admitted, else what to print. A controller that cannot be asked does not stop the test
    traffic; it is said on stderr."""
    host, port = args.target
    policy = PolicyClient(args.controller, Credentials.from_args(args))
    try:
        reply = policy.admit("iptv", IPTV_BITRATE_BPS,
                             local_address_towards(f"udp://{host}:{port}"), host)
    except grpc.RpcError as err:
        print(f"cems-probe: admission not asked ({err.code().name}: {err.details()}); "
              "sending anyway", file=sys.stderr, flush=True)
        return None
    finally:
        policy.close()
    if reply.admitted:
        print(f"cems-probe: {reply.reason}", file=sys.stderr, flush=True)
        return None
    return {"refused": reply.reason, "element": reply.element,
            "customer_id": reply.customer_id, "decision_seq": reply.decision_seq}


def run_web_client(args) -> int:
    loads = []
    reporter = _reporter(args)
    for page in range(args.pages):
        if page:
            time.sleep(args.think)
        load = load_page(args.url, connections=args.connections, cafile=args.ca)
        loads.append(load)
        print(json.dumps(dataclasses.asdict(load)), flush=True)
        if reporter is not None and not load.errors:
            print(reporter.report("web", local_address_towards(args.url),
                                  page_load_s=load.page_load_s), file=sys.stderr, flush=True)
    if reporter is not None:
        reporter.close()
    times = sorted(l.page_load_s for l in loads if not l.errors)
    print(json.dumps({"pages": len(loads), "failed": sum(1 for l in loads if l.errors),
                      "page_load_median_s": times[len(times) // 2] if times else None,
                      "page_load_max_s": times[-1] if times else None}), flush=True)
    return 0 if times else 1


class _Version(argparse.Action):
    """--version on one line (argparse's own wraps it at the terminal's width)."""

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"cems-probe 0.1.0; passive {hotpath.describe()}")
        parser.exit()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cems-probe", description="cems probes")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version and which hot path runs, and exit")
    sub = parser.add_subparsers(dest="command", required=True)
    passive = sub.add_parser("passive", help="flow KPIs from a capture or an interface")
    source = passive.add_mutually_exclusive_group(required=True)
    source.add_argument("--pcap", metavar="FILE", help="read a pcap file")
    source.add_argument("--iface", metavar="IF", help="capture on an interface (root)")
    passive.add_argument("--interval", type=_bounded(float, 0.01, 3600), default=1.0,
                         metavar="SECONDS", help="one record per flow and interval (0.01..3600)")
    passive.add_argument("--max-flows", type=_bounded(int, 1, 10_000_000), default=100_000,
                         help="flows tracked at once; the oldest are evicted and counted")
    passive.add_argument("--max-gap", type=_bounded(float, 0.01, 86_400), default=60.0,
                         metavar="SECONDS", help="a jump in capture time beyond this starts a "
                                                 "new interval (corrupted or paused captures)")
    passive.add_argument("--snaplen", type=_bounded(int, 64, 262_144), default=2048,
                         help="bytes kept per frame (MPEG-TS needs whole datagrams)")
    passive.add_argument("--bpf", default="", metavar="EXPR",
                         help="capture filter in tcpdump syntax, applied in the kernel")
    passive.add_argument("--no-ndpi", action="store_true",
                         help="do not run nDPI on each flow's first packets (compiled path)")
    passive.add_argument("--no-ring", action="store_true",
                         help="read with recv_into instead of a TPACKET_V3 ring")
    export = passive.add_mutually_exclusive_group()
    export.add_argument("--controller", metavar="HOST:PORT|unix:PATH",
                        help="also export the records to the cems controller's gRPC address "
                             "(with a probe token: $CEMS_TOKEN or --token-file)")
    export.add_argument("--nats", metavar="nats://HOST:PORT",
                        help="also publish the records on NATS JetStream (the stream "
                             "CEMS_RECORDS, subject cems.records.PROBE_ID), signed with the "
                             "probe token; needs --probe-id")
    passive.add_argument("--nats-user", default="", help="the probe's NATS user")
    passive.add_argument("--nats-password-file", default="", metavar="PATH",
                         help="a file that holds the NATS user's password")
    passive.add_argument("--nats-tls-ca", default="", metavar="PEM",
                         help="with tls://: the CA that signed the NATS server's certificate")
    passive.add_argument("--probe-id", default="", help=PROBE_ID_HELP)
    add_client_arguments(passive)
    for kind in ("voice", "iptv"):
        gen = sub.add_parser(f"gen-{kind}", help=f"send {kind} test traffic, print what was sent")
        gen.add_argument("--target", type=_address, required=True)
        gen.add_argument("--seconds", type=SECONDS, default=10.0)
        if kind == "iptv":
            gen.add_argument("--controller", metavar="HOST:PORT|unix:PATH",
                             help="ask the controller's admission control first and send "
                                  "nothing when it refuses the stream (exit status 3)")
            add_client_arguments(gen)
    web_server = sub.add_parser("web-server", help="serve a test web page with objects")
    web_server.add_argument("--bind", type=_address, default=("0.0.0.0", 8080))
    web_server.add_argument("--objects", type=_bounded(int, 0, 10_000), default=20)
    web_server.add_argument("--object-bytes", type=_bounded(int, 0, 100_000_000), default=50_000)
    web_server.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this "
                            "certificate (PEM), and --tls-key")
    web_server.add_argument("--tls-key", metavar="FILE", help="the certificate's key (PEM)")
    web_client = sub.add_parser("web-client", help="load pages, print their load times")
    web_client.add_argument("--url", required=True, help="for example http://10.0.0.9:8080/")
    web_client.add_argument("--pages", type=_bounded(int, 1, 1_000_000), default=1)
    web_client.add_argument("--think", type=_bounded(float, 0, 3600), default=1.0,
                            metavar="SECONDS", help="pause between pages")
    web_client.add_argument("--connections", type=_bounded(int, 1, 64), default=4)
    web_client.add_argument("--ca", metavar="FILE",
                            help="check an https:// server against this CA (PEM)")
    video_server = sub.add_parser("video-server", help="serve adaptive-video segments")
    video_server.add_argument("--bind", type=_address, default=("0.0.0.0", 8081))
    video_server.add_argument("--bitrates", default="500k,1M,2M,4M",
                              help="the bitrate ladder, comma-separated")
    video_server.add_argument("--segment-seconds", type=_bounded(float, 0.1, 60), default=2.0)
    video_server.add_argument("--segments", type=_bounded(int, 1, 100_000), default=30)
    player = sub.add_parser("video-player", help="play a video, print what it experienced")
    player.add_argument("--url", required=True, help="for example http://10.0.0.9:8081/")
    player.add_argument("--startup", type=_bounded(float, 0.1, 600), default=4.0,
                        metavar="SECONDS")
    player.add_argument("--max-buffer", type=_bounded(float, 0.1, 3600), default=20.0,
                        metavar="SECONDS")
    player.add_argument("--segments", type=_bounded(int, 0, 100_000), default=0,
                        help="stop after N (default: all)")
    player.add_argument("--ignore-advice", action="store_true",
                        help="with --controller: report, but do not follow the controller's "
                             "advised bitrate")
    for client in (web_client, player):
        client.add_argument("--controller", metavar="HOST:PORT|unix:PATH",
                            help="also report each session to the controller (with a probe "
                                 "token: $CEMS_TOKEN or --token-file)")
        add_client_arguments(client)
    agent = sub.add_parser("agent", help="run the active tests the controller starts")
    agent.add_argument("--controller", required=True, metavar="HOST:PORT|unix:PATH",
                       help="the controller (with a probe token: $CEMS_TOKEN or --token-file)")
    agent.add_argument("--probe-id", default="", help=PROBE_ID_HELP)
    add_client_arguments(agent)
    agent.add_argument("--reflect", type=_bounded(int, 1, 65535), metavar="PORT",
                       help="also answer STAMP on this UDP port (862 is the standard one)")
    reflector = sub.add_parser("stamp-reflector", help="answer STAMP test packets (RFC 8762)")
    reflector.add_argument("--bind", type=_address, default=("0.0.0.0", DEFAULT_PORT))
    sender = sub.add_parser("stamp-sender", help="run one STAMP session and print its result")
    sender.add_argument("--target", type=_address, required=True)
    sender.add_argument("--count", type=_bounded(int, 1, 10_000_000), default=100)
    sender.add_argument("--interval", type=_bounded(float, 0, 60), default=0.01,
                        metavar="SECONDS")
    sender.add_argument("--timeout", type=_bounded(float, 0.001, 60), default=1.0,
                        metavar="SECONDS")
    sender.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _run(args, parser)
    except TokenError as err:
        print(f"cems-probe: {err}", file=sys.stderr)
        return 2


def _run(args, parser) -> int:
    if args.command in ("gen-voice", "gen-iptv"):
        send = send_voice if args.command == "gen-voice" else send_iptv
        if getattr(args, "controller", None):
            refused = _refused_by_admission(args)
            if refused is not None:
                print(json.dumps(refused), flush=True)
                return 3
        print(json.dumps(dataclasses.asdict(send(*args.target, args.seconds))))
        return 0
    if args.command == "passive":
        return run_passive(args)
    if args.command == "agent":
        return run_agent(args)
    if args.command == "web-server":
        if bool(args.tls_cert) != bool(args.tls_key):
            print("cems-probe: web-server: --tls-cert and --tls-key go together",
                  file=sys.stderr)
            return 2
        try:
            server = WebServer(*args.bind, objects=args.objects, object_bytes=args.object_bytes,
                               certfile=args.tls_cert, keyfile=args.tls_key)
        except OSError as err:  # ssl.SSLError too: a certificate or key that does not load
            print(f"cems-probe: web-server: {err}", file=sys.stderr)
            return 1
        return _serve_until_signal(server, "web server")
    if args.command == "web-client":
        return run_web_client(args)
    if args.command == "video-server":
        try:
            ladder = tuple(parse_rate(v) for v in args.bitrates.split(","))
        except argparse.ArgumentTypeError as err:
            parser.error(str(err))
        return _serve_until_signal(SegmentServer(*args.bind, bitrates_bps=ladder,
                                                 segment_s=args.segment_seconds,
                                                 segments=args.segments), "video server")
    if args.command == "video-player":
        advice = None
        if args.controller and not args.ignore_advice:
            policy = PolicyClient(args.controller, Credentials.from_args(args))
            here = local_address_towards(args.url)
            advice = lambda: policy.advice(here)  # noqa: E731
        session = play(args.url, startup_s=args.startup, max_buffer_s=args.max_buffer,
                       max_segments=args.segments, advice=advice)
        print(json.dumps(dataclasses.asdict(session)), flush=True)
        reporter = _reporter(args)
        if reporter is not None and session.initial_delay_s is not None:
            print(reporter.report(
                "video", local_address_towards(args.url), stalls=session.stalls,
                mean_stall_s=sum(session.stall_s) / len(session.stall_s) if session.stall_s
                else 0.0, initial_delay_s=session.initial_delay_s,
                bitrate_bps=session.mean_bitrate_bps), file=sys.stderr, flush=True)
            reporter.close()
        return 0 if not session.errors else 1
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
