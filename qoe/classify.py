"""Traffic classification into services: ports and DSCP, payload signatures, naive Bayes (core).

Services: voice, iptv, video (adaptive streaming), web, bulk, unknown. Three methods, each
answering with a confidence in 0..1 and its reason:

1. Payload signatures (strongest): a valid RTP header (RFC 3550 5.1) with an audio payload
   type (RFC 3551 Table 4) is voice; MPEG-TS sync bytes (0x47) at 188-byte cadence, raw or
   inside RTP (payload type 33, RFC 3551 Table 5), is IPTV; an HTTP request line with a
   Host header, or a TLS ClientHello (RFC 8446 4.1.2) with server_name (RFC 6066 3), is web,
   or video when the request names a media segment or manifest.
2. Ports and DSCP (weakest, configurable): well-known ports and the GSB marks (EF voice,
   AF41 video).
3. Gaussian naive Bayes on flow features (packet sizes, inter-arrival times, direction
   ratio, rate), trained on labelled flows; the posterior is the confidence.
"""

import dataclasses
import math
import re
import struct
from typing import Iterable, Sequence

import numpy as np

from qoe.mpegts import is_ts_payload
from qoe.rtp import parse_rtp_header

SERVICES = ("voice", "iptv", "video", "web", "bulk", "unknown")
# RFC 3551 Table 4: audio payload types.
AUDIO_PAYLOAD_TYPES = frozenset({0, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18})
MP2T_PAYLOAD_TYPE = 33
_MEDIA_PATH = re.compile(rb"\.(m3u8|mpd|m4s|ts|mp4|m4v|webm)(\?|\s|$)", re.IGNORECASE)
_HTTP_REQUEST = re.compile(rb"^(GET|POST|HEAD|PUT|DELETE|OPTIONS|PATCH) (\S+) HTTP/1\.[01]\r\n")
_HOST = re.compile(rb"\r\nHost: *([^\r\n]+)", re.IGNORECASE)


@dataclasses.dataclass(frozen=True)
class Classification:
    service: str
    confidence: float
    method: str   # "signature", "port", "dscp", "bayes" or "none"
    reason: str


UNKNOWN = Classification("unknown", 0.0, "none", "no signature, port, DSCP or model matched")


def tls_server_name(data: bytes) -> str | None:
    """server_name of a TLS ClientHello in one TCP payload, or None."""
    try:
        if len(data) < 43 or data[0] != 0x16 or data[5] != 0x01:
            return None
        pos = 5 + 4 + 2 + 32          # record header, handshake header, version, random
        pos += 1 + data[pos]          # session id
        (suites,) = struct.unpack_from("!H", data, pos)
        pos += 2 + suites
        pos += 1 + data[pos]          # compression methods
        (ext_total,) = struct.unpack_from("!H", data, pos)
        pos += 2
        end = min(len(data), pos + ext_total)
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", data, pos)
            pos += 4
            if ext_type == 0 and ext_len >= 5:
                name_len = struct.unpack_from("!H", data, pos + 3)[0]
                name = data[pos + 5:pos + 5 + name_len]
                return name.decode("ascii", errors="replace") if name else None
            pos += ext_len
    except (IndexError, struct.error):
        return None
    return None


def classify_payload(payload: bytes, transport: str) -> Classification | None:
    """First payloads of a flow -> a confident answer from its content, or None."""
    if transport == "udp":
        if is_ts_payload(payload):
            return Classification("iptv", 0.95, "signature", "MPEG-TS sync bytes at 188-byte cadence")
        header = parse_rtp_header(payload)
        if header is not None:
            body = payload[header.payload_offset:]
            if header.payload_type == MP2T_PAYLOAD_TYPE or is_ts_payload(body):
                return Classification("iptv", 0.95, "signature", "MPEG-TS in RTP")
            if header.payload_type in AUDIO_PAYLOAD_TYPES:
                return Classification("voice", 0.9, "signature",
                                      f"RTP with audio payload type {header.payload_type}")
        return None
    if transport == "tcp":
        request = _HTTP_REQUEST.match(payload)
        if request:
            host = _HOST.search(payload)
            name = host.group(1).decode("ascii", errors="replace") if host else "?"
            if _MEDIA_PATH.search(request.group(2)):
                return Classification("video", 0.85, "signature",
                                      f"HTTP request for a media segment from {name}")
            return Classification("web", 0.8, "signature", f"HTTP request to {name}")
        name = tls_server_name(payload)
        if name is not None:
            return Classification("web", 0.7, "signature", f"TLS ClientHello for {name}")
    return None


# Well-known ports; operators extend or replace these in configuration.
DEFAULT_PORTS = {
    ("udp", 5004): "voice", ("udp", 5060): "voice", ("tcp", 5060): "voice",
    ("udp", 1234): "iptv", ("udp", 5000): "iptv",
    ("tcp", 80): "web", ("tcp", 443): "web", ("tcp", 8080): "web", ("udp", 443): "web",
    ("tcp", 1935): "video", ("tcp", 554): "video",
    ("tcp", 20): "bulk", ("tcp", 21): "bulk", ("tcp", 873): "bulk", ("tcp", 5201): "bulk",
}
DSCP_SERVICES = {46: "voice", 34: "video"}


def classify_ports(transport: str, src_port: int, dst_port: int, dscp: int = 0,
                   ports: dict | None = None) -> Classification | None:
    """Ports and DSCP -> a weak answer, or None."""
    table = DEFAULT_PORTS if ports is None else ports
    for port in (dst_port, src_port):
        service = table.get((transport, port))
        if service:
            return Classification(service, 0.5, "port", f"{transport} port {port}")
    if dscp in DSCP_SERVICES:
        return Classification(DSCP_SERVICES[dscp], 0.4, "dscp", f"DSCP {dscp}")
    return None


# What nDPI names (the passive probe's compiled path, Debian's nDPI 4.2) -> cems services: the
# one table. An application (the part of "TLS.YouTube" after the dot, or the whole name) is
# looked up first, then the protocol carrying it, then nDPI's category. Payload signatures
# stay first for what nDPI does not name (RTP payload types, MPEG-TS cadence: the probe's
# record kinds rtp and mpegts), and ports and DSCP stay last.
NDPI_APPLICATIONS = {
    # voice and video calls
    **dict.fromkeys(("SIP", "IAX", "H323", "MGCP", "CiscoSkinny", "SkypeCall", "Skype_Teams",
                     "Teams", "Zoom", "Webex", "WhatsAppCall", "FacebookVoip", "SignalVoip",
                     "SnapchatCall", "KakaoTalk_Voice", "GoogleHangoutDuo", "TeamSpeak",
                     "Viber", "TruPhone", "Fuze", "STUN"), "voice"),
    # television and live streams
    **dict.fromkeys(("MPEG_TS", "RTSP", "Zattoo", "TVUplayer", "Sopcast", "PPStream",
                     "QQLive"), "iptv"),
    # adaptive video on demand
    **dict.fromkeys(("YouTube", "NetFlix", "AmazonVideo", "DisneyPlus", "Hulu", "Twitch",
                     "Vimeo", "Vevo", "TikTok", "Likee", "IFLIX", "RTMP"),
                    "video"),
    # bulk transfer
    **dict.fromkeys(("BitTorrent", "eDonkey", "Gnutella", "FTP_DATA", "RSYNC", "Steam",
                     "WindowsUpdate", "Direct_Download_Link", "Dropbox", "MS_OneDrive",
                     "GoogleDrive", "AppleiCloud", "YouTubeUpload", "WhatsAppFiles", "NFS",
                     "Thunder", "Usenet"), "bulk"),
    # pages, and the lookups and handshakes that load them
    **dict.fromkeys(("HTTP", "HTTP_Proxy", "HTTP_Connect", "TLS", "QUIC", "DNS", "DoH_DoT",
                     "WebSocket"), "web"),
}
NDPI_CATEGORIES = {"VoIP": "voice", "Streaming": "video", "Video": "video", "Media": "video",
                   "Web": "web", "Download": "bulk", "FileSharing": "bulk",
                   "DataTransfer": "bulk", "Cloud": "bulk", "SoftwareUpdate": "bulk"}


def classify_ndpi(application: str, category: str = "") -> Classification | None:
    """What nDPI named ("TLS.YouTube", category "Media") -> a service, or None when the
    table has nothing for it (then ports and DSCP decide)."""
    if not application and not category:
        return None
    master, _, app = application.partition(".")
    for name in (app, master):
        service = NDPI_APPLICATIONS.get(name)
        if name and service:
            return Classification(service, 0.8, "ndpi", f"nDPI: {application}")
    service = NDPI_CATEGORIES.get(category)
    if service:
        return Classification(service, 0.6, "ndpi", f"nDPI: {application or '?'} ({category})")
    return None


FEATURES = ("log_mean_size", "std_size_ratio", "log_mean_gap", "gap_cv", "down_byte_ratio",
            "log_packet_rate", "log_duration")


def flow_features(times_s: Sequence[float], sizes: Sequence[int],
                  downstream: Sequence[bool]) -> np.ndarray:
    """Packets of one flow (both directions) -> the feature vector FEATURES.

    Sizes are IP lengths; `downstream` marks packets towards the customer.
    """
    t = np.asarray(times_s, dtype=np.float64)
    s = np.asarray(sizes, dtype=np.float64)
    down = np.asarray(downstream, dtype=bool)
    if len(t) < 2:
        raise ValueError("a flow needs at least two packets for features")
    order = np.argsort(t, kind="stable")
    t, s, down = t[order], s[order], down[order]
    gaps = np.diff(t)
    duration = max(t[-1] - t[0], 1e-6)
    mean_gap = max(gaps.mean(), 1e-6)
    return np.array([
        math.log(s.mean()),
        s.std() / s.mean(),
        math.log(mean_gap),
        gaps.std() / mean_gap,
        s[down].sum() / s.sum(),
        math.log(len(t) / duration),
        math.log(duration),
    ])


class NaiveBayes:
    """Gaussian naive Bayes over FEATURES; fit() on labelled flows, then predict()."""

    def __init__(self, var_smoothing: float = 1e-3):
        self.var_smoothing = var_smoothing
        self.classes: tuple[str, ...] = ()
        self._mean = self._var = self._log_prior = None

    def fit(self, features: np.ndarray, labels: Iterable[str]) -> "NaiveBayes":
        x = np.asarray(features, dtype=np.float64)
        y = np.asarray(list(labels))
        if x.ndim != 2 or len(x) != len(y) or not len(y):
            raise ValueError("features must be (flows, features) with one label per flow")
        self.classes = tuple(sorted(set(y.tolist())))
        unknown = set(self.classes) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service labels {sorted(unknown)}; allowed: {SERVICES}")
        floor = self.var_smoothing * x.var(axis=0).max()
        self._mean = np.array([x[y == c].mean(axis=0) for c in self.classes])
        self._var = np.array([x[y == c].var(axis=0) for c in self.classes]) + floor
        self._log_prior = np.log(np.array([(y == c).mean() for c in self.classes]))
        return self

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """(flows, features) -> (flows, classes) posterior probabilities."""
        if self._mean is None:
            raise RuntimeError("the classifier has not been fitted")
        x = np.atleast_2d(np.asarray(features, dtype=np.float64))
        log_like = -0.5 * (np.log(2 * np.pi * self._var)[None, :, :]
                           + (x[:, None, :] - self._mean[None, :, :]) ** 2 / self._var[None, :, :])
        joint = log_like.sum(axis=2) + self._log_prior[None, :]
        joint -= joint.max(axis=1, keepdims=True)
        prob = np.exp(joint)
        return prob / prob.sum(axis=1, keepdims=True)

    def predict(self, features: np.ndarray) -> list[Classification]:
        prob = self.predict_proba(features)
        best = prob.argmax(axis=1)
        return [Classification(self.classes[b], float(p[b]), "bayes",
                               f"flow features, posterior {p[b]:.2f}")
                for b, p in zip(best, prob)]


def classify_flow(payload: bytes | None, transport: str, src_port: int, dst_port: int,
                  dscp: int = 0, features: np.ndarray | None = None,
                  model: NaiveBayes | None = None, min_bayes_confidence: float = 0.6
                  ) -> Classification:
    """All methods together: signature first, then a confident model, then ports/DSCP."""
    if payload:
        answer = classify_payload(payload, transport)
        if answer is not None:
            return answer
    if features is not None and model is not None:
        (answer,) = model.predict(features)
        if answer.confidence >= min_bayes_confidence:
            return answer
    return classify_ports(transport, src_port, dst_port, dscp) or UNKNOWN
