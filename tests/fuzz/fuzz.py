"""Fuzzing cems at its boundaries: gRPC requests, probe frames and pcap files.

    python -m tests.fuzz.fuzz            # the full run (make fuzz): 100,000 requests,
                                         # 1,000,000 frames, 100 captures
    python -m tests.fuzz.fuzz --short    # a quick one (also run by make test)

Each part reports what it sent and what went wrong; the run fails (exit 1) on any crash,
hang, UNKNOWN or INTERNAL status, a probe traceback, or memory that keeps growing.

- gRPC: every method of every service, with requests built from its descriptor (empty,
  random, extreme: NaN, infinities, 64-bit limits, 64 KB strings, long lists, unknown
  enum values), raw random bytes and bit-flipped encodings, as the domain manager, a
  customer, a probe and nobody, against a real in-process server with a store.
- frames: valid RTP, MPEG-TS, TCP and UDP frames, mutated (bytes flipped, cut, extended),
  through the probe's decoder and flow table.
- captures: pcap files with corrupted headers, lengths, timestamps and frames, through
  `cems-probe passive --pcap` (a separate process each, with a time limit).
"""

import argparse
import collections
import dataclasses
import math
import os
import random
import subprocess
import sys
import tempfile
import time

import grpc
from google.protobuf import descriptor as _descriptor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALLOWED = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.PERMISSION_DENIED,
           grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.FAILED_PRECONDITION,
           grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE,
           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.CANCELLED}


@dataclasses.dataclass
class Report:
    name: str
    sent: int = 0
    failures: list = dataclasses.field(default_factory=list)
    notes: list = dataclasses.field(default_factory=list)

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what)

    def text(self) -> str:
        head = f"{self.name}: {self.sent:,} sent, {len(self.failures)} failures"
        return "\n  ".join([head, *self.notes, *self.failures[:10]])


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- requests from descriptors -------------------------------------------------------------
_F = _descriptor.FieldDescriptor
_INTS = {_F.TYPE_INT32: (-(1 << 31), (1 << 31) - 1), _F.TYPE_SINT32: (-(1 << 31), (1 << 31) - 1),
         _F.TYPE_SFIXED32: (-(1 << 31), (1 << 31) - 1), _F.TYPE_INT64: (-(1 << 63), (1 << 63) - 1),
         _F.TYPE_SINT64: (-(1 << 63), (1 << 63) - 1), _F.TYPE_SFIXED64: (-(1 << 63), (1 << 63) - 1),
         _F.TYPE_UINT32: (0, (1 << 32) - 1), _F.TYPE_FIXED32: (0, (1 << 32) - 1),
         _F.TYPE_UINT64: (0, (1 << 64) - 1), _F.TYPE_FIXED64: (0, (1 << 64) - 1)}
_STRINGS = ["", "c1", "alice", "00:00:00:00:00:01", "10.0.0.1", "::1", "probe-1", "x" * 65_536,
            "\x00", "é" * 100, "../../etc/passwd", "' OR 1=1 --", "cems_0000_forged", "%s%n"]


def _value(rng: random.Random, field, depth: int):
    kind = field.type
    if kind == _F.TYPE_MESSAGE:
        return None  # filled by _fill
    if kind in _INTS:
        low, high = _INTS[kind]
        return rng.choice([0, 1, low, high, rng.randint(low, high), min(high, 65536)])
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return rng.choice([0.0, -0.0, 1.0, -1.0, math.nan, math.inf, -math.inf, 1e308, -1e308,
                           rng.uniform(-1e12, 1e12), 2.0 ** 33])
    if kind == _F.TYPE_BOOL:
        return rng.random() < 0.5
    if kind == _F.TYPE_ENUM:
        return rng.choice([v.number for v in field.enum_type.values] + [999, -1])
    if kind == _F.TYPE_STRING:
        return rng.choice(_STRINGS) if rng.random() < 0.8 else \
            "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(1, 40)))
    if kind == _F.TYPE_BYTES:
        return rng.randbytes(rng.randint(0, 64))
    return None


def _fill(rng: random.Random, message, depth: int = 0) -> None:
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        is_map = field.message_type is not None and field.message_type.GetOptions().map_entry
        if is_map:
            target = getattr(message, field.name)
            key_field, value_field = field.message_type.fields_by_name["key"], \
                field.message_type.fields_by_name["value"]
            for _ in range(rng.choice([1, 3, 70])):
                key = _value(rng, key_field, depth)
                value = _value(rng, value_field, depth)
                if value is not None:
                    target[key] = value
            continue
        if field.is_repeated:
            items = getattr(message, field.name)
            for _ in range(rng.choice([1, 2, 5, 100])):
                if field.type == _F.TYPE_MESSAGE:
                    if depth < 3:
                        _fill(rng, items.add(), depth + 1)
                else:
                    value = _value(rng, field, depth)
                    try:
                        items.append(value)
                    except (ValueError, TypeError):
                        pass
            continue
        if field.type == _F.TYPE_MESSAGE:
            if depth < 3:
                _fill(rng, getattr(message, field.name), depth + 1)
            continue
        try:
            setattr(message, field.name, _value(rng, field, depth))
        except (ValueError, TypeError):
            pass


def _request_bytes(rng: random.Random, cls) -> bytes:
    choice = rng.random()
    if choice < 0.1:
        return b""
    if choice < 0.2:
        return rng.randbytes(rng.randint(1, 200))
    message = cls()
    _fill(rng, message)
    data = message.SerializeToString()
    if choice < 0.35 and data:  # flip some bits of a valid encoding
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        data = bytes(data)
    return data


def fuzz_grpc(count: int, seed: int = 1) -> Report:
    from cems.v1 import customer_pb2, policy_pb2, probe_pb2, qoe_pb2, status_pb2  # noqa: F401
    from controller.config import parse_config
    from controller.csm.model import Role
    from controller.csm.model import ClassBounds, Customer, ServiceClass, Sla
    from controller.csm.rules import initial_sls
    from controller.csm.store import CsmStore
    from controller.monitor.kpis import KpiStore
    from controller.monitor.mirror_rules import MirrorRules
    from controller.store import Store
    from controller.state import PublishedState
    from tests.unit.controller.fakes import build_topology
    from tests.unit.controller.served import Served

    report = Report("gRPC")
    rng = random.Random(seed)
    state = PublishedState(1.0, "os_ken")
    topology = build_topology({1: 4, 2: 4}, [(1, 4, 2, 4)])
    topology.learn_host("00:00:00:00:00:01", 1, 1, "10.0.0.1")
    state.topology = topology.snapshot()
    kpis = KpiStore()
    csm = CsmStore(Store(":memory:"))
    from controller.policy.compile import PolicyFlows
    from controller.policy_loop import PolicyLoop
    from controller.runtime import build_experience
    experience = build_experience(parse_config({}), kpis)
    policy = PolicyLoop(experience, kpis, state, parse_config({}), kpis.directory, csm.sla,
                        PolicyFlows())
    served = Served(state, csm=csm, kpis=kpis, capacities={(1, 1): 10 ** 9}, max_workers=24,
                    max_streams=8, max_streams_per_client=8,
                    mirror=MirrorRules(csm.store, (), probe=(2, 3)), experience=experience,
                    policy=policy)
    sla = Sla("alice", "gsb-business", {ServiceClass.SILVER: ClassBounds(1_000_000, 10 ** 8)})
    csm.create_customer(Customer("alice", "Alice", access_dpid=1, access_port=1,
                                 hosts=("00:00:00:00:00:01",)), sla, initial_sls(sla, 0.0),
                        lambda committed: None)
    # mostly the domain manager, so that requests reach the logic behind the access rules
    tokens = [served.manager] * 6 + [served.token(Role.PROBE, "fuzz-probe"),
                                     served.token(Role.CUSTOMER, "alice"), ""]
    channels = [served.connect(t) if t else grpc.insecure_channel(served.address)
                for t in tokens]
    modules = {m.DESCRIPTOR.name.rpartition("/")[2]: m
               for m in (status_pb2, probe_pb2, customer_pb2, qoe_pb2, policy_pb2)}
    methods = []
    for module in modules.values():
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods.append((f"/{service.full_name}/{method.name}", method,
                                getattr(module, method.input_type.name)))
    codes: dict = {}
    warm = None
    started = time.monotonic()
    try:
        while report.sent < count:
            n = report.sent
            path, method, cls = rng.choice(methods)
            if path.endswith("RevokeToken"):
                continue  # would only be refused; and must not revoke the fuzzer's own token
            channel = rng.choice(channels)
            payload = _request_bytes(rng, cls)
            identity = lambda raw: raw  # noqa: E731
            try:
                if method.client_streaming:
                    call = channel.stream_unary(path, request_serializer=identity,
                                                response_deserializer=identity)
                    call(iter([payload] * rng.randint(0, 3)), timeout=2)
                elif method.server_streaming:
                    call = channel.unary_stream(path, request_serializer=identity,
                                                response_deserializer=identity)
                    for _ in call(payload, timeout=0.05):
                        break
                else:
                    call = channel.unary_unary(path, request_serializer=identity,
                                               response_deserializer=identity)
                    call(payload, timeout=2)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
                    code = grpc.StatusCode.OK  # an admitted stream, cut by the deadline
                elif code not in ALLOWED:
                    report.fail(f"{path}: {code.name}: {(err.details() or '')[:200]}")
            codes[code.name] = codes.get(code.name, 0) + 1
            report.sent += 1
            if n == min(2000, count // 4):
                warm = rss_kib()
        # still answering, promptly
        from cems.v1 import status_pb2_grpc
        status_pb2_grpc.StatusServiceStub(channels[0]).GetStatus(status_pb2.GetStatusRequest(),
                                                                  timeout=2)
    except grpc.RpcError as err:
        report.fail(f"the server stopped answering GetStatus: {err.code().name}")
    finally:
        for channel in channels:
            channel.close()
        served.close()
        csm.store.close()
    end = rss_kib()
    elapsed = time.monotonic() - started
    report.notes.append(f"{report.sent / elapsed:,.0f} requests/s; statuses: " +
                        ", ".join(f"{k} {v:,}" for k, v in sorted(codes.items())))
    if warm:
        growth = end - warm
        report.notes.append(f"memory: {warm / 1024:.0f} MiB after warm-up, {end / 1024:.0f} MiB "
                            f"at the end ({growth / 1024:+.0f} MiB)")
        if growth > 200 * 1024:  # the stores are bounded; more than this is a leak
            report.fail(f"memory grew by {growth / 1024:.0f} MiB")
    return report


# -- frames ---------------------------------------------------------------------------------
def _valid_frames():
    from probes.craft import rtp_packet, tcp_frame, udp_frame, udp6_frame
    frames = []
    for n in range(20):
        frames.append(udp_frame("10.0.0.1", "10.0.0.2", 4000, 5004, rtp_packet(n, n * 160)))
        ts = b"".join(b"\x47" + bytes([0x01, 0x00, 0x10 | (n % 16)]) + bytes(184)
                      for _ in range(7))
        frames.append(udp_frame("10.0.0.3", "10.0.0.4", 4001, 1234, ts))
        frames.append(tcp_frame("10.0.0.5", "10.0.0.6", 40000, 80, 1000 + n * 100, 5000, 0x18,
                                b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        frames.append(udp6_frame("2001:db8::1", "2001:db8::2", 5000, 5004,
                                 rtp_packet(n, n * 160)))
    return frames


def mutate_frame(rng: random.Random, frame: bytes) -> bytes:
    """A valid frame with bytes changed, cut, extended, or replaced by noise."""
    data = bytearray(frame)
    choice = rng.random()
    if choice < 0.5:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif choice < 0.7:
        del data[rng.randrange(len(data)):]
    elif choice < 0.85:
        data += rng.randbytes(rng.randint(1, 300))
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 1600)))
    return bytes(data)


def fuzz_frames(count: int, seed: int = 2) -> Report:
    from probes.decode import decode_frame
    from probes.flows import FlowTable
    report = Report("frames")
    rng = random.Random(seed)
    valid = _valid_frames()
    from probes import hotpath
    table = FlowTable(max_flows=10_000)
    compiled = hotpath.fast.FastFlowTable(max_flows=10_000, ndpi=True) if hotpath.fast \
        else None
    compiled_malformed = collections.Counter()
    now = 1000.0
    malformed = 0
    started = time.monotonic()
    for n in range(count):
        frame = mutate_frame(rng, rng.choice(valid))
        now += 0.0001
        try:
            packet, _reason = decode_frame(frame)
            if packet is None:
                malformed += 1
            else:
                table.observe(packet, frame, now)
            if n % 10_000 == 9_999:
                table.records(now)
        except Exception as err:  # pylint: disable=broad-except
            report.fail(f"{type(err).__name__}: {err} on frame {frame[:64].hex()}")
        if compiled is not None:  # the compiled hot path on the same frame
            try:
                compiled.feed([(now, frame)], 0, math.inf, compiled_malformed)
                if n % 10_000 == 9_999:
                    compiled.records(now)
            except Exception as err:  # pylint: disable=broad-except
                report.fail(f"compiled: {type(err).__name__}: {err} on frame "
                            f"{frame[:64].hex()}")
        report.sent += 1
    if compiled is not None and sum(compiled_malformed.values()) != malformed:
        report.fail(f"compiled path counted {sum(compiled_malformed.values())} malformed "
                    f"frames, the reference {malformed}")
    elapsed = time.monotonic() - started
    report.notes.append(f"{report.sent / elapsed:,.0f} frames/s; {malformed:,} counted "
                        f"malformed; {len(table)} flows tracked")
    return report


# -- captures -----------------------------------------------------------------------------
def _corrupt_capture(rng: random.Random, path: str) -> str:
    from probes.pcap import write_pcap
    frames = [(1_000_000.0 + i * 0.02, f) for i, f in enumerate(_valid_frames())]
    with open(path, "wb") as stream:
        write_pcap(stream, frames)
    data = bytearray(open(path, "rb").read())
    how = rng.choice(["header", "length", "time", "frames", "cut", "huge", "garbage"])
    if how == "header":
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(24)] = rng.randrange(256)
    elif how == "length":  # a record's stored length
        offset = 24 + 8
        data[offset:offset + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00",
                                              rng.randbytes(4)])
    elif how == "time":  # timestamps anywhere in 32 bits, both ways, at real records
        offsets, offset = [], 24
        while offset + 16 <= len(data):
            offsets.append(offset)
            offset += 16 + int.from_bytes(data[offset + 8:offset + 12], "little")
        for offset in rng.sample(offsets, min(len(offsets), rng.randint(1, 10))):
            data[offset:offset + 4] = rng.randbytes(4)
    elif how == "frames":
        for _ in range(rng.randint(1, 200)):
            data[rng.randrange(40, len(data))] = rng.randrange(256)
    elif how == "cut":
        del data[rng.randrange(len(data)):]
    elif how == "huge":  # the snap length field, and a frame claiming 4 GB
        data[16:20] = b"\xff\xff\xff\xff"
        data[24 + 8:24 + 12] = b"\x00\x00\x00\xf0"
    else:
        data = bytearray(rng.randbytes(rng.randint(0, 5000)))
    with open(path, "wb") as stream:
        stream.write(data)
    return how


def fuzz_captures(count: int, seed: int = 3, time_limit_s: float = 30.0) -> Report:
    report = Report("captures")
    rng = random.Random(seed)
    outcomes: dict = {}
    with tempfile.TemporaryDirectory(prefix="cems-fuzz-") as directory:
        for n in range(count):
            path = os.path.join(directory, f"c{n}.pcap")
            how = _corrupt_capture(rng, path)
            started = time.monotonic()
            try:
                done = subprocess.run([sys.executable, "-m", "probes.cli", "passive", "--pcap",
                                       path], cwd=REPO, capture_output=True, text=True,
                                      timeout=time_limit_s)
            except subprocess.TimeoutExpired:
                report.fail(f"capture {n} ({how}): still running after {time_limit_s:.0f} s")
                continue
            elapsed = time.monotonic() - started
            if "Traceback" in done.stderr or done.returncode not in (0, 1):
                report.fail(f"capture {n} ({how}): exit {done.returncode}: "
                            f"{done.stderr.strip()[-300:]}")
            elif done.returncode == 1 and not done.stderr.startswith("cems-probe: "):
                report.fail(f"capture {n} ({how}): exit 1 without a clear message")
            outcomes[(how, done.returncode)] = outcomes.get((how, done.returncode), 0) + 1
            report.sent += 1
            if elapsed > 10:
                report.notes.append(f"capture {n} ({how}) took {elapsed:.1f} s")
    report.notes.append("corruption and exit code: " + ", ".join(
        f"{how} {code}: {n}" for (how, code), n in sorted(outcomes.items())))
    return report


def run(requests: int, frames: int, captures: int) -> list[Report]:
    return [fuzz_grpc(requests), fuzz_frames(frames), fuzz_captures(captures)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="fuzz", description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="a quick run")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--captures", type=int, default=100)
    args = parser.parse_args(argv)
    if args.short:
        args.requests, args.frames, args.captures = 3_000, 50_000, 6
    reports = run(args.requests, args.frames, args.captures)
    for report in reports:
        print(report.text(), flush=True)
    failed = sum(len(r.failures) for r in reports)
    print("fuzz: " + ("no failures" if not failed else f"{failed} failures"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
