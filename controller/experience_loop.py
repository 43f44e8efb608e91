"""The experience ticker (shell): once a second, the network facts from the published state,
the engine's tick (controller.monitor.engine), and its effects.

Effects: status changes and findings are logged and published on the event bus
(WatchExperience, WatchEvents); a zoom mirrors all of the customer's traffic to the probe
(a mirror rule that is not stored) and, when the config names an agent on the customer's
path (`qoe.path_agents`) and a reflector (`qoe.stamp_reflector`) and that agent is
connected, runs a STAMP test from it until the zoom ends.
"""

import logging
import math
import threading
import time

import networkx as nx

from controller.events import ExperienceChanged, FindingPublished, ZoomChanged
from controller.monitor.active import ActiveTestError, StampSpec
from controller.monitor.engine import NetworkFacts
from controller.monitor.rootcause import PortLoad

LOG = logging.getLogger("cems.experience")


def network_facts(state, capacities: dict) -> NetworkFacts:
    """The topology graph, the switch of each host address and each port's egress load."""
    snapshot = state.topology
    graph = nx.DiGraph()
    graph.add_nodes_from(s.dpid for s in snapshot.switches)
    for link in snapshot.links:
        graph.add_edge(link.src_dpid, link.dst_dpid, port=link.src_port)
    host_switch = {address: host.dpid for host in snapshot.hosts for address in host.ipv4}
    speeds = {(s.dpid, p.port_no): p.curr_speed_kbps * 1000 for s in snapshot.switches
              for p in s.ports if p.curr_speed_kbps}
    loads = {}
    for dpid, ports in state.ports.items():
        for view in ports:
            tx_bps = view.rates[3] * 8
            if math.isnan(tx_bps):
                continue
            key = (dpid, view.port_no)
            errors = sum(r for r in view.rates[6:8] if not math.isnan(r))
            dropped = view.rates[5] if not math.isnan(view.rates[5]) else 0.0
            loads[key] = PortLoad(tx_bps, capacities.get(key) or speeds.get(key), dropped,
                                  errors)
    return NetworkFacts(graph, host_switch, loads)


class ExperienceLoop:
    def __init__(self, experience, state, config, mirror=None, active=None):
        self.experience = experience
        self.state = state
        self.capacities = dict(config.link_capacity_bps)
        self.mirror = mirror
        self.active = active
        self.agents = dict(config.qoe_path_agents)
        self.reflector = config.qoe_stamp_reflector
        self._stop = threading.Event()
        self._failed_once = False
        self.ticks = 0
        # (name, callable(facts)) run after each tick on this thread: the policy engine
        self.after_tick: list = []
        self._after_failed: set[str] = set()
        experience.on_zooms = self.apply_zooms

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="cems-experience", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                self.tick()
            except Exception:  # pylint: disable=broad-except
                if not self._failed_once:  # logged once; it is tried again every second
                    LOG.exception("the experience tick failed; trying again every second")
                    self._failed_once = True

    def tick(self) -> None:
        facts = network_facts(self.state, self.capacities)
        self._experience(facts)
        for name, hook in self.after_tick:
            try:
                hook(facts)
            except Exception:  # pylint: disable=broad-except
                self.state.count(handler_errors_total=1)
                if name not in self._after_failed:  # logged once; tried again every second
                    LOG.exception("the %s tick failed; trying again every second", name)
                    self._after_failed.add(name)

    def _experience(self, facts) -> None:
        result = self.experience.tick(facts)
        now = time.time()
        self.ticks += 1
        for change in result.changes:
            LOG.info("customer %s %s: %s -> %s (%s)", change.customer_id, change.service,
                     change.before, change.after.status, change.after.reason)
            self.state.bus.publish(ExperienceChanged(now, change))
        if result.zooms:
            self.apply_zooms(result.zooms)
        for finding in result.findings:
            LOG.warning("finding: %s (score %.2f) affects %s: %s", finding.element,
                        finding.score, ", ".join(finding.affected_customers),
                        "; ".join(finding.evidence))
            self.state.bus.publish(FindingPublished(now, finding))

    def apply_zooms(self, events) -> dict:
        """Mirror rules and STAMP tests for zooms that started or ended; returns customer ->
        (what is mirrored, the STAMP test id) of the started ones."""
        done = {}
        for event in events:
            customer = event.zoom.customer_id
            mirror, test_id = "", f"zoom-{customer}"
            if self.mirror is not None and self.mirror.probe is not None:
                self.mirror.zoom(customer, event.active)
                mirror = f"all traffic of {customer} to probe port {self.mirror.probe}"
            stamp = self._stamp(customer, test_id, event.active)
            if event.active:
                done[customer] = (mirror, stamp)
            LOG.info("zoom %s %s: %s", "in on" if event.active else "out of", customer,
                     event.reason)
            self.state.bus.publish(ZoomChanged(time.time(), event, mirror if event.active
                                               else "", stamp))
        return done

    def _stamp(self, customer: str, test_id: str, start: bool) -> str:
        agent = self.agents.get(customer)
        if self.active is None or agent is None or self.reflector is None:
            return ""
        try:
            if start:
                if agent not in self.active.connected():
                    LOG.info("zoom on %s: agent %s is not connected; no STAMP test", customer,
                             agent)
                    return ""
                self.active.start(StampSpec(test_id, agent, self.reflector[0],
                                            self.reflector[1], 0, 0.02, 1.0))
            else:
                self.active.stop(test_id)
        except ActiveTestError as err:
            LOG.info("zoom on %s: STAMP test %s: %s", customer, test_id, err)
            return ""
        return test_id
