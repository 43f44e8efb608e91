"""A controller that never dies silently: handlers that raise, bad stored data, a Mininet
teardown's counters and a busy port, each against the real controller process."""

import socket
import sqlite3
import subprocess
import sys
import textwrap

from lab.emulation import REPO, free_port, wait_for
from mininet_topos import DumbbellTopo, RingTopo

from tests.integration.conftest import running_network

FAULT = """
import controller.network.packet_in as packet_in
_real = packet_in.handle_packet_in
_calls = [0]

def handle_packet_in(*args, **kwargs):  # the first {n} packet-ins raise, then all is well
    _calls[0] += 1
    if _calls[0] <= {n}:
        raise RuntimeError("injected fault number %d" % _calls[0])
    return _real(*args, **kwargs)

packet_in.handle_packet_in = handle_packet_in
"""


def test_a_handler_that_raises_is_counted_and_the_controller_keeps_serving(make_controller,
                                                                             tmp_path):
    site = tmp_path / "fault"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(FAULT.format(n=5)))
    controller = make_controller(env={"PYTHONPATH": str(site)})
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
        status = controller.status()
        assert status.serving and status.handler_errors_total == 5
        log = open(controller.log_path, encoding="utf-8").read()
        assert log.count("handler packet_in failed") == 1  # once, with its traceback
        assert "injected fault number 1" in log and "Traceback" in log


def test_a_stored_bad_mac_costs_only_its_own_flows(make_controller):
    controller = make_controller()
    controller.stop()
    # A customer stored by an older cems that did not check MACs: one good device, one not.
    with sqlite3.connect(controller.store_path) as db:
        db.execute("INSERT INTO customers VALUES ('c1','C1','residential',0,1,9,"
                   "'00:00:00:00:00:01,00:00:00:00:00:zz',1)")
        db.execute("INSERT INTO slas VALUES ('c1','gsb-business',?,0.999,0,2000000)",
                   ('{"silver": [1000000, 2000000]}',))
        db.execute("INSERT INTO sls_history VALUES ('c1',0,'silver',1000000,'system')")
    controller.start()
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0  # every other flow, and both switches, work
        wait_for(lambda: controller.status().send_errors_total > 0, 15,
                 "the bad flow to be counted")
        status = controller.status()
        assert status.serving and status.handler_errors_total == 0
        log = open(controller.log_path, encoding="utf-8").read()
        assert log.count("send 0000000000000001 failed") == 1 and "00:00:00:00:00:zz" in log


def test_a_mininet_teardown_then_a_second_network_forwards_with_no_loss(make_controller):
    controller = make_controller(poll_interval_s=0.2)  # polls while the ports go away
    with running_network(DumbbellTopo(n=2), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
    # the removed interfaces report counters of 2^64-1 on their way out
    wait_for(lambda: controller.status().switches_connected == 0, 20, "the switches to go")
    with running_network(RingTopo(n=3), controller) as net:
        net.pingAll(timeout=1)
        assert net.pingAll(timeout=1) == 0.0
    status = controller.status()
    assert status.serving and status.handler_errors_total == 0


def test_a_busy_openflow_port_is_one_clear_line_and_a_failure(tmp_path):
    port = free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        done = subprocess.run(
            [sys.executable, "-m", "controller.main", "--openflow-listen", f"127.0.0.1:{port}",
             "--grpc-listen", "127.0.0.1:0", "--metrics-listen", "",
             "--store", str(tmp_path / "s.sqlite")],
            cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"cems-controller: cannot listen for OpenFlow on 127.0.0.1:{port}: Address already in "
        "use (is another controller running there?)"]
