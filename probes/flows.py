"""Per-flow state of the passive probe and the records it exports each interval (core).

FlowTable.observe() takes one decoded packet (probes/decode.py) with its frame and time;
records() returns one FlowRecord per active flow for the interval and starts the next one.
Flows are per direction (5-tuple). The table has a hard cap: when full, the least recently
seen flow is evicted and counted; flows idle longer than the timeout are dropped.

Per flow kind:
- RTP (a valid header, RFC 3550): loss, duplicates, reordering and jitter with the payload
  type's clock (qoe.rtp); MPEG-TS inside RTP (payload type 33) also goes to the TS analyser;
- MPEG-TS over UDP: TR 101 290 priority-1 counters and MDI (qoe.mpegts), the media rate
  taken as the flow's own rate in the interval;
- TCP: round-trip time from the handshake (SYN to the ACK of the SYN/ACK, as seen where
  the probe sits) and from data/ACK pairs, retransmissions, zero windows.
"""

import collections
import dataclasses
import math
import struct

from probes import decode as d
from qoe.mpegts import TsAnalyzer, compute_mdi, is_ts_payload
from qoe.rtp import STATIC_CLOCK_RATES, RtpStreamStats, parse_rtp_header

_RTP_FIXED = struct.Struct("!BBHII").unpack_from
_UNCLASSIFIED, _PLAIN, _RTP, _TS, _TCP = range(5)
_KIND_NAMES = {_UNCLASSIFIED: "udp", _PLAIN: "udp", _RTP: "rtp", _TS: "mpegts", _TCP: "tcp"}


@dataclasses.dataclass(frozen=True)
class FlowRecord:
    src: str
    dst: str
    proto: int
    sport: int
    dport: int
    kind: str
    interval_start_unix_s: float
    interval_end_unix_s: float
    packets: int
    bytes: int
    throughput_bps: float
    dscp: int
    kpis: dict
    # what nDPI detected (the compiled hot path with --ndpi): "TLS.YouTube", "Media", and
    # "ndpi" or "ndpi-guess" (decided on its last chance); empty without nDPI
    application: str = ""
    category: str = ""
    detected_by: str = ""


class _Flow:
    __slots__ = ("key", "kind", "first", "last", "packets", "bytes", "dscp", "rtp", "ts", "pt",
                 "ts_arrivals", "ts_sizes", "ssrc", "max_end", "sent", "rtt", "retrans",
                 "zero_windows", "syn_at", "synack_at", "handshake_rtt")

    def __init__(self, key, now):
        self.key = key
        self.kind = _UNCLASSIFIED
        self.first = self.last = now
        self.packets = self.bytes = 0
        self.dscp = 0
        self.rtp = self.ts = self.ssrc = self.pt = None
        self.ts_arrivals, self.ts_sizes = [], []
        self.max_end = None
        self.sent = {}
        self.rtt, self.retrans, self.zero_windows = [], 0, 0
        self.syn_at = self.synack_at = self.handshake_rtt = None


MDI_MIN_PACKETS = 10  # fewer datagrams say nothing about a delay factor


def _mdi(arrivals: list, sizes: list, lost_media_packets: int, span: float
         ) -> tuple[float, float]:
    """(DF ms, MLR packets/s) of one interval (RFC 4445). The virtual buffer drains at the
    rate the datagrams really came at over their own time span (first to last arrival), not
    over the whole interval: a flow's first or last interval holds only part of it, and the
    full-interval rate would inflate DF. Fewer than MDI_MIN_PACKETS datagrams: DF unknown."""
    mlr = lost_media_packets / span
    if len(arrivals) < MDI_MIN_PACKETS or arrivals[-1] <= arrivals[0]:
        return math.nan, mlr
    media_bps = sum(sizes[:-1]) * 8 / (arrivals[-1] - arrivals[0])
    return compute_mdi(arrivals, sizes, media_bps, lost_media_packets, span).delay_factor_ms, mlr


def rtp_kpis(counts, payload_type) -> dict:
    """A record's RTP KPIs from one interval's RtpCounts (both hot paths build them here)."""
    return dict(rtp_expected=counts.expected, rtp_lost=counts.lost,
                rtp_loss_ratio=counts.loss_ratio, rtp_duplicates=counts.duplicates,
                rtp_reordered=counts.reordered, rtp_jitter_ms=counts.jitter_ms,
                rtp_jitter_max_ms=counts.jitter_max_ms, rtp_jitter_mean_ms=counts.jitter_mean_ms,
                rtp_loss_bursts=counts.loss_bursts,
                rtp_mean_burst_packets=counts.mean_burst_packets, rtp_payload_type=payload_type)


def ts_kpis(counts, arrivals: list, sizes: list, span: float) -> dict:
    """A record's MPEG-TS KPIs from one interval's TsCounts and its datagrams (MDI)."""
    df_ms, mlr_pps = _mdi(arrivals, sizes, counts.lost_packets, span)
    return dict(ts_packets=counts.packets, ts_cc_errors=counts.continuity_count_error,
                ts_lost_packets=counts.lost_packets, ts_sync_loss=counts.ts_sync_loss,
                ts_sync_byte_errors=counts.sync_byte_error, ts_pat_errors=counts.pat_error,
                ts_pmt_errors=counts.pmt_error, ts_pid_errors=counts.pid_error,
                ts_crc_errors=counts.crc_error,
                ts_pcr_repetition_errors=counts.pcr_repetition_error,
                ts_pcr_discontinuity_errors=counts.pcr_discontinuity_error,
                ts_pcr_jitter_ms=counts.pcr_jitter_ms, mdi_df_ms=df_ms, mdi_mlr_pps=mlr_pps)


def tcp_kpis(rtt: list, handshake_rtt: float, retransmissions: int, zero_windows: int
             ) -> dict:
    """A record's TCP KPIs from one interval's RTT samples and counters."""
    return dict(tcp_rtt_ms=sum(rtt) / len(rtt) if rtt else math.nan, tcp_rtt_samples=len(rtt),
                tcp_handshake_rtt_ms=handshake_rtt, tcp_retransmissions=retransmissions,
                tcp_zero_windows=zero_windows)


class FlowTable:
    def __init__(self, max_flows: int = 100_000, idle_timeout_s: float = 60.0):
        self.max_flows = max_flows
        self.idle_timeout_s = idle_timeout_s
        self._flows: collections.OrderedDict = collections.OrderedDict()
        self.evicted = 0
        self.expired = 0
        self._interval_start = None

    def __len__(self) -> int:
        return len(self._flows)

    def observe(self, packet: tuple, frame, now: float) -> None:
        key = packet[:5]
        flow = self._flows.get(key)
        if flow is None:
            if len(self._flows) >= self.max_flows:
                self._flows.popitem(last=False)
                self.evicted += 1
            flow = self._flows[key] = _Flow(key, now)
        else:
            self._flows.move_to_end(key)
        if self._interval_start is None:
            self._interval_start = now
        flow.last = now
        flow.packets += 1
        flow.bytes += packet[d.IP_LEN]
        flow.dscp = packet[d.DSCP]
        proto = packet[d.PROTO]
        start, length = packet[d.PAYLOAD_OFFSET], packet[d.PAYLOAD_LEN]
        if proto == d.UDP:
            self._udp(flow, memoryview(frame)[start:start + length], now)
        elif proto == d.TCP:
            self._tcp(flow, packet, now)

    # -- UDP: RTP and MPEG-TS -----------------------------------------------------------
    def _udp(self, flow: _Flow, payload, now: float) -> None:
        if flow.kind == _UNCLASSIFIED:
            if is_ts_payload(payload):
                flow.kind, flow.ts = _TS, TsAnalyzer()
            else:
                header = parse_rtp_header(bytes(payload[:64]))
                clock = STATIC_CLOCK_RATES.get(header.payload_type) if header else None
                if header is not None and clock:
                    flow.kind, flow.rtp, flow.ssrc = _RTP, RtpStreamStats(clock), header.ssrc
                    flow.pt = header.payload_type
                    if header.payload_type == 33:
                        flow.ts = TsAnalyzer()
                else:
                    flow.kind = _PLAIN
        if flow.kind == _TS:
            flow.ts.feed(bytes(payload), now)
            flow.ts_arrivals.append(now)
            flow.ts_sizes.append(len(payload))
        elif flow.kind == _RTP:
            if flow.ts is None and len(payload) >= 12 and payload[0] == 0x80 and \
                    not 72 <= payload[1] & 0x7F <= 76:
                # the common header (version 2, no padding, extension or CSRCs): the same
                # answer parse_rtp_header() gives, without building the header object
                _, _, sequence, timestamp, ssrc = _RTP_FIXED(payload)
                if ssrc == flow.ssrc:
                    flow.rtp.update(sequence, timestamp, now)
                return
            header = parse_rtp_header(bytes(payload[:64]))
            if header is None or header.ssrc != flow.ssrc:
                return  # not this stream's RTP: the analysers count only what is theirs
            flow.rtp.update(header.sequence, header.timestamp, now)
            if flow.ts is not None:
                body = bytes(payload[header.payload_offset:])
                flow.ts.feed(body, now)
                flow.ts_arrivals.append(now)
                flow.ts_sizes.append(len(body))

    # -- TCP ----------------------------------------------------------------------------
    def _tcp(self, flow: _Flow, packet: tuple, now: float) -> None:
        flow.kind = _TCP
        flags, seq, length = packet[d.TCP_FLAGS], packet[d.TCP_SEQ], packet[d.PAYLOAD_LEN]
        if packet[d.TCP_WINDOW] == 0 and not flags & d.TCP_RST:
            flow.zero_windows += 1
        if flags & d.TCP_SYN:
            if flags & d.TCP_ACK_FLAG:
                flow.synack_at = now
            else:
                flow.syn_at = now
        reverse = self._flows.get((packet[d.DST], packet[d.SRC], d.TCP, packet[d.DPORT],
                                   packet[d.SPORT]))
        if flags & d.TCP_ACK_FLAG and reverse is not None:
            ack = packet[d.TCP_ACK]
            if not flags & d.TCP_SYN and flow.syn_at is not None and \
                    flow.handshake_rtt is None and reverse.synack_at is not None:
                # the client's ACK of the SYN/ACK: from its SYN to here is the handshake
                flow.handshake_rtt = (now - flow.syn_at) * 1000
            sent_at = reverse.sent.pop(ack, None)
            if sent_at is not None:
                reverse.rtt.append((now - sent_at) * 1000)
        if length:
            end = (seq + length) & 0xFFFFFFFF
            if flow.max_end is not None and ((end - flow.max_end) & 0xFFFFFFFF) > 0x7FFFFFFF \
                    or end == flow.max_end:
                flow.retrans += 1
                flow.sent.pop(end, None)  # Karn: no RTT from retransmitted data
            else:
                flow.max_end = end
                if len(flow.sent) < 1024:
                    flow.sent[end] = now

    # -- output -------------------------------------------------------------------------
    def records(self, now: float, final: bool = False) -> list[FlowRecord]:
        """One record per flow active in the interval; counters restart for the next. With
        `final` (the capture ended) every RTP gap still within the reorder window is settled."""
        start = self._interval_start if self._interval_start is not None else now
        span = max(now - start, 1e-9)
        out = []
        for key in [k for k, f in self._flows.items() if now - f.last > self.idle_timeout_s]:
            del self._flows[key]
            self.expired += 1
        for flow in self._flows.values():
            if not flow.packets:
                if flow.rtp is not None and flow.rtp.unsettled():
                    # Idle for a whole interval: nothing more arrives in order; the last
                    # gaps are settled in a record of no packets.
                    out.append(FlowRecord(
                        d.format_address(flow.key[0]), d.format_address(flow.key[1]),
                        flow.key[2], flow.key[3], flow.key[4], _KIND_NAMES[flow.kind], start,
                        now, 0, 0, 0.0, flow.dscp, self._kpis(flow, span, final=True)))
                continue
            out.append(FlowRecord(
                d.format_address(flow.key[0]), d.format_address(flow.key[1]), flow.key[2],
                flow.key[3], flow.key[4], _KIND_NAMES[flow.kind], start, now, flow.packets,
                flow.bytes, flow.bytes * 8 / span, flow.dscp, self._kpis(flow, span, final)))
            flow.packets = flow.bytes = 0
        self._interval_start = now
        return out

    @staticmethod
    def _kpis(flow: _Flow, span: float, final: bool = False) -> dict:
        kpis = {}
        if flow.rtp is not None:
            kpis.update(rtp_kpis(flow.rtp.interval(final), flow.pt))
        if flow.ts is not None:
            kpis.update(ts_kpis(flow.ts.interval(), flow.ts_arrivals, flow.ts_sizes, span))
            flow.ts_arrivals, flow.ts_sizes = [], []
        if flow.kind == _TCP:
            kpis.update(tcp_kpis(flow.rtt, flow.handshake_rtt if flow.handshake_rtt is not None
                                 else math.nan, flow.retrans, flow.zero_windows))
            flow.rtt, flow.retrans, flow.zero_windows = [], 0, 0
        return kpis
