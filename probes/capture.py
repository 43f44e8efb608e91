"""Live capture for the passive probe: a TPACKET_V3 memory-mapped ring on AF_PACKET (shell).

The kernel writes frames into blocks of a ring shared with us (packet(7), "TPACKET_V3";
Documentation/networking/packet_mmap.rst in the kernel tree); we walk a block when the
kernel hands it over (block_status has TP_STATUS_USER), then give it back. No system call per
frame, which is what lets pure Python reach about a million frames/s where a recv_into loop
stays near half a million.

Also here:
- the kernel's own counters (PACKET_STATISTICS): frames seen and frames the kernel dropped
  because the ring was full. They reset on every read, so `CaptureStats` keeps totals. A
  mirror port that overflows drops silently; these counters are how the operator sees it.
- a classic BPF filter compiled by tcpdump (`tcpdump -ddd`), attached with SO_ATTACH_FILTER.
  The filter's accept value is the snap length, so the kernel copies only that many bytes.
- a fallback recv_into reader with the same interface, for kernels or sandboxes without
  PACKET_RX_RING (and as the receive-only baseline of bench/bench_probe.py).

VLAN: with a ring the kernel strips the outer 802.1Q tag into the frame's metadata (tp_vlan_tci,
TP_STATUS_VLAN_VALID); `Frame.vlan` carries it, the decoder sees the untagged frame.
"""

import ctypes
import dataclasses
import mmap
import select
import socket
import struct
import subprocess
import time
from typing import Callable, Iterator

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
ETH_P_ALL = 0x0003

TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4

_BLOCK = struct.Struct("=IIIIII")  # version, offset_to_priv, block_status, num_pkts,
#                                    offset_to_first_pkt, blk_len
_PKT = struct.Struct("=IIIIIIHHIIH")  # next_offset, sec, nsec, snaplen, len, status, mac, net,
#                                       rxhash, vlan_tci, vlan_tpid
_PKT_TIME = struct.Struct("=IIIIIIH")  # the fields the hot path needs, up to tp_mac
_STATUS_AT = 8
_STATS_V3 = struct.Struct("=III")  # tp_packets (includes drops), tp_drops, tp_freeze_q_cnt


class CaptureError(Exception):
    """Capture could not be set up; the message says what to do."""


class RingUnavailable(CaptureError):
    """This kernel or sandbox refuses a TPACKET_V3 ring; a recv_into socket still works."""


@dataclasses.dataclass
class CaptureStats:
    """Totals of the kernel's per-socket counters since the capture started."""
    received: int = 0   # frames the kernel delivered to us
    dropped: int = 0    # frames the kernel dropped: the ring (or socket buffer) was full
    freezes: int = 0    # times the ring froze for lack of a free block

    def add(self, packets: int, drops: int, freezes: int = 0) -> None:
        self.received += packets - drops
        self.dropped += drops
        self.freezes += freezes


def compile_filter(expression: str, snaplen: int, iface: str = "lo") -> list[tuple]:
    """Classic BPF for a tcpdump `expression`, accepting `snaplen` bytes of each frame.

    Uses `tcpdump -ddd` (Debian's tcpdump, installed by scripts/setup.sh). An empty
    expression gives the one-instruction program "accept snaplen bytes"."""
    if not expression:
        return [(0x06, 0, 0, snaplen)]  # BPF_RET | BPF_K
    try:
        out = subprocess.run(["tcpdump", "-i", iface, "-s", str(snaplen), "-ddd", expression],
                             capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        raise CaptureError("a capture filter needs tcpdump (apt-get install tcpdump)") from None
    if out.returncode != 0:
        raise CaptureError(f"capture filter {expression!r}: {out.stderr.strip()}")
    lines = out.stdout.split("\n")
    count = int(lines[0])
    program = [tuple(int(v) for v in line.split()) for line in lines[1:count + 1]]
    if len(program) != count or any(len(ins) != 4 for ins in program):
        raise CaptureError(f"capture filter {expression!r}: cannot read tcpdump's program")
    return program


def attach_filter(sock: socket.socket, program: list[tuple]) -> None:
    """SO_ATTACH_FILTER with struct sock_fprog {u16 len; struct sock_filter *filter}."""
    raw = b"".join(struct.pack("=HBBI", *ins) for ins in program)
    buffer = ctypes.create_string_buffer(raw, len(raw))
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)  # the kernel copies it


def _packet_socket(iface: str) -> socket.socket:
    """A packet socket that receives nothing until _bind(): protocol 0 here, so no frame of
    another interface, or one the filter would refuse, slips in during setup."""
    try:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise CaptureError("live capture needs root or CAP_NET_RAW") from None
    return sock


def _bind(sock: socket.socket, iface: str) -> None:
    try:
        sock.bind((iface, ETH_P_ALL))  # CPython applies htons to the protocol
    except OSError as err:
        sock.close()
        raise CaptureError(f"cannot capture on {iface!r}: {err.strerror}") from None


@dataclasses.dataclass(slots=True)
class Frame:
    when: float
    data: bytes
    length: int       # length on the wire; len(data) is the captured part
    vlan: int | None  # outer VLAN id the kernel stripped, if any


class _Capture:
    """What both captures share: the kernel's counters folded in at close, and `with`."""

    sock: socket.socket

    def read_stats(self) -> CaptureStats:
        raise NotImplementedError

    def _release(self) -> None:
        """Anything besides the socket to give back."""

    def close(self) -> None:
        try:
            self.read_stats()
        except OSError:
            pass
        self._release()
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class RingCapture(_Capture):
    """Frames from a TPACKET_V3 ring on `iface`, block by block.

    block_size * blocks is the ring's memory (default 4 MiB * 16 = 64 MiB): what absorbs a
    burst while Python is busy. `block_timeout_ms` is how long the kernel waits before handing
    over a block that is not full, so frames on a quiet link still arrive promptly."""

    def __init__(self, iface: str, snaplen: int = 2048, bpf: str = "",
                 block_size: int = 1 << 22, blocks: int = 16, block_timeout_ms: int = 10):
        if block_size % mmap.PAGESIZE or block_size < snaplen + 128:
            raise CaptureError(f"block size {block_size} must be a multiple of the page size "
                               f"{mmap.PAGESIZE} and larger than the snap length")
        self.iface, self.snaplen = iface, snaplen
        self.stats = CaptureStats()
        program = compile_filter(bpf, snaplen, iface)
        self.sock = _packet_socket(iface)
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            frame_size = 1 << max(11, (snaplen + 128 - 1).bit_length())
            req = struct.pack("=IIIIIII", block_size, blocks, frame_size,
                              block_size // frame_size * blocks, block_timeout_ms, 0, 0)
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
            self.ring = mmap.mmap(self.sock.fileno(), block_size * blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as err:
            self.sock.close()
            raise RingUnavailable(f"cannot set up a TPACKET_V3 ring on {iface!r}: {err}") from None
        attach_filter(self.sock, program)
        _bind(self.sock, iface)
        self.block_size, self.blocks = block_size, blocks
        self._next = 0
        self._poll = select.poll()
        self._poll.register(self.sock, select.POLLIN | select.POLLERR)

    def read_stats(self) -> CaptureStats:
        """Fold the kernel's counters (which reset on read) into the totals and return them."""
        if self.sock.fileno() == -1:
            return self.stats  # closed: close() folded the last counters in
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS_V3.size)
        self.stats.add(*_STATS_V3.unpack(raw))
        return self.stats

    def blocks_ready(self, timeout_s: float) -> Iterator[tuple[memoryview, int]]:
        """Yield (ring, block offset) for every block the kernel has handed over, releasing each
        after the caller is done with it; waits up to timeout_s for the first one."""
        status = _BLOCK.unpack_from
        offset = self._next * self.block_size
        if not status(self.ring, offset)[2] & TP_STATUS_USER:
            self._poll.poll(int(timeout_s * 1000))
        while status(self.ring, offset)[2] & TP_STATUS_USER:
            yield self.ring, offset
            struct.pack_into("=I", self.ring, offset + _STATUS_AT, TP_STATUS_KERNEL)
            self._next = (self._next + 1) % self.blocks
            offset = self._next * self.block_size

    def _blocks(self, stop: Callable[[], bool], idle_s: float) -> Iterator[int | None]:
        """The offset of each block the kernel hands over, until stop(), each given back to
        the kernel when the next is asked for; None after idle_s without any."""
        while not stop():
            got = False
            for _, offset in self.blocks_ready(idle_s):
                got = True
                yield offset
            if not got:
                yield None

    def _walk(self, header: struct.Struct, stop: Callable[[], bool], idle_s: float
              ) -> Iterator[tuple[int, tuple] | None]:
        """(offset, the frame's tpacket3_hdr fields as `header` reads them) for every frame
        the kernel hands over, until stop(); None after idle_s without any."""
        unpack_block, unpack = _BLOCK.unpack_from, header.unpack_from
        ring = self.ring
        for offset in self._blocks(stop, idle_s):
            if offset is None:
                yield None
                continue
            count, first = unpack_block(ring, offset)[3:5]
            at = offset + first
            for _ in range(count):
                fields = unpack(ring, at)
                yield at, fields
                at += fields[0]  # tp_next_offset

    def frames(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2
               ) -> Iterator[Frame | None]:
        """Frames with their metadata until stop(); None after idle_s without any."""
        ring = self.ring
        for item in self._walk(_PKT, stop, idle_s):
            if item is None:
                yield None
                continue
            at, (_, sec, nsec, snap, length, pstatus, mac, _, _, tci, _) = item
            yield Frame(sec + nsec * 1e-9, ring[at + mac:at + mac + snap], length,
                        tci & 0x0FFF if pstatus & TP_STATUS_VLAN_VALID else None)

    def timed(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2,
              clock: Callable[[], float] = time.time
              ) -> Iterator[tuple[float, bytes | None]]:
        """The probe's hot path: (kernel time, frame data) pairs, and (clock(), None) after
        idle_s without frames; no per-frame object beyond the pair."""
        ring = self.ring
        for item in self._walk(_PKT_TIME, stop, idle_s):
            if item is None:
                yield clock(), None
                continue
            at, (_, sec, nsec, snap, _, _, mac) = item
            yield sec + nsec * 1e-9, ring[at + mac:at + mac + snap]

    def timed_batches(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2,
                      clock: Callable[[], float] = time.time) -> Iterator[list]:
        """timed() a block at a time: the (kernel time, frame data) pairs of each block the
        kernel hands over as one list (the compiled hot path takes it in one call), and
        [(clock(), None)] after idle_s without any."""
        unpack_block, unpack = _BLOCK.unpack_from, _PKT_TIME.unpack_from
        ring = self.ring
        for offset in self._blocks(stop, idle_s):
            if offset is None:
                yield [(clock(), None)]
                continue
            count, first = unpack_block(ring, offset)[3:5]
            at = offset + first
            batch = []
            for _ in range(count):
                step, sec, nsec, snap, _, _, mac = unpack(ring, at)
                batch.append((sec + nsec * 1e-9, ring[at + mac:at + mac + snap]))
                at += step
            yield batch  # copied out: the block goes back to the kernel after this

    def timed_blocks(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2,
                     clock: Callable[[], float] = time.time) -> Iterator[tuple]:
        """(ring, block offset) for each block the kernel hands over, for the compiled hot
        path to read in place (FastFlowTable.feed_block) before the next one is asked for;
        (None, clock()) after idle_s without any."""
        for offset in self._blocks(stop, idle_s):
            yield (None, clock()) if offset is None else (self.ring, offset)

    def _release(self) -> None:
        self.ring.close()


class SocketCapture(_Capture):
    """The same interface over a plain recv_into loop: one system call per frame."""

    def __init__(self, iface: str, snaplen: int = 2048, bpf: str = "",
                 rcvbuf: int = 32 << 20):
        self.iface, self.snaplen = iface, snaplen
        self.stats = CaptureStats()
        program = compile_filter(bpf, snaplen, iface)
        self.sock = _packet_socket(iface)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        attach_filter(self.sock, program)
        _bind(self.sock, iface)

    def read_stats(self) -> CaptureStats:
        if self.sock.fileno() == -1:
            return self.stats
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        packets, drops = struct.unpack("=II", raw)  # struct tpacket_stats for TPACKET_V1
        self.stats.add(packets, drops)
        return self.stats

    def frames(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2
               ) -> Iterator[Frame | None]:
        self.sock.settimeout(idle_s)
        buffer = bytearray(self.snaplen)
        view = memoryview(buffer)
        while not stop():
            try:
                length, _ = self.sock.recvfrom_into(buffer)
            except socket.timeout:
                yield None
                continue
            yield Frame(time.time(), bytes(view[:length]), length, None)

    def timed(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2,
              clock: Callable[[], float] = time.time
              ) -> Iterator[tuple[float, bytes | None]]:
        """(arrival time, frame data) pairs, and (clock(), None) after idle_s without any."""
        self.sock.settimeout(idle_s)
        buffer = bytearray(self.snaplen)
        view = memoryview(buffer)
        receive = self.sock.recv_into
        while not stop():
            try:
                length = receive(buffer)
            except socket.timeout:
                yield clock(), None
                continue
            yield clock(), bytes(view[:length])

    def timed_batches(self, stop: Callable[[], bool] = lambda: False, idle_s: float = 0.2,
                      clock: Callable[[], float] = time.time) -> Iterator[list]:
        """timed() as batches of one pair: a socket hands frames over one at a time."""
        for pair in self.timed(stop, idle_s, clock):
            yield [pair]



def open_capture(iface: str, snaplen: int = 2048, bpf: str = "", ring: bool = True):
    """A RingCapture, or a SocketCapture when asked or when the ring cannot be set up."""
    if ring:
        try:
            return RingCapture(iface, snaplen, bpf)
        except RingUnavailable:
            pass  # other setup errors (permissions, interface, filter) hold for both
    return SocketCapture(iface, snaplen, bpf)
