"""cems-probe refuses absurd options with a clear message, and a corrupted capture time
costs one interval, not hours of empty ones."""

import json
import subprocess
import sys
import time

import pytest

from probes.craft import rtp_packet, udp_frame
from probes.passive import ProbeCounters, run_frames
from probes.pcap import write_pcap


@pytest.mark.parametrize("args, words", [
    (["passive", "--pcap", "x.pcap", "--interval", "0"], "--interval: 0 is outside 0.01..3600"),
    (["passive", "--pcap", "x.pcap", "--interval", "nan"], "outside"),
    (["passive", "--pcap", "x.pcap", "--max-flows", "0"], "--max-flows: 0 is outside"),
    (["passive", "--pcap", "x.pcap", "--snaplen", "10"], "--snaplen: 10 is outside"),
    (["gen-voice", "--target", "127.0.0.1:5004", "--seconds", "-1"], "outside"),
    (["stamp-sender", "--target", "127.0.0.1:862", "--count", "ten"], "is not a int"),
    (["agent", "--controller", "127.0.0.1:1", "--reflect", "70000"], "outside 1..65535"),
])
def test_absurd_options_are_refused_naming_the_option(args, words):
    done = subprocess.run([sys.executable, "-m", "probes.cli", *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2 and words in done.stderr
    assert "Traceback" not in done.stderr


def frame(n: int) -> bytes:
    return udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, rtp_packet(n, n * 160))


def test_a_jump_in_capture_time_starts_a_new_interval_instead_of_walking_to_it():
    frames = [(1000.0 + i * 0.02, frame(i)) for i in range(50)]
    frames.append((4_000_000_000.0, frame(50)))  # a corrupted timestamp: 127 years later
    frames += [(4_000_000_000.0 + i * 0.02, frame(51 + i)) for i in range(50)]
    emitted = []
    started = time.monotonic()
    counters = run_frames(frames, 1.0, emitted.append, counters=ProbeCounters())
    assert time.monotonic() - started < 5
    records = [r for batch in emitted for r in batch]
    assert counters.time_jumps == 1 and len(emitted) < 10
    assert all(r.interval_end_unix_s - r.interval_start_unix_s <= 1.0 + 1e-6 for r in records)
    assert sum(r.packets for r in records) == 101


def test_the_cli_reports_time_jumps_in_its_summary(tmp_path):
    path = tmp_path / "jump.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, [(1.0, frame(0)), (2.0e9, frame(1))])
    done = subprocess.run([sys.executable, "-m", "probes.cli", "passive", "--pcap", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stderr.strip().splitlines()[-1])["time_jumps"] == 1
    assert len(done.stdout.splitlines()) == 2


@pytest.mark.parametrize("args, env, words", [
    (["--nats", "nats://127.0.0.1:1"], {}, "needs --probe-id"),
    (["--nats", "nats://127.0.0.1:1", "--probe-id", "p1"], {}, "needs the probe token"),
    (["--nats", "nats://127.0.0.1:1", "--probe-id", "p1"], {"CEMS_TOKEN": "not-a-token"},
     "not a cems token"),
    (["--nats", "nats://127.0.0.1:1", "--probe-id", "p1", "--nats-user", "p1"],
     {"CEMS_TOKEN": "cems_0123abcd_x"}, "go together"),
    (["--nats", "nats://127.0.0.1:1", "--controller", "127.0.0.1:1"], {}, "not allowed with"),
])
def test_publishing_on_nats_needs_a_probe_id_and_a_probe_token(args, env, words, tmp_path):
    path = tmp_path / "one.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, [(1.0, frame(0))])
    done = subprocess.run([sys.executable, "-m", "probes.cli", "passive", "--pcap", str(path),
                           *args], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_capture_published_on_nats_reaches_a_controllers_consumer(tmp_path):
    from client.stream import key_of  # pylint: disable=import-outside-toplevel
    from controller.stream import ProbeKey, RecordStream  # pylint: disable=import-outside-toplevel
    from lab.servers import nats, nats_permissions  # pylint: disable=import-outside-toplevel
    token = "cems_0123abcd_" + "p" * 32
    path = tmp_path / "call.pcap"
    with open(path, "wb") as stream:   # 3 s of one RTP stream: 3 records
        write_pcap(stream, [(1000.0 + i * 0.02, frame(i)) for i in range(150)])
    users = nats_permissions(["edge1"])
    password = tmp_path / "password"
    password.write_text(users["edge1"][0])
    with nats(users) as (url, _work):
        taken = []
        consumer = RecordStream(url, "cli", lambda probe_id, request, _records: (
            taken.extend((probe_id, r.sport) for r in request.records) or (
                len(request.records), [])),
            {"0123abcd": ProbeKey("edge1", key_of(token), None)}.get, "cems", users["cems"][0])
        consumer.start()
        try:
            deadline = time.monotonic() + 10
            while not consumer.lag_checked_unix_s and time.monotonic() < deadline:
                time.sleep(0.05)   # the consumer makes the stream
            done = subprocess.run(
                [sys.executable, "-m", "probes.cli", "passive", "--pcap", str(path), "--nats",
                 url, "--probe-id", "edge1", "--nats-user", "edge1", "--nats-password-file",
                 str(password)], capture_output=True, text=True, timeout=60,
                env={"PATH": "/usr/bin:/bin", "CEMS_TOKEN": token})
            assert done.returncode == 0, done.stderr
            summary = json.loads(done.stderr.strip().splitlines()[-1])
            assert summary["exported"] == 3 and summary["export_pending"] == 0, summary
            while len(taken) < 3 and time.monotonic() < deadline + 10:
                time.sleep(0.05)
            assert taken == [("edge1", 4000)] * 3
        finally:
            consumer.stop()
