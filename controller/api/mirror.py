"""MirrorService servicer: which customers' traffic is copied to the probe (shell).

Domain managers only (bearer token or mTLS); every change and refusal is audited like the
customer services'. The rules change through MirrorRules' own API, which tells the app.
"""

from cems.v1 import probe_pb2 as pb

from controller.api import convert
from controller.api.auth import GatedServicer
from controller.csm import rules
from controller.monitor.mirror_rules import MirrorRuleError, MirrorRules


class MirrorServicer(GatedServicer):
    def __init__(self, gate, mirror: MirrorRules):
        super().__init__(gate)
        self.mirror = mirror

    def _do(self, work):
        try:
            return work()
        except MirrorRuleError as err:
            raise rules.Refused(err.code, str(err)) from None

    def ListMirrorRules(self, request, context):
        def work(_customer_id):
            dpid, port = self.mirror.probe or (0, 0)
            return pb.ListMirrorRulesResponse(
                rules=[convert.mirror_rule_pb(r) for r in self.mirror.rules()],
                probe_dpid=dpid, probe_port=port)
        return self._run(context, "manage", "", work)

    def SetMirrorRule(self, request, context):
        return self._run(context, "manage", request.customer_id, lambda _c: convert.mirror_rule_pb(
            self._do(lambda: self.mirror.set(convert.mirror_rule_from_pb(request)))))

    def RemoveMirrorRule(self, request, context):
        def work(_customer_id):
            self._do(lambda: self.mirror.remove(request.customer_id, request.service))
            return pb.RemoveMirrorRuleResponse()
        return self._run(context, "manage", request.customer_id, work)
