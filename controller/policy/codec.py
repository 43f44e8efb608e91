"""Decisions and the engine's memory as JSON and back (core, no I/O).

The store keeps every decision and the memory (the actions in force with their intents and
predictions, cooldowns, holds, the twin's errors) so that a restart neither forgets what
was done nor takes it back. JSON has no tuples and no tuple keys: mappings keyed by
(customer, service) become lists of [customer, service, value], and tuples come back as
tuples, so that a decoded value equals the one encoded (a test holds both to that).
"""

import dataclasses
import json
import math

from controller.policy.engine import PolicyMemory
from controller.policy.model import Action, Decision, Intent, Prediction

FORMAT = 1


def _number(value: float):
    # JSON has no NaN or infinity; None stands for NaN (a score without a model)
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _back(value) -> float:
    return math.nan if value is None else float(value)


def _scores_out(scores) -> list:
    return [[c, s, _number(v)] for (c, s), v in scores.items()]


def _scores_in(rows) -> dict:
    return {(c, s): _back(v) for c, s, v in rows}


def _figures_out(figures) -> dict:
    return {k: _number(float(v)) for k, v in figures.items()}


def _figures_in(figures) -> dict:
    return {k: _back(v) for k, v in figures.items()}


def _prediction_out(p: Prediction) -> dict:
    return {"element": p.element,
            **{f: _number(getattr(p, f)) for f in (
                "utilisation_before", "utilisation_after", "loss_before", "loss_after",
                "delay_ms_before", "delay_ms_after")},
            "scores_before": _scores_out(p.scores_before),
            "scores_after": _scores_out(p.scores_after), "model": p.model}


def _prediction_in(d: dict) -> Prediction:
    return Prediction(d["element"], *(_back(d[f]) for f in (
        "utilisation_before", "utilisation_after", "loss_before", "loss_after",
        "delay_ms_before", "delay_ms_after")),
        _scores_in(d["scores_before"]), _scores_in(d["scores_after"]), d["model"])


def _intent_out(i: Intent) -> dict:
    out = dataclasses.asdict(i)
    out["prediction"] = _prediction_out(i.prediction)
    return out


def _pairs(rows) -> tuple:
    return tuple(tuple(row) for row in rows)


def _intent_in(d: dict) -> Intent:
    fields = dict(d)
    fields["prediction"] = _prediction_in(d["prediction"])
    for name in ("pairs", "for_services", "hops"):
        fields[name] = _pairs(d.get(name, ()))
    fields["path"] = tuple(d.get("path", ()))
    known = {f.name for f in dataclasses.fields(Intent)}
    return Intent(**{k: v for k, v in fields.items() if k in known})


def action_out(a: Action) -> dict:
    return {"action_id": a.action_id, "intent": _intent_out(a.intent),
            "applied_unix_s": a.applied_unix_s, "baseline": _scores_out(a.baseline),
            "dry_run": a.dry_run, "observed": a.observed,
            "calm_since_unix_s": a.calm_since_unix_s}


def action_in(d: dict) -> Action:
    return Action(d["action_id"], _intent_in(d["intent"]), d["applied_unix_s"],
                  _scores_in(d["baseline"]), d["dry_run"], d["observed"],
                  d["calm_since_unix_s"])


def decision_to_json(d: Decision) -> str:
    return json.dumps({"time_unix_s": d.time_unix_s, "kind": d.kind,
                       "action_id": d.action_id, "intent_kind": d.intent_kind,
                       "element": d.element, "customer_id": d.customer_id,
                       "reason": d.reason, "inputs": _figures_out(d.inputs),
                       "predicted": _figures_out(d.predicted),
                       "observed": _figures_out(d.observed), "dry_run": d.dry_run,
                       "for_customers": list(d.for_customers)}, separators=(",", ":"))


def decision_from_json(text: str) -> Decision:
    d = json.loads(text)
    return Decision(d["time_unix_s"], d["kind"], d["action_id"], d["intent_kind"],
                    d["element"], d["customer_id"], d["reason"], _figures_in(d["inputs"]),
                    _figures_in(d["predicted"]), _figures_in(d["observed"]), d["dry_run"],
                    tuple(d["for_customers"]))


def memory_to_json(memory: PolicyMemory) -> str:
    return json.dumps({
        "format": FORMAT, "actions": [action_out(a) for a in memory.actions],
        "next_id": memory.next_id, "changes": list(memory.changes),
        "last_change": [list(kv) for kv in memory.last_change],
        "refused": [list(kv) for kv in memory.refused],
        "held": [list(kv) for kv in memory.held], "errors": list(memory.errors)},
        separators=(",", ":"))


def memory_from_json(text: str) -> PolicyMemory:
    d = json.loads(text)
    if d.get("format") != FORMAT:
        raise ValueError(f"policy memory of format {d.get('format')!r}; this cems reads "
                         f"format {FORMAT}")
    return PolicyMemory(tuple(action_in(a) for a in d["actions"]), d["next_id"],
                        tuple(d["changes"]), _pairs(d["last_change"]), _pairs(d["refused"]),
                        _pairs(d["held"]), tuple(d["errors"]))
