"""A gRPC channel to cems with its credentials: TLS or mTLS, and a bearer token (shell).

The token is read from, in this order: an explicit value, a file (--token-file), the
environment ($CEMS_TOKEN, or a file named by $CEMS_TOKEN_FILE); it never has to be on a
command line, where other users of the machine could read it. It is sent with every call
as "authorization: Bearer <token>". Addresses are HOST:PORT or unix:PATH.
"""

import collections
import dataclasses
import os

import grpc


class TokenError(ValueError):
    """A token file cannot be read, or holds no token."""


def read_token(token: str = "", token_file: str = "", environ=None) -> str:
    """The bearer token to use ('' for none)."""
    environ = os.environ if environ is None else environ
    if token:
        return token.strip()
    token_file = token_file or environ.get("CEMS_TOKEN_FILE", "")
    if token_file:
        try:
            with open(token_file, encoding="utf-8") as stream:
                text = stream.read().strip()
        except OSError as err:
            raise TokenError(f"cannot read the token file {token_file}: {err.strerror}") \
                from None
        if not text:
            raise TokenError(f"the token file {token_file} is empty")
        return text.splitlines()[-1].strip()
    return environ.get("CEMS_TOKEN", "").strip()


class _Details(collections.namedtuple("_Details", ("method", "timeout", "metadata",
                                                   "credentials", "wait_for_ready",
                                                   "compression")), grpc.ClientCallDetails):
    pass


class _Bearer(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
              grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor):
    def __init__(self, token: str):
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details):
        metadata = list(details.metadata or ())
        if any(key == "authorization" for key, _ in metadata):
            return details  # a call that brings its own credential keeps it
        return _Details(details.method, details.timeout, metadata + [self._header],
                        details.credentials, getattr(details, "wait_for_ready", None),
                        getattr(details, "compression", None))

    def intercept_unary_unary(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_unary_stream(self, continuation, details, request):
        return continuation(self._with_token(details), request)

    def intercept_stream_unary(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)

    def intercept_stream_stream(self, continuation, details, request_iterator):
        return continuation(self._with_token(details), request_iterator)


def _read(path: str) -> bytes:
    with open(path, "rb") as stream:
        return stream.read()


def connect(address: str, token: str = "", tls_ca: str = "", tls_cert: str = "",
            tls_key: str = "") -> grpc.Channel:
    """A channel to `address`: TLS trusting `tls_ca` when given (with `tls_cert` and
    `tls_key`, mTLS), and `token` on every call when given."""
    if tls_ca:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=_read(tls_ca),
            private_key=_read(tls_key) if tls_key else None,
            certificate_chain=_read(tls_cert) if tls_cert else None)
        channel = grpc.secure_channel(address, credentials)
    else:
        channel = grpc.insecure_channel(address)
    return grpc.intercept_channel(channel, _Bearer(token)) if token else channel


def add_arguments(parser) -> None:
    """--token-file and the TLS options, for a command-line client."""
    parser.add_argument("--token-file", default="", metavar="PATH",
                        help="file holding the bearer token (default: $CEMS_TOKEN, or the "
                             "file named by $CEMS_TOKEN_FILE)")
    parser.add_argument("--tls-ca", default="", metavar="PEM",
                        help="connect with TLS, trusting this CA for the server certificate")
    parser.add_argument("--tls-cert", default="", metavar="PEM",
                        help="client certificate for mTLS (with --tls-key)")
    parser.add_argument("--tls-key", default="", metavar="PEM")


@dataclasses.dataclass(frozen=True)
class Credentials:
    """What a client presents: a bearer token and/or TLS files (all optional)."""

    token: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    @staticmethod
    def from_args(args) -> "Credentials":
        """From the options add_arguments() added (and the environment for the token)."""
        return Credentials(read_token(getattr(args, "token", ""), args.token_file),
                           args.tls_ca, args.tls_cert, args.tls_key)

    def connect(self, address: str) -> grpc.Channel:
        return connect(address, self.token, self.tls_ca, self.tls_cert, self.tls_key)
