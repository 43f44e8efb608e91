"""The controller's published state: immutable snapshots that other threads may read (core).

The app's event thread is the only writer; it replaces whole values (never mutates them),
so readers (gRPC servicers, metrics) always see a consistent picture without locks.
"""

import dataclasses
import time
from typing import Mapping

from controller.events import EventBus, FlowView, MeterStatsView, PortStatsView
from controller.health import Health
from controller.network.topology import TopologySnapshot


@dataclasses.dataclass(frozen=True)
class ControllerCounters:
    openflow_errors_total: int = 0
    packet_in_total: int = 0
    packet_in_malformed_total: int = 0
    flows_added_total: int = 0
    flows_deleted_total: int = 0
    handler_errors_total: int = 0
    send_errors_total: int = 0


class PublishedState:
    """Snapshots written by the app, read by everyone else."""

    def __init__(self, poll_interval_s: float, runtime: str, bus: EventBus | None = None):
        self.started_monotonic = time.monotonic()
        self.poll_interval_s = poll_interval_s
        self.runtime = runtime
        self.store = ""   # where the store is, as GetStatus shows the domain manager
        self.leader = True   # master of the switches (always, without a cluster)
        self.cluster = None  # controller.cluster.leader.Leadership, with a cluster
        self.stream = None   # controller.stream.RecordStream, with records.nats
        self.bus = bus or EventBus()
        self.topology = TopologySnapshot()
        self.connected: frozenset[int] = frozenset()
        self.ready: frozenset[int] = frozenset()
        self.flows: Mapping[int, tuple[FlowView, ...]] = {}
        self.ports: Mapping[int, tuple[PortStatsView, ...]] = {}
        self.meters: Mapping[int, tuple[MeterStatsView, ...]] = {}
        self.meter_configs: Mapping[int, Mapping] = {}  # dpid -> meter id -> MeterSpec
        self.counters = ControllerCounters()
        self.health = Health()
        # monotonic time the app's event loop last finished handling an event (the watchdog
        # reads it; None until the first event)
        self.loop_progress: float | None = None
        self.loop_thread = None  # the app's event thread, once it runs

    def set_flows(self, dpid: int, flows: tuple[FlowView, ...]) -> None:
        self.flows = {**self.flows, dpid: flows}

    def set_ports(self, dpid: int, ports: tuple[PortStatsView, ...]) -> None:
        self.ports = {**self.ports, dpid: ports}

    def set_meters(self, dpid: int, meters: tuple[MeterStatsView, ...]) -> None:
        self.meters = {**self.meters, dpid: meters}

    def set_meter_configs(self, dpid: int, configs: Mapping) -> None:
        self.meter_configs = {**self.meter_configs, dpid: configs}

    def drop_switch(self, dpid: int) -> None:
        self.meter_configs = {k: v for k, v in self.meter_configs.items() if k != dpid}
        self.flows = {k: v for k, v in self.flows.items() if k != dpid}
        self.ports = {k: v for k, v in self.ports.items() if k != dpid}
        self.meters = {k: v for k, v in self.meters.items() if k != dpid}

    def count(self, **increments: int) -> None:
        current = self.counters
        self.counters = dataclasses.replace(
            current, **{k: getattr(current, k) + v for k, v in increments.items()})
