"""The closed loop's shell: after each experience tick, a snapshot, decide(), and its effects.

The experience ticker (controller.experience_loop) calls tick() on its own thread once a
second with the network facts it used. This shell gathers the rest of the snapshot
(flows, hosts, contracts, services the probes saw, degraded services and their scores,
findings), runs the pure engine (controller.policy.engine.decide), logs every decision
(controller.policy.log, the event bus, the log file), and hands the actions in force to
the POLICY contributor (controller.policy.compile.PolicyFlows); `on_change` asks the app
to reconcile when they changed. Nothing here decides anything.

SLAs are read from the store once per customer and kept until that customer changes.

In a cluster only the leader's engine decides (controller.cluster.leader); the others follow
what it stores: they show its decisions and put its actions in force on the switches they
are master of.

With the controller's store, every decision is stored as it is made and the memory (the
actions in force) after every evaluation that changed it (controller.policy_store): a
restarted controller hands the same actions to the contributor before any switch connects,
so reconciliation keeps their flows and meters, and reverts them when their cause is gone.
The mode an operator set by hand is stored too; after a restart the engine runs in the
more cautious of that mode and the configured one (off, then dry-run, then act), so a
restart never makes it bolder than either the operator or the config left it.
"""

import dataclasses
import logging
import math
import threading
import time

from controller.csm.model import ServiceClass
from controller.csm.rules import Refused
from controller.events import DecisionMade
from controller.monitor.experience import DEGRADED
from controller.policy.engine import PolicyConfig, PolicyMemory, decide
from controller.policy.log import DecisionLog
from controller.policy import whatif
from controller.policy.model import ADMISSION, ADVISE, REFUSE, REVERT, Decision, Degradation
from controller.policy.observe import build_snapshot, contract_of
from controller.policy_store import DecisionStore, load_memory, save_memory

LOG = logging.getLogger("cems.policy")
CAUTION = {"off": 0, "dry-run": 1, "act": 2}


def policy_config(config, mode: str | None = None) -> PolicyConfig:
    mode = mode or config.policy_mode
    return PolicyConfig(
        dry_run=mode == "dry-run", paused=mode == "off", cooldown_s=config.policy_cooldown_s,
        max_changes_per_minute=config.policy_max_changes_per_minute,
        max_customers_per_evaluation=config.policy_max_customers_per_evaluation,
        target_utilisation=config.policy_target_utilisation,
        observe_s=config.policy_observe_s, revert_s=config.policy_revert_s,
        frame_rate=config.qoe_iptv_frame_rate)


class PolicyLoop:
    def __init__(self, experience, kpis, state, config, directory, sla_of, contributor,
                 on_change=lambda: None, log: DecisionLog | None = None, metrics=None,
                 store=None):
        self.experience = experience      # controller.monitor.engine.Experience
        self.kpis = kpis                  # controller.monitor.kpis.KpiStore
        self.state = state
        self.config = config
        self.directory = directory        # controller.monitor.directory.CustomerDirectory
        self.sla_of = sla_of              # customer id -> Sla (the store)
        self.contributor = contributor    # controller.policy.compile.PolicyFlows
        self.on_change = on_change
        self.metrics = metrics
        if metrics is not None:
            metrics.policy_max_changes.set(config.policy_max_changes_per_minute)
        self.store = store                # controller.store.Store, or None: memory only
        self._store_failures = 0
        if log is None:
            log = DecisionLog(store=DecisionStore(store) if store is not None else None,
                              store_failed=self._store_failed)
        self.log = log
        self.mode = config.policy_mode
        self.memory = PolicyMemory()
        if store is not None:
            self._restore()
        self._saved = self.memory
        self._standby = False             # another instance was master (controller/cluster)
        self._lock = threading.Lock()
        self._slas: dict[str, object] = {}
        self._in_force_ids = tuple(a.action_id for a in self.memory.in_force())
        self.contributor.actions = self.memory.in_force()
        self.evaluations = 0
        self._facts = None
        self._latest = None               # (time, snapshot) for questions between ticks
        self._refusals: dict[tuple, tuple[float, int]] = {}   # admission key -> (time, seq)
        self._advised: dict[tuple[str, str], int] = {}        # (customer, service) -> bit/s
        self.log.listeners.append(self._publish)

    def _restore(self) -> None:
        memory, mode, who = load_memory(self.store)
        if memory is not None:
            self.memory = memory
        if mode and CAUTION.get(mode, 2) < CAUTION[self.mode]:
            LOG.warning("policy mode %s, as %s set it by hand before this restart (the "
                        "configured mode is %s; `cemsctl policy mode %s` goes back to it)",
                        mode, who or "an operator", self.mode, self.mode)
            self.mode = mode
        if self.mode != "dry-run" and any(a.dry_run for a in self.memory.actions):
            # the engine ran dry before the restart and acts now: as when dry-run is left
            # by hand, what it decided was never on the network
            self.memory = self.memory.leaving_dry_run()
        if memory is not None and memory.actions:
            LOG.warning("policy: %d action(s) restored from the store, %d in force on the "
                        "network: %s", len(memory.actions), len(memory.in_force()),
                        "; ".join(f"{a.action_id} {a.intent.kind} on {a.intent.element} for "
                                  f"{a.intent.customer_id}" for a in memory.actions))

    def _store_failed(self, err: Exception) -> None:
        self._store_failures += 1
        if self._store_failures == 1 or self._store_failures % 100 == 0:
            LOG.error("policy: the store did not take %d decision batch(es) (%s); they are "
                      "kept in memory only", self._store_failures, err)
        if self.metrics is not None:
            self.metrics.policy_store_errors.inc()

    def _save(self, mode_by_hand: str = "", who: str = "") -> None:
        """Store the memory when it changed (and a mode set by hand); called under the lock."""
        if self.store is None or (self.memory == self._saved and not mode_by_hand):
            return
        try:
            save_memory(self.store, self.memory, mode_by_hand, who)
            self._saved = self.memory
        except Exception as err:  # pylint: disable=broad-except
            self._store_failed(err)

    # -- operators --------------------------------------------------------------------------
    def _follower(self) -> bool:
        """A standby instance of a cluster on a shared store: the master's engine decides,
        acts and writes to the store; this one shows what it wrote."""
        return not self.state.leader and self.store is not None

    def _refuse_on_standby(self, what: str) -> None:
        if self.state.leader:
            return
        cluster = getattr(self.state, "cluster", None)
        holder = getattr(cluster, "holder", "") if cluster is not None else ""
        about = dict(getattr(cluster, "members", ()) or ()).get(holder, "")
        leader = f"the leader, {holder} at {about}" if holder and about else \
            (f"the leader, {holder}" if holder else "the leader (none elected now)")
        raise Refused("FAILED_PRECONDITION", f"this instance follows: {what} is for "
                      f"{leader}, whose policy engine acts")

    def set_mode(self, mode: str, who: str = "") -> None:
        """act, dry-run or off. Actions already in force stay until they are reverted or
        rolled back; dry-run and off only keep new ones from reaching the network.
        Refused on a standby instance (its engine does not act)."""
        self._refuse_on_standby("setting the policy mode")
        with self._lock:
            if mode != self.mode and self.mode == "dry-run":
                # what dry-run decided was never on the network: nothing to revert
                self.memory = self.memory.leaving_dry_run()
            self.mode = mode
            self._save(mode, who)

    def revert(self, action_id: int, who: str, hold_s: float = 300.0) -> bool:
        """Take an action back by hand (a domain manager); its target is left alone for
        `hold_s`. False when no such action is in memory. Refused on a standby instance."""
        self._refuse_on_standby("taking an action back")
        with self._lock:
            action = next((a for a in self.memory.actions if a.action_id == action_id), None)
            if action is None:
                return False
            now = time.time()
            intent = action.intent
            held = dict(self.memory.held)
            held[f"{intent.kind}|{intent.target}"] = now + hold_s
            self.memory = dataclasses.replace(
                self.memory, actions=tuple(a for a in self.memory.actions if a is not action),
                held=tuple(held.items()), changes=self.memory.changes + (now,))
            self._save()
            decision = Decision(now, REVERT, action_id, intent.kind, intent.element,
                                intent.customer_id, f"taken back by hand by {who}; its target "
                                f"is left alone for {hold_s:g} s", dry_run=action.dry_run,
                                for_customers=tuple(sorted({c for c, _ in
                                                            intent.for_services})))
        self.log.add([decision])
        self._hand_over()
        return True

    def status(self):
        """(mode, actions in memory, evaluations, twin error, outcomes). On a standby
        instance: the mode and actions the master last stored (no evaluations of its own)."""
        if self._follower():
            memory, mode, _who = load_memory(self.store)
            memory = memory or PolicyMemory()
            if not mode or CAUTION.get(mode, 2) > CAUTION[self.config.policy_mode]:
                mode = self.config.policy_mode
            return mode, memory.actions, 0, memory.mean_abs_error, len(memory.errors)
        with self._lock:
            return (self.mode, self.memory.actions, self.evaluations,
                    self.memory.mean_abs_error, len(self.memory.errors))

    def _hand_over(self) -> None:
        """Give the contributor the actions in force and ask for a reconciliation when they
        changed (the ticker and a hand revert on a gRPC thread both come here)."""
        with self._lock:
            in_force = self.memory.in_force()
            ids = tuple(a.action_id for a in in_force)
            changed = ids != self._in_force_ids
            if changed:
                self._in_force_ids = ids
                self.contributor.actions = in_force
        if changed:
            self.on_change()

    def customer_changed(self, change) -> None:
        self._slas.pop(change.customer_id, None)

    # -- the tick ---------------------------------------------------------------------------
    def master_now(self) -> bool:
        """Whether this instance's engine may act (it is master of the switches, or there is
        no cluster). When it has just become master, it first takes up what the last master
        stored: the actions in force, and the decisions with their numbering, rather than
        what it read when it started."""
        if not self.state.leader:
            self._standby = True
            self.log.follow_store = self.store is not None
            self._follow()
            return False
        if self._standby and self.store is not None:
            self._standby = False
            self.log.follow_store = False
            with self._lock:
                self._restore()
                self._saved = self.memory
            self.log.resume()
            self._hand_over()
        return True

    def _follow(self) -> None:
        """On a follower: the leader's actions in force, as it stored them, go to this
        instance's contributor, so that their flows and meters reach the switches this
        instance is master of."""
        if self.store is None:
            return
        try:
            memory, _mode, _who = load_memory(self.store)
        except Exception as err:  # pylint: disable=broad-except
            self._store_failed(err)
            return
        if memory is None:
            return
        with self._lock:
            self.memory = self._saved = memory
        self._hand_over()

    def tick(self, facts) -> None:
        now = time.time()
        if not self.master_now():
            return   # another instance is master of the switches: its engine acts
        with self._lock:
            self._facts = facts
            if not self.memory.actions and not self.experience.book.degraded():
                self.evaluations += 1
                return   # nothing degraded, nothing in force: nothing to decide or review
            # what decide() looks at: the pairs across the suspects and the actions in force
            snapshot = self._snapshot(now, facts, scope=[f.element for f in
                                                         self.experience.findings()])
            evaluation = decide(snapshot, self.memory, policy_config(self.config, self.mode))
            self.memory = evaluation.memory
            self.evaluations += 1
            self._save()
        self.log.add(evaluation.decisions)
        self._hand_over()
        if self.metrics is not None:
            self.metrics.policy_in_force.set(len(self.memory.in_force()))
            error = self.memory.mean_abs_error
            if not math.isnan(error):
                self.metrics.policy_twin_error.set(error)

    # -- questions: what-if, admission, advice ----------------------------------------------
    def latest_snapshot(self, max_age_s: float = 1.0):
        """The last evaluation's snapshot, or a new one when it is older than `max_age_s`
        (the ticker skips building one while nothing is degraded)."""
        now = time.time()
        with self._lock:
            if self._latest is not None and now - self._latest[0] <= max_age_s:
                return self._latest[1]
            if self._facts is None:
                raise whatif.Unanswerable("the experience loop has not run yet: there are no "
                                          "network facts to predict from (wait a second)")
            snapshot = self._snapshot(now, self._facts)
            self._latest = (now, snapshot)
            return snapshot

    def what_if(self, proposal):
        return whatif.what_if(self.latest_snapshot(), proposal, self.config.qoe_iptv_frame_rate,
                              self.config.policy_target_utilisation)

    def host_of(self, address: str, owners=None):
        """(MAC, customer id or '') of the host with this IPv4 address (`owners`: the
        directory's MAC -> customer, when the caller has it already)."""
        for host in self.state.topology.hosts:
            if address in host.ipv4:
                if owners is None:
                    owners = self.directory.customer_of_macs()
                return host.mac, owners.get(host.mac, "")
        raise whatif.Unanswerable(f"no host with address {address} has been seen on any "
                                  "switch")

    def session_hosts(self, src_address: str, dst_address: str):
        """(sender's MAC, receiver's MAC, customer) of a session between two addresses: the
        customer is the receiver's, else the sender's."""
        owners = self.directory.customer_of_macs()
        src, src_customer = self.host_of(src_address, owners)
        dst, dst_customer = self.host_of(dst_address, owners)
        return src, dst, dst_customer or src_customer

    def admit(self, service: str, rate_bps: float, src: str, dst: str, customer: str):
        """(Admission, the refusal's decision seq or 0) for a session between two hosts
        (session_hosts). Every answer is counted; a refusal is logged once per customer,
        service and element per cooldown (an application that retries every second does
        not flood the log) and answers with that decision's seq."""
        snapshot = self.latest_snapshot()
        answer = whatif.admit(snapshot, whatif.Session(customer, service, rate_bps, src, dst),
                              self.config.policy_admission_utilisation,
                              self.config.qoe_iptv_frame_rate)
        if self.metrics is not None:
            self.metrics.policy_admissions.labels(
                "admitted" if answer.admitted else "refused", service).inc()
        if answer.admitted:
            return answer, 0
        key = (customer, service, answer.element)
        now = time.time()
        with self._lock:
            last = self._refusals.get(key)
            if last is not None and now - last[0] < self.config.policy_cooldown_s:
                return answer, last[1]
        element = snapshot.elements.get(answer.element)
        inputs = {"rate_bps": float(rate_bps)}
        if element is not None:
            inputs.update(load_bps=element.load_bps, capacity_bps=element.capacity_bps or 0.0)
        p = answer.prediction
        predicted = {"utilisation_after": p.utilisation_after, "loss_after": p.loss_after} \
            if p else {}
        (logged,) = self.log.add([Decision(now, REFUSE, 0, ADMISSION, answer.element, customer,
                                           answer.reason, inputs, predicted,
                                           for_customers=(customer,) if customer else ())])
        with self._lock:
            self._refusals[key] = (now, logged.seq)
            if len(self._refusals) > 10_000:
                self._refusals = {k: v for k, v in self._refusals.items()
                                  if now - v[0] < self.config.policy_cooldown_s}
        return answer, logged.seq

    def advice(self, service: str, address: str):
        """(Advice, customer id) for the player at this address; a changed advice is logged."""
        mac, customer = self.host_of(address)
        if not customer:
            raise whatif.Unanswerable(f"the host at {address} belongs to no customer")
        advice = whatif.advise(self.latest_snapshot(), customer, service, mac,
                               self.config.policy_target_utilisation,
                               self.config.policy_advice_floor_bps)
        with self._lock:
            changed = self._advised.get((customer, service), 0) != advice.bitrate_bps
            self._advised[(customer, service)] = advice.bitrate_bps
        if changed:
            reason = advice.reason if advice.bitrate_bps else \
                f"advice withdrawn: {advice.reason}"
            self.log.add([Decision(time.time(), ADVISE, 0, ADVISE, advice.element, customer,
                                   reason, observed={"advised_bps": float(advice.bitrate_bps)},
                                   for_customers=(customer,))])
        return advice, customer

    def _publish(self, logged) -> None:
        d = logged.decision
        level = logging.INFO if d.kind in ("outcome", "refuse", ADVISE) else logging.WARNING
        LOG.log(level, "decision %d: %s%s %s on %s for %s: %s", logged.seq,
                "dry run: " if d.dry_run else "", d.kind, d.intent_kind or "-",
                d.element or "-", d.customer_id or ", ".join(d.for_customers) or "-",
                d.reason)
        if self.metrics is not None:
            self.metrics.policy_decisions.labels(d.kind).inc()
            if d.kind == REFUSE and d.reason.startswith("cap:"):
                self.metrics.policy_capped.inc()
        self.state.bus.publish(DecisionMade(time.time(), logged))

    def _contract(self, customer_id: str):
        state = self.directory.state(customer_id)
        if state is None:
            return None
        if customer_id not in self._slas:
            try:
                self._slas[customer_id] = self.sla_of(customer_id)
            except Exception:  # pylint: disable=broad-except
                self._slas[customer_id] = None   # no SLA: the floor is the SLS rate
        return contract_of(state, self._slas[customer_id])

    def _snapshot(self, now: float, facts, scope=None):
        book = self.experience.book
        macs = self.directory.customer_of_macs()
        contracts = {}
        for customer in set(macs.values()):
            contract = self._contract(customer)
            if contract is not None:
                contracts[customer] = contract
        degraded = []
        scores = {}
        for view in book.select(now, statuses=[DEGRADED]):
            degraded.append(Degradation(view.customer_id, view.service,
                                        view.service_class or _class_of(contracts,
                                                                        view.customer_id),
                                        view.status.since_unix_s, view.score,
                                        view.target.minimum))
            scores[(view.customer_id, view.service)] = view.score
        # the services the actions in force are for: their scores decide outcomes and reverts
        wanted = {k for a in self.memory.actions for k in a.intent.for_services} - set(scores)
        for customer in {c for c, _ in wanted}:
            for view in book.of_customer(customer, now):
                scores.setdefault((view.customer_id, view.service), view.score)
        services = book.pair_services()   # with customer partitions: the other instances'
        services.update({(r.src, r.dst): r.service for r in self.kpis.latest()
                         if r.service})
        topology = self.state.topology
        return build_snapshot(now, facts, topology.hosts, self.state.flows, contracts, macs,
                              services, degraded, scores, self.experience.findings(),
                              self.memory.actions, classed=self._classed(topology),
                              scope=scope)

    def _classed(self, topology) -> frozenset:
        """The switch ports the config gives GSB egress classes (by interface name)."""
        names = {e.ifname for e in self.config.egress_interfaces}
        if not names:
            return frozenset()
        return frozenset((s.dpid, p.port_no) for s in topology.switches for p in s.ports
                         if p.name in names)


def _class_of(contracts, customer_id: str) -> str:
    contract = contracts.get(customer_id)
    return contract.service_class if contract else ServiceClass.BRONZE.value
