"""Fixtures for integration tests: real Open vSwitch, real Mininet hosts, the real controller.

Everything a test creates (controller process, Mininet switches, hosts and links) is removed
in the fixture's finally, also when the test fails. The controller is stopped by its pid.
"""

import contextlib
import os
import shutil
import subprocess

import pytest

from controller.emulation import ControllerProcess, build_network, expected_counts, wait_for_topology


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
def controller(request, tmp_path):
    proc = ControllerProcess(workdir=str(tmp_path))
    try:
        proc.start()
        yield proc
    finally:
        proc.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(f"--- controller log ({proc.log_path}) ---\n{proc.log_tail(80)}")


@contextlib.contextmanager
def running_network(topo, controller: ControllerProcess):
    """Start `topo` against the controller, wait until discovered and ready; always stop it."""
    from mininet.log import setLogLevel  # pylint: disable=import-outside-toplevel
    setLogLevel("warning")
    net = build_network(topo, controller.openflow_port)
    try:
        net.start()
        switches, links = expected_counts(topo)
        wait_for_topology(controller, switches, links)
        yield net
    finally:
        net.stop()
