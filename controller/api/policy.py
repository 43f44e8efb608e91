"""PolicyService servicer: the decision log, the engine's mode, actions in force (shell).

Reading: a customer (or peer domain) sees the decisions about its own traffic and those
made for it; the domain manager sees all. Changing the mode and taking an action back are
the domain manager's, through the audited gate.
"""

import grpc
from cems.v1 import policy_pb2 as pb

from controller.api.auth import GatedServicer, current_principal, refuse
from controller.config import POLICY_MODES
from controller.csm import rules
from controller.csm.model import Role
from controller.events import DecisionMade
from controller.policy.whatif import PROPOSALS, Proposal, Unanswerable
from controller import validation

MAX_LIST = 1000


def decision_pb(logged) -> pb.Decision:
    d = logged.decision
    return pb.Decision(seq=logged.seq, time_unix_s=d.time_unix_s, kind=d.kind,
                       action_id=d.action_id, intent_kind=d.intent_kind, element=d.element,
                       customer_id=d.customer_id, reason=d.reason, inputs=dict(d.inputs),
                       predicted=dict(d.predicted), observed=dict(d.observed),
                       dry_run=d.dry_run, for_customers=list(d.for_customers))


def action_pb(action) -> pb.Action:
    i = action.intent
    return pb.Action(action_id=action.action_id, intent_kind=i.kind, element=i.element,
                     customer_id=i.customer_id, reason=i.reason,
                     applied_unix_s=action.applied_unix_s, rate_bps=i.rate_bps,
                     service_class=i.service_class, path=list(i.path),
                     dry_run=action.dry_run,
                     for_customers=sorted({c for c, _ in i.for_services}))


def element_prediction_pb(p) -> pb.ElementPrediction:
    return pb.ElementPrediction(
        element=p.element, utilisation_before=p.utilisation_before,
        utilisation_after=p.utilisation_after, loss_before=p.loss_before,
        loss_after=p.loss_after, delay_ms_before=p.delay_ms_before,
        delay_ms_after=p.delay_ms_after,
        scores_before={f"{c}/{s}": v for (c, s), v in p.scores_before.items()},
        scores_after={f"{c}/{s}": v for (c, s), v in p.scores_after.items()})


ASSUMPTION = ("the traffic stays what it is now, capped at a proposed rate; each element is "
              "an M/M/1/K queue (controller/policy/twin.py)")
SERVICES = ("iptv", "video", "voice", "web", "bulk")


def _service(service: str) -> str:
    if service not in SERVICES:
        raise ValueError(f"service {validation.shown(service)} must be one of "
                         f"{', '.join(SERVICES)}")
    return service


def _sees(principal, logged) -> bool:
    if principal.role == Role.DOMAIN_MANAGER:
        return True
    d = logged.decision
    return principal.customer_id in (d.customer_id,) + tuple(d.for_customers)


class PolicyServicer(GatedServicer):
    def __init__(self, gate, policy, bus, stop_event=None):
        super().__init__(gate)
        self.policy = policy          # controller.policy_loop.PolicyLoop
        self.bus = bus
        self.stop_event = stop_event

    def _reader(self, context, customer_id: str = "") -> tuple:
        principal = current_principal()
        try:
            rules.authorize(principal, "read_experience", customer_id)
            if customer_id:
                rules.check_customer_id(customer_id)
        except rules.Refused as refused:
            refuse(context, refused)
        if principal.role in (Role.CUSTOMER, Role.PEER_DOMAIN):
            customer_id = principal.customer_id
        return principal, customer_id

    def ListDecisions(self, request, context):
        _, customer_id = self._reader(context, request.customer_id)
        if request.limit > MAX_LIST:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"limit must be at most {MAX_LIST}, got {request.limit}")
        try:
            element = validation.text("element", request.element, 200)
            kinds = [validation.text("kinds", k, 20) for k in
                     validation.count("kinds", request.kinds, 10)]
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        items = self.policy.log.select(request.after_seq, request.limit or 100, customer_id,
                                       element, kinds)
        return pb.ListDecisionsResponse(decisions=[decision_pb(i) for i in items],
                                        last_seq=self.policy.log.last_seq())

    def WatchDecisions(self, request, context):
        principal, _ = self._reader(context)
        subscription = self.bus.subscribe()
        try:
            while context.is_active() and not (self.stop_event and self.stop_event.is_set()):
                item = subscription.get(timeout_s=0.5)
                if isinstance(item, DecisionMade) and _sees(principal, item.logged):
                    yield decision_pb(item.logged)
        finally:
            subscription.close()

    def _status(self) -> pb.PolicyStatus:
        mode, actions, evaluations, error, outcomes = self.policy.status()
        return pb.PolicyStatus(mode=mode, actions=[action_pb(a) for a in actions],
                               evaluations=evaluations, twin_mean_abs_error=error,
                               twin_outcomes=outcomes)

    def GetPolicy(self, request, context):
        principal, customer_id = self._reader(context)
        status = self._status()
        if principal.role != Role.DOMAIN_MANAGER:
            mine = [a for a in status.actions
                    if customer_id in (a.customer_id,) + tuple(a.for_customers)]
            del status.actions[:]
            status.actions.extend(mine)
        return status

    def SetPolicyMode(self, request, context):
        def work(_customer_id):
            if request.mode not in POLICY_MODES:
                raise rules.Refused("INVALID_ARGUMENT", f"mode {validation.shown(request.mode)} "
                                    f"must be one of {', '.join(POLICY_MODES)}")
            self.policy.set_mode(request.mode, current_principal().describe())
            return self._status()
        return self._run(context, "manage", "", work)

    def RevertAction(self, request, context):
        def work(_customer_id):
            who = current_principal().describe()
            if not self.policy.revert(request.action_id, who):
                raise rules.Refused("NOT_FOUND", f"no action {request.action_id} in force "
                                    "(`cemsctl policy` lists them)")
            return self._status()
        return self._run(context, "manage", "", work)

    def WhatIf(self, request, context):
        """A question, not a change: authorized as the domain manager's, not audited."""
        try:
            rules.authorize(current_principal(), "manage")
        except rules.Refused as refused:
            refuse(context, refused)

        def work():
            if request.kind not in PROPOSALS:
                raise rules.Refused("INVALID_ARGUMENT", f"kind {validation.shown(request.kind)} "
                                    f"must be one of {', '.join(PROPOSALS)}")
            try:
                rules.check_customer_id(request.customer_id)
                proposal = Proposal(request.kind, request.customer_id,
                                    int(validation.number("rate_bps", request.rate_bps, 0,
                                                          1e12)),
                                    validation.text("service_class", request.service_class, 20),
                                    validation.text("service", request.service, 20),
                                    validation.text("element", request.element, 200))
                predictions = self.policy.what_if(proposal)
            except (ValueError, Unanswerable) as err:
                code = "FAILED_PRECONDITION" if isinstance(err, Unanswerable) \
                    else "INVALID_ARGUMENT"
                raise rules.Refused(code, str(err)) from None
            return pb.WhatIfResponse(elements=[element_prediction_pb(p) for p in predictions],
                                     model=predictions[0].model if predictions else "",
                                     assumption=ASSUMPTION)
        try:
            return work()
        except rules.Refused as refused:
            refuse(context, refused)

    def _own_host(self, context, customer_id: str) -> None:
        """A customer asks about its own hosts only."""
        principal = current_principal()
        if principal.role in (Role.CUSTOMER, Role.PEER_DOMAIN) and \
                customer_id != principal.customer_id:
            refuse(context, rules.Refused("PERMISSION_DENIED", f"{principal.role.value} "
                                          f"{principal.customer_id} asks about its own hosts "
                                          "only"))

    def AdmitSession(self, request, context):
        try:
            service = _service(request.service)
            rate = validation.number("rate_bps", request.rate_bps, 1, 1e12)
            src = validation.ip_address("src_address", request.src_address)
            dst = validation.ip_address("dst_address", request.dst_address)
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            src_mac, dst_mac, customer = self.policy.session_hosts(src, dst)
            self._own_host(context, customer)
            answer, seq = self.policy.admit(service, rate, src_mac, dst_mac, customer)
        except Unanswerable as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        response = pb.AdmitSessionResponse(admitted=answer.admitted, reason=answer.reason,
                                           element=answer.element, customer_id=customer,
                                           decision_seq=seq)
        if answer.prediction is not None:
            response.prediction.CopyFrom(element_prediction_pb(answer.prediction))
        return response

    def GetAdvice(self, request, context):
        try:
            service = _service(request.service or "video")
            address = validation.ip_address("address", request.address)
        except ValueError as err:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        try:
            self._own_host(context, self.policy.host_of(address)[1])
            advice, customer = self.policy.advice(service, address)
        except Unanswerable as err:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(err))
        return pb.Advice(bitrate_bps=advice.bitrate_bps, reason=advice.reason,
                         element=advice.element, customer_id=customer)
