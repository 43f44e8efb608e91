"""Who is asking, and may they call this method at all (shell).

Every method of a cems service needs a principal: a bearer token ("authorization: Bearer
<token>") or, without one, the client certificate of an mTLS connection, whose common name
names it ("domain-manager", "customer:ID", "peer-domain:ID", "probe:ID"). METHOD_ACTIONS
gives each method the action it is (controller.csm.rules.ACTIONS says which roles may do
it); a method without a rule is refused to everyone. Health and reflection are open: they
tell nothing about any customer. What a principal may see within a method it may call (a
customer only its own) is the servicer's and the core's to scope, through
current_principal().

Refusals here are counted by code (`refusals`), not written to the audit log one row each:
an unauthenticated flood must not fill the store.
"""

import collections
import contextvars
import threading
from typing import Callable

import grpc

from controller.csm import rules
from controller.csm.model import Principal, Role

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "cems_principal", default=None)

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")

_ALL = {
    "StatusService": {"GetStatus": "read_status", "GetTopology": "read_network",
                      "ListFlows": "read_network", "ListPorts": "read_network",
                      "ListMeters": "read_network", "WatchEvents": "read_network"},
    "ProbeService": {"ExportRecords": "probe", "WatchTasks": "probe", "ListKpis": "read_kpis"},
    "ActiveTestService": {"StartStampTest": "manage", "StopStampTest": "manage",
                          "ListStampTests": "manage"},
    "MirrorService": {"ListMirrorRules": "manage", "SetMirrorRule": "manage",
                      "RemoveMirrorRule": "manage"},
    "SlaService": {"CreateCustomer": "manage", "GetCustomer": "manage",
                   "ListCustomers": "manage", "UpdateSla": "manage",
                   "DeleteCustomer": "manage", "CreateToken": "manage",
                   "ListTokens": "manage", "RevokeToken": "manage"},
    "SlsService": {"GetSla": "read_sla", "GetSls": "read_sls", "ChangeSls": "change_sls"},
    "ReportService": {"GetReport": "read_report"},
    "NetworkService": {"ForgetHost": "manage"},
    "QoeService": {"GetExperience": "read_experience", "ListExperience": "read_experience",
                   "WatchExperience": "read_experience", "ReportSession": "report_session",
                   "RequestZoom": "zoom", "ListFindings": "manage"},
    "PolicyService": {"ListDecisions": "read_experience", "WatchDecisions": "read_experience",
                      "GetPolicy": "read_experience", "SetPolicyMode": "manage",
                      "RevertAction": "manage", "WhatIf": "manage",
                      "AdmitSession": "ask_policy", "GetAdvice": "ask_policy"},
}
METHOD_ACTIONS = {f"/cems.v1.{service}/{method}": action
                  for service, methods in _ALL.items() for method, action in methods.items()}


def current_principal() -> Principal | None:
    return _PRINCIPAL.get()


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


def principal_from_certificate(context) -> Principal | None:
    """With mTLS, the client certificate's common name names the principal:
    "domain-manager", "customer:ID", "peer-domain:ID" or "probe:ID". None without one."""
    names = context.auth_context().get("x509_common_name") or []
    if not names:
        return None
    role_text, _, subject = names[0].decode(errors="replace").partition(":")
    try:
        role = Role(role_text)
    except ValueError:
        return None
    if role == Role.DOMAIN_MANAGER:
        return Principal(role, "", "x509")
    if not subject:
        return None
    if role == Role.PROBE:
        return Principal(role, "", "x509", subject)
    return Principal(role, subject, "x509")


class AuthInterceptor(grpc.ServerInterceptor):
    """Resolves the principal of every call to a cems method and refuses it unless the
    method's rule allows the principal's role; the servicer sees it as current_principal()."""

    def __init__(self, resolve: Callable[[str], Principal | None]):
        self._resolve = resolve
        self._lock = threading.Lock()
        self.refusals: collections.Counter = collections.Counter()  # (code, method) -> n

    def _admit(self, method: str, token: str | None, context) -> Principal:
        principal = self._resolve(token) if token else principal_from_certificate(context)
        action = METHOD_ACTIONS.get(method)
        try:
            if action is None:
                raise rules.Refused("PERMISSION_DENIED",
                                    f"{method} has no access rule; it is refused to everyone")
            rules.authorize(principal, action)
        except rules.Refused as refused:
            with self._lock:
                self.refusals[(refused.code, method)] += 1
            context.abort(getattr(grpc.StatusCode, refused.code), refused.message)
        return principal

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        token = _bearer(handler_call_details.invocation_metadata)
        admit = self._admit

        def call(behaviour):
            def answered(request, context):
                reset = _PRINCIPAL.set(admit(method, token, context))
                try:
                    return behaviour(request, context)
                finally:
                    _PRINCIPAL.reset(reset)
            return answered

        def stream(behaviour):
            def streamed(request, context):
                # The generator's body runs as the server iterates it, on one worker thread:
                # the principal is set for the whole of it.
                reset = _PRINCIPAL.set(admit(method, token, context))
                try:
                    yield from behaviour(request, context)
                finally:
                    _PRINCIPAL.reset(reset)
            return streamed

        options = {"request_deserializer": handler.request_deserializer,
                   "response_serializer": handler.response_serializer}
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(call(handler.unary_unary), **options)
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(call(handler.stream_unary), **options)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(stream(handler.unary_stream), **options)
        return grpc.stream_stream_rpc_method_handler(stream(handler.stream_stream), **options)


class GatedServicer:
    """Base of the servicers whose requests are audited: each method runs its work through
    the core's Gate (authorization with the customer's scope, and audit) and answers a
    Refused with its status and text."""

    def __init__(self, gate):
        self.gate = gate  # controller.csm.service.Gate

    def _run(self, context, action: str, customer_id: str, work, own: bool = False):
        """work(customer_id) -> reply, for the caller of this request."""
        try:
            return self.gate.run(current_principal(), action, customer_id, work, own)
        except rules.Refused as refused:
            refuse(context, refused)


RETRY_AFTER_KEY = "cems-retry-after-unix-s"


def refuse(context, refused: rules.Refused):
    """Answer a Refused with its status and message, and when a retry may succeed (unix
    time, trailing metadata RETRY_AFTER_KEY) if the rule says."""
    if refused.retry_after_unix_s is not None:
        context.set_trailing_metadata(((RETRY_AFTER_KEY, f"{refused.retry_after_unix_s:.3f}"),))
    context.abort(getattr(grpc.StatusCode, refused.code), refused.message)
