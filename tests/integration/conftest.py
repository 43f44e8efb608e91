"""Fixtures for integration tests: real Open vSwitch, real Mininet hosts, the real controller.

Everything a test creates (controller process, Mininet switches, hosts and links) is removed
in the fixture's finally, also when the test fails. The controller is stopped by its pid.
"""

import contextlib
import os
import shutil
import subprocess
import uuid

import pytest

from lab.emulation import SHAPED_QUEUE_PACKETS, ControllerProcess, build_network, \
    exclusive_network, expected_counts, start_network, wait_for_topology


def _why_not_runnable() -> str:
    if os.geteuid() != 0:
        return "integration tests need root (Open vSwitch, Mininet, namespaces); run `make test` as root"
    for tool in ("ovs-vsctl", "iperf3", "ethtool"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed; `make test` installs it"
    if subprocess.run(["ovs-vsctl", "--timeout=5", "show"], capture_output=True).returncode:
        return "Open vSwitch is not running; `make test` starts it"
    return ""


def pytest_collection_modifyitems(config, items):
    reason = _why_not_runnable()
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture
def make_controller(request, tmp_path):
    """make_controller(**ControllerProcess options) -> a started controller, stopped by its
    pid after the test; its log is printed when the test failed."""
    started = []

    def make(**options) -> ControllerProcess:
        options.setdefault("workdir", str(tmp_path))
        os.makedirs(options["workdir"], exist_ok=True)
        proc = ControllerProcess(**options)
        started.append(proc)
        proc.start()
        return proc
    try:
        yield make
    finally:
        failed = getattr(request.node, "rep_call", None)
        for proc in started:
            proc.stop()
            if failed is not None and failed.failed:
                print(f"--- controller log ({proc.log_path}) ---\n{proc.log_tail(80)}")


@pytest.fixture
def controller(make_controller):
    return make_controller()


@contextlib.contextmanager
def running_network(topo, controller: ControllerProcess, queue_packets=SHAPED_QUEUE_PACKETS):
    """Start `topo` against the controller, wait until discovered and ready; always stop it.
    Shaped switch ports queue `queue_packets` (lab.emulation.start_network). The network is
    built under the machine-wide lock (lab.emulation.exclusive_network)."""
    from mininet.log import setLogLevel  # pylint: disable=import-outside-toplevel
    setLogLevel("warning")
    with exclusive_network():
        net = build_network(topo, controller.openflow_port)
        try:
            start_network(net, queue_packets)
            switches, links = expected_counts(topo)
            wait_for_topology(controller, switches, links)
            yield net
        finally:
            net.stop()


@pytest.fixture
def veth():
    """A veth pair NAME / NAMEp, both up, removed afterwards (deleting one end removes both)."""
    name = f"cems{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", name, "type", "veth", "peer", "name", name + "p"],
                   check=True)
    try:
        for end in (name, name + "p"):
            subprocess.run(["ip", "link", "set", end, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
