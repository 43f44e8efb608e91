"""Active STAMP tests between two Mininet hosts through cems-controlled Open vSwitch: run by
hand, and started by the controller through probe agents."""

import json
import signal
import os
import subprocess
import sys

import grpc
from cems.v1 import probe_pb2, probe_pb2_grpc

from lab.emulation import REPO, wait_for
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network
from tests.integration.test_customer_service import create_token


def test_stamp_between_two_hosts_reports_rtt_and_loss(controller):
    with running_network(DumbbellTopo(n=1), controller) as net:
        l1, r1 = net.get("l1", "r1")
        assert net.ping([l1, r1], timeout=1) <= 50.0  # learning
        reflector = r1.popen([sys.executable, "-m", "probes.cli", "stamp-reflector", "--bind",
                              f"{r1.IP()}:8620"], cwd=REPO)
        try:
            wait_for(lambda: ":8620 " in r1.cmd("ss -lun"), 10, "the STAMP reflector")
            out = l1.cmd(f"cd {REPO} && {sys.executable} -m probes.cli stamp-sender --target "
                         f"{r1.IP()}:8620 --count 100 --interval 0.01 --json")
            summary = json.loads(out.strip().splitlines()[-1])
        finally:
            reflector.terminate()
            reflector.wait(timeout=10)
        assert summary["sent"] == 100 and summary["lost"] == 0 and summary["loss_ratio"] == 0
        assert 0 < summary["rtt_mean_ms"] < 100


def test_the_controller_runs_a_stamp_test_between_two_agents(make_controller, tmp_path):
    controller = make_controller(unix_socket=f"/tmp/cems-{tmp_path.name[-20:]}.sock")
    with running_network(DumbbellTopo(n=1), controller) as net:
        l1, r1 = net.get("l1", "r1")
        assert net.ping([l1, r1], timeout=1) <= 50.0  # learning
        # Agents in the hosts' namespaces reach the controller through its unix socket.
        agents = [host.popen([sys.executable, "-m", "probes.cli", "agent", "--controller",
                              f"unix:{controller.unix_socket}", "--probe-id", f"{host.name}-agent",
                              *extra], cwd=REPO, stderr=subprocess.PIPE, text=True,
                             env={**os.environ,
                                  "CEMS_TOKEN": controller.probe_token(f"{host.name}-agent")})
                  for host, extra in ((l1, []), (r1, ["--reflect", "862"]))]
        manager = create_token(controller, "domain-manager")
        ctl = [sys.executable, "-m", "controller.cli", "--server", controller.grpc_address,
               "--token", manager, "stamp"]
        try:
            def start():
                out = subprocess.run(ctl + ["start", "l1-agent", r1.IP(), "--count", "100",
                                            "--report-interval", "0.5", "--id", "t1"],
                                     cwd=REPO, capture_output=True, text=True)
                return out.stdout if out.returncode == 0 else None
            wait_for(start, 20, "the l1 agent to connect and take the test")
            channel = controller.channel()
            stub = probe_pb2_grpc.ProbeServiceStub(channel)

            def results():
                records = [r for r in stub.ListKpis(probe_pb2.ListKpisRequest(
                    service="active-test", history=True)).records if r.dst == r1.IP()]
                return records if sum(r.kpis["stamp_sent"] for r in records) >= 100 else None
            records = wait_for(results, 20, "100 STAMP packets reported by the l1 agent")
            listed = subprocess.run(ctl + ["list"], cwd=REPO, capture_output=True, text=True,
                                    check=True).stdout
            channel.close()
        finally:
            for agent in agents:
                agent.send_signal(signal.SIGTERM)
            errors = [agent.communicate(timeout=20)[1] for agent in agents]
        assert all(r.probe_id == "l1-agent" and r.kind == "stamp" and r.dport == 862
                   for r in records)
        assert sum(r.kpis["stamp_lost"] for r in records) == 0
        assert all(0 < r.kpis["stamp_rtt_ms"] < 100 for r in records)
        assert "t1: l1-agent -> " in listed and "rtt" in listed
        summary = json.loads(errors[1].strip().splitlines()[-1])
        assert summary["reflected"] >= 100 and not summary["errors"], errors
