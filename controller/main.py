"""cems-controller: parse config and flags, start gRPC, metrics and the OpenFlow app (shell)."""

import argparse
import logging
import os
import signal
import socket
import ssl
import sys

from controller import compat
from controller.config import ConfigError, parse_config, read_config_file
from controller.runtime import Runtime, offer_runtime
from controller.csm.model import Role
from controller.csm.rules import Refused
from controller.csm.store import CsmStore
from controller.store import Store, StoreError

LOG = logging.getLogger("cems")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cems-controller",
        description="cems OpenFlow 1.3 controller with gRPC API and Prometheus metrics.")
    parser.add_argument("--config", help="TOML (.toml) or YAML (.yaml/.yml) config file")
    parser.add_argument("--openflow-listen", metavar="HOST:PORT",
                        help="OpenFlow listen address (default 127.0.0.1:6653)")
    parser.add_argument("--grpc-listen", metavar="HOST:PORT",
                        help="gRPC listen address (default 127.0.0.1:50051; port 0 picks one)")
    parser.add_argument("--metrics-listen", metavar="HOST:PORT",
                        help="Prometheus metrics address (default 127.0.0.1:9302; '' disables)")
    parser.add_argument("--poll-interval", type=float, metavar="SECONDS",
                        help="statistics poll interval (default 1)")
    parser.add_argument("--store", metavar="PATH",
                        help="SQLite store path (default /var/lib/cems/cems.sqlite), or a "
                             "postgresql:// URL")
    parser.add_argument("--log-level", help="debug, info, warning or error (default info)")
    parser.add_argument("--grpc-port-file", metavar="PATH",
                        help="write the bound gRPC port here once serving (for scripts)")
    parser.add_argument("--create-token", metavar="ROLE[:ID]",
                        help="create a bearer token in the store (roles: domain-manager, "
                             "customer:ID, peer-domain:ID, probe:ID), print it once and exit")
    return parser


def create_token(config, spec: str) -> int:
    """--create-token: the bootstrap for the first domain-manager token."""
    role_text, _, customer_id = spec.partition(":")
    roles = {r.value: r for r in Role}
    if role_text not in roles:
        print(f"cems-controller: --create-token: role {role_text!r} is not one of "
              f"{', '.join(roles)}", file=sys.stderr)
        return 2
    role = roles[role_text]
    try:
        token_id, token = CsmStore(Store(config.store_location)).create_token(
            role, "" if role == Role.PROBE else customer_id,
            probe_id=customer_id if role == Role.PROBE else "")
    except (Refused, StoreError) as err:
        print(f"cems-controller: --create-token: {err}", file=sys.stderr)
        return 1
    print(f"token id {token_id} ({role_text}{':' + customer_id if customer_id else ''}); "
          f"the token is shown only now:\n{token}")
    return 0


def check_openflow_port(address) -> None:
    """Raise OSError naming the address when the OpenFlow port cannot be listened on (the
    framework's listener would fail in a thread of its own, and the process would go on
    without it)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address.host, address.port))
            sock.listen(1)
        except OSError as err:
            raise OSError(f"cannot listen for OpenFlow on {address}: {err.strerror or err} "
                          "(is another controller running there?)") from None


def check_tls(config) -> None:
    """Raise ValueError naming the file when the TLS certificate and key do not make a pair
    (gRPC would only say that it failed to bind)."""
    if not config.grpc_tls_cert:
        return
    mode = os.stat(config.grpc_tls_key).st_mode
    if mode & 0o077:
        raise ValueError(f"grpc.tls_key {config.grpc_tls_key} can be read by other users "
                         f"(mode {mode & 0o777:o}); make it private: chmod 600 "
                         f"{config.grpc_tls_key}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(config.grpc_tls_cert,
                                                                 config.grpc_tls_key)
    except (ssl.SSLError, OSError) as err:
        raise ValueError(f"grpc.tls_cert {config.grpc_tls_cert} and grpc.tls_key "
                         f"{config.grpc_tls_key} are not a usable PEM certificate and its "
                         f"private key: {err}") from None
    if config.grpc_tls_client_ca:
        try:
            ssl.create_default_context(cafile=config.grpc_tls_client_ca)
        except (ssl.SSLError, OSError) as err:
            raise ValueError(f"grpc.tls_client_ca {config.grpc_tls_client_ca} is not a PEM "
                             f"CA certificate: {err}") from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data = read_config_file(args.config) if args.config else {}
        config = parse_config(data, {
            "openflow.listen": args.openflow_listen, "grpc.listen": args.grpc_listen,
            "metrics.listen": args.metrics_listen, "stats.poll_interval_s": args.poll_interval,
            "store.path": args.store, "log.level": args.log_level})
    except (ConfigError, OSError) as err:
        print(f"cems-controller: {err}", file=sys.stderr)
        return 2
    if args.create_token:
        return create_token(config, args.create_token)
    logging.basicConfig(level=config.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("os_ken", "ryu"):
        logging.getLogger(noisy).setLevel(max(logging.INFO, logging.getLogger().level))
    try:
        check_openflow_port(config.openflow_listen)
        check_tls(config)
        runtime = Runtime.build(config)
        runtime.start_servers()
    except (StoreError, OSError, ValueError, RuntimeError) as err:
        print(f"cems-controller: {err}", file=sys.stderr)
        return 1
    if args.grpc_port_file:
        with open(args.grpc_port_file, "w", encoding="utf-8") as stream:
            stream.write(f"{runtime.grpc_port}\n")
    offer_runtime(runtime)

    stopping = []

    def stop(signum, _frame):
        LOG.info("signal %d: stopping", signum)
        stopping.append(signum)
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    compat.cfg.CONF(args=[
        "--ofp-listen-host", config.openflow_listen.host,
        "--ofp-tcp-listen-port", str(config.openflow_listen.port)], project=compat.RUNTIME)
    LOG.info("cems controller on %s, OpenFlow on %s", compat.RUNTIME, config.openflow_listen)
    # AppManager.run_apps() is not used: under native threads its cleanup calls kill(),
    # which os-ken's HubThread does not have.
    manager = compat.app_manager.AppManager.get_instance()
    try:
        manager.load_apps(["controller.app"])
        services = manager.instantiate_apps(**manager.create_contexts())
        compat.hub.joinall(services)
    except SystemExit:
        pass
    finally:
        try:
            manager.close()
        except Exception:  # pylint: disable=broad-except
            LOG.exception("error while closing the OpenFlow apps")
        runtime.stop_servers()
        logging.shutdown()
    if not stopping:  # the framework's services ended by themselves: say so, fail
        print("cems-controller: the OpenFlow listener ended unexpectedly; see the log above",
              file=sys.stderr)
    # os-ken's threads do not all end on their own; the process has nothing left to do.
    os._exit(0 if stopping else 1)  # pylint: disable=protected-access


if __name__ == "__main__":
    sys.exit(main())
