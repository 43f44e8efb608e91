"""The policy engine: from a snapshot and what it did before, what to change now (core).

decide(snapshot, memory, config) is a pure function. Each evaluation, in this order:

1. **Outcomes**: an action applied `observe_s` ago gets its observed scores recorded beside
   the twin's prediction (an `outcome` decision); the absolute MOS errors are kept, so the
   twin's error is measured (PolicyMemory.mean_abs_error).
2. **Rollback**: an action whose affected services score, `observe_s` after it, worse than
   when it was applied by more than `rollback_margin` is removed; the same kind of action
   on the same target is not tried again for `hold_s`.
3. **Revert**: an action whose cause is gone (meter: the metered traffic runs below half the
   meter's rate; reroute: the old element would now carry it below `target_utilisation`;
   priority: the element is below `target_utilisation`) while none of its services is
   degraded, for `revert_s` without a break (its own hysteresis), is removed.
4. **Act**: a trigger is a sustained degraded status (controller.monitor.experience), never
   a sample. The degraded services are grouped by the root-cause finding that names them,
   best first; for the finding's element the candidates are built cheapest first
   (model.KINDS: priority, meter, reroute), each with the twin's prediction
   (controller.policy.twin). The cheapest candidate predicted to bring every affected
   service with a model back to its target (or, without a model, the element's loss under
   ACCEPTABLE_LOSS) is taken; else the one with the best predicted gain for its cost
   (model.COST), if the gain is at least `min_gain`; else nothing, and the log says so.
5. **Guardrails**: a target (element and the customer whose traffic changes) is left alone
   for `cooldown_s` after a change; at most `max_changes_per_minute` changes, and at most
   `max_customers_per_evaluation` customers touched per evaluation; no meter below the
   customer's SLA minimum for its class (floor), checked again on every intent before it
   is accepted. A refusal is logged once per target and cooldown, not every second.

In dry-run every decision is made and logged (marked dry_run) and the actions are kept
in memory for the bookkeeping (cooldowns, reverts), but PolicyMemory.in_force() leaves them
out, so nothing reaches the network.
"""

import dataclasses
import heapq
import math
from typing import Iterable

from controller.policy.model import (ACT, CLASS_RANK, COST, METER, OUTCOME, PRIORITY, REFUSE,
                                     REROUTE, REVERT, ROLLBACK, Action, Decision, Degradation,
                                     Element, Intent, PairTraffic, Prediction, Snapshot,
                                     Suspect)
from controller.policy.twin import predict

ACCEPTABLE_LOSS = 0.001
REAL_TIME = ("voice", "iptv")   # a competitor's services no meter or reroute touches


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    dry_run: bool = False
    paused: bool = False
    cooldown_s: float = 30.0
    max_changes_per_minute: int = 6
    max_customers_per_evaluation: int = 5
    target_utilisation: float = 0.8   # meters aim the element at this; reroutes stay under it
    observe_s: float = 15.0   # longer than the 10 s window the scores are means over
    revert_s: float = 20.0
    rollback_margin: float = 0.2
    hold_s: float = 300.0
    min_gain: float = 0.05
    frame_rate: float | None = None   # IPTV frame rate for the twin (qoe.iptv_frame_rate)


@dataclasses.dataclass(frozen=True)
class PolicyMemory:
    """What the engine remembers between evaluations; decide() returns the next one."""

    actions: tuple[Action, ...] = ()
    next_id: int = 1
    changes: tuple[float, ...] = ()                       # times of changes, last minute
    last_change: tuple[tuple[str, float], ...] = ()       # target -> time
    refused: tuple[tuple[str, float], ...] = ()           # target -> time of last refusal
    held: tuple[tuple[str, float], ...] = ()              # kind|target -> until
    errors: tuple[float, ...] = ()                        # |observed - predicted| MOS

    def leaving_dry_run(self) -> "PolicyMemory":
        """The memory once dry-run ends: its actions were never on the network and its
        cooldowns, caps and holds were about changes that were not made; the twin's
        errors and the action ids stay."""
        return PolicyMemory(tuple(a for a in self.actions if not a.dry_run), self.next_id,
                            errors=self.errors)

    def in_force(self) -> tuple[Action, ...]:
        """The actions the network should carry (dry-run ones are left out)."""
        return tuple(a for a in self.actions if not a.dry_run)

    @property
    def mean_abs_error(self) -> float:
        return sum(self.errors) / len(self.errors) if self.errors else math.nan


@dataclasses.dataclass(frozen=True)
class Evaluation:
    memory: PolicyMemory
    decisions: tuple[Decision, ...]
    applied: tuple[Action, ...]     # new this evaluation
    removed: tuple[Action, ...]     # reverted or rolled back this evaluation


def decide(snapshot: Snapshot, memory: PolicyMemory, config: PolicyConfig) -> Evaluation:
    now = snapshot.now
    run = _Run(snapshot, memory, config)
    for action in memory.actions:
        run.review(action)
    if not config.paused:
        degraded = [d for d in snapshot.degraded if not run.waiting_for(d)]
        for suspect in sorted(snapshot.suspects, key=lambda s: -s.score):
            mine = [d for d in degraded if d.customer_id in suspect.affected_customers]
            if mine and run.act_on(suspect, mine):
                degraded = [d for d in degraded if d not in mine]
    changes = tuple(t for t in run.changes if t > now - 60.0)
    held = tuple((k, t) for k, t in run.held.items() if t > now)
    horizon = now - max(config.cooldown_s, 60.0)
    memory = PolicyMemory(tuple(run.actions), run.next_id, changes,
                          tuple((k, t) for k, t in run.last_change.items() if t > horizon),
                          tuple((k, t) for k, t in run.refused.items() if t > horizon),
                          held, tuple(run.errors[-1000:]))
    return Evaluation(memory, tuple(run.decisions), tuple(run.applied), tuple(run.removed))


class _Run:
    """One evaluation's working state (decide() is the interface)."""

    def __init__(self, snapshot: Snapshot, memory: PolicyMemory, config: PolicyConfig):
        self.s = snapshot
        self.config = config
        self.actions: list[Action] = []
        self.next_id = memory.next_id
        self.changes = list(memory.changes)
        self.last_change = dict(memory.last_change)
        self.refused = dict(memory.refused)
        self.held = dict(memory.held)
        self.errors = list(memory.errors)
        self.decisions: list[Decision] = []
        self.applied: list[Action] = []
        self.removed: list[Action] = []
        self.touched: set[str] = set()
        self._pairs = {p.key: p for p in snapshot.pairs}
        self._by_element: dict[str, list[PairTraffic]] = {}
        for pair in snapshot.pairs:
            for name in pair.elements:
                self._by_element.setdefault(name, []).append(pair)
        self._next_hops: dict[int, list[tuple[int, str]]] = {}
        for (a, b), (_, name) in sorted(snapshot.links.items()):
            self._next_hops.setdefault(a, []).append((b, name))

    # -- the log ---------------------------------------------------------------------------
    def log(self, kind: str, intent: Intent | None, reason: str, action_id: int = 0,
            inputs=None, predicted=None, observed=None, element: str = "",
            customer: str = "", for_customers: Iterable[str] = ()) -> None:
        self.decisions.append(Decision(
            self.s.now, kind, action_id, intent.kind if intent else "",
            intent.element if intent else element, intent.customer_id if intent else customer,
            reason, dict(inputs or {}), dict(predicted or {}), dict(observed or {}),
            self.config.dry_run,
            tuple(sorted({c for c, _ in intent.for_services})) if intent
            else tuple(sorted(set(for_customers)))))

    # -- 1-3: actions in force ---------------------------------------------------------------
    def review(self, action: Action) -> None:
        now, config, intent = self.s.now, self.config, action.intent
        observed = {k: self.s.scores[k] for k in intent.for_services
                    if k in self.s.scores and self.s.scores[k] == self.s.scores[k]}
        if not action.observed and now - action.applied_unix_s >= config.observe_s:
            predicted = {k: v for k, v in intent.prediction.scores_after.items()}
            if not action.dry_run:
                errors = [abs(observed[k] - predicted[k]) for k in predicted if k in observed]
                self.errors.extend(errors)
            self.log(OUTCOME, intent, _outcome_text(predicted, observed, action.dry_run),
                     action.action_id, predicted=_flat(predicted), observed=_flat(observed))
            action = dataclasses.replace(action, observed=True)
            if not action.dry_run and _worse(action.baseline, observed, config.rollback_margin):
                self.log(ROLLBACK, intent, "quality after the action "
                         f"({_mean(observed):.2f}) is worse than before it "
                         f"({_mean(action.baseline):.2f}) by more than "
                         f"{config.rollback_margin:g}: taken back; not tried again on this "
                         f"target for {config.hold_s:g} s", action.action_id,
                         observed=_flat(observed), inputs=_flat(action.baseline))
                self.held[f"{intent.kind}|{intent.target}"] = now + config.hold_s
                self._remove(action)
                return
        calm = self._cause_gone(intent) and not any(
            (d.customer_id, d.service) in intent.for_services for d in self.s.degraded)
        if not calm:
            self.actions.append(dataclasses.replace(action, calm_since_unix_s=None))
            return
        since = action.calm_since_unix_s if action.calm_since_unix_s is not None else now
        if now - since >= config.revert_s:
            self.log(REVERT, intent, f"the cause is gone and {_services(intent.for_services)} "
                     f"{'has' if len(intent.for_services) == 1 else 'have'} not been degraded "
                     f"for {now - since:.0f} s: back to the contract's treatment",
                     action.action_id, observed=_flat(observed))
            self._remove(action)
            return
        self.actions.append(dataclasses.replace(action, calm_since_unix_s=since))

    def _remove(self, action: Action) -> None:
        self.removed.append(action)
        self.changes.append(self.s.now)
        self.last_change[action.intent.target] = self.s.now

    def _cause_gone(self, intent: Intent) -> bool:
        element = self.s.elements.get(intent.element)
        limit = self.config.target_utilisation
        carried = sum(self._pairs[k].rate_bps for k in intent.pairs if k in self._pairs)
        if intent.kind == METER:
            return carried < 0.5 * intent.rate_bps
        if element is None or not element.capacity_bps:
            return True   # the element is no longer there: nothing left to protect it from
        if intent.kind == REROUTE:
            return (element.load_bps + carried) / element.capacity_bps < limit
        return element.utilisation < limit

    def waiting_for(self, degradation: Degradation) -> bool:
        """An action of this mode for this service is in force, its effect not yet observed."""
        key = (degradation.customer_id, degradation.service)
        return any(key in a.intent.for_services and not a.observed
                   and a.dry_run == self.config.dry_run for a in self.actions)

    # -- 4-5: new actions --------------------------------------------------------------------
    def act_on(self, suspect: Suspect, degraded: list[Degradation]) -> bool:
        """Act on (or refuse, saying why) one suspected egress for the degraded services it
        explains; False when the suspect is no egress (a switch) or its capacity is not
        known, so that the next finding can explain them."""
        element = self.s.elements.get(suspect.element)
        if element is None:
            return False   # a switch as a whole: the links and ports on it are findings too
        if not element.capacity_bps:
            self._refuse(suspect.element, "", f"{suspect.element} is suspected, but its "
                         "capacity is not known (csm.link_capacity_bps or the port speed): "
                         "the twin cannot predict any action on it", degraded=degraded)
            return False
        if any(a.intent.element == element.name and not a.observed
               and a.dry_run == self.config.dry_run for a in self.actions):
            return True   # an action on this element is still being observed
        candidates = []
        chosen = None
        for build in (self._priority, self._meters, self._reroutes):   # cheapest first
            candidate = build(element, degraded)
            if not candidate:
                continue
            candidates.append(candidate)
            if _sufficient(candidate[0].prediction, degraded) and \
                    _value(candidate[0].prediction, degraded) > 0:
                chosen = candidate
                break
        if not candidates:
            self._refuse(element.name, "", f"no action can help {_degraded_text(degraded)} on "
                         f"{element.name}: no lower-class traffic crosses it, no higher class "
                         "is allowed, and no other path has room", _element_inputs(element),
                         degraded=degraded)
            return True
        chosen = chosen or _choose(candidates, degraded, self.config.min_gain)
        if chosen is None:
            best = max(candidates, key=lambda c: _value(c[0].prediction, degraded))
            self._refuse(element.name, "", f"no action is predicted to help "
                         f"{_degraded_text(degraded)} enough (best: {best[0].kind}, predicted "
                         f"gain {best[0].prediction.gain:.2f} < {self.config.min_gain:g})",
                         _element_inputs(element), degraded=degraded)
            return True
        self._accept(chosen)
        return True

    def _accept(self, intents: tuple[Intent, ...]) -> None:
        now, config = self.s.now, self.config
        recent = [t for t in self.changes if t > now - 60.0]
        for intent in intents:
            problem = ""
            if f"{intent.kind}|{intent.target}" in self.held and \
                    self.held[f"{intent.kind}|{intent.target}"] > now:
                problem = (f"a {intent.kind} on this target was rolled back; held until "
                           f"{self.held[f'{intent.kind}|{intent.target}']:.0f}")
            elif now - self.last_change.get(intent.target, -math.inf) < config.cooldown_s:
                problem = (f"cooldown: this target changed "
                           f"{now - self.last_change[intent.target]:.0f} s ago "
                           f"(cooldown {config.cooldown_s:g} s)")
            elif len(recent) >= config.max_changes_per_minute:
                problem = (f"cap: {len(recent)} changes in the last minute "
                           f"(at most {config.max_changes_per_minute})")
            elif intent.customer_id not in self.touched and \
                    len(self.touched) >= config.max_customers_per_evaluation:
                problem = (f"cap: {len(self.touched)} customers already touched in this "
                           f"evaluation (at most {config.max_customers_per_evaluation})")
            else:
                problem = floor_violation(intent, self.s)
            if problem:
                self._refuse(intent.element, intent.customer_id, problem, intent=intent)
                continue
            action = Action(self.next_id, intent, now,
                            {k: self.s.scores[k] for k in intent.for_services
                             if k in self.s.scores}, config.dry_run)
            self.next_id += 1
            self.actions.append(action)
            self.applied.append(action)
            self.changes.append(now)
            recent.append(now)
            self.last_change[intent.target] = now
            self.touched.add(intent.customer_id)
            self.log(ACT, intent, intent.reason, action.action_id,
                     inputs=_element_inputs(self.s.elements[intent.element]),
                     predicted=_prediction_figures(intent.prediction))

    def _refuse(self, element: str, customer: str, reason: str, inputs=None,
                intent: Intent | None = None, degraded: Iterable[Degradation] = ()) -> None:
        key = f"{element}|{customer}"
        if self.s.now - self.refused.get(key, -math.inf) < self.config.cooldown_s:
            return
        self.refused[key] = self.s.now
        self.log(REFUSE, intent, reason, inputs=inputs,
                 predicted=_prediction_figures(intent.prediction) if intent else None,
                 element=element, customer=customer,
                 for_customers=(d.customer_id for d in degraded))

    # -- candidates ----------------------------------------------------------------------------
    def _crossing(self, element: Element) -> list[PairTraffic]:
        """The pairs across the element that no action of this mode holds already (a dry-run
        action holds nothing once the engine acts for real)."""
        held = {k for a in self.actions if a.dry_run == self.config.dry_run
                for k in a.intent.pairs}
        return [p for p in self._by_element.get(element.name, ()) if p.key not in held]

    def _affected(self, degraded: list[Degradation]) -> list[tuple[str, str]]:
        return [(d.customer_id, d.service) for d in degraded]

    def _predict(self, element: Element, degraded: list[Degradation], **change) -> Prediction:
        """The twin on the element's pairs for the degraded services, with `change`
        (rates_after or classes_after) applied."""
        return predict(element, self._by_element.get(element.name, ()),
                       self._affected(degraded), frame_rate=self.config.frame_rate, **change)

    def _priority(self, element: Element, degraded: list[Degradation]):
        """Re-mark each degraded customer's services across the element to the best class
        its SLA allows, where that is better than its class now; only where the element has
        egress classes. With the degraded services go the customer's other voice and IPTV
        across the element: they are behind the same congestion, and a second re-marking
        for them would wait out the first one's observation and cooldown."""
        if not element.has_classes:
            return None
        by_customer: dict[str, list[Degradation]] = {}
        for d in degraded:
            by_customer.setdefault(d.customer_id, []).append(d)
        remark: dict[tuple[str, str], str] = {}
        picks = []
        for customer, mine_degraded in by_customer.items():
            contract = self.s.contracts.get(customer)
            if contract is None:
                continue
            now_class = mine_degraded[0].service_class
            best = min(contract.allowed_classes, key=lambda c: CLASS_RANK.get(c, 2),
                       default=contract.service_class)
            if CLASS_RANK.get(best, 2) >= CLASS_RANK.get(now_class, 2):
                continue
            services = {d.service for d in mine_degraded}
            mine = [p for p in self._crossing(element) if p.customer_id == customer and
                    (p.service in services or p.service in REAL_TIME)]
            if not mine:
                continue
            remark.update({p.key: best for p in mine})
            names = sorted({p.service for p in mine})
            for switch in sorted({p.path[0] for p in mine}):
                picks.append((mine_degraded, names, now_class, best,
                              tuple(p.key for p in mine if p.path[0] == switch), switch))
        if not picks:
            return None
        prediction = self._predict(element, degraded, classes_after=remark)
        return tuple(Intent(
            PRIORITY, element.name, ds[0].customer_id, pairs,
            f"{_degraded_text(ds)} degraded (score {min(d.score for d in ds):.2f} < target "
            f"{ds[0].target:g}) behind {element.name}: its {' and '.join(names)} re-marked "
            f"from {now_class} to {best}, which its SLA allows", prediction,
            tuple(self._affected(degraded)), ",".join(names), best,
            int(sum(self._pairs[k].rate_bps for k in pairs)), switch=switch)
            for ds, names, now_class, best, pairs, switch in picks)

    def _lower_class(self, element: Element, degraded: list[Degradation]):
        """Traffic across the element of customers of a lower class than the best degraded
        one, per (customer, switch where it enters), largest first; their own voice and
        IPTV (REAL_TIME) are left alone: a few hundred kbit/s each, and a meter would hurt
        them before it frees anything. A lower-class customer that is degraded too (its
        own download congests the link its calls cross) is a competitor all the same."""
        best = min(CLASS_RANK.get(d.service_class, 2) for d in degraded)
        out: dict[tuple[str, int], list[PairTraffic]] = {}
        for pair in self._crossing(element):
            if pair.customer_id and pair.customer_id in self.s.contracts and pair.path and \
                    pair.service not in REAL_TIME and \
                    CLASS_RANK.get(pair.service_class, 2) > best and pair.rate_bps > 0:
                out.setdefault((pair.customer_id, pair.path[0]), []).append(pair)
        return sorted(out.items(), key=lambda kv: (-sum(p.rate_bps for p in kv[1]), kv[0]))

    def _meters(self, element: Element, degraded: list[Degradation]):
        """Meter lower-class customers' traffic across the element, largest first, until
        the element is predicted at `target_utilisation`; never below a customer's SLA
        minimum."""
        excess = element.load_bps - self.config.target_utilisation * element.capacity_bps
        if excess <= 0:
            return None
        picks, rates_after = [], {}
        for (customer, switch), pairs in self._lower_class(element, degraded):
            if excess <= 0:
                break
            contract = self.s.contracts[customer]
            rate = sum(p.rate_bps for p in pairs)
            floor = max(contract.sla_min_bps, 1000)
            meter = max(floor, rate - excess)
            if meter >= rate:
                continue   # already at its floor: metering it would not lower the load
            excess -= rate - meter
            for p in pairs:
                rates_after[p.key] = p.rate_bps * meter / rate
            picks.append((customer, tuple(p.key for p in pairs), int(math.ceil(meter)), rate,
                          switch))
        if not picks:
            return None
        prediction = self._predict(element, degraded, rates_after=rates_after)
        return tuple(Intent(
            METER, element.name, customer, pairs,
            f"{_behind(element, degraded)}: "
            f"{customer}'s {self.s.contracts[customer].service_class} traffic across it "
            f"({rate / 1e6:.1f} Mbit/s) metered to {meter / 1e6:.1f} Mbit/s (its SLA minimum "
            f"is {self.s.contracts[customer].sla_min_bps / 1e6:g} Mbit/s)", prediction,
            tuple(self._affected(degraded)), rate_bps=meter, switch=switch)
            for customer, pairs, meter, rate, switch in picks)

    def _reroutes(self, element: Element, degraded: list[Degradation]):
        """Move the largest lower-class customer's traffic across the element to another
        path (from the pair's first switch to its last, around the element) whose links all
        stay under `target_utilisation` with that traffic added."""
        for (customer, _), pairs in self._lower_class(element, degraded):
            moves = []
            extra: dict[str, float] = {}
            for pair in pairs:
                path = self._detour(pair, element, extra)
                if path is None:
                    continue
                moves.append((pair, path))
            if not moves:
                continue
            path = moves[0][1]
            same = [(p, q) for p, q in moves
                    if q == path and p.dst_mac == moves[0][0].dst_mac]
            hops = self._hops(path, same[0][0].dst_mac)
            if hops is None:
                continue
            rates_after = {p.key: 0.0 for p, _ in same}
            prediction = self._predict(element, degraded, rates_after=rates_after)
            rate = sum(p.rate_bps for p, _ in same)
            return (Intent(
                REROUTE, element.name, customer, tuple(p.key for p, _ in same),
                f"{_behind(element, degraded)}: {customer}'s traffic across it "
                f"({rate / 1e6:.1f} Mbit/s) moved to the path "
                f"{' '.join(f'{d:x}' for d in path)}, which has room", prediction,
                tuple(self._affected(degraded)), path=path, hops=hops),)
        return None

    def _hops(self, path: tuple[int, ...], dst_mac: str):
        """(switch, egress port) along the path, the last one to the receiving host."""
        hops = []
        for a, b in zip(path, path[1:]):
            if (a, b) not in self.s.links:
                return None
            hops.append((a, self.s.links[(a, b)][0]))
        host = self.s.host_ports.get(dst_mac)
        if host is None or host[0] != path[-1]:
            return None
        return tuple(hops) + (host,)

    def _detour(self, pair: PairTraffic, element: Element, extra: dict[str, float]):
        """A path for the pair from its first switch to its last that avoids the element,
        the fewest hops among those whose links all have room for it; or None."""
        if len(pair.path) < 2:
            return None
        goal = pair.path[-1]
        limit = self.config.target_utilisation
        # Dijkstra by hops over links with room for the pair, never the element itself
        queue = [(0, pair.path[0], (pair.path[0],))]
        seen = set()
        while queue:
            hops, here, route = heapq.heappop(queue)
            if here == goal:
                path = route
                for name in self._names(path):
                    extra[name] = extra.get(name, 0.0) + pair.rate_bps
                return path
            if here in seen:
                continue
            seen.add(here)
            for b, name in self._next_hops.get(here, ()):
                if b in route or name == element.name:
                    continue
                link = self.s.elements.get(name)
                if link is None or not link.capacity_bps:
                    continue
                load = link.load_bps + extra.get(name, 0.0) + pair.rate_bps
                if load / link.capacity_bps > limit:
                    continue
                heapq.heappush(queue, (hops + 1, b, route + (b,)))
        return None

    def _names(self, path: tuple[int, ...]) -> list[str]:
        return [self.s.links[(a, b)][1] for a, b in zip(path, path[1:])
                if (a, b) in self.s.links]


def detour(snapshot: Snapshot, pair: PairTraffic, avoid: str,
           target_utilisation: float = 0.8) -> tuple[int, ...] | None:
    """The path a reroute would give the pair around the element `avoid` (the fewest hops
    whose links all stay under `target_utilisation` with it), or None: the same search the
    engine's reroute candidates use, for what-if questions."""
    element = snapshot.elements.get(avoid)
    if element is None:
        return None
    run = _Run(snapshot, PolicyMemory(), PolicyConfig(target_utilisation=target_utilisation))
    return run._detour(pair, element, {})   # pylint: disable=protected-access


def floor_violation(intent: Intent, snapshot: Snapshot) -> str:
    """'' when the intent keeps every customer at or above its SLA minimum, else why not."""
    if intent.kind != METER:
        return ""
    contract = snapshot.contracts.get(intent.customer_id)
    if contract is None:
        return f"{intent.customer_id} has no contract: its traffic is not metered"
    if intent.rate_bps < contract.sla_min_bps:
        return (f"floor: {intent.rate_bps} bit/s is below {intent.customer_id}'s SLA minimum "
                f"of {contract.sla_min_bps} bit/s")
    return ""


def _value(prediction: Prediction, degraded: list[Degradation]) -> float:
    """What a candidate is predicted to gain: the mean score gain of the services with a
    model; without any, the element's loss taken away (in percentage points)."""
    if prediction.scores_after:
        return prediction.gain
    return (prediction.loss_before - prediction.loss_after) * 100


def _sufficient(prediction: Prediction, degraded: list[Degradation]) -> bool:
    targets = {(d.customer_id, d.service): d.target for d in degraded}
    modelled = [k for k in targets if k in prediction.scores_after]
    if modelled:
        return all(prediction.scores_after[k] >= targets[k] for k in modelled)
    return prediction.loss_after <= ACCEPTABLE_LOSS


def _choose(candidates, degraded, min_gain):
    for candidate in candidates:   # cheapest first
        if _sufficient(candidate[0].prediction, degraded) and \
                _value(candidate[0].prediction, degraded) > 0:
            return candidate
    best = max(candidates, key=lambda c: _value(c[0].prediction, degraded) / COST[c[0].kind])
    return best if _value(best[0].prediction, degraded) >= min_gain else None


def _worse(baseline, observed, margin: float) -> bool:
    keys = [k for k in baseline if k in observed and baseline[k] == baseline[k]]
    if not keys:
        return False
    return sum(observed[k] for k in keys) / len(keys) < \
        sum(baseline[k] for k in keys) / len(keys) - margin


def _mean(scores) -> float:
    values = [v for v in scores.values() if v == v]
    return sum(values) / len(values) if values else math.nan


def _flat(scores) -> dict[str, float]:
    return {f"{c}/{s}": float(v) for (c, s), v in scores.items()}


def _services(keys: Iterable[tuple[str, str]], most: int = 5) -> str:
    keys = list(keys)
    text = ", ".join(f"{c} {s}" for c, s in keys[:most])
    return text + (f" and {len(keys) - most} more" if len(keys) > most else "")


def _degraded_text(degraded: list[Degradation]) -> str:
    return _services((d.customer_id, d.service) for d in degraded)


def _behind(element: Element, degraded: list[Degradation]) -> str:
    """What a meter or reroute is for: the degraded services and the full element."""
    return (f"{_degraded_text(degraded)} degraded behind {element.name} at "
            f"{element.utilisation:.0%} of {element.capacity_bps / 1e6:g} Mbit/s")


def _element_inputs(element: Element) -> dict[str, float]:
    out = {"load_bps": element.load_bps, "dropped_per_s": element.dropped_per_s}
    if element.capacity_bps:
        out.update(capacity_bps=element.capacity_bps, utilisation=element.utilisation)
    return out


def _prediction_figures(prediction: Prediction) -> dict[str, float]:
    out = {"utilisation_before": prediction.utilisation_before,
           "utilisation_after": prediction.utilisation_after,
           "loss_before": prediction.loss_before, "loss_after": prediction.loss_after,
           "delay_ms_before": prediction.delay_ms_before,
           "delay_ms_after": prediction.delay_ms_after}
    out.update({f"score_before {k}": v for k, v in _flat(prediction.scores_before).items()})
    out.update({f"score_after {k}": v for k, v in _flat(prediction.scores_after).items()})
    return out


def _outcome_text(predicted, observed, dry_run: bool) -> str:
    if dry_run:
        return (f"dry run: nothing was changed; observed {_mean(observed):.2f} where the "
                f"action was predicted to give {_mean(predicted):.2f}")
    if not predicted:
        return f"observed {_mean(observed):.2f}; the twin had no model for these services"
    return (f"observed {_mean(observed):.2f}, predicted {_mean(predicted):.2f} "
            f"(error {abs(_mean(observed) - _mean(predicted)):.2f})")
