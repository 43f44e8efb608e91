"""StatusService servicer: answers from PublishedState snapshots, never touching the app (shell).

Each answer is scoped to the caller (controller.monitor.scope): the domain manager sees the
whole network, a customer only its own hosts, flows, access port, meter and events.
"""

import time

import grpc
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc

from controller import __version__
from controller.api import convert
from controller.api.auth import current_principal
from controller.csm.model import Role
from controller.monitor.scope import Scope
from controller.openflow.pipeline import Component
from controller.state import PublishedState

_COMPONENTS = {c.name.lower() for c in Component}
MAX_LIMIT = 1_000_000


class StatusServicer(pb_grpc.StatusServiceServicer):
    def __init__(self, state: PublishedState, stop_event=None, scope_of=lambda principal: Scope(),
                 capacities=None):
        self._state = state
        self._capacities = dict(capacities or {})  # {(dpid, port): bit/s} configured
        self._stop = stop_event
        self._scope_of = scope_of  # principal -> Scope

    def _scope(self) -> Scope:
        return self._scope_of(current_principal())

    def _select(self, mapping, request, context) -> list:
        """Values of a per-switch mapping, for the request's dpid (NOT_FOUND) or all."""
        dpid = self._check_dpid(request, context)
        return [item for key in sorted(mapping) if dpid is None or key == dpid
                for item in mapping[key]]

    def _check_dpid(self, request, context) -> int | None:
        if not request.HasField("dpid"):
            return None
        if request.dpid not in {s.dpid for s in self._state.topology.switches}:
            known = ", ".join(f"{s.dpid}" for s in self._state.topology.switches) or "none"
            context.abort(grpc.StatusCode.NOT_FOUND,
                          f"no switch with dpid {request.dpid} (0x{request.dpid:x}); "
                          f"known dpids: {known}")
        return request.dpid

    def GetStatus(self, request, context):
        state = self._state
        topo = state.topology
        caller = current_principal()
        cluster = state.cluster if caller and caller.role == Role.DOMAIN_MANAGER else None
        stream = state.stream if caller and caller.role == Role.DOMAIN_MANAGER else None
        return pb.GetStatusResponse(
            stream=pb.StreamStatus(
                url=stream.url, consumer=stream.consumer, reading=not stream.problem,
                problem=stream.problem, pending=stream.pending, ack_pending=stream.ack_pending,
                taken=stream.messages["taken"], rejected=stream.messages["rejected"],
                records=stream.records_taken,
                records_elsewhere=stream.records_elsewhere,
                records_replayed=stream.records_replayed,
                replay_failures=stream.replay_failures) if stream else None,
            instance=cluster.instance if cluster else "",
            cluster=[pb.ClusterMember(
                instance=name, about=about, master=name == cluster.holder,
                switches=sorted(d for d, (holder, _) in cluster.holders.items()
                                if holder == name),
                partitions=sorted(p for p, holder in cluster.partition_holders.items()
                                  if holder == name), partition_count=cluster.partitions)
                for name, about in cluster.members] if cluster else [],
            lease_age_s=cluster.lease_age_s() if cluster else 0.0,
            caller_role=caller.role.value if caller else "",
            caller_id=(caller.probe_id if caller.role == Role.PROBE else caller.customer_id)
            if caller else "",
            store=state.store if caller and caller.role == Role.DOMAIN_MANAGER else "",
            master=state.leader,
            version=__version__, uptime_s=time.monotonic() - state.started_monotonic,
            switches_connected=len(state.connected), switches_ready=len(state.ready),
            links=len(topo.links),
            hosts=len(topo.hosts), flows=sum(len(f) for f in state.flows.values()),
            openflow_errors_total=state.counters.openflow_errors_total,
            packet_in_total=state.counters.packet_in_total,
            packet_in_malformed_total=state.counters.packet_in_malformed_total,
            poll_interval_s=state.poll_interval_s, openflow_runtime=state.runtime,
            serving=state.health.serving, problems=list(state.health.problems),
            handler_errors_total=state.counters.handler_errors_total,
            send_errors_total=state.counters.send_errors_total)

    def GetTopology(self, request, context):
        return convert.topology_pb(self._scope().topology(self._state.topology),
                                   self._state.connected, self._capacities)

    def ListFlows(self, request, context):
        if request.component and request.component not in _COMPONENTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"unknown component '{request.component}'; allowed: "
                          f"{', '.join(sorted(_COMPONENTS))} (or empty for all)")
        if request.limit > MAX_LIMIT:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit {request.limit} is above the maximum {MAX_LIMIT}; "
                          "use 0 for no limit or filter by dpid")
        scope = self._scope()
        flows = [f for f in self._select(self._state.flows, request, context) if scope.flow(f)]
        if request.component:
            flows = [f for f in flows
                     if f.entry.component and f.entry.component.name.lower() == request.component]
        flows.sort(key=lambda f: (f.dpid, f.entry.table_id, -f.entry.priority, f.entry.match))
        if request.limit:
            flows = flows[:request.limit]
        return pb.ListFlowsResponse(flows=[convert.flow_pb(f) for f in flows],
                                    poll_interval_s=self._state.poll_interval_s)

    def ListPorts(self, request, context):
        scope = self._scope()
        ports = [p for p in self._select(self._state.ports, request, context)
                 if scope.port(p.dpid, p.port_no)]
        ports.sort(key=lambda p: (p.dpid, p.port_no))
        return pb.ListPortsResponse(ports=[convert.port_stats_pb(p) for p in ports])

    def ListMeters(self, request, context):
        scope = self._scope()
        meters = [m for m in self._select(self._state.meters, request, context)
                  if scope.meter(m.dpid, m.meter_id)]
        meters.sort(key=lambda m: (m.dpid, m.meter_id))
        configs = self._state.meter_configs
        return pb.ListMetersResponse(meters=[
            convert.meter_stats_pb(m, configs.get(m.dpid, {}).get(m.meter_id)) for m in meters])

    def WatchEvents(self, request, context):
        if len(request.kinds) > 64:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "kinds: at most 64 entries")
        kinds = set(request.kinds)
        for kind in kinds:
            if kind == pb.EVENT_KIND_UNSPECIFIED or kind not in pb.EventKind.values():
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"event kind {kind} is not allowed; allowed: "
                              + ", ".join(n for n in pb.EventKind.keys()
                                          if n != "EVENT_KIND_UNSPECIFIED"))
        scope = self._scope()
        subscription = self._state.bus.subscribe()
        try:
            while context.is_active() and not (self._stop and self._stop.is_set()):
                item = subscription.get(timeout_s=0.5)
                if item is not None:
                    item = scope.event(item)
                if item is None:
                    continue
                event = convert.event_pb(item)
                if event is not None and (not kinds or event.kind in kinds):
                    yield event
        finally:
            subscription.close()
