"""The probe's RTP loss and jitter against Wireshark's (tshark -z rtp,streams) on captures
written with controlled loss, jitter and reordering.

Tolerances: lost packets exactly equal; the mean of the probe's jitter (the RFC 3550
estimate at the end of each one-second interval) within 20 % of tshark's mean jitter (the
same estimate averaged over every packet), and every probe value between tshark's minimum
and maximum.
"""

import json
import random
import re
import shutil
import subprocess
import sys

import pytest

from lab.emulation import REPO
from probes import craft
from probes.pcap import write_pcap

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None,
                                reason="tshark is not installed; make test installs it")


def tshark_streams(path) -> list[dict]:
    out = subprocess.run(["tshark", "-r", str(path), "-o", "rtp.heuristic_rtp:TRUE", "-q", "-z",
                          "rtp,streams"], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    rows = []
    for line in out.splitlines():
        match = re.search(r"0x[0-9A-Fa-f]+\s+\S+\s+(\d+)\s+(-?\d+) \(.*?\)\s+([\d.]+)\s+([\d.]+)"
                          r"\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line)
        if match:
            rows.append({"packets": int(match[1]), "lost": int(match[2]),
                         "min_jitter": float(match[6]), "mean_jitter": float(match[7]),
                         "max_jitter": float(match[8])})
    return rows


@pytest.mark.parametrize("seed, lost, max_jitter_s, swaps", [
    (1, {40, 41, 300}, 0.006, 0),
    (2, set(range(100, 110)), 0.012, 0),
    (3, {7}, 0.002, 0),
    (4, {200, 250}, 0.008, 5),
])
def test_probe_agrees_with_tshark(tmp_path, seed, lost, max_jitter_s, swaps):
    rng = random.Random(seed)
    frames = [(1.0 + i * 0.02 + rng.uniform(0, max_jitter_s),
               craft.udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, craft.rtp_packet(i, i * 160)))
              for i in range(500) if i not in lost]
    frames.sort()
    for _ in range(swaps):  # reorder neighbours (times stay in order: arrival order changes)
        k = rng.randrange(10, len(frames) - 10)
        (t1, f1), (t2, f2) = frames[k], frames[k + 1]
        frames[k], frames[k + 1] = (t1, f2), (t2, f1)
    path = tmp_path / "voice.pcap"
    with open(path, "wb") as stream:
        write_pcap(stream, frames)
    out = subprocess.run([sys.executable, "-m", "probes.cli", "passive", "--pcap", str(path)],
                         cwd=REPO, capture_output=True, text=True, check=True, timeout=60).stdout
    ours = [json.loads(line)["kpis"] for line in out.splitlines()]
    (theirs,) = tshark_streams(path)
    assert sum(k["rtp_lost"] for k in ours) == theirs["lost"] == len(lost)
    jitter = [k["rtp_jitter_ms"] for k in ours]
    assert sum(jitter) / len(jitter) == pytest.approx(theirs["mean_jitter"], rel=0.20), \
        (jitter, theirs)
    assert all(theirs["min_jitter"] <= j <= theirs["max_jitter"] for j in jitter), (jitter, theirs)
