# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The passive probe's compiled hot path: frame decoding, the flow table, RTP, MPEG-TS and
TCP statistics in C, fed a batch of frames per call (built by scripts/build_fast.py).

This is a line-by-line translation of the pure-Python reference, which stays the
specification and the fallback: probes/decode.py (decode_frame), probes/flows.py
(FlowTable), qoe/rtp.py (RtpStreamStats, parse_rtp_header) and qoe/mpegts.py (TsAnalyzer).
Each branch here has its twin there, and tests/unit/probes/test_fast_differential.py
requires the same records field by field from both over captures, generated streams and
fuzzed frames. A change to the KPIs is made in both, or that test fails.

With ndpi=True (what cems-probe runs) each conversation's first packets (at most
NDPI_MAX_PACKETS, both directions sharing nDPI's state) also go to nDPI (Debian's
libndpi-dev), and records name the application, its category and whether nDPI decided or
guessed; the KPIs stay the reference's. The Python path has no nDPI.

FastFlowTable keeps FlowTable's interface (observe-by-frame through `feed`, records(),
evicted, expired, len) and its behaviour: the same least-recently-seen eviction, the same
idle expiry, the same interval records. Records are built with the reference's own
FlowRecord, RtpCounts, TsCounts and MDI code: they are made once per flow and interval, not
per packet.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.math cimport INFINITY, NAN, fabs, isnan
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcmp, memcpy

import collections

from probes.decode import format_address
from probes.flows import _KIND_NAMES, FlowRecord, rtp_kpis, tcp_kpis, ts_kpis
from qoe.mpegts import TsCounts, psi_sections
from qoe.rtp import STATIC_CLOCK_RATES, RtpCounts

# -- nDPI (Debian's libndpi-dev, 4.2) --------------------------------------------------------
cdef extern from "ndpi_api.h":
    cdef struct ndpi_detection_module_struct:
        pass
    cdef struct ndpi_flow_struct:
        pass
    ctypedef int ndpi_protocol_category_t
    ctypedef struct ndpi_protocol:
        uint16_t master_protocol
        uint16_t app_protocol
        ndpi_protocol_category_t category
    ctypedef struct NDPI_PROTOCOL_BITMASK:
        pass
    ctypedef int ndpi_init_prefs
    void NDPI_BITMASK_SET_ALL(NDPI_PROTOCOL_BITMASK bitmask)
    ndpi_detection_module_struct* ndpi_init_detection_module(ndpi_init_prefs prefs)
    void ndpi_set_protocol_detection_bitmask2(ndpi_detection_module_struct* module,
                                              const NDPI_PROTOCOL_BITMASK* bitmask)
    void ndpi_finalize_initialization(ndpi_detection_module_struct* module)
    void ndpi_exit_detection_module(ndpi_detection_module_struct* module)
    uint32_t ndpi_detection_get_sizeof_ndpi_flow_struct()
    void ndpi_free_flow_data(ndpi_flow_struct* flow)
    ndpi_protocol ndpi_detection_process_packet(ndpi_detection_module_struct* module,
                                                ndpi_flow_struct* flow,
                                                const unsigned char* packet,
                                                unsigned short length, uint64_t time_ms)
    ndpi_protocol ndpi_detection_giveup(ndpi_detection_module_struct* module,
                                        ndpi_flow_struct* flow, uint8_t enable_guess,
                                        uint8_t* guessed)
    uint8_t ndpi_extra_dissection_possible(ndpi_detection_module_struct* module,
                                           ndpi_flow_struct* flow)
    char* ndpi_protocol2name(ndpi_detection_module_struct* module, ndpi_protocol proto,
                             char* buf, unsigned int length)
    const char* ndpi_category_get_name(ndpi_detection_module_struct* module,
                                       ndpi_protocol_category_t category)
    char* ndpi_get_proto_name(ndpi_detection_module_struct* module, uint16_t proto_id)
    unsigned int ndpi_get_num_supported_protocols(ndpi_detection_module_struct* module)
    const char* ndpi_revision()
    int NDPI_PROTOCOL_NUM_CATEGORIES


def ndpi_version() -> str:
    return ndpi_revision().decode(errors="replace")

NDPI_MAX_PACKETS = 32  # a conversation's packets nDPI looks at before it has to decide


@cython.final
cdef class Ndpi:
    """One nDPI detection module (all protocols), shared by a table's conversations."""

    cdef ndpi_detection_module_struct* module
    cdef uint32_t flow_size
    cdef public int64_t packets  # packets handed to nDPI

    def __cinit__(self):
        cdef NDPI_PROTOCOL_BITMASK everything
        self.module = ndpi_init_detection_module(0)
        if self.module == NULL:
            raise MemoryError("nDPI: ndpi_init_detection_module failed")
        NDPI_BITMASK_SET_ALL(everything)
        ndpi_set_protocol_detection_bitmask2(self.module, &everything)
        ndpi_finalize_initialization(self.module)
        self.flow_size = ndpi_detection_get_sizeof_ndpi_flow_struct()

    def __dealloc__(self):
        if self.module != NULL:
            ndpi_exit_detection_module(self.module)

    def category_names(self):
        """Every category name this nDPI knows."""
        cdef int i
        cdef const char* name
        names = set()
        for i in range(NDPI_PROTOCOL_NUM_CATEGORIES):
            name = ndpi_category_get_name(self.module, i)
            if name != NULL:
                names.add(name.decode(errors="replace"))
        return names

    def protocol_names(self):
        """Every protocol name this nDPI knows."""
        cdef unsigned int i
        cdef char* name
        names = set()
        for i in range(ndpi_get_num_supported_protocols(self.module)):
            name = ndpi_get_proto_name(self.module, i)
            if name != NULL:
                names.add(name.decode(errors="replace"))
        return names


@cython.final
cdef class Conversation:
    """nDPI's state of one conversation, shared by its two directions' flows; freed once
    nDPI has decided (or after NDPI_MAX_PACKETS packets, when it is asked to guess)."""

    cdef Ndpi ndpi
    cdef ndpi_flow_struct* flow
    cdef public int packets
    cdef bint done
    cdef public str application, category, method

    def __cinit__(self, Ndpi ndpi):
        self.ndpi = ndpi
        self.flow = <ndpi_flow_struct*>calloc(1, ndpi.flow_size)
        if self.flow == NULL:
            raise MemoryError("nDPI flow")
        self.application = self.category = self.method = ""

    def __dealloc__(self):
        self.release()

    cdef void release(self):
        if self.flow != NULL:
            ndpi_free_flow_data(self.flow)
            free(self.flow)
            self.flow = NULL

    cdef void process(self, const uint8_t* packet, Py_ssize_t length, double now):
        cdef ndpi_protocol found
        cdef uint8_t guessed = 0
        if self.done:
            return
        self.packets += 1
        self.ndpi.packets += 1
        found = ndpi_detection_process_packet(self.ndpi.module, self.flow, packet,
                                              <unsigned short>(length if length < 65535
                                                               else 65535),
                                              <uint64_t>(now * 1000))
        if found.app_protocol or found.master_protocol:
            self.name(found, "ndpi")
            if not ndpi_extra_dissection_possible(self.ndpi.module, self.flow):
                self.finish()
        elif self.packets >= NDPI_MAX_PACKETS:
            found = ndpi_detection_giveup(self.ndpi.module, self.flow, 1, &guessed)
            if found.app_protocol or found.master_protocol:
                self.name(found, "ndpi-guess" if guessed else "ndpi")
            self.finish()

    cdef void name(self, ndpi_protocol found, str method):
        cdef char buf[64]
        self.application = ndpi_protocol2name(self.ndpi.module, found, buf,
                                              sizeof(buf)).decode(errors="replace")
        category = ndpi_category_get_name(self.ndpi.module, found.category)
        self.category = category.decode(errors="replace") if category != NULL else ""
        self.method = method

    cdef void finish(self):
        self.done = True
        self.release()


# -- decoding (probes/decode.py) ------------------------------------------------------------
DEF ETH_IPV4 = 0x0800
DEF ETH_IPV6 = 0x86DD
DEF ETH_VLAN = 0x8100
DEF ETH_QINQ = 0x88A8
DEF TCP = 6
DEF UDP = 17
DEF TCP_SYN = 0x02
DEF TCP_RST = 0x04
DEF TCP_ACK_FLAG = 0x10

REASONS = ("", "truncated ethernet", "truncated vlan", "truncated ipv4",
           "bad ipv4 header length", "bad ipv4 total length", "truncated ipv6",
           "bad ipv6 version", "truncated ipv6 extension", "not ip", "truncated udp",
           "bad udp length", "truncated tcp", "bad tcp header length")


cdef struct Packet:
    Py_ssize_t l3_offset  # where the IP header starts (for nDPI)
    Py_ssize_t frame_len
    int addr_len
    uint8_t src[16]
    uint8_t dst[16]
    int proto
    int sport
    int dport
    int64_t ip_len
    int dscp
    Py_ssize_t payload_offset
    Py_ssize_t payload_len
    uint32_t tcp_seq
    uint32_t tcp_ack
    int tcp_flags
    int tcp_window


cdef inline unsigned int u16(const uint8_t* p) noexcept nogil:
    return (p[0] << 8) | p[1]


cdef inline uint32_t u32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef int decode(const uint8_t* f, Py_ssize_t n, Packet* p) noexcept nogil:
    """0 and `p` filled, or the index of the reason in REASONS (decode_frame's twin)."""
    cdef Py_ssize_t offset, ihl, total, end, l4, payload, udp_len, header, start
    cdef unsigned int ethertype, first, fragment
    cdef int i, proto
    p.frame_len = n
    if n < 14:
        return 1
    offset = 12
    ethertype = u16(f + offset)
    for i in range(2):
        if ethertype != ETH_VLAN and ethertype != ETH_QINQ:
            break
        offset += 4
        if n < offset + 2:
            return 2
        ethertype = u16(f + offset)
    offset += 2
    p.l3_offset = offset
    p.sport = p.dport = 0
    p.payload_len = 0
    p.tcp_seq = p.tcp_ack = 0
    p.tcp_flags = p.tcp_window = 0
    if ethertype == ETH_IPV4:
        if n < offset + 20:
            return 3
        first = f[offset]
        ihl = (first & 0x0F) * 4
        if first >> 4 != 4 or ihl < 20:
            return 4
        total = u16(f + offset + 2)
        if total < ihl or n < offset + ihl:
            return 5
        end = n if n < offset + total else offset + total
        p.dscp = f[offset + 1] >> 2
        fragment = u16(f + offset + 6)
        proto = f[offset + 9]
        p.addr_len = 4
        memcpy(p.src, f + offset + 12, 4)
        memcpy(p.dst, f + offset + 16, 4)
        l4 = offset + ihl
        p.ip_len = total
        p.proto = proto
        if fragment & 0x1FFF:
            p.payload_offset = end
            return 0
    elif ethertype == ETH_IPV6:
        if n < offset + 40:
            return 6
        if f[offset] >> 4 != 6:
            return 7
        p.dscp = ((u16(f + offset) >> 4) & 0xFF) >> 2
        payload = u16(f + offset + 4)
        proto = f[offset + 6]
        p.addr_len = 16
        memcpy(p.src, f + offset + 8, 16)
        memcpy(p.dst, f + offset + 24, 16)
        l4 = offset + 40
        end = n if n < l4 + payload else l4 + payload
        p.ip_len = payload + 40
        while proto == 0 or proto == 43 or proto == 60:
            if end < l4 + 8:
                return 8
            proto, l4 = f[l4], l4 + (f[l4 + 1] + 1) * 8
        p.proto = proto
    else:
        return 9
    if proto == UDP:
        if end < l4 + 8:
            return 10
        udp_len = u16(f + l4 + 4)
        if udp_len < 8:
            return 11
        p.sport, p.dport = u16(f + l4), u16(f + l4 + 2)
        start = l4 + 8
        p.payload_offset = start
        p.payload_len = (end if end < l4 + udp_len else l4 + udp_len) - start
        if p.payload_len < 0:
            p.payload_len = 0
        return 0
    if proto == TCP:
        if end < l4 + 20:
            return 12
        header = (f[l4 + 12] >> 4) * 4
        if header < 20 or end < l4 + header:
            return 13
        p.sport, p.dport = u16(f + l4), u16(f + l4 + 2)
        p.tcp_seq, p.tcp_ack = u32(f + l4 + 4), u32(f + l4 + 8)
        p.tcp_flags, p.tcp_window = f[l4 + 13], u16(f + l4 + 14)
        start = l4 + header
        p.payload_offset = start
        p.payload_len = end - start
        return 0
    p.payload_offset = end
    return 0


def decode_frame(frame):
    """The same answer as probes.decode.decode_frame: (packet tuple, "") or (None, reason)."""
    cdef Packet p
    cdef bytes data = frame if type(frame) is bytes else bytes(frame)
    cdef int reason = decode(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data),
                             &p)
    if reason:
        return None, REASONS[reason]
    return (PyBytes_FromStringAndSize(<char*>p.src, p.addr_len),
            PyBytes_FromStringAndSize(<char*>p.dst, p.addr_len), p.proto, p.sport, p.dport,
            p.ip_len, p.dscp, p.payload_offset, p.payload_len, p.tcp_seq, p.tcp_ack,
            p.tcp_flags, p.tcp_window), ""


cdef bytes flow_key(const uint8_t* src, const uint8_t* dst, int addr_len, int proto,
                    int sport, int dport):
    """src, dst, protocol and ports in one bytes object (37 bytes at most)."""
    cdef uint8_t buf[37]
    memcpy(buf, src, addr_len)
    memcpy(buf + addr_len, dst, addr_len)
    cdef int at = 2 * addr_len
    buf[at] = proto
    buf[at + 1] = sport >> 8
    buf[at + 2] = sport & 0xFF
    buf[at + 3] = dport >> 8
    buf[at + 4] = dport & 0xFF
    return PyBytes_FromStringAndSize(<char*>buf, at + 5)


cdef tuple key_fields(bytes key):
    """A flow_key back into a record's src, dst, protocol and ports."""
    cdef const uint8_t* k = <const uint8_t*>PyBytes_AS_STRING(key)
    cdef int addr_len = (PyBytes_GET_SIZE(key) - 5) // 2
    cdef int at = 2 * addr_len
    return (format_address(key[:addr_len]), format_address(key[addr_len:at]), k[at],
            u16(k + at + 1), u16(k + at + 3))


# -- RTP (qoe/rtp.py) -----------------------------------------------------------------------
DEF RTP_SEQ_MOD = 65536
DEF MAX_DROPOUT = 3000
DEF MAX_MISORDER = 100
DEF DUPLICATE_WINDOW = 1024
DEF REORDER_WINDOW = 8


cdef struct RtpHeader:
    int payload_type
    unsigned int sequence
    uint32_t timestamp
    uint32_t ssrc
    Py_ssize_t payload_offset


cdef bint parse_rtp(const uint8_t* data, Py_ssize_t length, RtpHeader* h) noexcept nogil:
    """parse_rtp_header's twin; the caller passes at most the first 64 bytes, as it does."""
    cdef Py_ssize_t offset
    cdef unsigned int first
    if length < 12:
        return False
    first = data[0]
    if first >> 6 != 2:
        return False
    offset = 12 + 4 * (first & 0x0F)
    if length < offset:
        return False
    if first & 0x10:
        if length < offset + 4:
            return False
        offset += 4 + 4 * u16(data + offset + 2)
        if length < offset:
            return False
    h.payload_type = data[1] & 0x7F
    if 72 <= h.payload_type <= 76:
        return False
    if first & 0x20 and (data[length - 1] == 0 or data[length - 1] > length - offset):
        return False
    h.sequence = u16(data + 2)
    h.timestamp = u32(data + 4)
    h.ssrc = u32(data + 8)
    h.payload_offset = offset
    return True


@cython.final
cdef class RtpStats:
    """RtpStreamStats' twin (RFC 3550 A.1, A.3, A.8)."""

    cdef public int clock_rate_hz
    cdef bint started, has_bad_seq, has_settled, has_transit
    cdef int64_t base, max_seq, expected_before, settled_upto, settled_expected, settled_lost
    cdef int64_t received, unique, duplicates, reordered, restarts, bursts
    cdef int64_t bad_seq
    cdef set seen
    cdef double jitter, last_transit, jitter_max, jitter_sum
    cdef int64_t jitter_samples
    cdef bint previous_lost
    cdef object interval_start
    cdef int64_t interval_expected, interval_lost, interval_bursts

    def __init__(self, int clock_rate_hz):
        if clock_rate_hz <= 0:
            raise ValueError(f"clock_rate_hz must be positive, got {clock_rate_hz}")
        self.clock_rate_hz = clock_rate_hz
        self.seen = set()
        self.jitter = 0.0
        self.jitter_max = NAN
        self.interval_start = RtpCounts(0, 0, 0, 0, 0, float("nan"), 0)

    cdef void update(self, unsigned int sequence, uint32_t timestamp, double arrival):
        cdef int64_t extended, floor
        self.received += 1
        if not self.extend(sequence, &extended):
            return
        if extended in self.seen:
            self.duplicates += 1
            return
        self.seen.add(extended)
        if len(self.seen) > 2 * DUPLICATE_WINDOW:
            floor = self.max_seq - DUPLICATE_WINDOW
            self.seen = {s for s in self.seen if s > floor}
        self.unique += 1
        if extended < self.base:
            self.base = extended
        if not self.has_settled:
            self.has_settled = True
            self.settled_upto = extended - 1
        if extended < self.max_seq:
            self.reordered += 1
        else:
            self.max_seq = extended
            self.settle(self.max_seq - REORDER_WINDOW)
        self.update_jitter(timestamp, arrival)

    cdef void settle(self, int64_t upto):
        cdef int64_t sequence
        cdef bint lost
        if not self.has_settled or upto <= self.settled_upto:
            return
        for sequence in range(self.settled_upto + 1, upto + 1):
            lost = sequence not in self.seen
            if lost:
                self.settled_lost += 1
                if not self.previous_lost:
                    self.bursts += 1
            self.previous_lost = lost
        self.settled_expected += upto - self.settled_upto
        self.settled_upto = upto

    cdef bint extend(self, unsigned int sequence, int64_t* extended):
        cdef int64_t max_low, udelta
        if not self.started:
            self.started = True
            self.base = self.max_seq = sequence
            extended[0] = sequence
            return True
        max_low = self.max_seq % RTP_SEQ_MOD
        udelta = (<int64_t>sequence - max_low) % RTP_SEQ_MOD
        if udelta < MAX_DROPOUT:
            extended[0] = self.max_seq + udelta
            return True
        if udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if self.has_bad_seq and sequence == self.bad_seq:
                self.restart(sequence)
                extended[0] = sequence
                return True
            self.has_bad_seq = True
            self.bad_seq = (sequence + 1) % RTP_SEQ_MOD
            return False
        extended[0] = self.max_seq - (max_low - <int64_t>sequence) % RTP_SEQ_MOD
        return True

    cdef void restart(self, unsigned int sequence):
        self.restarts += 1
        self.settle(self.max_seq)
        self.settled_upto = <int64_t>sequence - 1
        self.previous_lost = False
        self.expected_before += self.max_seq - self.base + 1
        self.base = self.max_seq = sequence
        self.seen = set()
        self.has_bad_seq = False
        self.has_transit = False

    cdef void update_jitter(self, uint32_t timestamp, double arrival):
        cdef double transit = arrival * self.clock_rate_hz - <double>timestamp
        cdef double d
        if self.has_transit:
            d = transit - self.last_transit
            d = (d + 2147483648.0) % 4294967296.0 - 2147483648.0  # Python's float modulo
            self.jitter += (fabs(d) - self.jitter) / 16
            if not self.jitter_max >= self.jitter:
                self.jitter_max = self.jitter
            self.jitter_sum += self.jitter
            self.jitter_samples += 1
        self.last_transit = transit
        self.has_transit = True

    cdef int64_t expected(self):
        return self.expected_before + (self.max_seq - self.base + 1 if self.started else 0)

    def snapshot(self):
        cdef int64_t expected = self.expected()
        jitter_ms = self.jitter / self.clock_rate_hz * 1000 if self.unique > 1 else NAN
        lost = expected - self.unique
        return RtpCounts(self.received, expected, lost if lost > 0 else 0, self.duplicates,
                         self.reordered, jitter_ms, self.restarts)

    cpdef bint unsettled(self):
        return self.started and self.has_settled and self.settled_upto < self.max_seq

    def interval(self, bint final=False):
        if final and self.started:
            self.settle(self.max_seq)
        now = self.snapshot()
        start = self.interval_start
        cdef double scale = 1000.0 / self.clock_rate_hz
        counts = RtpCounts(
            now.received - start.received, self.settled_expected - self.interval_expected,
            self.settled_lost - self.interval_lost, now.duplicates - start.duplicates,
            now.reordered - start.reordered, now.jitter_ms, now.restarts - start.restarts,
            self.jitter_max * scale if self.jitter_samples else NAN,
            self.jitter_sum / self.jitter_samples * scale if self.jitter_samples else NAN,
            self.bursts - self.interval_bursts)
        self.interval_start = now
        self.interval_expected = self.settled_expected
        self.interval_lost = self.settled_lost
        self.interval_bursts = self.bursts
        self.jitter_max = NAN
        self.jitter_sum = 0.0
        self.jitter_samples = 0
        return counts


# -- MPEG-TS (qoe/mpegts.py) ----------------------------------------------------------------
DEF TS_PACKET = 188
DEF SYNC = 0x47
DEF NULL_PID = 0x1FFF
DEF PAT_PID = 0
DEF PSI_INTERVAL_S = 0.5
DEF PCR_REPETITION_S = 0.040
DEF PCR_DISCONTINUITY_S = 0.100
DEF PCR_HZ = 27000000.0

# TsCounts' counters, in the order of the array below
cdef enum:
    C_PACKETS, C_NOT_TS, C_SYNC_LOSS, C_SYNC_BYTE, C_PAT, C_CC, C_LOST, C_PMT, C_PID, C_CRC, \
        C_PCR_REPETITION, C_PCR_DISCONTINUITY, C_PCR_COUNT, N_COUNTS
_COUNT_NAMES = ("packets", "not_ts_datagrams", "ts_sync_loss", "sync_byte_error", "pat_error",
                "continuity_count_error", "lost_packets", "pmt_error", "pid_error", "crc_error",
                "pcr_repetition_error", "pcr_discontinuity_error", "pcr_count")

cdef uint32_t CRC_TABLE[256]


cdef void _crc_table():
    cdef uint32_t crc
    cdef int i, j
    for i in range(256):
        crc = <uint32_t>i << 24
        for j in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else crc << 1
        CRC_TABLE[i] = crc


_crc_table()


cdef uint32_t crc32_mpeg2(const uint8_t* data, Py_ssize_t n) noexcept nogil:
    cdef uint32_t crc = 0xFFFFFFFF
    cdef Py_ssize_t i
    for i in range(n):
        crc = (crc << 8) ^ CRC_TABLE[((crc >> 24) ^ data[i]) & 0xFF]
    return crc


@cython.final
cdef class PidState:
    cdef int cc  # -1: none yet
    cdef bint duplicate_seen
    cdef uint8_t last_packet[TS_PACKET]
    cdef bint has_last
    cdef double last_seen_s

    def __init__(self):
        self.cc = -1


@cython.final
cdef class TsStats:
    """TsAnalyzer's twin: TR 101 290 priority-1 (and PCR) state over datagram payloads."""

    cdef double pid_timeout_s
    cdef int64_t counts[N_COUNTS]
    cdef int64_t start_counts[N_COUNTS]
    cdef dict pids, pmt_pids, es_pids, sections, last_pcr
    # the same sets of PIDs as pmt_pids' and es_pids' keys (which only ever grow), as bits
    cdef uint8_t pmt_bits[1024]
    cdef uint8_t es_bits[1024]
    # at most the smallest time a check_timeouts() loop compares `now` with: while now is
    # within the interval of it, no entry can be due and the loops are skipped, with the
    # same counts as running them
    cdef double pmt_floor, es_floor
    cdef set pcr_pids
    cdef bint synced
    cdef int64_t good_syncs, bad_syncs
    cdef bint has_pat, has_first
    cdef double last_pat_s, first_s, pcr_max_interval_s, pcr_jitter_s

    def __init__(self, double pid_timeout_s=5.0):
        self.pid_timeout_s = pid_timeout_s
        self.pids, self.pmt_pids, self.es_pids = {}, {}, {}
        self.sections, self.last_pcr = {}, {}
        self.pcr_pids = set()
        self.pcr_max_interval_s = NAN
        self.pcr_jitter_s = NAN
        self.pmt_floor = self.es_floor = INFINITY

    cdef void feed(self, const uint8_t* payload, Py_ssize_t n, double now):
        cdef Py_ssize_t offset
        if n == 0 or n % TS_PACKET or payload[0] != SYNC:
            self.counts[C_NOT_TS] += 1
            return
        if not self.has_first:
            self.has_first = True
            self.first_s = now
            self.has_pat = True
            self.last_pat_s = now
        if not (self.synced and self.clean(payload, n, now)):
            for offset in range(0, n, TS_PACKET):
                self.packet(payload + offset, now)
        self.check_timeouts(now)

    cdef bint clean(self, const uint8_t* payload, Py_ssize_t n, double now):
        cdef int pids[64]
        cdef int ccs[64]
        cdef Py_ssize_t lasts[64]
        cdef int used = 0, i, j, pid, cc, previous
        cdef unsigned int flags
        cdef Py_ssize_t offset
        cdef PidState state
        for offset in range(0, n, TS_PACKET):
            if payload[offset] != SYNC:
                return False
            pid = ((payload[offset + 1] & 0x1F) << 8) | payload[offset + 2]
            if pid == NULL_PID:
                continue
            flags = payload[offset + 3]
            if flags & 0x30 != 0x10 or pid == PAT_PID or self.pmt_bits[pid >> 3] & (1 << (pid & 7)):
                return False
            cc = flags & 0x0F
            j = -1
            for i in range(used):
                if pids[i] == pid:
                    j = i
                    break
            if j < 0:
                if used == 64:
                    return False  # more PIDs in one datagram than kept here: packet by packet
                state = self.pids.get(pid)
                if state is None or state.cc < 0:
                    return False
                previous = state.cc
                j = used
                used += 1
                pids[j] = pid
            else:
                previous = ccs[j]
            if cc != (previous + 1) & 0x0F:
                return False
            ccs[j] = cc
            lasts[j] = offset
        count = n // TS_PACKET
        self.counts[C_PACKETS] += count
        self.good_syncs += count
        self.bad_syncs = 0
        for i in range(used):
            state = self.pids[pids[i]]
            state.cc = ccs[i]
            state.duplicate_seen = False
            memcpy(state.last_packet, payload + lasts[i], TS_PACKET)
            state.has_last = True
            state.last_seen_s = now
            if self.es_bits[pids[i] >> 3] & (1 << (pids[i] & 7)):
                self.es_pids[pids[i]] = now
                if now < self.es_floor:
                    self.es_floor = now
        return True

    cdef bint sync(self, bint ok):
        if ok:
            self.good_syncs += 1
            self.bad_syncs = 0
            if not self.synced and self.good_syncs >= 5:
                self.synced = True
            return True
        self.good_syncs = 0
        self.bad_syncs += 1
        if self.synced:
            self.counts[C_SYNC_BYTE] += 1
            if self.bad_syncs >= 2:
                self.synced = False
                self.counts[C_SYNC_LOSS] += 1
        return False

    cdef void packet(self, const uint8_t* pkt, double now):
        cdef int pid, scrambling, afc, cc, length
        cdef bint pusi, discontinuity
        cdef Py_ssize_t payload_start
        cdef unsigned int flags
        cdef PidState state
        self.counts[C_PACKETS] += 1
        if not self.sync(pkt[0] == SYNC):
            return
        pid = ((pkt[1] & 0x1F) << 8) | pkt[2]
        pusi = pkt[1] & 0x40
        scrambling = pkt[3] >> 6
        afc = (pkt[3] >> 4) & 0x3
        cc = pkt[3] & 0x0F
        if pid == NULL_PID:
            return
        state = self.pids.get(pid)
        if state is None:
            state = PidState()
            self.pids[pid] = state
        state.last_seen_s = now
        if self.es_bits[pid >> 3] & (1 << (pid & 7)):
            self.es_pids[pid] = now
            if now < self.es_floor:
                self.es_floor = now
        payload_start = 4
        discontinuity = False
        if afc & 0x2:
            length = pkt[4]
            payload_start = 5 + length
            if length > 0 and payload_start <= TS_PACKET:
                flags = pkt[5]
                discontinuity = flags & 0x80
                if flags & 0x10 and length >= 7:
                    self.pcr(pid, pkt + 6, discontinuity, now)
        self.continuity(state, pkt, cc, afc, discontinuity)
        if pid == PAT_PID or self.pmt_bits[pid >> 3] & (1 << (pid & 7)):
            if scrambling:
                self.counts[C_PAT if pid == PAT_PID else C_PMT] += 1
            elif afc & 0x1 and payload_start < TS_PACKET:
                self.psi(pid, pusi, (<const char*>pkt)[payload_start:TS_PACKET], now)

    cdef void continuity(self, PidState state, const uint8_t* pkt, int cc, int afc,
                         bint discontinuity):
        cdef bint has_payload = afc & 0x1
        cdef int previous = state.cc
        cdef int missing
        state.cc = cc
        if previous < 0 or discontinuity:
            state.duplicate_seen = False
            memcpy(state.last_packet, pkt, TS_PACKET)
            state.has_last = True
            return
        if not has_payload:
            if cc != previous:
                self.counts[C_CC] += 1
            return
        if cc == previous:
            if state.has_last and memcmp(pkt, state.last_packet, TS_PACKET) == 0 and \
                    not state.duplicate_seen:
                state.duplicate_seen = True
                return
            self.counts[C_CC] += 1
            return
        state.duplicate_seen = False
        memcpy(state.last_packet, pkt, TS_PACKET)
        state.has_last = True
        missing = (cc - previous - 1) % 16
        if missing:
            self.counts[C_CC] += 1
            self.counts[C_LOST] += missing

    cdef void pcr(self, int pid, const uint8_t* field, bint discontinuity, double now):
        cdef int64_t base = (<int64_t>field[0] << 25) | (<int64_t>field[1] << 17) | \
            (<int64_t>field[2] << 9) | (<int64_t>field[3] << 1) | (field[4] >> 7)
        cdef int64_t extension = ((field[4] & 0x1) << 8) | field[5]
        cdef int64_t value = base * 300 + extension
        cdef int64_t wrap = (<int64_t>1 << 33) * 300
        cdef int64_t old
        cdef double delta_s, jitter, previous_at
        cdef bint backwards
        self.counts[C_PCR_COUNT] += 1
        previous = self.last_pcr.get(pid)
        self.last_pcr[pid] = (value, now)
        if previous is None or discontinuity:
            return
        old, previous_at = previous
        delta_s = ((value - old) % wrap) / PCR_HZ
        backwards = value < old and old - value < (<int64_t>1 << 32) * 300
        if backwards or delta_s > PCR_DISCONTINUITY_S:
            self.counts[C_PCR_DISCONTINUITY] += 1
            return
        if delta_s > PCR_REPETITION_S:
            self.counts[C_PCR_REPETITION] += 1
        if isnan(self.pcr_max_interval_s) or delta_s > self.pcr_max_interval_s:
            self.pcr_max_interval_s = delta_s
        jitter = fabs(delta_s - (now - previous_at))
        if isnan(self.pcr_jitter_s) or jitter > self.pcr_jitter_s:
            self.pcr_jitter_s = jitter

    cdef void psi(self, int pid, bint pusi, bytes data, double now):
        for section in psi_sections(self.sections, pid, pusi, data):  # rare: in Python
            self.section(pid, section, now)

    cdef void section(self, int pid, bytes section, double now):
        cdef const uint8_t* s = <const uint8_t*>PyBytes_AS_STRING(section)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(section)
        cdef int table_id = s[0]
        cdef Py_ssize_t i, end
        cdef int program, map_pid, pcr_pid, info_length, es_pid
        if crc32_mpeg2(s, n) != 0:
            self.counts[C_CRC] += 1
            return
        if pid == PAT_PID:
            if table_id != 0x00:
                self.counts[C_PAT] += 1
                return
            self.has_pat = True
            self.last_pat_s = now
            # body = section[8:-4]; entries while i < len(body) - 3
            end = n - 4 - 8 if n >= 12 else 0
            i = 0
            while i < end - 3:
                program = (s[8 + i] << 8) | s[8 + i + 1]
                map_pid = ((s[8 + i + 2] & 0x1F) << 8) | s[8 + i + 3]
                if program != 0:
                    if map_pid not in self.pmt_pids:
                        self.pmt_pids[map_pid] = None  # due PSI_INTERVAL_S after the first
                        self.pmt_bits[map_pid >> 3] |= 1 << (map_pid & 7)
                        if self.first_s < self.pmt_floor:
                            self.pmt_floor = self.first_s
                i += 4
        elif table_id == 0x02:
            if n < 16:
                self.counts[C_PMT] += 1  # too short to hold a PMT's fixed fields and CRC
                return
            self.pmt_pids[pid] = now
            if now < self.pmt_floor:
                self.pmt_floor = now
            pcr_pid = ((s[8] & 0x1F) << 8) | s[9]
            if pcr_pid != NULL_PID:
                self.pcr_pids.add(pcr_pid)
            info_length = ((s[10] & 0x0F) << 8) | s[11]
            i = 12 + info_length
            end = n - 4
            while i + 5 <= end:
                es_pid = ((s[i + 1] & 0x1F) << 8) | s[i + 2]
                if es_pid not in self.es_pids:
                    self.es_pids[es_pid] = now
                    self.es_bits[es_pid >> 3] |= 1 << (es_pid & 7)
                    if now < self.es_floor:
                        self.es_floor = now
                i += 5 + (((s[i + 3] & 0x0F) << 8) | s[i + 4])

    cdef void check_timeouts(self, double now):
        if self.has_pat and now - self.last_pat_s > PSI_INTERVAL_S:
            self.counts[C_PAT] += 1
            self.last_pat_s = now
        cdef double floor
        if self.pmt_pids and now - self.pmt_floor > PSI_INTERVAL_S:
            floor = INFINITY
            for pid, seen in self.pmt_pids.items():
                reference = seen if seen is not None else self.first_s
                if now - reference > PSI_INTERVAL_S:
                    self.counts[C_PMT] += 1
                    self.pmt_pids[pid] = now
                    reference = now
                if reference < floor:
                    floor = reference
            self.pmt_floor = floor
        if self.es_pids and now - self.es_floor > self.pid_timeout_s:
            floor = INFINITY
            for pid, seen in self.es_pids.items():
                if seen is None:
                    continue
                if now - seen > self.pid_timeout_s:
                    self.counts[C_PID] += 1
                    self.es_pids[pid] = now
                    seen = now
                if seen < floor:
                    floor = seen
            self.es_floor = floor

    def interval(self):
        values = {}
        cdef int i
        for i in range(N_COUNTS):
            values[_COUNT_NAMES[i]] = self.counts[i] - self.start_counts[i]
            self.start_counts[i] = self.counts[i]
        counts = TsCounts(**values, pcr_max_interval_ms=self.pcr_max_interval_s * 1000,
                          pcr_jitter_ms=self.pcr_jitter_s * 1000)
        self.pcr_max_interval_s = NAN
        self.pcr_jitter_s = NAN
        return counts


cdef bint is_ts_payload(const uint8_t* p, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    if n < TS_PACKET or n % TS_PACKET:
        return False
    for i in range(0, n, TS_PACKET):
        if p[i] != SYNC:
            return False
    return True


# -- the flow table (probes/flows.py) -------------------------------------------------------
_NOT_DETECTED = ("", "", "")


cdef tuple detected(Flow flow):
    """(application, category, detected_by) of nDPI for a record; empty without it."""
    cdef Conversation conversation = flow.conversation
    if conversation is None or not conversation.method:
        return _NOT_DETECTED
    return conversation.application, conversation.category, conversation.method

# the kinds as probes.flows numbers them (its _KIND_NAMES names them in records)
DEF K_UNCLASSIFIED = 0
DEF K_PLAIN = 1
DEF K_RTP = 2
DEF K_TS = 3
DEF K_TCP = 4
_CLOCKS = dict(STATIC_CLOCK_RATES)


@cython.final
cdef class Flow:
    cdef bytes key
    cdef int kind
    cdef double first, last
    cdef int64_t packets, nbytes
    cdef int dscp
    cdef RtpStats rtp
    cdef TsStats ts
    cdef object pt
    cdef uint32_t ssrc
    # the interval's TS datagrams (for MDI): arrival times and sizes, in C arrays
    cdef double* ts_arrivals
    cdef Py_ssize_t* ts_sizes
    cdef Py_ssize_t ts_count, ts_capacity
    cdef bint has_max_end
    cdef uint32_t max_end
    cdef dict sent
    cdef list rtt
    cdef int64_t retrans, zero_windows
    cdef bint has_syn, has_synack
    cdef double syn_at, synack_at, handshake_rtt
    cdef Conversation conversation  # nDPI's, when the table runs it

    def __init__(self, bytes key, double now):
        self.key = key
        self.first = self.last = now
        self.sent = {}
        self.rtt = []
        self.handshake_rtt = NAN

    def __dealloc__(self):
        free(self.ts_arrivals)
        free(self.ts_sizes)

    cdef void datagram(self, double now, Py_ssize_t size) except *:
        cdef Py_ssize_t capacity
        cdef void* arrivals
        cdef void* sizes
        if self.ts_count == self.ts_capacity:
            capacity = self.ts_capacity * 2 if self.ts_capacity else 64
            arrivals = realloc(self.ts_arrivals, capacity * sizeof(double))
            if arrivals == NULL:
                raise MemoryError("TS arrivals")
            self.ts_arrivals = <double*>arrivals
            sizes = realloc(self.ts_sizes, capacity * sizeof(Py_ssize_t))
            if sizes == NULL:
                raise MemoryError("TS sizes")
            self.ts_sizes = <Py_ssize_t*>sizes
            self.ts_capacity = capacity
        self.ts_arrivals[self.ts_count] = now
        self.ts_sizes[self.ts_count] = size
        self.ts_count += 1


@cython.final
cdef class FastFlowTable:
    """FlowTable's twin (probes/flows.py), fed frames in batches by `feed`."""

    cdef public Py_ssize_t max_flows
    cdef public double idle_timeout_s
    cdef public int64_t evicted, expired
    cdef object flows  # OrderedDict: key bytes -> Flow, least recently seen first
    cdef object move_to_end
    cdef bint has_interval
    cdef double interval_start
    cdef public Ndpi ndpi

    def __init__(self, Py_ssize_t max_flows=100_000, double idle_timeout_s=60.0,
                 bint ndpi=False):
        """With `ndpi`, each conversation's first packets also go to nDPI, and records name
        the application and category it detected (FlowRecord.application, .category)."""
        self.max_flows = max_flows
        self.idle_timeout_s = idle_timeout_s
        self.flows = collections.OrderedDict()
        self.move_to_end = self.flows.move_to_end
        self.ndpi = Ndpi() if ndpi else None

    def __len__(self):
        return len(self.flows)

    def feed(self, list frames, Py_ssize_t start, double boundary, malformed):
        """Observe frames[start:] ((time, frame bytes) pairs) up to the first whose time is
        at or past `boundary` or whose frame is None (a tick), which is left for the caller.
        Undecodable frames are counted by reason in `malformed` (a Counter). Returns the
        index of the first frame not taken and how many frames were taken."""
        cdef Py_ssize_t i = start, n = len(frames)
        cdef double when
        cdef Packet p
        cdef int reason
        cdef bytes data
        while i < n:
            item = <tuple>frames[i]
            when = item[0]
            frame = item[1]
            if when >= boundary or frame is None:
                break
            data = frame if type(frame) is bytes else bytes(frame)
            reason = decode(<const uint8_t*>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), &p)
            if reason:
                malformed[REASONS[reason]] += 1
            else:
                self.observe(&p, <const uint8_t*>PyBytes_AS_STRING(data), when)
            i += 1
        return i, i - start

    def feed_block(self, ring, Py_ssize_t block_offset, Py_ssize_t index, double boundary,
                   malformed):
        """The frames of the TPACKET_V3 block at `block_offset` of `ring` (the capture's
        mmap), from its index-th on, straight from the ring: the same as feed() over the
        (time, frame) pairs RingCapture.timed_batches() would make of it, without making
        them. Stops at the first frame at or past `boundary`. Returns (the index of the
        first frame not taken, frames taken, time of the last taken, time of the first not
        taken; NaN for none)."""
        cdef const uint8_t[::1] view = ring
        cdef const uint8_t* base = &view[0]
        cdef Py_ssize_t size = view.shape[0]
        cdef uint32_t count, first, step, sec, nsec, snap
        cdef uint16_t mac
        cdef Py_ssize_t at, k, taken = 0
        cdef double when, last = NAN
        cdef Packet p
        cdef int reason
        if block_offset < 0 or block_offset + 20 > size:
            raise ValueError(f"block offset {block_offset} outside the ring ({size} bytes)")
        memcpy(&count, base + block_offset + 12, 4)
        memcpy(&first, base + block_offset + 16, 4)
        at = block_offset + first
        for k in range(count):
            if at + 26 > size:
                raise ValueError(f"frame {k} of the block at {block_offset} is outside the ring")
            memcpy(&step, base + at, 4)
            memcpy(&sec, base + at + 4, 4)
            memcpy(&nsec, base + at + 8, 4)
            memcpy(&snap, base + at + 12, 4)
            memcpy(&mac, base + at + 24, 2)
            if k >= index:
                when = sec + nsec * 1e-9
                if when >= boundary:
                    return k, taken, last, when
                if at + mac + snap > size:
                    raise ValueError(f"frame {k} of the block at {block_offset} runs past the "
                                     "ring")
                reason = decode(base + at + mac, snap, &p)
                if reason:
                    malformed[REASONS[reason]] += 1
                else:
                    self.observe(&p, base + at + mac, when)
                taken += 1
                last = when
            at += step
        return count, taken, last, NAN

    cdef void observe(self, Packet* p, const uint8_t* frame, double now):
        cdef bytes key = flow_key(p.src, p.dst, p.addr_len, p.proto, p.sport, p.dport)
        cdef Flow flow = self.flows.get(key)
        if flow is None:
            if len(self.flows) >= self.max_flows:
                self.flows.popitem(last=False)
                self.evicted += 1
            flow = Flow(key, now)
            self.flows[key] = flow
            if self.ndpi is not None:
                reverse = self.flows.get(flow_key(p.dst, p.src, p.addr_len, p.proto, p.dport,
                                                  p.sport))
                flow.conversation = (<Flow>reverse).conversation if reverse is not None and \
                    (<Flow>reverse).conversation is not None else Conversation(self.ndpi)
        else:
            self.move_to_end(key)
        if flow.conversation is not None and not flow.conversation.done:
            flow.conversation.process(frame + p.l3_offset, p.ip_len
                                      if p.ip_len <= p.frame_len - p.l3_offset
                                      else p.frame_len - p.l3_offset, now)
        if not self.has_interval:
            self.has_interval = True
            self.interval_start = now
        flow.last = now
        flow.packets += 1
        flow.nbytes += p.ip_len
        flow.dscp = p.dscp
        if p.proto == UDP:
            self.udp(flow, frame + p.payload_offset, p.payload_len, now)
        elif p.proto == TCP:
            self.tcp(flow, p, now)

    cdef void udp(self, Flow flow, const uint8_t* payload, Py_ssize_t n, double now):
        cdef RtpHeader h
        cdef Py_ssize_t head = n if n < 64 else 64
        cdef int pt
        if flow.kind == K_UNCLASSIFIED:
            if is_ts_payload(payload, n):
                flow.kind = K_TS
                flow.ts = TsStats()
            else:
                clock = _CLOCKS.get(h.payload_type) if parse_rtp(payload, head, &h) else None
                if clock:
                    flow.kind = K_RTP
                    flow.rtp = RtpStats(clock)
                    flow.ssrc = h.ssrc
                    flow.pt = h.payload_type
                    if h.payload_type == 33:
                        flow.ts = TsStats()
                else:
                    flow.kind = K_PLAIN
        if flow.kind == K_TS:
            flow.ts.feed(payload, n, now)
            flow.datagram(now, n)
        elif flow.kind == K_RTP:
            if flow.ts is None and n >= 12 and payload[0] == 0x80:
                pt = payload[1] & 0x7F
                if not 72 <= pt <= 76:
                    if u32(payload + 8) == flow.ssrc:
                        flow.rtp.update(u16(payload + 2), u32(payload + 4), now)
                    return
            if not parse_rtp(payload, head, &h) or h.ssrc != flow.ssrc:
                return
            flow.rtp.update(h.sequence, h.timestamp, now)
            if flow.ts is not None:
                flow.ts.feed(payload + h.payload_offset, n - h.payload_offset
                             if n > h.payload_offset else 0, now)
                flow.datagram(now, n - h.payload_offset if n > h.payload_offset else 0)

    cdef void tcp(self, Flow flow, Packet* p, double now):
        cdef int flags = p.tcp_flags
        cdef uint32_t seq = p.tcp_seq, end
        cdef Py_ssize_t length = p.payload_len
        cdef Flow reverse
        flow.kind = K_TCP
        if p.tcp_window == 0 and not flags & TCP_RST:
            flow.zero_windows += 1
        if flags & TCP_SYN:
            if flags & TCP_ACK_FLAG:
                flow.synack_at = now
                flow.has_synack = True
            else:
                flow.syn_at = now
                flow.has_syn = True
        reverse = self.flows.get(flow_key(p.dst, p.src, p.addr_len, TCP, p.dport, p.sport))
        if flags & TCP_ACK_FLAG and reverse is not None:
            if not flags & TCP_SYN and flow.has_syn and isnan(flow.handshake_rtt) and \
                    reverse.has_synack:
                flow.handshake_rtt = (now - flow.syn_at) * 1000
            sent_at = reverse.sent.pop(p.tcp_ack, None)
            if sent_at is not None:
                reverse.rtt.append((now - <double>sent_at) * 1000)
        if length:
            end = <uint32_t>(seq + <uint32_t>length)
            if flow.has_max_end and ((<uint32_t>(end - flow.max_end)) > 0x7FFFFFFF or
                                     end == flow.max_end):
                flow.retrans += 1
                flow.sent.pop(end, None)
            else:
                flow.max_end = end
                flow.has_max_end = True
                if len(flow.sent) < 1024:
                    flow.sent[end] = now

    # -- output ---------------------------------------------------------------------------
    def records(self, double now, bint final=False):
        """One FlowRecord per flow active in the interval, as FlowTable.records()."""
        cdef double start = self.interval_start if self.has_interval else now
        cdef double span = now - start
        cdef Flow flow
        if span < 1e-9:
            span = 1e-9
        out = []
        for key in [k for k, f in self.flows.items() if now - (<Flow>f).last >
                    self.idle_timeout_s]:
            del self.flows[key]
            self.expired += 1
        for value in self.flows.values():
            flow = <Flow>value
            if not flow.packets:
                if flow.rtp is not None and flow.rtp.unsettled():
                    out.append(FlowRecord(*key_fields(flow.key), _KIND_NAMES[flow.kind],
                                          start, now, 0, 0, 0.0, flow.dscp,
                                          self.kpis(flow, span, True), *detected(flow)))
                continue
            out.append(FlowRecord(*key_fields(flow.key), _KIND_NAMES[flow.kind], start, now,
                                  flow.packets, flow.nbytes, flow.nbytes * 8 / span, flow.dscp,
                                  self.kpis(flow, span, final), *detected(flow)))
            flow.packets = flow.nbytes = 0
        self.interval_start = now
        self.has_interval = True
        return out

    cdef dict kpis(self, Flow flow, double span, bint final):
        kpis = {}
        if flow.rtp is not None:
            kpis.update(rtp_kpis(flow.rtp.interval(final), flow.pt))
        if flow.ts is not None:
            kpis.update(ts_kpis(flow.ts.interval(),
                                [flow.ts_arrivals[i] for i in range(flow.ts_count)],
                                [flow.ts_sizes[i] for i in range(flow.ts_count)], span))
            flow.ts_count = 0
        if flow.kind == K_TCP:
            kpis.update(tcp_kpis(flow.rtt, flow.handshake_rtt, flow.retrans, flow.zero_windows))
            flow.rtt, flow.retrans, flow.zero_windows = [], 0, 0
        return kpis
