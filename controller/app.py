"""The cems OpenFlow application: events in, core calls, OpenFlow messages out (shell).

Each handler reads the clock once, calls the core (topology, forwarding, rates,
reconciliation) and sends what comes back through _send(). Timers only post events; all
work runs on the app's event thread. Start it with cems-controller (os-ken), or under Ryu
with `python -m controller.ryu_launcher` and CEMS_CONFIG pointing at a config file.
"""

import collections
import dataclasses
import logging
import threading
import time

from controller import compat
from controller.compat import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, ofp_event,
                               set_ev_cls)
from controller.compat import ofproto_v1_3 as ofp
from controller.csm.mapping import METER_BASE, CustomerMapping, CustomerState, MeterSpec, diff_meters
from controller.csm.queues import plan_egress
from controller.csm.store import CsmStore
from controller.events import FlowRates, HostLearned, LinkChanged, PortChanged, SwitchChanged
from controller.network.discovery import build_lldp_frame
from controller.network.forwarding import build_control_flows, compute_desired_flows
from controller.network.packet_in import handle_packet_in
from controller.network.stats import (SwitchRates, compute_flow_views, compute_meter_views,
                                      compute_port_views)
from controller.network.topology import PortInfo, Topology
from controller.openflow import messages
from controller.openflow.pipeline import apply_diff, diff_flows
from controller.runtime import Runtime, take_runtime

LOG = logging.getLogger("cems.app")
_SENT_MEMORY = 256  # requests remembered per switch to explain OpenFlow errors


class EventPollTick(compat.event.EventBase):
    """Posted by the timer thread every poll interval."""


class EventLldpTick(compat.event.EventBase):
    """Posted by the timer thread every LLDP interval."""


class EventCustomersChanged(compat.event.EventBase):
    """Posted by the gRPC servicers after a customer, SLA or SLS change was stored."""

    def __init__(self, customer_id: str):
        super().__init__()
        self.customer_id = customer_id


@dataclasses.dataclass
class SwitchState:
    """What the app knows of one connected switch."""

    datapath: object
    connected_at: float
    believed: set = dataclasses.field(default_factory=set)  # cems flows we think are there
    mods_sent: int = 0          # flow mods sent so far (orders replies against changes)
    state_request_mods: dict = dataclasses.field(default_factory=dict)  # xid -> mods_sent then
    # (flow stats and meter config requests: a reply is the switch's state only if no mod
    # was sent between the request and the reply)
    parts: dict = dataclasses.field(default_factory=dict)  # xid -> multipart bodies so far
    sent: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)
    reconciled_once: bool = False
    believed_meters: dict = dataclasses.field(default_factory=dict)  # cems meters: id -> spec
    meters_known: bool = False  # a meter config reply has told what the switch holds


def port_info_from_ofp(port) -> PortInfo:
    """OFPPort -> PortInfo."""
    name = port.name.decode(errors="replace") if isinstance(port.name, bytes) else str(port.name)
    up = not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
    return PortInfo(port.port_no, name, port.hw_addr, bool(up), port.curr_speed, port.max_speed)


class CemsApp(compat.app_manager.OSKenApp if hasattr(compat.app_manager, "OSKenApp")
              else compat.app_manager.RyuApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]
    _EVENTS = [EventPollTick, EventLldpTick, EventCustomersChanged]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime: Runtime = take_runtime()
        self.config = self.runtime.config
        self.state = self.runtime.state
        self.metrics = self.runtime.metrics
        self.topology = Topology()
        for host in self.runtime.store.load_hosts():
            self.topology.learn_host(host.mac, host.dpid, host.port_no)
            for address in host.ipv4:
                self.topology.learn_host(host.mac, host.dpid, host.port_no, address)
        self.switches: dict[int, SwitchState] = {}
        self.rates: dict[int, SwitchRates] = {}  # kept across reconnects: windows survive
        self._errors_logged: set[tuple[int, int, int]] = set()
        self._desired: tuple[tuple, dict] = ((), {})  # (topology version, settled) -> flows
        self.csm = CsmStore(self.runtime.store)
        self._egress_errors: set[str] = set()
        self.customers = CustomerMapping()
        self.customers.replace_all(
            CustomerState(customer, sls, METER_BASE + index)
            for customer, sls, index in self.csm.all_current_sls())
        self.runtime.customers_changed.append(
            lambda customer_id: self.send_event(self.name, EventCustomersChanged(customer_id)))
        self._stop = threading.Event()
        self._timer = None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self):
        thread = super().start()
        self._timer = compat.hub.spawn(self._post_ticks)
        return thread

    def stop(self):
        self._stop.set()
        super().stop()

    def _post_ticks(self):
        """Timer: posts poll and LLDP ticks; the work itself runs on the event thread."""
        next_poll = next_lldp = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                self.send_event(self.name, EventPollTick())
                next_poll = now + self.config.poll_interval_s
            if now >= next_lldp:
                self.send_event(self.name, EventLldpTick())
                next_lldp = now + self.config.lldp_interval_s
            # hub.sleep, not Event.wait: under Ryu this is a green thread, and a native
            # wait would stall every other green thread of the process.
            compat.hub.sleep(min(0.1, max(0.01, min(next_poll, next_lldp) - time.monotonic())))

    # -- sending ------------------------------------------------------------------------
    def _send(self, dpid: int, msgs) -> None:
        """The one place messages leave the app: attach datapath, remember xid, send."""
        switch = self.switches.get(dpid)
        if switch is None:
            return
        datapath = switch.datapath
        for msg in msgs:
            msg.datapath = datapath
            datapath.set_xid(msg)
            switch.sent[msg.xid] = msg
            while len(switch.sent) > _SENT_MEMORY:
                switch.sent.popitem(last=False)
            if isinstance(msg, (compat.ofproto_v1_3_parser.OFPFlowMod,
                                compat.ofproto_v1_3_parser.OFPMeterMod)):
                switch.mods_sent += 1
            datapath.send_msg(msg)

    # -- reconciliation -----------------------------------------------------------------
    def _settled(self, now: float) -> set[int]:
        return {dpid for dpid, sw in self.switches.items()
                if now - sw.connected_at >= self.config.settle_s}

    def _mirror(self) -> tuple[int, int, tuple] | None:
        """(probe dpid, probe port, ((rule, MACs of its customer), ...)), or None."""
        if self.config.mirror_probe is None or self.runtime.mirror is None:
            return None
        chosen = tuple((rule, frozenset(self.customers.hosts_of(rule.customer_id)))
                       for rule in self.runtime.mirror.rules())
        chosen = tuple((rule, macs) for rule, macs in chosen if macs)
        return (*self.config.mirror_probe, chosen) if chosen else None

    def _apply(self, dpid: int, desired: frozenset, allow_delete: bool,
               meters: dict[int, MeterSpec] | None = None) -> None:
        """Send what makes the switch hold `desired` flows (and `meters`, when given).

        Order: meters added or changed, flows deleted, flows added, meters deleted (a switch
        removes the flows of a meter it deletes, and refuses flows of a missing meter).
        """
        switch = self.switches[dpid]
        to_add, to_delete = diff_flows(desired, switch.believed)
        if not allow_delete:
            to_delete = []
        meter_add, meter_modify, meter_delete = ([], [], []) if meters is None else \
            diff_meters(meters, switch.believed_meters, allow_delete)
        if not (to_add or to_delete or meter_add or meter_modify or meter_delete):
            return
        self._send(dpid, [messages.build_meter_mod("add", m.meter_id, m.rate_kbps, m.burst_kbits)
                          for m in meter_add]
                   + [messages.build_meter_mod("modify", m.meter_id, m.rate_kbps, m.burst_kbits)
                      for m in meter_modify]
                   + [messages.build_flow_delete(e) for e in to_delete]
                   + [messages.build_flow_add(e) for e in to_add]
                   + [messages.build_meter_mod("delete", i) for i in meter_delete])
        for meter in meter_add + meter_modify:
            switch.believed_meters[meter.meter_id] = meter
        for meter_id in meter_delete:
            switch.believed_meters.pop(meter_id, None)
        switch.believed = apply_diff(switch.believed, to_add, to_delete)
        label = f"{dpid:016x}"
        self.metrics.flow_changes.labels(label, "add").inc(len(to_add))
        self.metrics.flow_changes.labels(label, "delete").inc(len(to_delete))
        self.state.count(flows_added_total=len(to_add), flows_deleted_total=len(to_delete))
        LOG.info("switch %016x: %d flows added, %d removed", dpid, len(to_add), len(to_delete))

    def _converge(self, now: float) -> None:
        """Make every settled switch hold exactly its desired flows; others get control flows."""
        settled = sorted(self._settled(now))
        mirror = self._mirror()
        key = (self.topology.version, tuple(settled), mirror)
        if self._desired[0] != key:  # flows follow from these only
            self._desired = (key, compute_desired_flows(self.topology, settled, mirror))
        desired = self._desired[1]
        # Customers' meters and marking only where the switch's meters are known, so that
        # a meter is never added twice nor a flow sent before its meter.
        for dpid in settled:
            if self.switches[dpid].meters_known:
                customer_flows, customer_meters = self.customers.for_switch(dpid)
                self._apply(dpid, desired[dpid] | customer_flows, allow_delete=True,
                            meters=customer_meters)
            else:
                self._apply(dpid, desired[dpid], allow_delete=True)
        control = build_control_flows()
        for dpid in self.switches:
            if dpid not in desired:
                self._apply(dpid, control | frozenset(self.switches[dpid].believed),
                            allow_delete=False)

    def _publish_topology(self) -> None:
        self.state.topology = self.topology.snapshot()
        self.state.connected = frozenset(self.switches)
        self.state.ready = frozenset(dpid for dpid, sw in self.switches.items()
                                     if sw.reconciled_once)
        self.metrics.switches.set(len(self.switches))
        self.metrics.links.set(len(self.topology.links()))
        self.metrics.hosts.set(len(self.topology.hosts()))

    def _publish(self, item) -> None:
        self.state.bus.publish(item)

    # -- switch lifecycle ---------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    def _switch_features(self, ev):
        datapath = ev.msg.datapath
        now = time.monotonic()
        address = "%s:%s" % datapath.address if datapath.address else ""
        self.switches[datapath.id] = SwitchState(datapath, now)
        self.rates.setdefault(datapath.id, SwitchRates.create(self.config.rate_window))
        self.topology.add_switch(datapath.id, now, address)
        LOG.info("switch %016x connected from %s", datapath.id, address)
        self._send(datapath.id, [messages.build_port_desc_request()])
        self._apply(datapath.id, build_control_flows(), allow_delete=False)
        self._request_flow_stats(datapath.id)
        self._request_meter_config(datapath.id)
        self._publish_topology()
        self.runtime.store.record_availability(datapath.id, 0, True, time.time())
        self._publish(SwitchChanged(time.time(), datapath.id, True, address))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        datapath = ev.datapath
        if ev.state != DEAD_DISPATCHER or datapath.id is None:
            return
        switch = self.switches.get(datapath.id)
        if switch is None or switch.datapath is not datapath:
            return  # an older connection of a switch that has already reconnected
        del self.switches[datapath.id]
        lost = self.topology.remove_switch(datapath.id)
        self.state.drop_switch(datapath.id)
        self.metrics.forget_switch(datapath.id)
        LOG.warning("switch %016x disconnected; %d links lost", datapath.id, len(lost))
        now_unix = time.time()
        self.runtime.store.record_availability(datapath.id, 0, False, now_unix)
        self._publish(SwitchChanged(now_unix, datapath.id, False))
        for link in lost:
            self._publish(LinkChanged(now_unix, link, False))
        self._publish_topology()
        self._converge(time.monotonic())

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def _port_desc(self, ev):
        dpid = ev.msg.datapath.id
        ports = [port_info_from_ofp(p) for p in ev.msg.body if p.port_no <= ofp.OFPP_MAX]
        lost = self.topology.set_ports(dpid, ports)
        now_unix = time.time()
        for port in ports:
            self.runtime.store.record_availability(dpid, port.port_no, port.up, now_unix)
            self.metrics.port_up.labels(f"{dpid:016x}", str(port.port_no)).set(int(port.up))
        self._links_lost(lost)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        port = port_info_from_ofp(msg.desc)
        if port.port_no > ofp.OFPP_MAX:
            return
        if msg.reason == ofp.OFPPR_DELETE:
            lost = self.topology.remove_port(dpid, port.port_no)
            port = dataclasses.replace(port, up=False)
        else:
            lost = self.topology.set_port(dpid, port)
        self.metrics.port_up.labels(f"{dpid:016x}", str(port.port_no)).set(int(port.up))
        self.runtime.store.record_availability(dpid, port.port_no, port.up, time.time())
        LOG.info("switch %016x port %d (%s) is %s", dpid, port.port_no, port.name,
                 "up" if port.up else "down")
        self._publish(PortChanged(time.time(), dpid, port,
                                  not self.topology.is_link_port(dpid, port.port_no)))
        self._links_lost(lost)

    def _links_lost(self, lost) -> None:
        if not lost:
            self._publish_topology()
            return
        now_unix = time.time()
        for link in lost:
            LOG.warning("link %016x:%d -> %016x:%d is down", link.src_dpid, link.src_port,
                        link.dst_dpid, link.dst_port)
            self._publish(LinkChanged(now_unix, link, False))
        self._publish_topology()
        self._converge(time.monotonic())

    # -- packets ------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        if dpid not in self.switches:
            return
        now = time.monotonic()
        label = f"{dpid:016x}"
        self.metrics.packet_in.labels(label).inc()
        self.state.count(packet_in_total=1)
        result = handle_packet_in(self.topology, now, dpid, msg.match["in_port"], msg.data,
                                  self._settled(now))
        if result.malformed:
            self.metrics.packet_in_malformed.labels(label).inc()
            self.state.count(packet_in_malformed_total=1)
            LOG.debug("switch %016x port %s: %s", dpid, msg.match["in_port"], result.malformed)
        for out in result.outputs:
            self._send(out.dpid, [messages.build_packet_out(None, list(out.out_ports), out.data)])
        if result.new_link is not None:
            link = result.new_link
            LOG.info("link %016x:%d -> %016x:%d discovered", link.src_dpid, link.src_port,
                     link.dst_dpid, link.dst_port)
            self._publish(LinkChanged(time.time(), link, True))
        if result.learned is not None:
            host = result.learned
            LOG.info("host %s %s learned at %016x:%d", host.mac, ",".join(host.ipv4),
                     host.dpid, host.port_no)
            self.runtime.store.save_host(host, time.time())
            self._publish(HostLearned(time.time(), host))
        if result.new_link is not None or result.learned is not None:
            self._publish_topology()
            self._converge(now)

    # -- timers -------------------------------------------------------------------------
    @set_ev_cls(EventLldpTick)
    def _lldp_tick(self, _ev):
        for dpid in list(self.switches):
            frames = [messages.build_packet_out(None, [port.port_no],
                                                build_lldp_frame(dpid, port.port_no, port.hw_addr))
                      for port in self.topology.ports(dpid) if port.up]
            self._send(dpid, frames)

    @set_ev_cls(EventPollTick)
    def _poll_tick(self, _ev):
        now = time.monotonic()
        lost = self.topology.expire_links(now, self.config.link_timeout_s)
        if lost:
            self._links_lost(lost)
        self._apply_egress()
        for dpid, switch in self.switches.items():
            if not switch.reconciled_once and now - switch.connected_at >= self.config.settle_s:
                switch.reconciled_once = True
                self._converge(now)
                self._publish_topology()
            self._send(dpid, [messages.build_port_stats_request(),
                              messages.build_meter_stats_request()])
            self._request_flow_stats(dpid)
            self._request_meter_config(dpid)

    @set_ev_cls(EventCustomersChanged)
    def _customers_changed(self, ev):
        found = self.csm.customer_state(ev.customer_id)
        self.customers.update(ev.customer_id, None if found is None else
                              CustomerState(found[0], found[1], METER_BASE + found[2]))
        self._converge(time.monotonic())
        self._apply_egress()

    def _apply_egress(self) -> None:
        """GSB HTB classes on the configured local interfaces and SLS shaping on the
        configured edge hosts (reconciled: when already right, nothing is changed)."""
        if not (self.config.egress_interfaces or self.config.edge_shaping):
            return
        from controller import edge  # pylint: disable=import-outside-toplevel
        committed = self.customers.committed_by_class()
        work = [(ifname, lambda i=ifname, b=link_bps: edge.apply_egress(
                    plan_egress(i, b, committed)))
                for ifname, link_bps in self.config.egress_interfaces]
        for customer_id, netns, ifname in self.config.edge_shaping:
            sls = self.customers.sls(customer_id)
            if sls is not None:
                work.append((f"{netns}:{ifname}", lambda n=netns, i=ifname, r=sls.rate_bps:
                             edge.apply_edge_shaping(n, i, r)))
        for place, apply in work:
            try:
                if apply():
                    LOG.info("traffic control on %s set (committed %s)", place,
                             {c.value: r for c, r in committed.items()})
                self._egress_errors.discard(place)
            except edge.EdgeError as err:
                if place not in self._egress_errors:  # logged once until it works again
                    LOG.error("%s", err)
                self._egress_errors.add(place)

    def _request_meter_config(self, dpid: int) -> None:
        self._request_state(dpid, messages.build_meter_config_request())

    def _request_flow_stats(self, dpid: int) -> None:
        self._request_state(dpid, messages.build_flow_stats_request())

    def _request_state(self, dpid: int, request) -> None:
        """Ask for flows or meters, remembering how many mods were sent before asking."""
        switch = self.switches[dpid]
        mods_before = switch.mods_sent
        self._send(dpid, [request])
        switch.state_request_mods[request.xid] = mods_before
        while len(switch.state_request_mods) > 16:
            switch.state_request_mods.pop(next(iter(switch.state_request_mods)))

    # -- statistics ---------------------------------------------------------------------
    def _complete_reply(self, msg, keep=lambda body: True) -> list | None:
        """Collect a multipart reply; returns all bodies once the last part arrived."""
        switch = self.switches.get(msg.datapath.id)
        if switch is None:
            return None
        switch.parts.setdefault(msg.xid, []).extend(b for b in msg.body if keep(b))
        if msg.flags & ofp.OFPMPF_REPLY_MORE:
            return None
        return switch.parts.pop(msg.xid)

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        dpid = ev.msg.datapath.id
        switch = self.switches[dpid]
        now = time.monotonic()
        entries, views = compute_flow_views(dpid, now, stats, self.rates[dpid].flows)
        self.state.set_flows(dpid, views)
        self.metrics.update_flows(dpid, views)
        self._publish(FlowRates(time.time(), dpid, views))
        mods_then = switch.state_request_mods.pop(ev.msg.xid, None)
        if mods_then is not None and mods_then == switch.mods_sent:
            # The reply reflects every flow mod sent so far: it is the switch's real state.
            actual = set(entries)
            if actual != switch.believed:
                LOG.info("switch %016x: flow table differs from what cems believes "
                         "(%d missing, %d unexpected); reconciling", dpid,
                         len(switch.believed - actual), len(actual - switch.believed))
            switch.believed = actual
            self._converge(now)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    def _meter_config(self, ev):
        stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        switch = self.switches[ev.msg.datapath.id]
        mods_then = switch.state_request_mods.pop(ev.msg.xid, None)
        if mods_then is None or mods_then != switch.mods_sent:
            return  # mods went out after the request: the reply may be stale
        actual = {}
        for stat in stats:
            meter_id, rate_kbps, burst_kbits = messages.meter_from_config(stat)
            if meter_id >= METER_BASE:
                actual[meter_id] = MeterSpec(meter_id, rate_kbps, burst_kbits)
        switch.believed_meters = actual
        first = not switch.meters_known
        switch.meters_known = True
        if first or len(self.customers):
            self._converge(time.monotonic())

    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    def _port_stats(self, ev):
        stats = self._complete_reply(ev.msg, keep=lambda s: s.port_no <= ofp.OFPP_MAX)
        if stats is None:
            return
        dpid = ev.msg.datapath.id
        views = compute_port_views(dpid, time.monotonic(), stats, self.rates[dpid].ports)
        self.state.set_ports(dpid, views)
        self.metrics.update_ports(dpid, views)

    @set_ev_cls(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    def _meter_stats(self, ev):
        stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        dpid = ev.msg.datapath.id
        views = compute_meter_views(dpid, time.monotonic(), stats, self.rates[dpid].meters)
        self.state.set_meters(dpid, views)

    # -- errors -------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def _error(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id or 0
        switch = self.switches.get(dpid)
        offending = switch.sent.get(msg.xid) if switch else None
        type_name, code_name = messages.describe_error(msg.type, msg.code)
        self.metrics.openflow_errors.labels(f"{dpid:016x}", type_name).inc()
        self.state.count(openflow_errors_total=1)
        request = (offending if offending is not None
                   else f"not remembered; first bytes {bytes(msg.data[:64]).hex()}")
        first = (dpid, msg.type, msg.code) not in self._errors_logged
        self._errors_logged.add((dpid, msg.type, msg.code))
        # Logged in full once per switch and error; repeats (reconciliation retries) are
        # counted in cems_openflow_errors_total and GetStatus.
        (LOG.error if first else LOG.debug)(
            "switch %016x rejected a request with %s/%s (xid %d)%s; request: %s", dpid,
            type_name, code_name, msg.xid, "" if first else " again", request)
