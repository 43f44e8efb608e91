import json
import math
import socket
import struct
import subprocess
import sys
import threading

import pytest

from probes.stamp import (PACKET_SIZE, ReflectorPacket, SenderPacket, StampSession,
                          build_reflector_packet, build_sender_packet, error_estimate,
                          ntp_from_unix, parse_reflector_packet, parse_sender_packet, reflect,
                          unix_from_ntp)
from probes.stamp_io import Reflector, run_sender


def test_packet_layouts_follow_rfc8762():
    sender = build_sender_packet(SenderPacket(7, 0x0102030405060708, error_estimate(True, 3, 5)))
    assert len(sender) == PACKET_SIZE == 44
    assert sender[:4] == b"\x00\x00\x00\x07" and sender[4:12] == bytes(range(1, 9))
    assert sender[12:14] == b"\x83\x05" and sender[14:] == bytes(30)  # S bit, scale, multiplier
    reflected = build_reflector_packet(ReflectorPacket(1, 2, 3, 4, 5, 6, 7, 64))
    assert len(reflected) == 44
    assert struct.unpack("!IQH2xQIQH2xB3x", reflected) == (1, 2, 3, 4, 5, 6, 7, 64)
    assert parse_reflector_packet(reflected).sender_ttl == 64
    assert parse_sender_packet(sender + bytes(100)).sequence == 7  # padded packets are fine
    assert parse_sender_packet(sender[:43]) is None


def test_ntp_timestamps():
    assert ntp_from_unix(0.0) >> 32 == 2_208_988_800
    assert unix_from_ntp(ntp_from_unix(1_795_318_000.25)) == pytest.approx(1_795_318_000.25, abs=1e-9)


def test_session_statistics_from_known_times():
    session = StampSession()
    packets = [session.next_packet(100.0 + i) for i in range(5)]
    requests = [parse_sender_packet(p) for p in packets]
    # reflector holds each packet 1 ms; forward 10 ms, backward 5 ms; packet 3 is lost
    answers = {i: build_reflector_packet(reflect(requests[i], i, 100.0 + i + 0.010,
                                                 100.0 + i + 0.011, 63)) for i in (0, 1, 2, 4)}
    for i in (0, 2, 1, 4):  # 1 arrives after 2
        session.receive(answers[i], 100.0 + i + 0.016)
    session.receive(answers[4], 104.1)          # duplicate
    session.receive(b"junk", 104.2)             # malformed
    result = session.result()
    assert (result.sent, result.received, result.lost) == (5, 4, 1)
    assert (result.duplicates, result.reordered, result.malformed) == (1, 1, 1)
    assert result.rtt_ms == pytest.approx([15.0] * 4, abs=1e-3)
    assert result.forward_ms == pytest.approx([10.0] * 4, abs=1e-3)
    assert result.backward_ms == pytest.approx([5.0] * 4, abs=1e-3)
    assert result.loss_ratio == 0.2 and result.jitter_ms == pytest.approx(0.0, abs=1e-3)


def test_real_sockets_on_loopback():
    reflector = Reflector("127.0.0.1", 0)
    stop = threading.Event()
    thread = threading.Thread(target=reflector.serve, args=(stop,))
    thread.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as junk:
            junk.sendto(b"not stamp", reflector.address)
        result = run_sender(*reflector.address, count=50, interval_s=0.002, timeout_s=0.5)
    finally:
        stop.set()
        thread.join()
    assert (result.sent, result.received, result.lost) == (50, 50, 0)
    assert 0 < result.rtt_mean_ms < 50 and not math.isnan(result.jitter_ms)
    assert reflector.malformed == 1 and reflector.reflected == 50


def test_cli_sender_against_cli_reflector():
    proc = subprocess.Popen([sys.executable, "-m", "probes.cli", "stamp-reflector", "--bind",
                             "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        port = int(line.strip().rsplit(":", 1)[1])
        out = subprocess.run([sys.executable, "-m", "probes.cli", "stamp-sender", "--target",
                              f"127.0.0.1:{port}", "--count", "20", "--interval", "0.005",
                              "--json"], capture_output=True, text=True, timeout=30, check=True)
        summary = json.loads(out.stdout)
        assert summary["received"] == 20 and summary["lost"] == 0 and summary["rtt_mean_ms"] > 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
