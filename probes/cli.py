"""cems-probe: the probes' command line (shell).

    cems-probe stamp-reflector [--bind HOST:PORT]
    cems-probe stamp-sender --target HOST:PORT [--count N] [--interval S] [--json]
"""

import argparse
import json
import signal
import sys
import threading

from probes.stamp import DEFAULT_PORT
from probes.stamp_io import Reflector, run_sender


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, for example 10.0.0.3:862")
    return host, int(port)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cems-probe", description="cems probes")
    sub = parser.add_subparsers(dest="command", required=True)
    reflector = sub.add_parser("stamp-reflector", help="answer STAMP test packets (RFC 8762)")
    reflector.add_argument("--bind", type=_address, default=("0.0.0.0", DEFAULT_PORT))
    sender = sub.add_parser("stamp-sender", help="run one STAMP session and print its result")
    sender.add_argument("--target", type=_address, required=True)
    sender.add_argument("--count", type=int, default=100)
    sender.add_argument("--interval", type=float, default=0.01, metavar="SECONDS")
    sender.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS")
    sender.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
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
