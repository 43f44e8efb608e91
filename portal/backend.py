"""The portal's calls to the controller (shell: gRPC only).

The portal is a gRPC client of the controller like cemsctl: it never touches the store, and
every call carries the signed-in person's own token, so the controller decides what each may
see and do, with the same rules and audit as for any other client. A refusal comes back as
Refusal with the controller's own message (and, for an SLS change that is too soon, when the
next one is allowed).
"""

from __future__ import annotations

import dataclasses

import grpc
from cems.v1 import customer_pb2, customer_pb2_grpc, policy_pb2, policy_pb2_grpc
from cems.v1 import probe_pb2, probe_pb2_grpc, qoe_pb2, qoe_pb2_grpc, status_pb2
from cems.v1 import status_pb2_grpc

from client.channel import connect

RETRY_AFTER_KEY = "cems-retry-after-unix-s"   # controller.api.auth.RETRY_AFTER_KEY


@dataclasses.dataclass
class Refusal(Exception):
    code: str                       # the gRPC status name: PERMISSION_DENIED, ...
    message: str
    retry_after_unix_s: float | None = None

    def __str__(self) -> str:
        return self.message


def _refusal(err: grpc.RpcError, address: str) -> Refusal:
    code = err.code()
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return Refusal(code.name, f"the controller at {address} does not answer "
                                  f"({err.details() or code.name}); try again in a moment")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return Refusal(code.name, f"the controller at {address} does not offer this "
                                  f"({err.details() or code.name}): it runs without that part")
    retry = None
    for key, value in err.trailing_metadata() or ():
        if key == RETRY_AFTER_KEY:
            try:
                retry = float(value)
            except ValueError:
                pass
    return Refusal(code.name, err.details() or code.name, retry)


class Controller:
    def __init__(self, address: str, tls_ca: str = "", timeout_s: float = 5.0):
        self.address = address
        self.timeout_s = timeout_s
        self.channel = connect(address, tls_ca=tls_ca)
        self.status = status_pb2_grpc.StatusServiceStub(self.channel)
        self.sla = customer_pb2_grpc.SlaServiceStub(self.channel)
        self.sls = customer_pb2_grpc.SlsServiceStub(self.channel)
        self.report = customer_pb2_grpc.ReportServiceStub(self.channel)
        self.qoe = qoe_pb2_grpc.QoeServiceStub(self.channel)
        self.policy = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.mirror = probe_pb2_grpc.MirrorServiceStub(self.channel)
        self.active = probe_pb2_grpc.ActiveTestServiceStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def call(self, token: str, method, request):
        """One call with `token` as its credential; Refusal on any error."""
        try:
            return method(request, timeout=self.timeout_s,
                          metadata=(("authorization", f"Bearer {token}"),))
        except grpc.RpcError as err:
            raise _refusal(err, self.address) from None

    # -- who --------------------------------------------------------------------------------
    def whoami(self, token: str) -> tuple[str, str]:
        """(role, customer or probe id) of a token, as the controller knows it."""
        status = self.call(token, self.status.GetStatus, status_pb2.GetStatusRequest())
        return status.caller_role, status.caller_id

    # -- a customer ---------------------------------------------------------------------------
    def sla_of(self, token, customer_id):
        return self.call(token, self.sls.GetSla,
                         customer_pb2.GetSlaRequest(customer_id=customer_id)).sla

    def sls_of(self, token, customer_id):
        return self.call(token, self.sls.GetSls,
                         customer_pb2.GetSlsRequest(customer_id=customer_id)).sls

    def change_sls(self, token, customer_id, service_class: int, rate_bps: int):
        return self.call(token, self.sls.ChangeSls, customer_pb2.ChangeSlsRequest(
            customer_id=customer_id, service_class=service_class, rate_bps=rate_bps))

    def experience(self, token, customer_id, history_s: float = 3600.0):
        return self.call(token, self.qoe.GetExperience, qoe_pb2.GetExperienceRequest(
            customer_id=customer_id, history_s=history_s))

    def report_of(self, token, customer_id, start_unix_s=0.0, end_unix_s=0.0):
        return self.call(token, self.report.GetReport, customer_pb2.GetReportRequest(
            customer_id=customer_id, start_unix_s=start_unix_s, end_unix_s=end_unix_s))

    def zoom(self, token, customer_id, reason: str):
        return self.call(token, self.qoe.RequestZoom, qoe_pb2.ZoomRequest(
            customer_id=customer_id, reason=reason)).zoom

    def decisions(self, token, customer_id="", count: int = 30):
        """The newest decisions (newest first) among the last 500 the controller logged."""
        last = self.call(token, self.policy.ListDecisions,
                         policy_pb2.ListDecisionsRequest(limit=1, customer_id=customer_id)
                         ).last_seq
        reply = self.call(token, self.policy.ListDecisions, policy_pb2.ListDecisionsRequest(
            after_seq=max(0, last - 500), limit=1000, customer_id=customer_id))
        return list(reversed(reply.decisions))[:count]

    # -- the operator -------------------------------------------------------------------------
    def network(self, token):
        return (self.call(token, self.status.GetStatus, status_pb2.GetStatusRequest()),
                self.call(token, self.status.GetTopology, status_pb2.GetTopologyRequest()),
                self.call(token, self.status.ListPorts, status_pb2.ListPortsRequest()).ports)

    def customers(self, token):
        return self.call(token, self.sla.ListCustomers,
                         customer_pb2.ListCustomersRequest(limit=10_000)).customers

    def worst(self, token, count: int = 20):
        return self.call(token, self.qoe.ListExperience,
                         qoe_pb2.ListExperienceRequest(limit=count)).experience

    def findings(self, token):
        return self.call(token, self.qoe.ListFindings, qoe_pb2.ListFindingsRequest()).findings

    def policy_status(self, token):
        return self.call(token, self.policy.GetPolicy, policy_pb2.GetPolicyRequest())

    def mirror_rules(self, token):
        return self.call(token, self.mirror.ListMirrorRules, probe_pb2.ListMirrorRulesRequest())

    def stamp_tests(self, token):
        return self.call(token, self.active.ListStampTests,
                         probe_pb2.ListStampTestsRequest()).tests

    def create_customer(self, token, customer, sla):
        return self.call(token, self.sla.CreateCustomer, customer_pb2.CreateCustomerRequest(
            customer=customer, sla=sla))

    def update_sla(self, token, sla):
        return self.call(token, self.sla.UpdateSla, customer_pb2.UpdateSlaRequest(sla=sla))
