"""MirrorService servicer: which customers' traffic is copied to the probe (shell).

Domain managers only (bearer token or mTLS); every change and refusal is audited like the
customer services'. A change takes effect at the controller's next reconciliation.
"""

from cems.v1 import probe_pb2 as pb

from controller.api.customer import _Base
from controller.csm import rules
from controller.monitor.mirror_rules import MirrorRuleError, MirrorRules
from controller.monitor.mirror import MirrorRule


def rule_pb(rule: MirrorRule) -> pb.MirrorRule:
    return pb.MirrorRule(customer_id=rule.customer_id, service=rule.service,
                         sample_percent=rule.sample_percent, origin=rule.origin)


class MirrorServicer(_Base):
    def __init__(self, mirror: MirrorRules, csm, state):
        super().__init__(csm, state)
        self.mirror = mirror  # the app reads it at every reconciliation

    @staticmethod
    def _refuse(err: MirrorRuleError):
        raise rules.Refused(err.code, str(err))

    def ListMirrorRules(self, request, context):
        def work(_principal):
            dpid, port = self.mirror.probe or (0, 0)
            return pb.ListMirrorRulesResponse(rules=[rule_pb(r) for r in self.mirror.rules()],
                                              probe_dpid=dpid, probe_port=port)
        return self._run(context, "manage", "", work)

    def SetMirrorRule(self, request, context):
        def work(_principal):
            if request.customer_id:
                self.csm.customer(request.customer_id)  # Refused(NOT_FOUND) if there is none
            try:
                rule = self.mirror.set(MirrorRule(request.customer_id, request.service,
                                                  request.sample_percent or 100))
            except MirrorRuleError as err:
                self._refuse(err)
            return rule_pb(rule)
        return self._run(context, "manage", request.customer_id, work)

    def RemoveMirrorRule(self, request, context):
        def work(_principal):
            try:
                self.mirror.remove(request.customer_id, request.service)
            except MirrorRuleError as err:
                self._refuse(err)
            return pb.RemoveMirrorRuleResponse()
        return self._run(context, "manage", request.customer_id, work)
