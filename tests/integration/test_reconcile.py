"""Reconciliation on real OVS: after a controller restart and after a switch reconnects, the
flow tables hold exactly the desired cems flows (missing ones added, stale ones removed), and
flows that are not cems' are left alone."""

import subprocess

from lab.emulation import free_port, wait_for
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network

CEMS_COOKIES = "cookie=0xce35000000000000/0xffff000000000000"
STALE = ("cookie=0xce35020000abcdef,priority=1000,dl_src=00:00:00:00:00:99,"
         "dl_dst=00:00:00:00:00:98,actions=drop")
FOREIGN = "cookie=0x1234,priority=5,dl_dst=00:00:00:00:00:97,actions=drop"


def ofctl(*args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], check=True,
                          capture_output=True, text=True, timeout=10).stdout


def cems_flows(bridge: str) -> list[str]:
    lines = ofctl("--no-stats", "dump-flows", bridge, CEMS_COOKIES).splitlines()
    return sorted(line.strip() for line in lines if "cookie=" in line)


def forwarding_cookie_on(bridge: str) -> str:
    flows = [f for f in cems_flows(bridge) if "priority=1000" in f]
    return flows[0].split(",")[0].split("=")[1]


def tamper(bridge: str) -> None:
    """Remove one desired flow, add a stale cems flow and a foreign flow."""
    ofctl("del-flows", bridge, f"cookie={forwarding_cookie_on(bridge)}/-1")
    ofctl("add-flow", bridge, STALE)
    ofctl("add-flow", bridge, FOREIGN)


def wait_until_converged(bridge: str, expected: list[str]) -> None:
    wait_for(lambda: cems_flows(bridge) == expected, 30,
             f"{bridge} to hold exactly the desired cems flows")
    assert "cookie=0x1234" in ofctl("--no-stats", "dump-flows", bridge)  # left alone


def test_controller_restart_converges_without_losing_forwarding(controller):
    with running_network(DumbbellTopo(n=2), controller) as net:
        assert net.pingAll(timeout=1) <= 50.0  # learning round
        assert net.pingAll(timeout=1) == 0.0
        before = {b: cems_flows(b) for b in ("s1", "s2")}
        # 4 control flows + every ordered host pair but the two that stay on the other switch
        # + the ARP of each of its two hosts and the ARP from the link
        assert all(len(flows) == 4 + 10 + 3 for flows in before.values())
        controller.stop(kill=True)
        tamper("s1")
        controller.start()
        wait_until_converged("s1", before["s1"])
        assert cems_flows("s2") == before["s2"]
        assert net.pingAll(timeout=1) == 0.0


def test_hosts_that_know_each_other_go_on_talking_while_no_controller_answers(controller):
    """A host checks a neighbour it has not heard from with unicast ARP (Linux: after 5 s
    in DELAY, three probes, then FAILED). Without a controller, as during a failover, that
    ARP must take the pair's flows, or the hosts stop talking although their path is there."""
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        l1, r1 = net.get("l1", "r1")
        controller.stop(kill=True)
        for host, peer in ((l1, r1), (r1, l1)):   # as if not heard from for a while
            host.cmd(f"ip neigh replace {peer.IP()} lladdr {peer.MAC()} nud stale "
                     f"dev {host.defaultIntf()}")
        out = l1.cmd(f"ping -c 12 -i 1 -W 1 {r1.IP()}")
        assert " 12 received" in out, out
        assert "REACHABLE" in l1.cmd(f"ip neigh show {r1.IP()}")   # confirmed by ARP


def test_switch_reconnect_converges(controller):
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        before = cems_flows("s2")
        # Point s2 at a port where nothing listens: the connection drops but the flows stay
        # (del-controller would make OVS flush the table, which is not a disconnect).
        subprocess.run(["ovs-vsctl", "set-controller", "s2", f"tcp:127.0.0.1:{free_port()}"],
                       check=True, timeout=10)
        wait_for(lambda: controller.status().switches_connected == 1, 15, "s2 to disconnect")
        tamper("s2")
        subprocess.run(["ovs-vsctl", "set-controller", "s2",
                        f"tcp:127.0.0.1:{controller.openflow_port}"], check=True, timeout=10)
        wait_for(lambda: controller.status().switches_ready == 2, 30, "s2 to be ready again")
        wait_until_converged("s2", before)
        assert net.pingAll(timeout=1) == 0.0
