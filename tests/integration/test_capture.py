"""Live capture on a veth pair the test makes: TPACKET_V3 ring, BPF, kernel drop counters, and
`cems-probe passive --iface` exporting records and its own health to a controller."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time

import grpc
import pytest
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from controller.api.server import serve_grpc
from controller.config import Address
from client.channel import connect
from controller.csm.model import Role
from controller.csm.store import CsmStore
from controller.store import Store
from lab.emulation import wait_for
from controller.monitor.kpis import KpiStore
from controller.state import PublishedState
from probes import craft, hotpath
from probes.capture import CaptureError, RingCapture, SocketCapture
from probes.decode import DPORT, decode_frame


def send(iface: str, frames: list[bytes]) -> None:
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as sock:
        sock.bind((iface, 0))
        for frame in frames:
            sock.send(frame)


def drain(capture) -> list:
    got = []
    for frame in capture.frames(idle_s=0.3):
        if frame is None:
            return got
        got.append(frame)
    return got


def rtp(seq: int, payload: int = 160) -> bytes:
    return craft.udp_frame("10.9.0.1", "10.9.0.2", 4000, 5004,
                           craft.rtp_packet(seq, seq * 160, payload=b"\x55" * payload))


@pytest.mark.parametrize("kind", [RingCapture, SocketCapture])
def test_filter_and_snap_length_are_applied_in_the_kernel(veth, kind):
    other = craft.tcp_frame("10.9.0.5", "10.9.0.6", 40000, 80, 1, 1, 0x10, b"d" * 500)
    with kind(veth, snaplen=96, bpf="udp dst port 5004") as capture:
        before = time.time()
        send(veth + "p", [f for i in range(300) for f in (rtp(i), other)])
        frames = drain(capture)
        stats = capture.read_stats()
    assert len(frames) == 300  # the TCP frames never reached user space
    assert {len(f.data) for f in frames} == {96}
    assert all(decode_frame(f.data)[0][DPORT] == 5004 for f in frames)
    assert stats.received == 300 and stats.dropped == 0
    if kind is RingCapture:
        assert {f.length for f in frames} == {len(rtp(0))}  # length on the wire, not the snap
        assert before - 1 < frames[0].when <= frames[-1].when < time.time() + 1


def test_a_full_ring_drops_and_the_kernel_counts_the_drops(veth):
    # Two 8 KiB blocks hold about 70 frames; nothing reads while 500 arrive.
    with RingCapture(veth, snaplen=256, block_size=8192, blocks=2) as capture:
        send(veth + "p", [rtp(i) for i in range(500)])
        time.sleep(0.1)
        frames = drain(capture)
        stats = capture.read_stats()
    ours = [f for f in frames if decode_frame(f.data)[0] is not None]
    assert 0 < len(ours) < 500
    assert stats.dropped >= 500 - len(frames) > 0
    assert stats.received + stats.dropped >= 500


def test_the_ring_hands_the_vlan_tag_over_as_metadata(veth):
    frame = rtp(1)
    tagged = frame[:12] + struct.pack("!HH", 0x8100, 42) + frame[12:]
    with RingCapture(veth, bpf="") as capture:
        send(veth + "p", [tagged] * 5)
        frames = drain(capture)
    # the decoder sees the untagged frame; the tag is in the metadata
    ours = [f for f in frames if (decode_frame(f.data)[0] or {DPORT: 0})[DPORT] == 5004]
    assert len(ours) == 5 and all(f.vlan == 42 for f in ours)


def test_setup_errors_name_the_problem(veth):
    with pytest.raises(CaptureError, match="nosuchif"):
        RingCapture("nosuchif0")
    with pytest.raises(CaptureError, match="capture filter"):
        RingCapture(veth, bpf="udp port banana")
    with pytest.raises(CaptureError, match="page size"):
        RingCapture(veth, block_size=5000)


def test_cems_probe_on_an_interface_exports_records_and_its_health(veth):
    kpis = KpiStore()
    csm = CsmStore(Store(":memory:"))
    server, port = serve_grpc(PublishedState(1.0, "os_ken"), Address("127.0.0.1", 0), kpis=kpis,
                              csm=csm)
    probe_token = csm.create_token(Role.PROBE, probe_id="veth-probe")[1]
    manager = csm.create_token(Role.DOMAIN_MANAGER)[1]
    probe = subprocess.Popen(
        [sys.executable, "-m", "probes.cli", "passive", "--iface", veth, "--bpf", "udp",
         "--interval", "0.5", "--controller", f"127.0.0.1:{port}", "--probe-id", "veth-probe"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "CEMS_TOKEN": probe_token},
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    try:
        wait_for(lambda: kpis.probes(), 15, "the probe's first health report")
        frames = [rtp(i) for i in range(100) if i not in (10, 11, 12)]  # 3 lost
        send(veth + "p", frames)
        wait_for(lambda: sum(r.kpis.get("rtp_expected", 0) for r in kpis.everything()) >= 100,
                 10, "the RTP records")
        with connect(f"127.0.0.1:{port}", manager) as channel:
            reply = pb_grpc.ProbeServiceStub(channel).ListKpis(pb.ListKpisRequest(history=True))
        lost = sum(r.kpis.get("rtp_lost", 0) for r in reply.records if r.kind == "rtp")
        assert lost == 3
        wait_for(lambda: kpis.probes()[0].frames >= 97, 5, "the health report to catch up")
        (health,) = kpis.probes()
        assert health.source == f"ring:{veth}" and health.kernel_dropped == 0
        assert health.hot_path == hotpath.HOTPATH  # compiled: the ring is read in place
        assert health.kernel_received >= 97
    finally:
        probe.send_signal(signal.SIGTERM)
        _out, err = probe.communicate(timeout=15)
        server.stop(0)
    assert probe.returncode == 0, err
    assert '"kernel_dropped": 0' in err


@pytest.mark.parametrize("kind", [RingCapture, SocketCapture])
def test_the_hot_path_gives_time_and_data_pairs_and_ticks_when_idle(veth, kind):
    with kind(veth, bpf="udp dst port 5004") as capture:
        send(veth + "p", [rtp(i) for i in range(50)])
        pairs = []
        ticks = iter(range(1, 1000))
        for when, data in capture.timed(idle_s=0.3, clock=lambda: float(next(ticks))):
            pairs.append((when, data))
            if data is None:
                break
    assert [d for _, d in pairs[:-1]] == [rtp(i) for i in range(50)]
    times = [t for t, _ in pairs[:-1]]
    assert times == sorted(times)
    assert pairs[-1][1] is None  # the idle tick, at the clock's time
    if kind is RingCapture:
        assert times[0] > 1e9 and pairs[-1][0] == 1.0  # frames carry the kernel's time
