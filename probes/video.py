"""Adaptive video test service: a segment server and a player model (shell, with a pure core).

Server: "/video.mpd" gives the bitrate ladder, the segment length and the number of
segments (as JSON, under a DASH manifest's name); "/seg/RATE/N.m4s" is segment N at RATE
bit/s, RATE * length / 8 bytes. The names are DASH-like so that a classifier sees the
requests it would see of a real player.

Player (the usual throughput-based model of a DASH/HLS client): it picks each segment's
bitrate as the highest on the ladder at or below `safety` times the harmonic mean of the
last three segments' download throughputs (the lowest for the first segment), downloads
it, and keeps a buffer in seconds of media:
- start-up: playback starts once `startup_s` of media is buffered; the time until then is
  the initial delay;
- while a segment downloads, playback drains the buffer in real time; if it runs dry the
  player stalls until the segment arrives (one stall per empty buffer);
- with a full buffer (`max_buffer_s`) it waits before the next request.
The downloads are real HTTP over the network under test; playback is accounted, not drawn.
The player reports what it experienced (initial delay, stalls, bitrates), and the MOS from
stalling with qoe.streaming (Hossfeld et al., ISM 2011).
"""

import dataclasses
import http.client
import http.server
import json
import time
import urllib.parse
from typing import Callable

from probes.web import HttpService
from qoe.streaming import stalling_mos


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cems-video/1"

    def do_GET(self):  # noqa: N802
        video: "SegmentServer" = self.server.service  # type: ignore[attr-defined]
        parts = self.path.strip("/").removesuffix(".m4s").split("/")
        if parts == ["video.mpd"]:
            body = json.dumps({"bitrates_bps": video.bitrates_bps,
                               "segment_s": video.segment_s,
                               "segments": video.segments}).encode()
        elif len(parts) == 3 and parts[0] == "seg" and parts[1].isdigit() and \
                int(parts[1]) in video.bitrates_bps and parts[2].isdigit() and \
                int(parts[2]) < video.segments:
            body = bytes(int(int(parts[1]) * video.segment_s / 8))
        else:
            self.send_error(404, "no such segment")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class SegmentServer(HttpService):
    """Serves the manifest and the segments."""

    def __init__(self, host: str = "0.0.0.0", port: int = 8081,
                 bitrates_bps: tuple[int, ...] = (500_000, 1_000_000, 2_000_000, 4_000_000),
                 segment_s: float = 2.0, segments: int = 30):
        self.bitrates_bps = sorted(bitrates_bps)
        self.segment_s = segment_s
        self.segments = segments
        super().__init__(host, port, _Handler)


def choose_bitrate(ladder: list[int], throughputs_bps: list[float], safety: float = 0.8) -> int:
    """The highest rate at or below safety x the harmonic mean of the last three throughputs
    (the lowest rate without history or when none fits)."""
    recent = [t for t in throughputs_bps[-3:] if t > 0]
    if not recent:
        return ladder[0]
    estimate = len(recent) / sum(1 / t for t in recent) * safety
    fitting = [rate for rate in ladder if rate <= estimate]
    return fitting[-1] if fitting else ladder[0]


@dataclasses.dataclass
class Playback:
    """The player's buffer accounting (pure: times are given, not read)."""
    startup_s: float
    max_buffer_s: float
    buffer_s: float = 0.0
    playing: bool = False
    elapsed_s: float = 0.0
    initial_delay_s: float | None = None
    stalls: list = dataclasses.field(default_factory=list)

    def download(self, seconds: float, media_s: float) -> None:
        """A segment of media_s seconds took `seconds` to download."""
        self.elapsed_s += seconds
        if self.playing:
            if seconds > self.buffer_s:
                self.stalls.append(seconds - self.buffer_s)
                self.buffer_s = 0.0
            else:
                self.buffer_s -= seconds
        self.buffer_s += media_s
        if not self.playing and self.buffer_s >= self.startup_s:
            self.playing = True
            self.initial_delay_s = self.elapsed_s

    def idle_before_next(self) -> float:
        """How long to wait before the next request so the buffer stays under its cap."""
        return max(0.0, self.buffer_s - self.max_buffer_s) if self.playing else 0.0

    def wait(self, seconds: float) -> None:
        self.elapsed_s += seconds
        if self.playing:
            self.buffer_s -= seconds


@dataclasses.dataclass(frozen=True)
class VideoSession:
    url: str
    segments: int
    initial_delay_s: float | None  # None: never started (too few segments or errors)
    stalls: int
    stall_s: tuple[float, ...]
    bitrates_bps: tuple[int, ...]  # chosen per segment
    mean_bitrate_bps: float
    switches: int
    bytes: int
    mos: float                     # Hossfeld et al. ISM 2011, from the stalls
    mos_extrapolated: tuple[str, ...]
    errors: tuple[str, ...]
    advised_segments: int = 0      # chosen under an advised bitrate from the controller


def play(url: str, startup_s: float = 4.0, max_buffer_s: float = 20.0, safety: float = 0.8,
         max_segments: int = 0, timeout_s: float = 30.0,
         advice: Callable[[], int] | None = None) -> VideoSession:
    """Play the video at `url` (the server's base URL) through; see the module docstring.
    With `advice` (a callable giving the advised bitrate, 0 for none, asked before each
    segment) no segment is chosen above the advice, except the lowest rung when even that
    is above it."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout_s)
    errors: list[str] = []
    try:
        conn.request("GET", "/video.mpd")
        manifest = json.loads(conn.getresponse().read())
    except (OSError, http.client.HTTPException, ValueError) as err:
        return VideoSession(url, 0, None, 0, (), (), 0.0, 0, 0, float("nan"), (),
                            (f"manifest: {err}",))
    ladder = sorted(manifest["bitrates_bps"])
    segment_s = float(manifest["segment_s"])
    count = manifest["segments"] if not max_segments else min(max_segments,
                                                                manifest["segments"])
    playback = Playback(startup_s, max_buffer_s)
    throughputs: list[float] = []
    chosen: list[int] = []
    total = 0
    advised = 0
    for index in range(count):
        idle = playback.idle_before_next()
        if idle:
            time.sleep(idle)
            playback.wait(idle)
        cap = advice() if advice is not None else 0
        if cap:
            rate = choose_bitrate([r for r in ladder if r <= cap] or ladder[:1], throughputs,
                                  safety)
            advised += 1
        else:
            rate = choose_bitrate(ladder, throughputs, safety)
        start = time.monotonic()
        try:
            conn.request("GET", f"/seg/{rate}/{index}.m4s")
            body = conn.getresponse().read()
        except (OSError, http.client.HTTPException) as err:
            errors.append(f"segment {index}: {err}")
            break
        took = time.monotonic() - start
        total += len(body)
        throughputs.append(len(body) * 8 / max(took, 1e-6))
        chosen.append(rate)
        playback.download(took, segment_s)
    conn.close()
    stall_s = tuple(playback.stalls)
    quality = stalling_mos(len(stall_s), sum(stall_s) / len(stall_s) if stall_s else 0.0)
    return VideoSession(
        url, len(chosen), playback.initial_delay_s, len(stall_s), stall_s, tuple(chosen),
        sum(chosen) / len(chosen) if chosen else 0.0,
        sum(1 for a, b in zip(chosen, chosen[1:]) if a != b), total, float(quality.mos),
        quality.extrapolated, tuple(errors), advised)
