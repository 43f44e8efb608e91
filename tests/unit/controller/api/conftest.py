"""A PublishedState filled by the real cores: two switches, one link, two hosts."""

import pytest

from controller.events import FlowView, PortStatsView
from controller.network.forwarding import compute_desired_flows
from controller.state import PublishedState

from tests.unit.controller.fakes import build_topology, mac


@pytest.fixture
def state():
    topology = build_topology({1: 3, 2: 3}, [(1, 2, 2, 2)])
    topology.learn_host(mac(1), 1, 1, "10.0.0.1")
    topology.learn_host(mac(2), 2, 1, "10.0.0.2")
    published = PublishedState(poll_interval_s=1.0, runtime="os_ken")
    published.topology = topology.snapshot()
    published.connected = frozenset({1, 2})
    for dpid, flows in compute_desired_flows(topology, [1, 2]).items():
        published.set_flows(dpid, tuple(FlowView(dpid, e, 10, 1000, 5.0, 125.0, 1.0)
                                        for e in sorted(flows)))
        published.set_ports(dpid, (PortStatsView(dpid, 1, (1,) * 8, (2.0,) * 8),))
    return published
