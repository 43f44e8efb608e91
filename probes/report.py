"""Applications and the controller: sessions reported, admission asked, advice followed (shell).

`cems-probe web-client` and `cems-probe video-player` with `--controller` send each page load
or played video to QoeService.ReportSession under their probe credential; the address they
used names the customer (the controller knows which customer's device has it). The
controller answers with the quality it scored.

PolicyClient is the other direction: `cems-probe gen-iptv --controller` asks
PolicyService.AdmitSession before it starts a stream and does not start a refused one;
`cems-probe video-player --controller` asks PolicyService.GetAdvice before each segment and
stays at or below the advised bitrate.
"""

import socket
import sys
import urllib.parse

import grpc
from cems.v1 import policy_pb2, policy_pb2_grpc, qoe_pb2, qoe_pb2_grpc

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


class PolicyClient:
    """Admission and advice from the controller's policy engine."""

    def __init__(self, controller: str, credentials: Credentials):
        self.channel = credentials.connect(controller)
        self.stub = policy_pb2_grpc.PolicyServiceStub(self.channel)
        self.last_error = ""

    def admit(self, service: str, rate_bps: float, src: str, dst: str):
        """The AdmitSessionResponse; raises grpc.RpcError when the controller cannot say."""
        return self.stub.AdmitSession(policy_pb2.AdmitSessionRequest(
            service=service, rate_bps=int(rate_bps), src_address=src, dst_address=dst),
            timeout=5)

    def advice(self, address: str, service: str = "video") -> int:
        """The advised bitrate, 0 for none. When the controller cannot answer the player
        plays on its own judgement: 0, and last_error says why (reported once per cause)."""
        try:
            return self.stub.GetAdvice(policy_pb2.GetAdviceRequest(
                service=service, address=address), timeout=2).bitrate_bps
        except grpc.RpcError as err:
            error = f"{err.code().name}: {err.details()}"
            if error != self.last_error:
                self.last_error = error
                print(f"cems-probe: no advice from the controller ({error}); playing on",
                      file=sys.stderr, flush=True)
            return 0

    def close(self) -> None:
        self.channel.close()
