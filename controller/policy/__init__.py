"""Control level: the policy engine that turns degraded experience into actions (core).

- model: what the engine decides from (Snapshot) and what it decides (Intent, Action,
  Decision);
- twin: the experience twin, an M/M/1/K model per egress feeding the quality models, which
  predicts each candidate's effect;
- engine: decide(snapshot, memory, config), with the guardrails (cooldown, caps, floors,
  revert with hysteresis, rollback, dry-run) and the measured error of the twin;
- compile: the actions in force as flows and meters of cookie component POLICY, one more
  desired-state contributor (controller.openflow.desired), reconciled like every other.

Not yet built (issue "Closed loop"): the shell that makes a snapshot from the controller's
state every second and stores the decision log, PolicyService over gRPC, `cemsctl
decisions`, admission refusals and advised bitrates, and the demo of the loop.
"""
