"""The portal's pictures and parsing, without a server: SVG that escapes what it is given,
marks what is below target, colours links by utilisation, and says when it has nothing."""

import math
import xml.etree.ElementTree as ET

import pytest

from portal import views

NS = "{http://www.w3.org/2000/svg}"


def test_quality_chart_marks_minutes_below_target_and_escapes_its_title():
    now = 10_000.0
    points = [views.Point(now - 600, 4.3, 4.1), views.Point(now - 540, 3.2, 2.5),
              views.Point(now - 7200, 1.0, 1.0)]   # older than the hour: not drawn
    svg = views.quality_chart(points, 4.03, now, title="voice <b>&")
    root = ET.fromstring(svg)                       # well-formed
    assert root.find(f"{NS}title").text == "voice <b>&"
    marks = root.findall(f"{NS}circle")
    assert [m.get("class") for m in marks] == ["point", "point below"]
    assert root.find(f"{NS}line").get("class") == "target"
    empty = ET.fromstring(views.quality_chart([], 4.03, now))
    assert any("no quality measured" in (t.text or "") for t in empty.iter(f"{NS}text"))


def test_network_picture_colours_each_direction_and_escapes_customer_names():
    loads = [views.LinkLoad(1, 2, 4, 9e6, 10e6), views.LinkLoad(2, 1, 4, 1e6, 10e6),
             views.LinkLoad(2, 3, 5, 6e6, 10e6), views.LinkLoad(3, 2, 5, math.nan, 10e6)]
    hosts = [views.HostMark(1, 1, "10.0.0.1", "<script>x</script>"),
             views.HostMark(3, 1, "10.0.0.3", "")]
    svg = views.network_svg([1, 2, 3], loads, hosts, connected={1, 2})
    root = ET.fromstring(svg)
    links = [l.get("class") for l in root.iter(f"{NS}line") if "link" in l.get("class")]
    assert links == ["link high", "link low", "link medium", "link unknown"]
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    assert [g.get("class") for g in root.iter(f"{NS}g")] == ["switch", "switch", "switch down"]
    again = views.network_svg([1, 2, 3], loads, hosts, connected={1, 2})
    assert again == svg                             # the same picture on every load
    assert "no switch" in views.network_svg([], [], [], set())


@pytest.mark.parametrize("text,bps", [("8", 8_000_000), ("2.5", 2_500_000), ("0,5", 500_000)])
def test_rates_from_forms(text, bps):
    assert views.parse_rate_mbps(text) == bps


@pytest.mark.parametrize("text", ["", "abc", "-1", "0", "nan", "inf", "1e9"])
def test_bad_rates_say_what_is_wrong(text):
    with pytest.raises(ValueError, match="bandwidth"):
        views.parse_rate_mbps(text)


def test_days_and_formatting():
    assert views.parse_day("2026-12-01") == 1_796_083_200.0
    assert views.parse_day("2026-12-01", end=True) == 1_796_083_200.0 + 86_400
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        views.parse_day("1/12/2026")
    assert views.mbps(8e6) == "8 Mbit/s" and views.mbps(math.nan) == "unknown"
    assert views.score(math.nan) == "unknown" and views.score(4.123) == "4.12 MOS"
