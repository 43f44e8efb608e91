"""What the operator sees: config errors at start, metrics, meters, OpenFlow errors."""

import re
import subprocess
import sys
import urllib.request

import grpc
from cems.v1 import status_pb2 as pb

from client.channel import connect
from lab.emulation import REPO, wait_for
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network


def test_wrong_config_value_stops_the_controller_at_start(tmp_path):
    config = tmp_path / "cems.toml"
    config.write_text('[stats]\npoll_interval_s = -1\n')
    result = subprocess.run([sys.executable, "-m", "controller.main", "--config", str(config)],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "stats.poll_interval_s" in result.stderr and "0.1 to 3600" in result.stderr
    result = subprocess.run([sys.executable, "-m", "controller.main", "--grpc-listen", "nowhere"],
                            cwd=REPO, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "grpc.listen" in result.stderr


def test_grpc_port_zero_and_port_file(tmp_path):
    port_file = tmp_path / "port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.main", "--grpc-listen", "127.0.0.1:0",
         "--openflow-listen", "127.0.0.1:16653", "--metrics-listen", "",
         "--store", str(tmp_path / "s.sqlite"), "--grpc-port-file", str(port_file)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30,
                        "the gRPC port file")
        token = subprocess.run(
            [sys.executable, "-m", "controller.main", "--store", str(tmp_path / "s.sqlite"),
             "--create-token", "domain-manager"], cwd=REPO, capture_output=True, text=True,
            check=True).stdout.strip().splitlines()[-1]
        with connect(f"127.0.0.1:{port}", token) as channel:
            from cems.v1 import status_pb2_grpc  # pylint: disable=import-outside-toplevel
            stub = status_pb2_grpc.StatusServiceStub(channel)
            status = wait_for(lambda: _status_or_none(stub), 30, "GetStatus")
            assert status.switches_connected == 0
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0


def _status_or_none(stub):
    try:
        return stub.GetStatus(pb.GetStatusRequest(), timeout=1)
    except grpc.RpcError:
        return None


def test_metrics_meters_and_openflow_errors(controller):
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        metrics_url = f"http://127.0.0.1:{controller.metrics_port}/metrics"
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        assert "cems_switches_connected 2.0" in text
        assert 'cems_flows{dpid="0000000000000001"}' in text
        assert re.search(r'cems_port_bytes_total\{direction="rx",dpid="0000000000000001",'
                         r'port="1"\} [1-9]', text), "s1 port 1's received bytes"
        assert 'cems_switch_connected{dpid="0000000000000002"} 1.0' in text
        wait_for(lambda: re.search(r'cems_flow_bytes_total\{component="forwarding",'
                                   r'dpid="0000000000000001"\} [1-9]',
                                   urllib.request.urlopen(metrics_url, timeout=5).read().decode()),
                 15, "bytes counted by s1's forwarding flows")
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True, timeout=30)
        assert lint.returncode == 0, lint.stdout + lint.stderr

        def flow_stats_entries(how: str) -> float:
            page = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
            found = re.search(r'cems_flow_stats_entries_total\{dpid="0000000000000001",'
                              rf'how="{how}"\}} (\S+)', page)
            return float(found[1]) if found else 0.0
        # flow stats come from the wire decoder: each flow decoded once, then remembered
        wait_for(lambda: flow_stats_entries("remembered") > 0 or None, 15,
                 "flow stats entries remembered from the switch's last reply")
        assert flow_stats_entries("decoded") > 0 and flow_stats_entries("framework") == 0

        # A meter someone else configured shows up with its counters.
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-meter", "s1",
                        "meter=7,kbps,band=type=drop,rate=1000"], check=True, timeout=10)
        meters = wait_for(lambda: controller.stub().ListMeters(pb.ListMetersRequest(dpid=1)).meters,
                          15, "meter 7 in ListMeters")
        assert [m.meter_id for m in meters] == [7]

        # s1's forwarding table refuses more flows than it holds now: cems' next adds fail.
        held = len(subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "s1", "table=1"],
                                  capture_output=True, text=True, check=True).stdout.splitlines()) - 1
        subprocess.run(["ovs-vsctl", "--", "--id=@ft", "create", "Flow_Table",
                        f"flow_limit={held}", "overflow_policy=refuse", "--", "set", "Bridge",
                        "s1", "flow_tables:1=@ft"], check=True, timeout=10)
        try:
            new_host = net.addHost("l9")
            link = net.addLink(new_host, net.get("s1"), txo=False)
            net.get("s1").attach(link.intf2)
            new_host.configDefault()
            new_host.cmd("ping -c1 -W1", net.get("r1").IP())
            wait_for(lambda: controller.status().openflow_errors_total > 0, 20,
                     "the switch to reject a flow")
            assert controller.status().switches_connected == 2  # still running, still connected
            log = open(controller.log_path, encoding="utf-8").read()
            assert "OFPET_FLOW_MOD_FAILED/OFPFMFC_TABLE_FULL" in log
            assert "OFPFlowMod" in log  # the offending request is logged
            assert 'cems_openflow_errors_total{dpid="0000000000000001",type="OFPET_FLOW_MOD_FAILED"}' \
                in urllib.request.urlopen(metrics_url, timeout=5).read().decode()
        finally:
            subprocess.run(["ovs-vsctl", "clear", "Bridge", "s1", "flow_tables"], timeout=10)
        # With room again, reconciliation installs what was refused.
        wait_for(lambda: net.ping([new_host, net.get("r1")], timeout=1) == 0.0, 20,
                 "the new host to reach r1")
