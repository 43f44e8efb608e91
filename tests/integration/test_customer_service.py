"""Customer service management on real OVS: an SLS change reaches the meter and the DSCP mark,
throughput follows it, and a controller restart re-applies every SLA and SLS."""

import json
import re
import subprocess
import sys
import time

import grpc
import pytest
from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from lab.emulation import REPO, wait_for
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network

M = 1_000_000


def ofctl(*args: str) -> str:
    return subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", *args], check=True,
                          capture_output=True, text=True, timeout=10).stdout


def create_token(controller, spec: str) -> str:
    out = subprocess.run([sys.executable, "-m", "controller.main", "--store",
                          controller.store_path, "--create-token", spec], cwd=REPO,
                         capture_output=True, text=True, timeout=30, check=True).stdout
    return out.strip().splitlines()[-1]


def auth(token: str):
    return (("authorization", f"Bearer {token}"),)


def udp_rate_bps(client, server, port: int, offered: str = "9M", seconds: int = 4) -> float:
    """Receiver's UDP payload rate of an iperf3 test from client to server."""
    server_proc = server.popen(["iperf3", "-s", "-1", "-p", str(port)])
    try:
        wait_for(lambda: f":{port} " in server.cmd("ss -lun; ss -ltn"), 10, "iperf3 server")
        out = client.cmd(f"iperf3 -c {server.IP()} -p {port} -u -b {offered} -l 1400 "
                         f"-t {seconds} --json")
        total = json.loads(out)["end"]["sum"]
        return total["bits_per_second"] * (1 - total["lost_percent"] / 100)
    finally:
        server_proc.kill()
        server_proc.wait()


def meters_and_customer_flows(bridge: str) -> tuple[list[str], list[str]]:
    meters = sorted(l.strip() for l in ofctl("dump-meters", bridge).splitlines() if "meter=" in l)
    flows = sorted(l.strip() for l in ofctl("--no-stats", "dump-flows", bridge,
                                            "cookie=0xce35050000000000/0xffffff0000000000")
                   .splitlines() if "cookie=" in l)
    return meters, flows


def test_sls_change_reaches_the_network_and_survives_restart(controller):
    with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        l1, r1, s1 = net.get("l1", "r1", "s1")
        access_port = s1.ports[l1.defaultIntf().link.intf2]
        channel = controller.channel()
        manager = create_token(controller, "domain-manager")
        pb_grpc.SlaServiceStub(channel).CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id="alice", name="Alice", segment="soho",
                                 access_dpid=1, access_port=access_port, hosts=[l1.MAC()]),
            sla=pb.Sla(customer_id="alice", variant="gsb-economy", min_change_interval_s=1,
                       bounds=[pb.ClassBounds(service_class=pb.SERVICE_CLASS_BRONZE,
                                              min_bps=2 * M, max_bps=4 * M),
                               pb.ClassBounds(service_class=pb.SERVICE_CLASS_GOLD,
                                              min_bps=2 * M, max_bps=8 * M)])),
            metadata=auth(manager))
        token = pb_grpc.SlaServiceStub(channel).CreateToken(
            pb.CreateTokenRequest(role=pb.ROLE_CUSTOMER, customer_id="alice"),
            metadata=auth(manager)).token

        wait_for(lambda: "rate=2000" in ofctl("dump-meters", "s1"), 15, "alice's 2 Mbit/s meter")
        # her device's own ARP, which takes the pair's flows, goes through her meter too
        wait_for(lambda: any("arp_spa=" in f and "meter:" in f for f in ofctl(
            "--no-stats", "dump-flows", "s1", f"arp,dl_src={l1.MAC()}").splitlines()), 15,
            "alice's ARP flow through her meter")
        bronze = udp_rate_bps(l1, r1, 5301)
        assert bronze == pytest.approx(2 * M, rel=0.10)

        pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
            service_class=pb.SERVICE_CLASS_GOLD, rate_bps=8 * M), metadata=auth(token))
        wait_for(lambda: "rate=8000" in ofctl("dump-meters", "s1"), 15, "the 8 Mbit/s meter")
        gold = udp_rate_bps(l1, r1, 5302)
        assert gold == pytest.approx(8 * M, rel=0.10)

        # EF (46) on the wire at the far host: TOS byte 0xb8 on alice's echo requests; r1's
        # own requests to alice are not alice's traffic and stay unmarked.
        capture = r1.popen(["tcpdump", "-n", "-v", "-c", "6", "-i", r1.defaultIntf().name,
                            "icmp[icmptype] == icmp-echo"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        time.sleep(1)  # tcpdump has no readiness signal on stdout before its first packet
        l1.cmd(f"ping -c 3 -i 0.2 {r1.IP()}")
        r1.cmd(f"ping -c 3 -i 0.2 {l1.IP()}")
        out, _ = capture.communicate(timeout=20)
        lines = out.splitlines()
        tos_by_source = {}
        for header, body in zip(lines, lines[1:]):
            if "tos 0x" in header and " > " in body:
                tos = header.split("tos ")[1].split(",")[0]
                tos_by_source.setdefault(body.split()[0], set()).add(tos)
        assert tos_by_source == {l1.IP(): {"0xb8"}, r1.IP(): {"0x0"}}, out

        before = meters_and_customer_flows("s1")
        assert len(before[1]) == 2 and len(before[0]) == 1
        channel.close()
        controller.stop(kill=True)
        controller.start()
        wait_for(lambda: controller.status().switches_ready == 2, 30, "switches ready again")
        wait_for(lambda: meters_and_customer_flows("s1") == before, 30,
                 "the same meters and customer flows after the restart")
        channel = controller.channel()
        sls = pb_grpc.SlsServiceStub(channel).GetSls(pb.GetSlsRequest(), metadata=auth(token)).sls
        assert (sls.service_class, sls.rate_bps) == (pb.SERVICE_CLASS_GOLD, 8 * M)
        assert re.search(r"rate=8000", ofctl("dump-meters", "s1"))
        report = pb_grpc.ReportServiceStub(channel).GetReport(pb.GetReportRequest(),
                                                              metadata=auth(token))
        hours = {c.service_class: c.hours for c in report.classes}
        assert hours[pb.SERVICE_CLASS_GOLD] > 0 and hours[pb.SERVICE_CLASS_BRONZE] > 0
        assert report.total_charge > 0  # GSB economy: Gold from the first hour
        assert 0.5 < report.availability <= 1.0  # s1 was down while the controller restarted
        channel.close()



def _customer(channel, manager, cid, port, mac, bounds):
    pb_grpc.SlaServiceStub(channel).CreateCustomer(pb.CreateCustomerRequest(
        customer=pb.Customer(customer_id=cid, name=cid, access_dpid=1, access_port=port,
                             hosts=[mac]),
        sla=pb.Sla(customer_id=cid, variant="gsb-economy", min_change_interval_s=0,
                   bounds=bounds)), metadata=auth(manager))


def test_gold_keeps_its_rate_through_a_congested_bottleneck(make_controller):
    controller = make_controller(
        extra_config='[csm]\negress_interfaces = { "s1-eth1" = 20000000 }\n')
    with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        l1, l2, r1, r2, s1 = net.get("l1", "l2", "r1", "r2", "s1")
        channel = controller.channel()
        manager = create_token(controller, "domain-manager")
        bronze = pb.ClassBounds(service_class=pb.SERVICE_CLASS_BRONZE, min_bps=18 * M,
                                max_bps=20 * M)
        gold = pb.ClassBounds(service_class=pb.SERVICE_CLASS_GOLD, min_bps=2 * M, max_bps=8 * M)
        _customer(channel, manager, "alice", s1.ports[l1.defaultIntf().link.intf2], l1.MAC(),
                  [bronze, gold])
        _customer(channel, manager, "bob", s1.ports[l2.defaultIntf().link.intf2], l2.MAC(),
                  [bronze])
        token = pb_grpc.SlaServiceStub(channel).CreateToken(
            pb.CreateTokenRequest(role=pb.ROLE_CUSTOMER, customer_id="alice"),
            metadata=auth(manager)).token
        pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
            service_class=pb.SERVICE_CLASS_GOLD, rate_bps=8 * M), metadata=auth(token))
        wait_for(lambda: "rate 8Mbit" in subprocess.run(
            ["tc", "class", "show", "dev", "s1-eth1"], capture_output=True, text=True).stdout,
            15, "the Gold class of 8 Mbit/s on s1-eth1")
        servers = [r1.popen(["iperf3", "-s", "-1", "-p", "5401"]),
                   r2.popen(["iperf3", "-s", "-1", "-p", "5402"])]
        try:
            wait_for(lambda: ":5401 " in r1.cmd("ss -ltn") and ":5402 " in r2.cmd("ss -ltn"), 10,
                     "iperf3 servers")
            clients = [l1.popen(["iperf3", "-c", r1.IP(), "-p", "5401", "-u", "-b", "9M", "-l",
                                 "1400", "-t", "6", "--json"], stdout=subprocess.PIPE),
                       l2.popen(["iperf3", "-c", r2.IP(), "-p", "5402", "-u", "-b", "18M", "-l",
                                 "1400", "-t", "6", "--json"], stdout=subprocess.PIPE)]
            results = []
            for client in clients:
                out, _ = client.communicate(timeout=60)
                total = json.loads(out)["end"]["sum"]
                results.append(total["bits_per_second"] * (1 - total["lost_percent"] / 100))
        finally:
            for server in servers:
                server.kill()
                server.wait()
        gold_bps, bronze_bps = results
        # Without classes the 20 Mbit/s bottleneck would split 8:18, about 6.2 Mbit/s for Gold.
        assert gold_bps == pytest.approx(8 * M, rel=0.10), results
        assert 8 * M < bronze_bps < 13 * M, results
        channel.close()



def tcp_rate_bps(client, server, port: int, seconds: int = 5) -> float:
    server_proc = server.popen(["iperf3", "-s", "-1", "-p", str(port)])
    try:
        wait_for(lambda: f":{port} " in server.cmd("ss -ltn"), 10, "iperf3 server")
        out = client.cmd(f"iperf3 -c {server.IP()} -p {port} -t {seconds} --json")
        return json.loads(out)["end"]["sum_received"]["bits_per_second"]
    finally:
        server_proc.kill()
        server_proc.wait()


def test_tcp_follows_the_sls_with_edge_shaping(make_controller):
    controller = make_controller(
        extra_config='[csm]\nedge_shaping = { alice = "cems-l1:l1-eth0" }\n')
    with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        l1, r1, s1 = net.get("l1", "r1", "s1")
        subprocess.run(["ip", "netns", "attach", "cems-l1", str(l1.pid)], check=True)
        try:
            channel = controller.channel()
            manager = create_token(controller, "domain-manager")
            _customer(channel, manager, "alice", s1.ports[l1.defaultIntf().link.intf2], l1.MAC(),
                      [pb.ClassBounds(service_class=pb.SERVICE_CLASS_BRONZE, min_bps=2 * M,
                                      max_bps=4 * M),
                       pb.ClassBounds(service_class=pb.SERVICE_CLASS_GOLD, min_bps=2 * M,
                                      max_bps=8 * M)])
            token = pb_grpc.SlaServiceStub(channel).CreateToken(
                pb.CreateTokenRequest(role=pb.ROLE_CUSTOMER, customer_id="alice"),
                metadata=auth(manager)).token

            def shaped_to(rate: str):
                return rate in l1.cmd("tc class show dev l1-eth0") and \
                    "rate=%d " % (int(rate[:-4]) * 1000) in ofctl("dump-meters", "s1") + " "
            wait_for(lambda: shaped_to("2Mbit"), 20, "alice shaped and metered to 2 Mbit/s")
            assert tcp_rate_bps(l1, r1, 5501) == pytest.approx(2 * M, rel=0.10)
            pb_grpc.SlsServiceStub(channel).ChangeSls(pb.ChangeSlsRequest(
                service_class=pb.SERVICE_CLASS_GOLD, rate_bps=8 * M), metadata=auth(token))
            wait_for(lambda: shaped_to("8Mbit"), 20, "alice shaped and metered to 8 Mbit/s")
            assert tcp_rate_bps(l1, r1, 5502) == pytest.approx(8 * M, rel=0.10)
            channel.close()
        finally:
            subprocess.run(["ip", "netns", "delete", "cems-l1"], check=False)
