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
