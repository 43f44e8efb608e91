"""The demo's chart is a real PNG with the loop's events on it."""

import math

from lab.chart import loop_chart


def test_the_chart_is_a_png_of_quality_and_load_with_events_and_gaps(tmp_path):
    samples = [{"s": t / 2 - 5, "voice": 4.2 if t < 14 else 3.1, "iptv": math.nan if t == 3
                else 4.0, "load_bps": 31e6 if 10 < t < 60 else 8e6} for t in range(80)]
    samples.append({"s": 35.0})   # a sample the controller did not answer: a gap
    path = loop_chart(str(tmp_path / "loop.png"), samples,
                      [(0.0, "congestion begins"), (4.0, "c1 voice degraded"),
                       (4.5, "the meter is on switch s1")], {"voice": 4.03, "iptv": 3.5},
                      30e6, "test", [(4.5, 20.0, "meter in force")])
    with open(path, "rb") as png:
        head = png.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert (width, height) == (1210, 825)
