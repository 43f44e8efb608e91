"""Application sessions reported to the controller: what the test clients measured (shell).

`cems-probe web-client` and `cems-probe video-player` with `--controller` send each page load
or played video to QoeService.ReportSession under their probe credential; the address they
used names the customer (the controller knows which customer's device has it). The
controller answers with the quality it scored.
"""

import socket
import urllib.parse

import grpc
from cems.v1 import qoe_pb2, qoe_pb2_grpc

from client.channel import Credentials


def local_address_towards(url: str) -> str:
    """The local IP address this host uses to reach the URL's server."""
    parts = urllib.parse.urlsplit(url)
    family = socket.AF_INET6 if ":" in (parts.hostname or "") else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.connect((parts.hostname, parts.port or 80))  # no packet is sent
        return sock.getsockname()[0]


class SessionReporter:
    def __init__(self, controller: str, credentials: Credentials):
        self.channel = credentials.connect(controller)
        self.stub = qoe_pb2_grpc.QoeServiceStub(self.channel)

    def report(self, service: str, client_address: str, **fields) -> str:
        """Report one session; returns what the controller scored, or why it failed."""
        try:
            reply = self.stub.ReportSession(qoe_pb2.SessionReport(
                service=service, client_address=client_address, **fields), timeout=5)
        except grpc.RpcError as err:
            return f"not reported: {err.code().name}: {err.details()}"
        q = reply.quality
        return (f"{reply.customer_id}: {q.scale} {q.score:.2f} ({q.model})" if q.known
                else f"{reply.customer_id}: unknown ({', '.join(q.missing)})")

    def close(self) -> None:
        self.channel.close()
