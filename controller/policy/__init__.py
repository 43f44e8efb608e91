"""Control level (reserved): the policy engine that turns degraded experience into intents.

Planned shape (../shared/DESIGN.md, issue "Closed loop"): a pure decide() from a snapshot of
topology, flows, experience statuses, SLAs/SLSs and the actions in force to intents with
their reasons and predicted effects; guardrails; a what-if twin; a decision log. Its intents
reach the switches as one more desired-state contributor of cookie component POLICY
(controller.openflow.desired), reconciled like every other. Nothing is built here yet.
"""
