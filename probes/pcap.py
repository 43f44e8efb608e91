"""Reading and writing classic pcap files (libpcap format, Ethernet link type) (core).

Enough for the probe's --pcap mode and for tests that write captures; pcapng is not read.
"""

import struct
from typing import BinaryIO, Iterator

_MAGIC_US, _MAGIC_NS = 0xA1B2C3D4, 0xA1B23C4D
LINKTYPE_ETHERNET = 1


MAX_FRAME_BYTES = 262_144  # libpcap's largest snap length


class PcapError(ValueError):
    """The file is not a pcap file this reader understands; the message says why."""


def write_pcap(stream: BinaryIO, frames: list[tuple[float, bytes]], snaplen: int = 65535) -> None:
    """(time, frame) pairs -> a pcap file with microsecond timestamps."""
    stream.write(struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
    for when, frame in frames:
        seconds = int(when)
        micros = int(round((when - seconds) * 1e6))
        if micros == 1_000_000:
            seconds, micros = seconds + 1, 0
        stored = frame[:snaplen]
        stream.write(struct.pack("<IIII", seconds, micros, len(stored), len(frame)))
        stream.write(stored)


def read_pcap(stream: BinaryIO) -> Iterator[tuple[float, bytes, int]]:
    """A pcap file -> (time, stored bytes, original length) per frame."""
    header = stream.read(24)
    if len(header) < 24:
        raise PcapError("shorter than a pcap file header")
    magic = struct.unpack("<I", header[:4])[0]
    if magic in (_MAGIC_US, _MAGIC_NS):
        endian = "<"
    elif struct.unpack(">I", header[:4])[0] in (_MAGIC_US, _MAGIC_NS):
        endian, magic = ">", struct.unpack(">I", header[:4])[0]
    else:
        raise PcapError(f"unknown magic number 0x{magic:08x} (pcapng is not supported)")
    scale = 1e-9 if magic == _MAGIC_NS else 1e-6
    linktype = struct.unpack(endian + "I", header[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise PcapError(f"link type {linktype} is not Ethernet (1)")
    record = struct.Struct(endian + "IIII")
    while True:
        head = stream.read(16)
        if not head:
            return
        if len(head) < 16:
            raise PcapError("truncated record header at the end of the file")
        seconds, fraction, stored, original = record.unpack(head)
        if stored > MAX_FRAME_BYTES:  # a corrupted length: never allocate it
            raise PcapError(f"a frame of {stored} bytes, more than any capture holds "
                            f"({MAX_FRAME_BYTES}): the file is corrupted")
        data = stream.read(stored)
        if len(data) < stored:
            raise PcapError("truncated frame at the end of the file")
        yield seconds + fraction * scale, data, original
