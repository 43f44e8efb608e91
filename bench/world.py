"""A controller's world without switches, shared by the benchmarks that run its gRPC server:
customers in a store, a topology that knows their devices' addresses, the published state."""

import json
import os
import signal
import tempfile
import threading

M = 1_000_000
SWITCHES, PORTS = 50, 40


def mac(n: int) -> str:
    return f"02:00:00:{n >> 16 & 0xFF:02x}:{n >> 8 & 0xFF:02x}:{n & 0xFF:02x}"


def ip(n: int) -> str:
    return f"10.{n >> 16 & 0xFF}.{n >> 8 & 0xFF}.{n & 0xFF}"


def customer_world(customers: int):
    """(CsmStore, PublishedState): customers c00000, ... with one device each (mac(n) at
    ip(n), on switch 1 + n % 50, port 1 + n % 40), Gold and Silver allowed, Silver at 1 Mbit/s."""
    from controller.csm.model import ClassBounds, Customer, ServiceClass, Sla, Sls
    from controller.csm.store import CsmStore
    from controller.network.topology import PortInfo, Topology
    from controller.state import PublishedState
    from controller.store import Store

    directory = tempfile.mkdtemp(prefix="cems-bench-")
    csm = CsmStore(Store(os.path.join(directory, "cems.sqlite")))
    bounds = {ServiceClass.GOLD: ClassBounds(1 * M, 20 * M),
              ServiceClass.SILVER: ClassBounds(1 * M, 20 * M)}
    csm.import_customers(
        (Customer(f"c{n:05d}", f"Customer {n}", "residential", False, 1 + n % SWITCHES,
                  1 + n % PORTS, (mac(n),)),
         Sla(f"c{n:05d}", "gsb-business", bounds, min_change_interval_s=0),
         Sls(f"c{n:05d}", ServiceClass.SILVER, 1 * M, 0.0, "system"))
        for n in range(customers))
    topology = Topology()
    for dpid in range(1, SWITCHES + 1):
        topology.add_switch(dpid, 0.0)
        topology.set_ports(dpid, [PortInfo(p, f"s{dpid}-eth{p}") for p in range(1, PORTS + 1)])
    for n in range(customers):
        topology.learn_host(mac(n), 1 + n % SWITCHES, 1 + n % PORTS, ip(n))
    state = PublishedState(1.0, "os_ken")
    state.topology = topology.snapshot()
    state.connected = frozenset(range(1, SWITCHES + 1))
    return csm, state


def serve_until_terminated(server, info_path: str, info: dict) -> None:
    """Write what clients need (port, tokens) to `info_path` at once, serve until SIGTERM."""
    with open(info_path + ".tmp", "w", encoding="utf-8") as stream:
        json.dump(info, stream)
    os.rename(info_path + ".tmp", info_path)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    server.stop(0)
