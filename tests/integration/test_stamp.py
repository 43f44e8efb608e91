"""An active STAMP test between two Mininet hosts through cems-controlled Open vSwitch."""

import json
import sys

from controller.emulation import REPO, wait_for
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network


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
