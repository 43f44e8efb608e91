"""The cems OpenFlow application: events in, core calls, OpenFlow messages out (shell).

Each handler reads the clock once, calls the core (topology, forwarding, rates,
reconciliation) and sends what comes back through _send(). Timers only post events; all
work runs on the app's event thread. Start it with cems-controller (os-ken), or under Ryu
with `python -m controller.ryu_launcher` and CEMS_CONFIG pointing at a config file.
"""

import dataclasses
import functools
import logging
import threading
import time

from controller import compat
from controller.compat import (CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, ofp_event,
                               set_ev_cls)
from controller.compat import ofproto_v1_3 as ofp
from controller.csm.mapping import CustomerMapping
from controller.csm.queues import plan_traffic_control
from controller.csm.store import CsmStore
from controller.events import (PORT_COUNTERS, FlowRates, HostLearned, LinkChanged, PortChanged,
                               SwitchChanged)
from controller.monitor.mirror import MirrorCopies, plan_mirror
from controller.network.discovery import build_lldp_frame
from controller.network.forwarding import ControlFlows, Forwarding
from controller.network.packet_in import handle_packet_in
from controller.network.stats import (SwitchRates, compute_flow_views, compute_meter_views,
                                      compute_port_views)
from controller.network.topology import PortInfo, Topology
from controller.policy.compile import committed_with_policy, shaped_rate
from controller.openflow import messages, wire_stats
from controller.openflow.desired import assemble
from controller.openflow.pipeline import is_cems_meter
from controller.openflow.reconcile import Plan, Reconciler, StateRequest, SwitchLedger
from controller.runtime import Runtime, take_runtime

LOG = logging.getLogger("cems.app")
_FAILURES_REMEMBERED = 1000  # distinct failures logged in full; repeats are counted only


def guarded(handler):
    """Run an event handler so that its failure is caught for this event alone: logged once
    (with the event and the switch), counted, and the event loop goes on. Without it os-ken's
    native event thread ends silently on the first exception."""
    name = handler.__name__.lstrip("_")

    @functools.wraps(handler)
    def run(self, ev):
        try:
            return handler(self, ev)
        except Exception as err:  # pylint: disable=broad-except
            self._failed("handler", name, ev, err)
            return None
        finally:
            self.state.loop_progress = time.monotonic()
    return run


def _raised_at(err: BaseException) -> tuple[str, int]:
    """The file and line that raised: one failure, however its message varies."""
    tb = err.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return (tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else ("", 0)


def _dpid_of(ev) -> int | None:
    datapath = getattr(getattr(ev, "msg", None), "datapath", None) or getattr(ev, "datapath", None)
    return getattr(datapath, "id", None)


class EventPollTick(compat.event.EventBase):
    """Posted by the timer thread every poll interval."""


class EventLldpTick(compat.event.EventBase):
    """Posted by the timer thread every LLDP interval."""


class EventCustomersChanged(compat.event.EventBase):
    """Posted after a customer, SLA or SLS change was stored; carries the customer's new
    state (controller.csm.service.CustomerChanged)."""

    def __init__(self, change):
        super().__init__()
        self.change = change


class EventForgetHost(compat.event.EventBase):
    """Posted when a domain manager asks to forget a host learned by mistake."""

    def __init__(self, mac: str):
        super().__init__()
        self.mac = mac


class EventMirrorChanged(compat.event.EventBase):
    """Posted after the mirror rules changed; carries the rules now in force."""

    def __init__(self, rules):
        super().__init__()
        self.rules = rules


class EventPolicyChanged(compat.event.EventBase):
    """Posted after the policy engine's actions in force changed (the contributor has them)."""


class EventLeadership(compat.event.EventBase):
    """Posted when this instance became the cluster's leader (its policy engine acts), or
    stopped being it (controller.cluster.leader)."""

    def __init__(self, leader: bool, generation: int):
        super().__init__()
        self.leader = leader
        self.generation = generation


class EventMastership(compat.event.EventBase):
    """Posted when this instance became master of a switch, or stopped being it
    (controller.cluster.leader)."""

    def __init__(self, dpid: int, master: bool, generation: int):
        super().__init__()
        self.dpid = dpid
        self.master = master
        self.generation = generation


def port_info_from_ofp(port) -> PortInfo:
    """OFPPort -> PortInfo."""
    name = port.name.decode(errors="replace") if isinstance(port.name, bytes) else str(port.name)
    up = not (port.state & ofp.OFPPS_LINK_DOWN) and not (port.config & ofp.OFPPC_PORT_DOWN)
    return PortInfo(port.port_no, name, port.hw_addr, bool(up), port.curr_speed, port.max_speed)


class CemsApp(compat.app_manager.OSKenApp if hasattr(compat.app_manager, "OSKenApp")
              else compat.app_manager.RyuApp):
    OFP_VERSIONS = [ofp.OFP_VERSION]
    _EVENTS = [EventPollTick, EventLldpTick, EventCustomersChanged, EventMirrorChanged,
               EventForgetHost, EventPolicyChanged, EventLeadership, EventMastership]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime: Runtime = take_runtime()
        self.config = self.runtime.config
        self.state = self.runtime.state
        self.metrics = self.runtime.metrics
        self.topology = Topology()
        self._load_hosts()
        self.datapaths: dict[int, object] = {}  # the connection of each connected switch
        self.reconciler = Reconciler(self.config.settle_s)
        self.rates: dict[int, SwitchRates] = {}  # kept across reconnects: windows survive
        wire_stats.install_raw_stats()  # flow, port and meter stats are decoded by cems
        self._egress_errors: set[str] = set()
        self.customers = CustomerMapping()
        self.customers.replace_all(CsmStore(self.runtime.store).all_current_sls())
        self.mirror = MirrorCopies()
        rules = self.runtime.mirror
        self._mirror_rules = rules.rules() if rules is not None else ()
        if rules is not None:
            rules.listeners.append(
                lambda now_in_force: self.send_event(self.name, EventMirrorChanged(now_in_force)))
        self._plan_mirror()
        # Desired state, in this order: each contributor sees what the earlier ones gave.
        self.contributors = (ControlFlows(), Forwarding(self.topology, self.customers),
                             self.customers,
                             self.mirror, self.runtime.policy_flows)
        self.runtime.policy_changed.append(
            lambda: self.send_event(self.name, EventPolicyChanged()))
        self._desired = None  # the last desired state, for a contributor that fails
        self._meter_read_day: dict[tuple[int, int], int] = {}  # (dpid, meter) -> day read
        self.runtime.customers_changed.append(
            lambda change: self.send_event(self.name, EventCustomersChanged(change)))
        self.runtime.hosts_to_forget.append(
            lambda mac: self.send_event(self.name, EventForgetHost(mac)))
        self._stop = threading.Event()
        self._timer = None
        self._failures: set[tuple] = set()
        # With a cluster (cluster.etcd), each switch has one master instance (`mine`: the
        # switches this one masters, dpid -> generation). The other switches' connections
        # are kept as SLAVE, in `standby`, and get nothing but requests to read. They are
        # watched: their ports, the links their master's LLDP finds and the hosts on them go
        # into the topology, so that paths are computed across all switches alike by every
        # instance (each installs them on its own), and so that an instance taking a switch
        # over knows it at once. `known_since`: since when each switch connected here.
        self.leadership = self.runtime.leadership
        self.mine: dict[int, int] = {}
        self.standby: dict[int, object] = {}
        self.known_since: dict[int, float] = {}
        self._generations: dict[int, int] = {}          # the latest generation seen per switch
        self._sent_slave_generation: dict[int, int] = {}
        self._watch_ledgers: dict[int, object] = {}     # replies of watched switches' stats
        self._fabric: tuple[int, ...] = ()
        if self.leadership is not None:
            self.leadership.on_change = lambda leader, generation: self.send_event(
                self.name, EventLeadership(leader, generation))
            self.leadership.on_switch = lambda dpid, master, generation: self.send_event(
                self.name, EventMastership(dpid, master, generation))

    # -- lifecycle ----------------------------------------------------------------------
    def start(self):
        super().start()
        self.state.loop_thread = self.threads[0] if self.threads else None  # for the watchdog
        self._timer = compat.hub.spawn(self._post_ticks)
        if self.leadership is not None:
            self.leadership.start()

    def _failed(self, where: str, what: str, context, err: Exception) -> None:
        """A handler raised, or a message could not be built or sent: logged in full the
        first time (per place and error), counted every time."""
        key = (where, what, type(err).__name__, _raised_at(err))
        first = key not in self._failures
        if first and len(self._failures) < _FAILURES_REMEMBERED:
            self._failures.add(key)
        if where == "handler":
            dpid = _dpid_of(context)
            detail = f"{type(context).__name__}" + (f" from switch {dpid:016x}" if dpid else "")
            self.metrics.handler_errors.labels(what).inc()
            self.state.count(handler_errors_total=1)
        elif where in ("contributor", "reconcile"):
            detail = ("its desired state (it keeps what it had)" if where == "contributor"
                      else "the plan for this switch (it is left as it is)")
            self.metrics.handler_errors.labels(f"{where}:{what}").inc()
            self.state.count(handler_errors_total=1)
        else:
            detail = messages.describe_item(context)
            self.metrics.send_errors.labels(what).inc()
            self.state.count(send_errors_total=1)
        if first:
            LOG.error("%s %s failed on %s (the controller goes on; repeats are counted in "
                      "cems_%s_errors_total): %s: %s", where, what, detail, where,
                      type(err).__name__, err, exc_info=err)
        else:
            LOG.debug("%s %s failed again on %s: %s", where, what, detail, err)

    def stop(self):
        self._stop.set()
        if self.leadership is not None:
            self.leadership.stop()
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
    def _send(self, dpid: int, items) -> None:
        """The one place messages leave the app: compile, attach datapath, tell the switch's
        ledger what left under which xid, send. Only to a switch this instance masters."""
        self._send_on(self.datapaths.get(dpid), self.reconciler.ledger(dpid), items)

    def _send_reads(self, dpid: int, items) -> None:
        """Requests to read (statistics) to a switch another instance masters."""
        self._send_on(self.standby.get(dpid), self._watch_ledgers.get(dpid), items)

    def _send_on(self, datapath, ledger, items) -> None:
        if datapath is None or ledger is None:
            return
        dpid = datapath.id
        for item in items:
            # One message that cannot be built (bad data in a desired flow) costs that message
            # only: the rest is sent, and the error counted (it comes back every reconciliation
            # until the data is fixed).
            try:
                msg = messages.compile_item(item)
                msg.datapath = datapath
                xid = datapath.set_xid(msg)
                msg.serialize()
            except Exception as err:  # pylint: disable=broad-except
                self._failed("send", f"{dpid:016x}", item, err)
                continue
            ledger.sent(xid, item)
            datapath.send(msg.buf)

    def _ledger_of(self, msg):
        """The ledger for a message from a switch's current connection (None for a message
        of an older connection of a switch that has reconnected)."""
        datapath = msg.datapath
        if datapath.id is None or self.datapaths.get(datapath.id) is not datapath:
            return None
        return self.reconciler.ledger(datapath.id)

    def _view(self, now: float):
        """The switch view: this instance's switches, and the fabric paths are computed
        across (every switch connected here, its own or watched, for discovery.settle_s)."""
        known = [dpid for dpid, since in self.known_since.items()
                 if now - since >= self.config.settle_s
                 and (dpid in self.datapaths or dpid in self.standby)]
        return self.reconciler.view(now, known)

    # -- reconciliation -----------------------------------------------------------------
    def _converge(self, now: float, only=None) -> None:
        """Assemble the desired state and send each switch (or those in `only`) what makes
        it hold it (controller.openflow.reconcile decides what and in which order)."""
        view = self._view(now)
        self._fabric = view.across()
        desired = self._desired = assemble(
            view, self.contributors, self._desired,
            lambda component, err: self._failed("contributor", component.name.lower(), None,
                                                err))
        for plan in self.reconciler.converge(
                view, desired.flows, desired.meters, only,
                lambda dpid, err: self._failed("reconcile", f"{dpid:016x}", None, err)):
            self._send_plan(plan)

    def _plan_mirror(self) -> None:
        """What is copied to the probe follows from the rules and the customers' devices."""
        self.mirror.plan = plan_mirror(self.config.mirror_probe, self._mirror_rules,
                                       self.customers.hosts_of,
                                       self.config.mirror_baseline_percent,
                                       self.customers.all_hosts())

    def _send_plan(self, plan: Plan) -> None:
        if plan.held:
            LOG.debug("switch %016x: %d flows wait: %s", plan.dpid, len(plan.held),
                      plan.held[0][1])
        if not plan:
            return
        self._send(plan.dpid, plan.changes)
        added, deleted = plan.flows_added, plan.flows_deleted
        label = f"{plan.dpid:016x}"
        self.metrics.flow_changes.labels(label, "add").inc(added)
        self.metrics.flow_changes.labels(label, "delete").inc(deleted)
        self.state.count(flows_added_total=added, flows_deleted_total=deleted)
        LOG.info("switch %016x: %d flows added, %d removed", plan.dpid, added, deleted)

    def _publish_topology(self) -> None:
        self.state.topology = self.topology.snapshot()
        self.state.connected = self.reconciler.connected()
        self.state.ready = self.reconciler.ready()
        self.metrics.switches.set(len(self.datapaths))
        self.metrics.set_connected(self.datapaths)
        self.metrics.links.set(len(self.topology.links()))
        self.metrics.hosts.set(len(self.topology.hosts()))

    def _publish(self, item) -> None:
        self.state.bus.publish(item)

    # -- switch lifecycle ---------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPSwitchFeatures, CONFIG_DISPATCHER)
    @guarded
    def _switch_features(self, ev):
        datapath = ev.msg.datapath
        if self.leadership is None:
            self._attach(datapath)
            return
        if datapath.id in self.mine:
            self._role(datapath, master=True)
            self._attach(datapath)
        else:
            self._watch(datapath)
            LOG.info("switch %016x connected; another instance is its master: SLAVE",
                     datapath.id)
        self._seen_changed()

    def _seen_changed(self) -> None:
        """Tell the cluster which switches are connected here (it shares them out)."""
        if self.leadership is not None:
            self.leadership.seen = frozenset(self.datapaths) | frozenset(self.standby)

    def _watch(self, datapath) -> None:
        """A switch another instance masters: SLAVE, told to send this one its packet-ins
        and port changes too, and its ports read; nothing is written to it."""
        self.standby[datapath.id] = datapath
        self._watch_ledgers[datapath.id] = SwitchLedger(datapath.id, time.monotonic())
        self.rates.setdefault(datapath.id, SwitchRates.create(self.config.rate_window))
        self._role(datapath, master=False)
        now = time.monotonic()
        self.topology.add_switch(datapath.id, now,
                                 "%s:%s" % datapath.address if datapath.address else "")
        self.known_since.setdefault(datapath.id, now)
        self._send_direct(datapath, messages.build_async_config())
        self._send_direct(datapath, messages.build_port_desc_request())

    def _watched(self, datapath) -> bool:
        return self.standby.get(datapath.id) is datapath

    def _mine(self, datapath) -> bool:
        """Whether this connection is one this instance masters (or, alone, simply has)."""
        return self.datapaths.get(datapath.id) is datapath

    def _slave_generation(self, dpid: int) -> int:
        """The generation a SLAVE request carries: the switch's current master's (a switch
        refuses one older than the last it saw as stale, and the connection would stay
        EQUAL)."""
        holder = self.leadership.holder_of(dpid)[1] if self.leadership is not None else 0
        return max(self._generations.get(dpid, 0), holder)

    def _role(self, datapath, master: bool) -> None:
        """An OpenFlow role request for this instance on the switch (with a cluster)."""
        if master:
            generation = self.mine.get(datapath.id, 0)
        else:
            generation = self._sent_slave_generation[datapath.id] = \
                self._slave_generation(datapath.id)
        self._send_direct(datapath, messages.build_role_request(master, generation))

    @staticmethod
    def _send_direct(datapath, msg) -> None:
        """Send `msg` on this connection, outside any ledger (_send's are for switches this
        instance masters): role requests, and what a standby asks of a watched switch."""
        msg.datapath = datapath
        datapath.set_xid(msg)
        msg.serialize()
        datapath.send(msg.buf)

    def _load_hosts(self) -> int:
        """Learn the hosts the store remembers (learned by this instance before a restart,
        or by the master of a switch before this one took it over); returns how many."""
        hosts = self.runtime.store.load_hosts()
        for host in hosts:
            self.topology.learn_host(host.mac, host.dpid, host.port_no)
            for address in host.ipv4:
                self.topology.learn_host(host.mac, host.dpid, host.port_no, address)
        return len(hosts)

    @set_ev_cls(EventLeadership)
    @guarded
    def _leadership(self, ev):
        self.state.leader = ev.leader   # the policy engine acts (controller.policy_loop)

    @set_ev_cls(EventMastership)
    @guarded
    def _mastership(self, ev):
        dpid = ev.dpid
        self._generations[dpid] = max(self._generations.get(dpid, 0), ev.generation)
        if ev.master:
            self.mine[dpid] = ev.generation
            datapath = self.standby.pop(dpid, None)
            if datapath is None:
                return   # not connected here (yet): mastered when it connects
            self._watch_ledgers.pop(dpid, None)
            self._sent_slave_generation.pop(dpid, None)
            # hosts the last master learned that this instance has not seen; and the links
            # from this switch as if just seen: this instance's LLDP confirms them from now
            hosts = self._load_hosts()
            now = time.monotonic()
            for link in self.topology.links():
                if link.src_dpid == dpid:
                    self.topology.observe_link(link, now)
            LOG.info("master of switch %016x now (generation %d): %d hosts known from the "
                     "store, %d links watched", dpid, ev.generation, hosts,
                     len(self.topology.links()))
            self._role(datapath, master=True)
            self._attach(datapath)
        else:
            self.mine.pop(dpid, None)
            datapath = self.datapaths.get(dpid)
            if datapath is None:
                return
            self._detach(datapath, gone=False)
            self._watch(datapath)
            self._converge(time.monotonic())
        self._seen_changed()

    def _attach(self, datapath):
        """A switch this instance is master of: learn it, read it, reconcile it."""
        now = time.monotonic()
        address = "%s:%s" % datapath.address if datapath.address else ""
        self.datapaths[datapath.id] = datapath
        known = self.known_since.setdefault(datapath.id, now)
        if now - known >= self.config.settle_s:
            # watched for as long as a new switch is given to settle: its ports and links
            # are known, so it settles once its flows and meters have been read (half a
            # second), not after discovery.settle_s
            self.reconciler.connect(datapath.id, now - max(0.0, self.config.settle_s - 0.5))
        else:
            self.reconciler.connect(datapath.id, now)
        self.rates.setdefault(datapath.id, SwitchRates.create(self.config.rate_window))
        self.topology.add_switch(datapath.id, now, address)
        LOG.info("switch %016x connected from %s", datapath.id, address)
        self._send(datapath.id, [messages.build_port_desc_request()])
        self._converge(now, only=[datapath.id])  # not settled yet: control flows only
        self._send(datapath.id, [StateRequest("meters"), StateRequest("flows")])
        self._publish_topology()
        self.runtime.store.record_availability(datapath.id, 0, True, time.time())
        self._publish(SwitchChanged(time.time(), datapath.id, True, address))

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    @guarded
    def _state_change(self, ev):
        datapath = ev.datapath
        if ev.state != DEAD_DISPATCHER or datapath.id is None:
            return
        if self.standby.get(datapath.id) is datapath:
            del self.standby[datapath.id]
            self._watch_ledgers.pop(datapath.id, None)
            self.known_since.pop(datapath.id, None)
            lost = self.topology.remove_switch(datapath.id)
            self._seen_changed()
            if lost:
                self._publish_topology()
                self._converge(time.monotonic())
            return
        if self.datapaths.get(datapath.id) is not datapath:
            return  # an older connection of a switch that has already reconnected
        self.known_since.pop(datapath.id, None)
        self._detach(datapath, gone=True)
        self._seen_changed()

    def _detach(self, datapath, gone: bool) -> None:
        """A switch this instance no longer masters: disconnected (`gone`: it leaves the
        topology), or another instance is master now (it stays in the topology, watched;
        its availability is not this instance's to record)."""
        del self.datapaths[datapath.id]
        self.reconciler.disconnect(datapath.id)
        lost = self.topology.remove_switch(datapath.id) if gone else []
        self.state.drop_switch(datapath.id)
        self.metrics.forget_switch(datapath.id)
        LOG.warning("switch %016x %s; %d links lost", datapath.id,
                    "disconnected" if gone else "left to its new master", len(lost))
        now_unix = time.time()
        if gone:
            self.runtime.store.record_availability(datapath.id, 0, False, now_unix)
        self._publish(SwitchChanged(now_unix, datapath.id, False))
        for link in lost:
            self._publish(LinkChanged(now_unix, link, False))
        self._publish_topology()
        if gone:
            self._converge(time.monotonic())

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    @guarded
    def _port_desc(self, ev):
        dpid = ev.msg.datapath.id
        ports = [port_info_from_ofp(p) for p in ev.msg.body if p.port_no <= ofp.OFPP_MAX]
        if self._watched(ev.msg.datapath):
            self.topology.set_ports(dpid, ports)   # the master records and publishes
            self._publish_topology()
            self._converge(time.monotonic())       # its edge ports may hold new hosts
            return
        if not self._mine(ev.msg.datapath):
            return
        lost = self.topology.set_ports(dpid, ports)
        now_unix = time.time()
        for port in ports:
            self.runtime.store.record_availability(dpid, port.port_no, port.up, now_unix)
            self.metrics.port_up.labels(f"{dpid:016x}", str(port.port_no)).set(int(port.up))
            self.metrics.set_port_speed(dpid, port.port_no, port.curr_speed_kbps * 1000)
        self._links_lost(lost)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    @guarded
    def _port_status(self, ev):
        msg = ev.msg
        watched = self._watched(msg.datapath)
        if not watched and not self._mine(msg.datapath):
            return   # an older connection
        dpid = msg.datapath.id
        port = port_info_from_ofp(msg.desc)
        if port.port_no > ofp.OFPP_MAX:
            return
        if msg.reason == ofp.OFPPR_DELETE:
            lost = self.topology.remove_port(dpid, port.port_no)
            port = dataclasses.replace(port, up=False)
        else:
            lost = self.topology.set_port(dpid, port)
        if watched:   # a switch another instance masters: its topology, nothing more
            self._publish_topology()
            self._converge(time.monotonic())
            return
        self.metrics.port_up.labels(f"{dpid:016x}", str(port.port_no)).set(int(port.up))
        self.metrics.set_port_speed(dpid, port.port_no,
                                    port.curr_speed_kbps * 1000 if port.up else 0)
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
    @guarded
    def _packet_in(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id
        if self._watched(msg.datapath):
            self._watched_packet_in(msg)
            return
        if self._ledger_of(msg) is None:
            return
        now = time.monotonic()
        label = f"{dpid:016x}"
        self.metrics.packet_in.labels(label).inc()
        self.state.count(packet_in_total=1)
        # decided across the whole fabric; what is sent goes only to this instance's
        # switches (_send): the master of each other switch watches this one and sends there
        result = handle_packet_in(self.topology, now, dpid, msg.match["in_port"], msg.data,
                                  set(self._view(now).across()))
        if result.malformed:
            self.metrics.packet_in_malformed.labels(label).inc()
            self.state.count(packet_in_malformed_total=1)
            LOG.debug("switch %016x port %s: %s", dpid, msg.match["in_port"], result.malformed)
        self._packet_outs(result.outputs)
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

    def _watched_packet_in(self, msg) -> None:
        """A packet-in of a switch another instance masters: the links its LLDP finds and
        the hosts it sees go into this instance's topology (its master stores them); what
        the packet asks to send, this instance sends on its own switches (an ARP request
        flooded to their edge ports, a first packet delivered to a host on one of them)."""
        now = time.monotonic()
        result = handle_packet_in(self.topology, now, msg.datapath.id, msg.match["in_port"],
                                  msg.data, set(self._view(now).across()))
        self._packet_outs(result.outputs)
        if result.new_link is not None or result.learned is not None:
            self._publish_topology()
            self._converge(now)

    def _packet_outs(self, outputs) -> None:
        """What a packet-in asks to send; _send drops what is for another's switch."""
        for out in outputs:
            self._send(out.dpid, [messages.build_packet_out(None, list(out.out_ports),
                                                            out.data)])

    # -- timers -------------------------------------------------------------------------
    @set_ev_cls(EventLldpTick)
    @guarded
    def _lldp_tick(self, _ev):
        for dpid in sorted(self.datapaths):
            frames = [messages.build_packet_out(None, [port.port_no],
                                                build_lldp_frame(dpid, port.port_no, port.hw_addr))
                      for port in self.topology.ports(dpid) if port.up]
            self._send(dpid, frames)

    @set_ev_cls(EventPollTick)
    @guarded
    def _poll_tick(self, _ev):
        now = time.monotonic()
        # links from a switch whose LLDP this instance sends expire; the others' are kept
        # while no master sends LLDP there (a failover): port changes still take them away
        lost = self.topology.expire_links(
            now, self.config.link_timeout_s,
            None if self.leadership is None else set(self.datapaths))
        if lost:
            self._links_lost(lost)
        self._apply_traffic_control()
        for dpid, datapath in list(self.standby.items()):
            if self._slave_generation(dpid) > self._sent_slave_generation.get(dpid, 0):
                # a new master since: SLAVE again under its generation (a request made
                # before this instance had heard of it was refused as stale)
                self._role(datapath, master=False)
        settled = self.reconciler.newly_settled(now)
        if settled or self._view(now).across() != self._fabric:
            self._converge(now)
            self._publish_topology()
        for dpid in sorted(self.datapaths):
            self._send(dpid, [messages.build_port_stats_request(),
                              messages.build_meter_stats_request(),
                              StateRequest("meters"), StateRequest("flows")])
        if self.state.leader:
            # the policy engine acts here: it reads the other instances' switches too
            for dpid in sorted(self.standby):
                self._send_reads(dpid, [messages.build_port_stats_request(),
                                        messages.build_meter_stats_request(),
                                        StateRequest("flows")])

    @set_ev_cls(EventCustomersChanged)
    @guarded
    def _customers_changed(self, ev):
        self.customers.update(ev.change.customer_id, ev.change.state)
        self._plan_mirror()
        self._converge(time.monotonic())
        self._apply_traffic_control()

    @set_ev_cls(EventForgetHost)
    @guarded
    def _forget_host(self, ev):
        if self.topology.forget_host(ev.mac):
            self.runtime.store.delete_host(ev.mac)
            LOG.info("host %s forgotten (a domain manager asked); learned again when it "
                     "sends", ev.mac)
            self._publish_topology()
            self._converge(time.monotonic())

    @set_ev_cls(EventMirrorChanged)
    @guarded
    def _mirror_changed(self, ev):
        self._mirror_rules = ev.rules
        self._plan_mirror()
        self._converge(time.monotonic())

    @set_ev_cls(EventPolicyChanged)
    @guarded
    def _policy_changed(self, ev):
        self._converge(time.monotonic())
        self._apply_traffic_control()   # a meter on what an edge host sends shapes it too

    def _apply_traffic_control(self) -> None:
        """GSB HTB classes on the configured local interfaces and SLS shaping on the
        configured edge hosts (reconciled: when already right, nothing is changed)."""
        if not (self.config.egress_interfaces or self.config.edge_shaping):
            return
        from controller import edge  # pylint: disable=import-outside-toplevel
        actions = self.runtime.policy_flows.actions
        committed = committed_with_policy(self.customers.committed_by_class(), actions)

        def sls_rate_bps(customer_id: str) -> int | None:
            sls = self.customers.sls(customer_id)
            return shaped_rate(customer_id, None if sls is None else sls.rate_bps,
                               self.customers.hosts_of(customer_id), actions)
        for wanted in plan_traffic_control(self.config.egress_interfaces,
                                           self.config.edge_shaping, committed, sls_rate_bps):
            try:
                if edge.apply_traffic_control(wanted):
                    LOG.info("traffic control on %s set (committed %s)", wanted.place,
                             {c.value: r for c, r in committed.items()})
                self._egress_errors.discard(wanted.place)
            except edge.EdgeError as err:
                if wanted.place not in self._egress_errors:  # logged once until it works again
                    LOG.error("%s", err)
                self._egress_errors.add(wanted.place)

    # -- statistics ---------------------------------------------------------------------
    def _complete_reply(self, msg):
        """The ledger and all bodies of a multipart reply once its last part arrived
        (None while parts are missing, or for an older connection). A watched switch's
        replies (the statistics the policy engine reads) have a ledger of their own."""
        ledger = self._ledger_of(msg)
        if ledger is None and self._watched(msg.datapath):
            ledger = self._watch_ledgers.get(msg.datapath.id)
        if ledger is None:
            return None, None
        return ledger, ledger.collect(msg.xid, msg.body, bool(msg.flags & ofp.OFPMPF_REPLY_MORE))

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    @guarded
    def _flow_stats(self, ev):
        ledger, stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        dpid = ledger.dpid
        now = time.monotonic()
        rates = self.rates[dpid]
        if wire_stats.is_raw(stats):
            stats = rates.flow_decoder.decode([part.data for part in stats])
            for how, count in rates.flow_decoder.last.items():
                self.metrics.flow_stats_entries.labels(f"{dpid:016x}", how).inc(count)
        entries, views = compute_flow_views(dpid, now, stats, rates.flows)
        self.state.set_flows(dpid, views)
        self.metrics.update_flows(dpid, views)
        self._publish(FlowRates(time.time(), dpid, views))
        if ledger is not self.reconciler.ledger(dpid):
            return   # a watched switch: its master reconciles it
        report = ledger.flows_reported(ev.msg.xid, entries)
        if report is not None:  # the switch's real state: every change sent is in it
            if report.differs:
                LOG.info("switch %016x: flow table differs from what cems believes "
                         "(%d missing, %d unexpected); reconciling", dpid, report.missing,
                         report.unexpected)
            self._converge(now)

    @set_ev_cls(ofp_event.EventOFPMeterConfigStatsReply, MAIN_DISPATCHER)
    @guarded
    def _meter_config(self, ev):
        ledger, stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        configured = [messages.meter_from_config(s) for s in stats]
        self.state.set_meter_configs(ledger.dpid, {m.meter_id: m for m in configured})
        if ledger is not self.reconciler.ledger(ledger.dpid):
            return
        report = ledger.meters_reported(ev.msg.xid, configured)
        if report is not None and (report.first or report.differs):
            self._converge(time.monotonic())

    @set_ev_cls(ofp_event.EventOFPPortStatsReply, MAIN_DISPATCHER)
    @guarded
    def _port_stats(self, ev):
        ledger, stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        if wire_stats.is_raw(stats):
            stats = wire_stats.decode_port_stats([part.data for part in stats], PORT_COUNTERS)
        views = compute_port_views(ledger.dpid, time.monotonic(), stats,
                                   self.rates[ledger.dpid].ports)
        self.state.set_ports(ledger.dpid, views)
        self.metrics.update_ports(ledger.dpid, views)

    @set_ev_cls(ofp_event.EventOFPMeterStatsReply, MAIN_DISPATCHER)
    @guarded
    def _meter_stats(self, ev):
        ledger, stats = self._complete_reply(ev.msg)
        if stats is None:
            return
        if wire_stats.is_raw(stats):
            stats = wire_stats.decode_meter_stats([part.data for part in stats])
        views = compute_meter_views(ledger.dpid, time.monotonic(), stats,
                                    self.rates[ledger.dpid].meters)
        self.state.set_meters(ledger.dpid, views)
        if ledger is self.reconciler.ledger(ledger.dpid):   # the master reads for reports
            self._read_meters(ledger.dpid, views)

    def _read_meters(self, dpid: int, views) -> None:
        """A reading of each cems meter's counters once a day (and at the first reply after a
        start): customer reports measure their period between readings."""
        now = time.time()
        day = int(now // 86_400)
        readings = []
        for view in views:
            key = (dpid, view.meter_id)
            if is_cems_meter(view.meter_id) and self._meter_read_day.get(key) != day:
                self._meter_read_day[key] = day
                readings.append((dpid, view.meter_id, now, *view.counters))
        self.runtime.store.save_meter_readings(readings)

    # -- errors -------------------------------------------------------------------------
    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    @guarded
    def _error(self, ev):
        msg = ev.msg
        dpid = msg.datapath.id or 0
        error = self.reconciler.error(dpid, msg.xid, msg.type, msg.code)
        type_name, code_name = messages.describe_error(msg.type, msg.code)
        self.metrics.openflow_errors.labels(f"{dpid:016x}", type_name).inc()
        self.state.count(openflow_errors_total=1)
        request = (messages.describe_item(error.offending) if error.offending is not None
                   else f"not remembered; first bytes {bytes(msg.data[:64]).hex()}")
        # Logged in full once per switch and error; repeats (reconciliation retries) are
        # counted in cems_openflow_errors_total and GetStatus.
        (LOG.error if error.first else LOG.debug)(
            "switch %016x rejected a request with %s/%s (xid %d)%s; request: %s", dpid,
            type_name, code_name, msg.xid, "" if error.first else " again", request)
