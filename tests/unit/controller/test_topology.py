from controller.network.topology import LinkKey, PortInfo

from tests.unit.controller.fakes import build_topology, mac


def test_links_expire_unless_lldp_confirms_them():
    topology = build_topology({1: 2, 2: 2}, [(1, 2, 2, 2)], now=0.0)
    topology.observe_link(LinkKey(1, 2, 2, 2), now=3.0)
    gone = topology.expire_links(now=4.0, timeout_s=3.5)
    assert gone == [LinkKey(2, 2, 1, 2)]
    assert topology.links() == [LinkKey(1, 2, 2, 2)]


def test_port_down_and_removed_switch_drop_their_links():
    topology = build_topology({1: 2, 2: 2, 3: 2}, [(1, 2, 2, 2), (2, 1, 3, 1)])
    lost = topology.set_port(2, PortInfo(2, "s2-eth2", mac(2), up=False))
    assert sorted(lost) == [LinkKey(1, 2, 2, 2), LinkKey(2, 2, 1, 2)]
    assert sorted(topology.remove_switch(3)) == [LinkKey(2, 1, 3, 1), LinkKey(3, 1, 2, 1)]
    assert topology.links() == []


def test_links_on_down_ports_are_not_accepted():
    topology = build_topology({1: 2, 2: 2}, [])
    topology.set_port(1, PortInfo(2, "x", mac(2), up=False))
    assert not topology.observe_link(LinkKey(1, 2, 2, 2), now=0)
    assert topology.links() == []


def test_edge_ports_exclude_link_ports_and_down_ports():
    topology = build_topology({1: 4, 2: 2}, [(1, 2, 2, 2)])
    topology.set_port(1, PortInfo(4, "x", mac(4), up=False))
    assert topology.edge_ports(1) == [1, 3]
    assert topology.is_link_port(1, 2) and not topology.is_link_port(1, 1)


def test_hosts_keep_addresses_and_move():
    topology = build_topology({1: 3}, [])
    assert topology.learn_host(mac(1), 1, 1, "10.0.0.1") is not None
    assert topology.learn_host(mac(1), 1, 1, "10.0.0.1") is None  # nothing new
    assert topology.learn_host(mac(1), 1, 1, "0.0.0.0") is None   # DHCP-style source ignored
    assert topology.host_by_ipv4("10.0.0.1").mac == mac(1)
    moved = topology.learn_host(mac(1), 1, 3)
    assert (moved.port_no, moved.ipv4) == (3, ())


def test_snapshot_is_a_frozen_copy():
    topology = build_topology({1: 2, 2: 2}, [(1, 2, 2, 2)])
    topology.learn_host(mac(9), 1, 1)
    snap = topology.snapshot()
    topology.remove_switch(2)
    assert len(snap.switches) == 2 and len(snap.links) == 2 and snap.hosts[0].mac == mac(9)
    assert snap.switch(2) is not None and snap.switch(7) is None


def test_version_changes_exactly_when_the_topology_does():
    topology = build_topology({1: 2, 2: 2}, [(1, 2, 2, 2)])
    start = topology.version
    topology.observe_link(LinkKey(1, 2, 2, 2), now=1.0)  # a refresh, nothing new
    topology.learn_host(mac(1), 1, 1)
    assert topology.version == start + 1
    topology.learn_host(mac(1), 1, 1)
    assert topology.expire_links(now=1.5, timeout_s=3.0) == []
    assert topology.version == start + 1
    topology.expire_links(now=10.0, timeout_s=3.0)
    assert topology.version == start + 2
