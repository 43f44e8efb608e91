"""cems-portal [--controller HOST:PORT] [--listen HOST:PORT] [--tls-cert PEM --tls-key PEM]

Serves the portal (portal.app) with uvicorn. It needs no credential of its own: people sign
in with their own tokens, and each of their calls to the controller carries it.
"""

import argparse
import logging
import sys

import uvicorn

from portal.app import create_app
from portal.backend import Controller


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r}: use HOST:PORT, for example 127.0.0.1:8080")
    return host, int(port)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="cems-portal", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--controller", default="127.0.0.1:50051", metavar="HOST:PORT",
                        help="the controller's gRPC address (default 127.0.0.1:50051)")
    parser.add_argument("--controller-ca", default="", metavar="PEM",
                        help="talk TLS to the controller, trusting this CA")
    parser.add_argument("--listen", type=_address, default=("127.0.0.1", 8080),
                        metavar="HOST:PORT", help="where to serve (default 127.0.0.1:8080)")
    parser.add_argument("--tls-cert", default="", metavar="PEM",
                        help="serve HTTPS with this certificate (with --tls-key); cookies are "
                             "then Secure")
    parser.add_argument("--tls-key", default="", metavar="PEM")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    controller = Controller(args.controller, tls_ca=args.controller_ca)
    app = create_app(controller, secure_cookies=bool(args.tls_cert))
    host, port = args.listen
    scheme = "https" if args.tls_cert else "http"
    print(f"cems-portal on {scheme}://{host}:{port}/ for the controller at {args.controller}",
          flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level=args.log_level,
                    ssl_certfile=args.tls_cert or None, ssl_keyfile=args.tls_key or None)
    finally:
        controller.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
