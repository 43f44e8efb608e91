"""Test-service traffic that reports its own ground truth (shell: sockets and clocks).

Voice: G.711 (PCMU) RTP at 50 packets/s, 160-byte payloads, correct sequence numbers,
timestamps and SSRC (RFC 3550/3551). What was sent is returned, so tests can compare the
probe's view with the truth.
"""

import dataclasses
import os
import socket
import struct
import time

from probes.tsgen import TsMuxer


@dataclasses.dataclass(frozen=True)
class SentTruth:
    packets: int
    bytes: int
    first_s: float
    last_s: float
    ssrc: int = 0


def send_voice(host: str, port: int, seconds: float, packets_per_second: int = 50,
               payload_type: int = 0, ssrc: int | None = None) -> SentTruth:
    """G.711 RTP to host:port for `seconds`; returns what was sent."""
    ssrc = int.from_bytes(os.urandom(4), "big") if ssrc is None else ssrc
    samples = 8000 // packets_per_second
    payload = b"\xff" * samples
    interval = 1.0 / packets_per_second

    def packets():
        for sequence in range(int(seconds * packets_per_second)):
            marker = 0x80 if sequence == 0 else 0
            yield (struct.pack("!BBHII", 0x80, payload_type | marker, sequence & 0xFFFF,
                               (sequence * samples) & 0xFFFFFFFF, ssrc) + payload,
                   sequence * interval)
    sent, size, first, last = _send_paced(host, port, packets())
    return SentTruth(sent, size, first, last, ssrc)


IPTV_BITRATE_BPS = 4_000_000


def send_iptv(host: str, port: int, seconds: float,
              bitrate_bps: float = IPTV_BITRATE_BPS) -> SentTruth:
    """Constant-bitrate MPEG-TS over UDP, seven TS packets per datagram (probes/tsgen.py)."""
    muxer = TsMuxer(bitrate_bps=bitrate_bps)
    count = int(seconds * bitrate_bps / (7 * 188 * 8))
    return SentTruth(*_send_paced(host, port, muxer.datagrams(count)))


def _send_paced(host: str, port: int, datagrams) -> tuple[int, int, float, float]:
    """Send (payload, seconds after the start) pairs on time over UDP; returns (datagrams,
    bytes, time of the first send, time of the last send)."""
    sent = size = 0
    first = last = time.time()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        start = time.monotonic()
        for payload, at in datagrams:
            wait = start + at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            sock.sendto(payload, (host, port))
            last = time.time()
            if sent == 0:
                first = last
            sent += 1
            size += len(payload)
    return sent, size, first, last
