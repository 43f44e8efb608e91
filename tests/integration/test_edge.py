"""Egress HTB classes through pyroute2 on a veth pair the test makes and removes."""

import os
import subprocess
import uuid

import pytest

from controller.csm.model import ServiceClass as C
from controller.csm.queues import plan_egress
from controller.edge import EdgeError, apply_egress

M = 1_000_000


def tc(*args: str) -> str:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=True).stdout


def test_classes_replace_what_was_there_and_applying_twice_changes_nothing(veth):
    # What Mininet's TCLink leaves on a port: its own HTB.
    subprocess.run(["tc", "qdisc", "add", "dev", veth, "root", "handle", "5:", "htb"], check=True)
    plan = plan_egress(veth, 20 * M, {C.GOLD: 8 * M})
    assert apply_egress(plan) is True
    assert apply_egress(plan) is False
    classes = tc("class", "show", "dev", veth)
    assert "class htb 1:10 parent 1:1 leaf 110: prio 0 rate 8Mbit ceil 20Mbit" in classes
    assert "class htb 1:30" in classes and "5:" not in tc("qdisc", "show", "dev", veth)
    filters = tc("filter", "show", "dev", veth)
    assert "match b8000000/fc000000 at 1" in filters and "flowid 1:10" in filters
    assert apply_egress(plan_egress(veth, 20 * M, {C.GOLD: 4 * M})) is True
    assert "rate 4Mbit" in tc("class", "show", "dev", veth)


def test_a_missing_interface_is_a_clear_error():
    with pytest.raises(EdgeError, match="interface cems-nope does not exist"):
        apply_egress(plan_egress("cems-nope", 20 * M, {}))


@pytest.fixture
def netns_veth():
    name = f"cems{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "v0", "type", "veth", "peer", "name",
                        "v1"], check=True)
        subprocess.run(["ip", "-n", name, "link", "set", "v0", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def test_edge_shaping_inside_a_namespace_without_leaving_the_root_one(netns_veth):
    from controller.edge import apply_edge_shaping
    root_ns = subprocess.run(["readlink", "/proc/self/ns/net"], capture_output=True,
                             text=True).stdout
    assert apply_edge_shaping(netns_veth, "v0", 8 * M) is True
    assert apply_edge_shaping(netns_veth, "v0", 8 * M) is False
    assert apply_edge_shaping(netns_veth, "v0", 2 * M) is True
    shown = subprocess.run(["ip", "netns", "exec", netns_veth, "tc", "class", "show", "dev", "v0"],
                           capture_output=True, text=True, check=True).stdout
    assert "rate 2Mbit ceil 2Mbit" in shown
    assert subprocess.run(["readlink", f"/proc/{os.getpid()}/ns/net"], capture_output=True,
                          text=True).stdout == root_ns  # this process never moved
    with pytest.raises(EdgeError, match="interface nope does not exist"):
        apply_edge_shaping(netns_veth, "nope", M)
    with pytest.raises(EdgeError, match="cannot be opened"):
        apply_edge_shaping("cems-missing-ns", "v0", M)
