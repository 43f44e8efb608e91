"""Web and adaptive-video test services: the player's pure accounting, and real loads over
127.0.0.1."""

import json
import subprocess
import sys

import pytest

from probes.video import Playback, SegmentServer, choose_bitrate, play
from probes.web import WebServer, load_page

LADDER = [500_000, 1_000_000, 2_000_000, 4_000_000]


def test_bitrate_follows_the_harmonic_mean_of_recent_throughput_with_a_margin():
    assert choose_bitrate(LADDER, []) == 500_000
    assert choose_bitrate(LADDER, [10e6, 10e6, 10e6]) == 4_000_000
    assert choose_bitrate(LADDER, [10e6, 10e6, 1e6]) == 2_000_000  # 2.3 Mbit/s x 0.8 = 1.8M
    assert choose_bitrate(LADDER, [0.3e6]) == 500_000  # nothing fits: the lowest


def test_playback_counts_initial_delay_stalls_and_waits_for_a_full_buffer():
    p = Playback(startup_s=4.0, max_buffer_s=6.0)
    p.download(1.0, 2.0)
    assert not p.playing
    p.download(0.5, 2.0)
    assert p.playing and p.initial_delay_s == 1.5 and p.buffer_s == 4.0
    p.download(5.0, 2.0)  # 4 s of media, 5 s to download: a 1 s stall
    assert p.stalls == [1.0] and p.buffer_s == 2.0
    p.download(0.1, 2.0)
    p.download(0.1, 2.0)
    p.download(0.1, 2.0)
    assert p.idle_before_next() == pytest.approx(1.7)
    p.wait(1.7)
    assert p.buffer_s == pytest.approx(6.0) and p.stalls == [1.0]


def test_a_page_loads_with_all_its_objects():
    server = WebServer("127.0.0.1", 0, objects=12, object_bytes=30_000).start()
    try:
        load = load_page(f"http://127.0.0.1:{server.address[1]}/")
        missing = load_page(f"http://127.0.0.1:{server.address[1]}/nope")
    finally:
        server.stop()
    assert load.objects == 12 and not load.errors
    assert load.bytes == 12 * 30_000 + len(server.html())
    assert 0 < load.ttfb_s <= load.html_s <= load.page_load_s < 5
    assert missing.errors == ("GET /nope: HTTP 404",)


def test_the_player_climbs_to_the_top_rate_on_a_fast_path_without_stalling():
    server = SegmentServer("127.0.0.1", 0, bitrates_bps=tuple(LADDER), segment_s=0.5,
                           segments=8).start()
    try:
        session = play(f"http://127.0.0.1:{server.address[1]}/", startup_s=1.0,
                       max_buffer_s=1.5)
    finally:
        server.stop()
    assert session.segments == 8 and not session.errors and session.stalls == 0
    assert session.bitrates_bps[0] == 500_000 and session.bitrates_bps[-1] == 4_000_000
    assert session.initial_delay_s is not None and session.initial_delay_s < 1
    assert session.mos == pytest.approx(5.0)
    assert session.bytes == sum(int(rate * 0.5 / 8) for rate in session.bitrates_bps)


def test_an_unreachable_server_is_reported_not_raised():
    session = play("http://127.0.0.1:9/")
    assert session.segments == 0 and session.errors and "manifest" in session.errors[0]
    load = load_page("http://127.0.0.1:9/")
    assert load.objects == 0 and load.errors


def test_web_client_command_prints_each_load_and_a_summary():
    server = WebServer("127.0.0.1", 0, objects=3, object_bytes=1000).start()
    try:
        out = subprocess.run([sys.executable, "-m", "probes.cli", "web-client", "--url",
                              f"http://127.0.0.1:{server.address[1]}/", "--pages", "2",
                              "--think", "0"], capture_output=True, text=True, timeout=60,
                             check=True).stdout
    finally:
        server.stop()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [l["objects"] for l in lines[:2]] == [3, 3]
    assert lines[2]["pages"] == 2 and lines[2]["failed"] == 0


def test_the_player_stays_at_or_below_an_advised_bitrate_while_there_is_one():
    server = SegmentServer("127.0.0.1", 0, bitrates_bps=tuple(LADDER), segment_s=0.5,
                           segments=8).start()
    asked = []

    def advice():
        asked.append(1)
        return 1_200_000 if len(asked) > 4 else 0   # advised from the fifth segment on
    try:
        session = play(f"http://127.0.0.1:{server.address[1]}/", startup_s=1.0,
                       max_buffer_s=1.5, advice=advice)
    finally:
        server.stop()
    assert len(asked) == 8 and session.advised_segments == 4
    assert max(session.bitrates_bps[:4]) > 1_200_000      # it had climbed on its own
    assert all(rate <= 1_000_000 for rate in session.bitrates_bps[4:])
