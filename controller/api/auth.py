"""Bearer-token authentication as a gRPC server interceptor (shell).

The interceptor turns the request's "authorization: Bearer <token>" into a Principal (or
None), or, without a token, the client certificate of an mTLS connection, and makes it
available to the servicer through current_principal(); deciding what the principal may do
is the core's job (controller.csm.rules.authorize).
"""

import contextvars
from typing import Callable

import grpc

from controller.csm.model import Principal, Role

_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "cems_principal", default=None)


def current_principal() -> Principal | None:
    return _PRINCIPAL.get()


def _bearer(metadata) -> str | None:
    for key, value in metadata or ():
        if key == "authorization" and value.startswith("Bearer "):
            return value[len("Bearer "):].strip()
    return None


def principal_from_certificate(context) -> Principal | None:
    """With mTLS, the client certificate's common name names the principal:
    "domain-manager", "customer:ID" or "peer-domain:ID". None without one."""
    names = context.auth_context().get("x509_common_name") or []
    if not names:
        return None
    role_text, _, customer_id = names[0].decode(errors="replace").partition(":")
    try:
        role = Role(role_text)
    except ValueError:
        return None
    if role != Role.DOMAIN_MANAGER and not customer_id:
        return None
    return Principal(role, customer_id, "x509")


class BearerAuthInterceptor(grpc.ServerInterceptor):
    """Resolves bearer tokens for the methods of `services` (full service names)."""

    def __init__(self, resolve: Callable[[str], Principal | None], services: tuple[str, ...]):
        self._resolve = resolve
        self._prefixes = tuple(f"/{name}/" for name in services)

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.startswith(self._prefixes):
            return handler
        token = _bearer(handler_call_details.invocation_metadata)
        resolve = self._resolve

        def wrap(behaviour):
            def with_principal(request, context):
                principal = resolve(token) if token else principal_from_certificate(context)
                reset = _PRINCIPAL.set(principal)
                try:
                    return behaviour(request, context)
                finally:
                    _PRINCIPAL.reset(reset)
            return with_principal

        if handler.unary_unary is None:
            raise TypeError(f"{handler_call_details.method}: only unary methods are protected")
        return grpc.unary_unary_rpc_method_handler(
            wrap(handler.unary_unary), request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)


class GatedServicer:
    """Base of the servicers behind authentication: each method runs its work through the
    core's Gate (authorization and audit) and answers a Refused with its status and text."""

    def __init__(self, gate):
        self.gate = gate  # controller.csm.service.Gate

    def _run(self, context, action: str, customer_id: str, work, own: bool = False):
        """work(customer_id) -> reply, for the caller of this request."""
        from controller.csm.rules import Refused  # pylint: disable=import-outside-toplevel
        try:
            return self.gate.run(current_principal(), action, customer_id, work, own)
        except Refused as refused:
            context.abort(getattr(grpc.StatusCode, refused.code), refused.message)
