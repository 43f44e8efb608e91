"""A constant-bitrate MPEG-TS muxer for test IPTV traffic (core: builds bytes, sends nothing).

One program: PAT on PID 0, a PMT, one video PID that carries the PCR. Packets follow
ISO/IEC 13818-1: correct continuity counters per PID, PAT and PMT every `psi_interval_s`,
a PCR every `pcr_interval_s` in an adaptation field, seven packets per datagram as IPTV
over UDP sends them. The times are those of a perfect CBR sender, so the PCRs are exact.
"""

import dataclasses
import struct

from qoe.mpegts import PAT_PID, PCR_HZ, SYNC, TS_PACKET, crc32_mpeg2

PACKETS_PER_DATAGRAM = 7


def _section(table_id: int, table_id_ext: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4  # after section_length: 5 header bytes, body, CRC
    head = struct.pack("!BHHBBB", table_id, 0xB000 | length, table_id_ext, 0xC1, 0, 0)
    section = head + body
    return section + struct.pack("!I", crc32_mpeg2(section))


def build_pat(program: int, pmt_pid: int, ts_id: int = 1) -> bytes:
    return _section(0x00, ts_id, struct.pack("!HH", program, 0xE000 | pmt_pid))


def build_pmt(program: int, pcr_pid: int, streams: list[tuple[int, int]]) -> bytes:
    body = struct.pack("!HH", 0xE000 | pcr_pid, 0xF000)
    for stream_type, pid in streams:
        body += struct.pack("!BHH", stream_type, 0xE000 | pid, 0xF000)
    return _section(0x02, program, body)


def _pcr_field(pcr: int) -> bytes:
    base, extension = divmod(pcr, 300)
    base &= (1 << 33) - 1
    return struct.pack("!IH", base >> 1, ((base & 1) << 15) | 0x7E00 | extension)


@dataclasses.dataclass
class TsMuxer:
    bitrate_bps: float = 4_000_000
    program: int = 1
    pmt_pid: int = 0x100
    video_pid: int = 0x101
    psi_interval_s: float = 0.1
    pcr_interval_s: float = 0.03

    def __post_init__(self):
        self._cc: dict[int, int] = {}
        self._packet_index = 0
        self._next_psi = 0.0
        self._next_pcr = 0.0
        self._pending: list[tuple[int, bytes]] = []  # PSI sections due before more video

    @property
    def packet_s(self) -> float:
        return TS_PACKET * 8 / self.bitrate_bps

    def _header(self, pid: int, pusi: bool, afc: int) -> bytes:
        cc = (self._cc.get(pid, 15) + 1) % 16
        self._cc[pid] = cc
        return struct.pack("!BHB", SYNC, (0x4000 if pusi else 0) | pid, (afc << 4) | cc)

    def _psi_packet(self, pid: int, section: bytes) -> bytes:
        payload = b"\x00" + section  # pointer_field 0
        return self._header(pid, True, 0b01) + payload + b"\xff" * (TS_PACKET - 4 - len(payload))

    def _video_packet(self, now_s: float) -> bytes:
        if now_s >= self._next_pcr:
            self._next_pcr = now_s + self.pcr_interval_s
            adaptation = bytes([7, 0x10]) + _pcr_field(round(now_s * PCR_HZ))
            body = b"\xab" * (TS_PACKET - 4 - len(adaptation))
            return self._header(self.video_pid, False, 0b11) + adaptation + body
        return self._header(self.video_pid, False, 0b01) + b"\xab" * (TS_PACKET - 4)

    def next_packet(self) -> tuple[bytes, float]:
        """The next TS packet and its send time (seconds from the start of the stream)."""
        now = self._packet_index * self.packet_s
        self._packet_index += 1
        if now >= self._next_psi:
            self._pending = [(PAT_PID, build_pat(self.program, self.pmt_pid)),
                             (self.pmt_pid, build_pmt(self.program, self.video_pid,
                                                      [(0x1B, self.video_pid)]))]
            self._next_psi = now + self.psi_interval_s
        if self._pending:
            pid, section = self._pending.pop(0)
            return self._psi_packet(pid, section), now
        return self._video_packet(now), now

    def datagrams(self, count: int) -> list[tuple[bytes, float]]:
        """`count` datagrams of seven packets, each with the send time of its last packet."""
        out = []
        for _ in range(count):
            packets, when = [], 0.0
            for _ in range(PACKETS_PER_DATAGRAM):
                packet, when = self.next_packet()
                packets.append(packet)
            out.append((b"".join(packets), when))
        return out
