"""What the controller tells watchers: domain events and a fan-out bus (core data, thread-safe bus).

The app's event thread publishes; each gRPC watcher reads its own bounded queue. A watcher
that falls behind loses its oldest events, and the loss is counted, never blocking the app.
"""

import collections
import dataclasses
import math
import threading
from typing import Any

from controller.network.topology import HostInfo, LinkKey, PortInfo
from controller.openflow.pipeline import FlowEntry


@dataclasses.dataclass(frozen=True)
class FlowView:
    """A cems flow on a switch with its counters and latest rates (NaN while unknown)."""

    dpid: int
    entry: FlowEntry
    packet_count: int
    byte_count: int
    duration_s: float
    bytes_per_second: float = math.nan
    packets_per_second: float = math.nan


PORT_COUNTERS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_dropped", "tx_dropped",
                 "rx_errors", "tx_errors")


@dataclasses.dataclass(frozen=True)
class PortStatsView:
    """Port counters (PORT_COUNTERS order) and their per-second rates (NaN while unknown)."""

    dpid: int
    port_no: int
    counters: tuple[int, ...]
    rates: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class MeterStatsView:
    """Meter counters (packets_in, bytes_in, band_packets, band_bytes; band counters are what
    the meter's bands dropped or remarked) and their per-second rates (NaN while unknown)."""

    dpid: int
    meter_id: int
    flow_count: int
    counters: tuple[int, ...]
    rates: tuple[float, ...]


@dataclasses.dataclass(frozen=True)
class SwitchChanged:
    time_unix_s: float
    dpid: int
    up: bool
    address: str = ""


@dataclasses.dataclass(frozen=True)
class LinkChanged:
    time_unix_s: float
    link: LinkKey
    up: bool


@dataclasses.dataclass(frozen=True)
class HostLearned:
    time_unix_s: float
    host: HostInfo


@dataclasses.dataclass(frozen=True)
class PortChanged:
    time_unix_s: float
    dpid: int
    port: PortInfo
    edge: bool


@dataclasses.dataclass(frozen=True)
class FlowRates:
    time_unix_s: float
    dpid: int
    flows: tuple[FlowView, ...]


@dataclasses.dataclass(frozen=True)
class KpiRecords:
    """Probe records the controller just accepted (controller.monitor.kpis.KpiRecord, joined)."""
    time_unix_s: float
    records: tuple


@dataclasses.dataclass(frozen=True)
class ExperienceChanged:
    """A customer's service changed status (controller.monitor.experience.StatusChange)."""
    time_unix_s: float
    change: Any


@dataclasses.dataclass(frozen=True)
class FindingPublished:
    """A root-cause finding (controller.monitor.rootcause.Finding)."""
    time_unix_s: float
    finding: Any


@dataclasses.dataclass(frozen=True)
class ZoomChanged:
    """A zoom started or ended (controller.monitor.zoom.ZoomEvent), with what it did."""
    time_unix_s: float
    event: Any
    mirror: str = ""
    stamp_test_id: str = ""


@dataclasses.dataclass(frozen=True)
class DecisionMade:
    """A line of the policy engine's decision log (controller.policy.log.Logged)."""
    time_unix_s: float
    logged: Any


def weight(item: Any) -> int:
    """What an event holds, in items (flows, records), for the watchers' bounds."""
    for field in ("flows", "records"):
        inner = getattr(item, field, None)
        if isinstance(inner, tuple):
            return max(1, len(inner))
    return 1


class Subscription:
    """One watcher's bounded queue of events: at most `maxsize` events holding at most
    `max_items` flows or records together; the oldest go first, and are counted."""

    def __init__(self, bus: "EventBus", maxsize: int, max_items: int = 200_000):
        self._bus = bus
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: collections.deque = collections.deque()
        self._items = 0
        self.maxsize = maxsize
        self.max_items = max_items
        self.lost = 0

    def offer(self, item: Any) -> None:
        size = weight(item)
        with self._lock:
            self._queue.append((item, size))
            self._items += size
            while len(self._queue) > 1 and (len(self._queue) > self.maxsize
                                            or self._items > self.max_items):
                _, gone = self._queue.popleft()
                self._items -= gone
                self.lost += 1
            self._ready.notify()

    def get(self, timeout_s: float) -> Any | None:
        """Next event, or None after timeout_s without one."""
        with self._lock:
            if not self._queue:
                self._ready.wait(timeout_s)
            if not self._queue:
                return None
            item, size = self._queue.popleft()
            self._items -= size
            return item

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """Fan-out of events to any number of subscribers; publish never blocks."""

    def __init__(self, maxsize: int = 1000, max_items: int = 200_000):
        self._maxsize = maxsize
        self._max_items = max_items
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._maxsize, self._max_items)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(self, item: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.offer(item)

    def __len__(self) -> int:
        with self._lock:
            return len(self._subscribers)
