"""Switches, ports, inter-switch links and hosts, and the graph built from them (core).

Owned and changed only by the app's event thread; other threads read TopologySnapshot,
which is immutable. Every method takes the time `now` from the caller.
"""

import dataclasses
from typing import Iterable, NamedTuple

import networkx as nx


@dataclasses.dataclass(frozen=True)
class PortInfo:
    port_no: int
    name: str = ""
    hw_addr: str = ""
    up: bool = True
    curr_speed_kbps: int = 0
    max_speed_kbps: int = 0


@dataclasses.dataclass(frozen=True, order=True)
class LinkKey:
    """One direction of an inter-switch link: frames leave src_port and arrive at dst_port."""

    src_dpid: int
    src_port: int
    dst_dpid: int
    dst_port: int

    def reverse(self) -> "LinkKey":
        return LinkKey(self.dst_dpid, self.dst_port, self.src_dpid, self.src_port)


class SwitchPort(NamedTuple):
    """One port of one switch (for example where a probe hangs off the network)."""

    dpid: int
    port_no: int

    def __str__(self) -> str:
        return f"{self.dpid:016x}:{self.port_no}"


@dataclasses.dataclass(frozen=True)
class HostInfo:
    mac: str
    dpid: int
    port_no: int
    ipv4: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class SwitchInfo:
    dpid: int
    address: str
    connected_at: float
    ports: tuple[PortInfo, ...]


@dataclasses.dataclass(frozen=True)
class TopologySnapshot:
    """Immutable copy of the topology for readers on other threads (gRPC, metrics)."""

    switches: tuple[SwitchInfo, ...] = ()
    links: tuple[LinkKey, ...] = ()
    hosts: tuple[HostInfo, ...] = ()

    def switch(self, dpid: int) -> SwitchInfo | None:
        for info in self.switches:
            if info.dpid == dpid:
                return info
        return None


class Topology:
    """The mutable topology. Methods that change it return what changed, for events.

    `version` grows with every change, so derived data (desired flows) can be cached.
    """

    def __init__(self):
        self.version = 0
        self._switches: dict[int, dict[int, PortInfo]] = {}
        self._addresses: dict[int, str] = {}
        self._connected_at: dict[int, float] = {}
        self._links: dict[LinkKey, float] = {}  # -> last time LLDP saw it
        self._hosts: dict[str, HostInfo] = {}
        self._port_addresses: tuple[int, frozenset[str]] = (-1, frozenset())

    # -- switches and ports -------------------------------------------------------------
    def add_switch(self, dpid: int, now: float, address: str = "") -> None:
        self.version += 1
        self._switches.setdefault(dpid, {})
        self._addresses[dpid] = address
        self._connected_at[dpid] = now

    def remove_switch(self, dpid: int) -> list[LinkKey]:
        """Forget a switch; returns the links that went with it (hosts on it are kept)."""
        self.version += 1
        self._switches.pop(dpid, None)
        self._addresses.pop(dpid, None)
        self._connected_at.pop(dpid, None)
        gone = [key for key in self._links if dpid in (key.src_dpid, key.dst_dpid)]
        for key in gone:
            del self._links[key]
        return gone

    def has_switch(self, dpid: int) -> bool:
        return dpid in self._switches

    def connected_at(self, dpid: int) -> float | None:
        return self._connected_at.get(dpid)

    def switches(self) -> list[int]:
        return sorted(self._switches)

    def set_ports(self, dpid: int, ports: Iterable[PortInfo]) -> list[LinkKey]:
        """Replace a switch's port list; returns links lost on ports that vanished or are down."""
        self.version += 1
        self._switches[dpid] = {port.port_no: port for port in ports}
        return self._drop_links_on_dead_ports(dpid)

    def set_port(self, dpid: int, port: PortInfo) -> list[LinkKey]:
        """Add or update one port; returns links lost if it went down."""
        self.version += 1
        self._switches.setdefault(dpid, {})[port.port_no] = port
        return self._drop_links_on_dead_ports(dpid)

    def remove_port(self, dpid: int, port_no: int) -> list[LinkKey]:
        self.version += 1
        self._switches.get(dpid, {}).pop(port_no, None)
        return self._drop_links_on_dead_ports(dpid)

    def ports(self, dpid: int) -> list[PortInfo]:
        return [self._switches[dpid][n] for n in sorted(self._switches.get(dpid, {}))]

    def port(self, dpid: int, port_no: int) -> PortInfo | None:
        return self._switches.get(dpid, {}).get(port_no)

    def _port_alive(self, dpid: int, port_no: int) -> bool:
        port = self._switches.get(dpid, {}).get(port_no)
        return port is not None and port.up

    def _drop_links_on_dead_ports(self, dpid: int) -> list[LinkKey]:
        gone = [key for key in self._links
                if (key.src_dpid == dpid and not self._port_alive(dpid, key.src_port))
                or (key.dst_dpid == dpid and not self._port_alive(dpid, key.dst_port))]
        for key in gone:
            del self._links[key]
        return gone

    # -- links --------------------------------------------------------------------------
    def observe_link(self, key: LinkKey, now: float) -> bool:
        """LLDP from key.src arrived at key.dst; True when the link is new."""
        if not (self._port_alive(key.src_dpid, key.src_port)
                and self._port_alive(key.dst_dpid, key.dst_port)):
            return False
        new = key not in self._links
        self._links[key] = now
        self.version += new
        return new

    def expire_links(self, now: float, timeout_s: float, senders=None) -> list[LinkKey]:
        """Forget links LLDP has not confirmed for timeout_s; returns them. With `senders`,
        only links from those switches (the ones whose LLDP this instance sends)."""
        gone = [key for key, seen in self._links.items() if now - seen > timeout_s
                and (senders is None or key.src_dpid in senders)]
        for key in gone:
            del self._links[key]
        self.version += bool(gone)
        return gone

    def links(self) -> list[LinkKey]:
        return sorted(self._links)

    def is_link_port(self, dpid: int, port_no: int) -> bool:
        return any((key.src_dpid, key.src_port) == (dpid, port_no)
                   or (key.dst_dpid, key.dst_port) == (dpid, port_no) for key in self._links)

    def edge_ports(self, dpid: int) -> list[int]:
        """Ports of a switch that are up and have no inter-switch link: where hosts live."""
        link_ports = {key.src_port for key in self._links if key.src_dpid == dpid}
        link_ports |= {key.dst_port for key in self._links if key.dst_dpid == dpid}
        return [port.port_no for port in self.ports(dpid)
                if port.up and port.port_no not in link_ports]

    # -- hosts --------------------------------------------------------------------------
    def learn_host(self, mac: str, dpid: int, port_no: int, ipv4: str | None = None
                   ) -> HostInfo | None:
        """Record a host seen at (dpid, port_no); returns the new HostInfo if anything changed."""
        old = self._hosts.get(mac)
        addresses = old.ipv4 if old and (old.dpid, old.port_no) == (dpid, port_no) else ()
        if ipv4 and ipv4 != "0.0.0.0" and ipv4 not in addresses:
            addresses = tuple(sorted(addresses + (ipv4,)))
        new = HostInfo(mac, dpid, port_no, addresses)
        if new == old:
            return None
        self._hosts[mac] = new
        self.version += 1
        return new

    def forget_host(self, mac: str) -> bool:
        """Forget a host learned by mistake (it is learned again when it sends); True if it
        was known."""
        if self._hosts.pop(mac.lower(), None) is None:
            return False
        self.version += 1
        return True

    def port_addresses(self) -> frozenset[str]:
        """The hardware addresses of every known switch port (never hosts)."""
        if self._port_addresses[0] != self.version:
            addresses = frozenset(p.hw_addr.lower() for ports in self._switches.values()
                                  for p in ports.values() if p.hw_addr)
            self._port_addresses = (self.version, addresses)
        return self._port_addresses[1]

    def host(self, mac: str) -> HostInfo | None:
        return self._hosts.get(mac)

    def host_by_ipv4(self, address: str) -> HostInfo | None:
        for host in self._hosts.values():
            if address in host.ipv4:
                return host
        return None

    def hosts(self) -> list[HostInfo]:
        return [self._hosts[mac] for mac in sorted(self._hosts)]

    # -- derived ------------------------------------------------------------------------
    def graph(self) -> nx.DiGraph:
        """Directed graph of connected switches; edge attribute `port` is the egress port."""
        graph = nx.DiGraph()
        graph.add_nodes_from(sorted(self._switches))
        for key in sorted(self._links):
            if key.src_dpid in self._switches and key.dst_dpid in self._switches:
                graph.add_edge(key.src_dpid, key.dst_dpid, port=key.src_port)
        return graph

    def snapshot(self) -> TopologySnapshot:
        switches = tuple(
            SwitchInfo(dpid, self._addresses.get(dpid, ""), self._connected_at.get(dpid, 0.0),
                       tuple(self.ports(dpid)))
            for dpid in sorted(self._switches))
        return TopologySnapshot(switches, tuple(sorted(self._links)), tuple(self.hosts()))
