"""The researcher's path: Mininet's own `mn --custom` command against a running controller."""

import os
import re
import signal
import subprocess

import pytest

from lab.emulation import REPO, exclusive_network


@pytest.mark.parametrize("topo_file, topo, switches", [("dumbbell.py", "dumbbell,n=2", 2),
                                                       ("ring.py", "ring,n=3", 3)])
def test_mn_custom_topology_pings(controller, topo_file, topo, switches):
    with exclusive_network():
        output = _run_mn(controller, topo_file, topo, switches)
    drops = re.findall(r"Results: (\d+)% dropped", output)
    assert len(drops) == 2, output
    assert drops[-1] == "0", output


def _run_mn(controller, topo_file, topo, switches) -> str:
    # mn reads CLI commands from stdin: the first pingall lets cems learn the hosts.
    mn = subprocess.Popen(
        ["mn", "--custom", os.path.join(REPO, "mininet_topos", topo_file), "--topo", topo,
         "--switch", "ovs,datapath=user",
         "--controller", f"remote,ip=127.0.0.1,port={controller.openflow_port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        cwd=REPO, start_new_session=True)
    try:
        output, _ = mn.communicate("pingall\npingall\n", timeout=180)
    finally:
        if mn.poll() is None:  # mn hung: stop its process group and remove its bridges
            os.killpg(mn.pid, signal.SIGKILL)
            mn.wait()
            for n in range(1, switches + 1):
                subprocess.run(["ovs-vsctl", "--if-exists", "del-br", f"s{n}"], timeout=10)
    return output
