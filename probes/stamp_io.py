"""STAMP session-reflector and session-sender on UDP sockets (shell).

The reflector answers every valid test packet and counts the others; the sender sends a
given number of packets at an interval and collects the answers until a timeout. Time is
read once per packet with time.time() (one clock for both ends on one host).
"""

import socket
import threading
import time

from probes.stamp import PACKET_SIZE, StampResult, StampSession, build_reflector_packet, \
    parse_sender_packet, reflect

_IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
_IP_TTL = getattr(socket, "IP_TTL", 2)


class Reflector:
    """A session-reflector bound to (host, port); serve() until stop is set."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        self.sock.bind((host, port))
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()
        self.reflected = 0
        self.malformed = 0
        self._sequence = 0

    def serve(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    data, ancillary, _flags, peer = self.sock.recvmsg(2048, 64)
                except socket.timeout:
                    continue
                t2 = time.time()
                request = parse_sender_packet(data)
                if request is None:
                    self.malformed += 1
                    continue
                ttl = next((c[2][0] for c in ancillary
                            if c[0] == socket.IPPROTO_IP and c[1] == _IP_TTL), 255)
                answer = reflect(request, self._sequence, t2, time.time(), ttl)
                self._sequence += 1
                # Symmetric size (RFC 8762 4.3): answer as long as the request.
                payload = build_reflector_packet(answer)
                self.sock.sendto(payload + bytes(max(0, len(data) - PACKET_SIZE)), peer)
                self.reflected += 1
        finally:
            self.sock.close()


def run_sender(host: str, port: int, count: int = 100, interval_s: float = 0.01,
               timeout_s: float = 1.0, bind: str = "0.0.0.0", bind_port: int = 0,
               stop: threading.Event | None = None) -> StampResult:
    """Send `count` test packets `interval_s` apart; wait `timeout_s` for the last answers.

    With `stop`, setting it ends the sending early (the answers still get their timeout)."""
    session = StampSession()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((bind, bind_port))
        sock.setblocking(False)
        deadline = None
        next_send = time.monotonic()
        sent = 0
        while True:
            now = time.monotonic()
            if stop is not None and stop.is_set() and sent < count:
                count = sent
                deadline = now + timeout_s
            if sent < count and now >= next_send:
                sock.sendto(session.next_packet(time.time()), (host, port))
                sent += 1
                next_send += interval_s
                if sent == count:
                    deadline = now + timeout_s
            if deadline is not None and now >= deadline:
                return session.result()
            try:
                data = sock.recv(2048)
                session.receive(data, time.time())
            except BlockingIOError:
                wait = (next_send if sent < count else deadline) - time.monotonic()
                time.sleep(max(0.0, min(wait, 0.002)))
