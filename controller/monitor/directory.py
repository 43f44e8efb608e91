"""Which customer an IP address belongs to (core).

Probes see addresses; customers are known by the MACs of their devices, and the controller
learns which addresses each MAC uses (TopologySnapshot hosts). The directory joins the two:
an address belongs to the customer owning the MAC that uses it. It is rebuilt only when the
topology snapshot (an immutable object the app replaces on every change) or a customer's
devices changed, and each rebuild gets a new version, so that records joined against an
older one can be re-joined where the answer changed. It also keeps each customer's state
(access port, meter) for scoping what a customer may see (controller.monitor.scope).
Thread-safe.
"""

import threading
from typing import Callable, Iterable

from controller.network.topology import TopologySnapshot


class CustomerDirectory:
    def __init__(self, topology: Callable[[], TopologySnapshot] | None = None):
        self._topology = topology or (lambda: TopologySnapshot())
        self._lock = threading.Lock()
        self._macs: dict[str, tuple[str, ...]] = {}   # customer -> its devices' MACs
        self._states: dict = {}                       # customer -> its CustomerState
        self._macs_version = 0
        self._built_from: tuple = (None, -1)          # (snapshot, macs version) of _by_address
        self._by_address: dict[str, str] = {}
        self.version = 0

    def use_topology(self, topology: Callable[[], TopologySnapshot]) -> None:
        """Where the latest topology snapshot comes from (the controller's published one)."""
        with self._lock:
            self._topology = topology

    def set_customer(self, customer_id: str, macs: Iterable[str]) -> None:
        """A customer's devices now (empty: the customer is gone)."""
        macs = tuple(m.lower() for m in macs)
        with self._lock:
            if self._macs.get(customer_id, ()) == macs:
                return
            if macs:
                self._macs[customer_id] = macs
            else:
                self._macs.pop(customer_id, None)
            self._macs_version += 1

    def load(self, states: Iterable) -> None:
        """Every customer at start (controller.csm.model.CustomerState)."""
        for state in states:
            self.set_state(state.customer_id, state)

    def customer_changed(self, change) -> None:
        """A controller.csm.service.CustomerChanged."""
        self.set_state(change.customer_id, change.state)

    def set_state(self, customer_id: str, state) -> None:
        """A customer's state now (None: the customer is gone)."""
        with self._lock:
            if state is None:
                self._states.pop(customer_id, None)
            else:
                self._states[customer_id] = state
        self.set_customer(customer_id, state.customer.hosts if state is not None else ())

    def state(self, customer_id: str):
        """The customer's CustomerState, or None when it is not known."""
        with self._lock:
            return self._states.get(customer_id)

    def customer_of_macs(self) -> dict[str, str]:
        """MAC -> the customer whose device it is."""
        with self._lock:
            return {mac: customer for customer, macs in self._macs.items() for mac in macs}

    def vip(self) -> list[str]:
        """The customers marked VIP in their SLA, sorted."""
        with self._lock:
            return sorted(c for c, state in self._states.items() if state.customer.vip)

    def current(self) -> tuple[int, dict[str, str]]:
        """(version, address -> customer id) as of now; the mapping must not be changed."""
        snapshot = self._topology()
        with self._lock:
            if self._built_from != (snapshot, self._macs_version):
                mac_to_customer = {mac: customer for customer, macs in self._macs.items()
                                   for mac in macs}
                mapping = {address: mac_to_customer[host.mac] for host in snapshot.hosts
                           if host.mac in mac_to_customer for address in host.ipv4}
                self._built_from = (snapshot, self._macs_version)
                if mapping != self._by_address:
                    self._by_address = mapping
                    self.version += 1
            return self.version, self._by_address
