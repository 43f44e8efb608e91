"""Synthetic packet traces of the test services, with their labels (core: data, no I/O).

Each trace is what a probe would see of one flow: packet times, IP sizes, directions and the
first payload. The shapes follow the traffic generators cems uses in Mininet (G.711 RTP at
50 packets/s, CBR MPEG-TS of seven packets per datagram, segment-by-segment adaptive video
over HTTP, web page loads with think times, bulk TCP); randomness comes from a seed, so the
same seed gives the same flow.
"""

import dataclasses
import struct

import numpy as np

from probes.tsgen import TsMuxer

SERVICES = ("voice", "iptv", "video", "web", "bulk")


@dataclasses.dataclass(frozen=True)
class FlowTrace:
    service: str
    transport: str
    src_port: int
    dst_port: int
    times_s: np.ndarray
    sizes: np.ndarray
    downstream: np.ndarray
    first_payload: bytes


def _tcp_transfer(rng, start, nbytes, rate_bps, mss=1448):
    """Downstream data packets of a transfer at rate_bps with ACKs upstream every 2 packets.

    TCP sends in bursts: a window's worth of packets back to back (here 2 to 32, at about
    1 Gbit/s), then a pause until the ACKs open the window again, so that on average it runs
    at rate_bps. Gaps between packets are therefore far from regular (a coefficient of
    variation of 3.5 on an iperf3 upload captured at a customer's device in the emulated
    access network), not the Poisson arrivals (1.0) of an earlier version, with which the
    flow model took that upload for web with a posterior of 1.00."""
    count = max(1, int(nbytes // mss))
    gap = (mss + 52) * 8 / rate_bps
    wire = (mss + 52) * 8 / 1e9
    gaps = np.empty(count)
    i = 0
    while i < count:
        burst = min(count - i, int(rng.integers(2, 33)))
        gaps[i:i + burst] = rng.uniform(0.5, 1.5, burst) * wire
        # the pause makes the burst's average gap the rate's
        gaps[i] += max(0.0, burst * gap - gaps[i:i + burst].sum()) * rng.uniform(0.7, 1.3)
        i += burst
    data_t = start + np.cumsum(gaps)
    ack_t = data_t[1::2] + rng.uniform(0.0005, 0.003, len(data_t[1::2]))
    times = np.concatenate([data_t, ack_t])
    sizes = np.concatenate([np.full(count, mss + 52), np.full(len(ack_t), 52)])
    down = np.concatenate([np.ones(count, bool), np.zeros(len(ack_t), bool)])
    return times, sizes, down


def _voice(rng, duration):
    n = int(duration * 50)
    base = np.arange(n) * 0.02
    up = base + rng.normal(0, 0.002, n)
    down = base + 0.007 + rng.normal(0, 0.002, n)
    times = np.concatenate([up, down])
    sizes = np.full(2 * n, 200)
    direction = np.concatenate([np.zeros(n, bool), np.ones(n, bool)])
    rtp = struct.pack("!BBHII", 0x80, 0, 1, 160, 0x1234) + b"\xff" * 160
    return "udp", int(rng.integers(16384, 32768)), int(rng.integers(16384, 32768)), \
        times, sizes, direction, rtp


def _iptv(rng, duration):
    rate = rng.uniform(2e6, 8e6)
    n = int(duration * rate / (7 * 188 * 8))
    times = np.arange(n) * (7 * 188 * 8 / rate) + rng.normal(0, 0.0005, n)
    datagram = TsMuxer(bitrate_bps=rate).datagrams(1)[0][0]
    return "udp", int(rng.integers(1024, 65535)), 1234, times, np.full(n, 7 * 188 + 28), \
        np.ones(n, bool), datagram


def _video(rng, duration):
    bitrate = rng.choice([1e6, 2.5e6, 5e6])
    segment_s = rng.choice([2.0, 4.0])
    link = rng.uniform(15e6, 40e6)
    parts, t = [], 0.0
    while t < duration:
        parts.append(_tcp_transfer(rng, t, bitrate * segment_s / 8, link))
        t += segment_s
    times, sizes, down = (np.concatenate(p) for p in zip(*parts))
    request = b"GET /video/seg_%d.m4s HTTP/1.1\r\nHost: media.example\r\n\r\n" % rng.integers(1, 999)
    return "tcp", int(rng.integers(32768, 61000)), 80, times, sizes, down, request


def _web(rng, duration):
    """Either one keep-alive connection over several pages with think times, or (as
    browsers mostly do, and probes/web.py's client) one of a page's parallel connections:
    a few objects one after the other, a round trip apart, then closed."""
    parts, t = [], 0.0
    if rng.random() < 0.5:
        rtt = rng.uniform(0.002, 0.05)
        for _ in range(int(rng.integers(1, 6))):
            size = rng.lognormal(10.5, 0.8)
            rate = rng.uniform(5e6, 30e6)
            parts.append(_tcp_transfer(rng, t, size, rate))
            t += size * 8 / rate + rtt
    while t < duration and not parts:
        for _ in range(int(rng.integers(3, 12))):  # objects of one page
            parts.append(_tcp_transfer(rng, t, rng.lognormal(9.5, 1.2), rng.uniform(5e6, 30e6)))
            t += rng.exponential(0.05)
        t += rng.exponential(6.0)  # think time
    times, sizes, down = (np.concatenate(p) for p in zip(*parts))
    request = b"GET /index.html HTTP/1.1\r\nHost: www.example\r\n\r\n"
    return "tcp", int(rng.integers(32768, 61000)), 80, times, sizes, down, request


def _bulk(rng, duration):
    """A transfer of some seconds or more, a download or (backups, uploads) an upload."""
    rate = rng.uniform(5e6, 50e6)
    seconds = rng.uniform(min(2.0, duration), duration)
    times, sizes, down = _tcp_transfer(rng, 0.0, rate * seconds / 8, rate)
    if rng.random() < 0.5:
        down = ~down
    return "tcp", int(rng.integers(32768, 61000)), int(rng.integers(1024, 65535)), \
        times, sizes, down, bytes(rng.integers(0, 256, 64, dtype=np.uint8))


_MAKERS = {"voice": _voice, "iptv": _iptv, "video": _video, "web": _web, "bulk": _bulk}


def generate_flow(service: str, seed: int, duration_s: float = 20.0) -> FlowTrace:
    """One labelled flow of `service`, reproducible from `seed`."""
    if service not in _MAKERS:
        raise ValueError(f"unknown service {service!r}; known: {', '.join(SERVICES)}")
    rng = np.random.default_rng([seed, SERVICES.index(service)])
    transport, sport, dport, times, sizes, down, payload = _MAKERS[service](rng, duration_s)
    order = np.argsort(times, kind="stable")
    return FlowTrace(service, transport, sport, dport, times[order] - times.min(),
                     sizes[order].astype(np.int64), down[order], payload)
