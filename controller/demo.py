"""The cems demo on an emulated access network (shell): `make demo`.

Starts the controller, builds the `access` topology on userspace Open vSwitch, shows that all
hosts reach each other, prints the topology and live flow rates through cemsctl while service
traffic runs (IPTV to a set-top box, voice to a phone, a web/bulk download to a PC), and tears
everything down, also on failure or Ctrl-C.
"""

import argparse
import contextlib
import sys
import time

from controller import cli
from controller.emulation import ControllerProcess, build_network, expected_counts, wait_for, \
    wait_for_topology


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cemsctl(controller: ControllerProcess, *args: str) -> None:
    print(f"$ cemsctl --server {controller.grpc_address} {' '.join(args)}", flush=True)
    cli.main(["--server", controller.grpc_address, *args])
    sys.stdout.flush()


def start_traffic(net, seconds: int) -> list:
    """Service traffic of the access topology; returns the processes to stop."""
    flows = [  # (sender, receiver, iperf3 client args, what it stands for)
        ("iptv", "c1stb", ["-u", "-b", "4M", "-l", "1316"], "IPTV 4 Mbit/s to c1's set-top box"),
        ("voice", "c2phone", ["-u", "-b", "87k", "-l", "172"], "G.711 voice to c2's phone"),
        ("web", "c3pc", ["-b", "8M"], "an 8 Mbit/s download to c3's PC"),
    ]
    procs = []
    for index, (src, dst, extra, what) in enumerate(flows):
        port = 5301 + index
        server = net.get(dst)
        procs.append(server.popen(["iperf3", "-s", "-1", "-p", str(port)]))
        wait_for(lambda s=server, p=port: f":{p} " in s.cmd("ss -ltn"), 10, f"iperf3 on {dst}")
        procs.append(net.get(src).popen(["iperf3", "-c", server.IP(), "-p", str(port), "-t",
                                         str(seconds), *extra]))
        print(f"  {src} -> {dst}: {what}")
    return procs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cems-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12, help="how long traffic runs")
    args = parser.parse_args(argv)
    from mininet.log import setLogLevel  # pylint: disable=import-outside-toplevel
    from mininet_topos import AccessTopo  # pylint: disable=import-outside-toplevel
    setLogLevel("error")

    controller = ControllerProcess()
    net = None
    procs: list = []
    try:
        banner("starting the cems controller")
        controller.start()
        print(f"gRPC on {controller.grpc_address}, OpenFlow on 127.0.0.1:{controller.openflow_port}, "
              f"metrics on http://127.0.0.1:{controller.metrics_port}/metrics")
        print(f"log: {controller.log_path}")

        banner("building the access network (6 switches, 16 hosts, userspace Open vSwitch)")
        topo = AccessTopo()
        net = build_network(topo, controller.openflow_port)
        net.start()
        switches, links = expected_counts(topo)
        wait_for_topology(controller, switches, links)
        print(f"{switches} switches connected, {links // 2} links discovered by LLDP")

        banner("all hosts reach each other")
        net.pingAll(timeout=1)  # the controller learns every host from this round
        loss = net.pingAll(timeout=1)
        hosts = len(net.hosts)
        print(f"{hosts * (hosts - 1)} pings between {hosts} hosts: {loss:.0f}% loss")

        banner("topology as cems sees it")
        cemsctl(controller, "topology")

        banner(f"service traffic for {args.seconds} s")
        procs = start_traffic(net, args.seconds)
        time.sleep(min(5, args.seconds / 2))
        banner("live flow rates (flows with traffic now)")
        cemsctl(controller, "flows", "--component", "forwarding", "--active")
        banner("access switch s5 ports")
        cemsctl(controller, "ports", "--dpid", "5")
        banner("controller status")
        cemsctl(controller, "status")
        return 0 if loss == 0 else 1
    except KeyboardInterrupt:
        return 130
    finally:
        banner("tearing down")
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.kill()
                proc.wait(timeout=5)
        if net is not None:
            net.stop()
        controller.stop()
        print("done")


if __name__ == "__main__":
    sys.exit(main())
