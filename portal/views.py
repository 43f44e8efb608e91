"""What the portal's pages show, computed from the controller's replies (core: no I/O, no web
framework, no gRPC): server-side SVG charts, the network picture, and the formatting of
rates, times and refusals. Every string that reaches SVG is escaped here."""

from __future__ import annotations

import dataclasses
import datetime
import html
import math
from typing import Iterable, Sequence

CLASSES = ("gold", "silver", "bronze")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def mbps(bps: float) -> str:
    """8000000 -> '8 Mbit/s'; NaN or None -> 'unknown'."""
    if bps is None or (isinstance(bps, float) and math.isnan(bps)):
        return "unknown"
    if bps >= 1e9:
        return f"{bps / 1e9:.3g} Gbit/s"
    if bps >= 1e6:
        return f"{bps / 1e6:.3g} Mbit/s"
    if bps >= 1e3:
        return f"{bps / 1e3:.3g} kbit/s"
    return f"{bps:.0f} bit/s"


def when(unix_s: float) -> str:
    if not unix_s or math.isnan(unix_s):
        return "never"
    return datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def score(value: float, scale: str = "MOS") -> str:
    if value is None or math.isnan(value):
        return "unknown"
    return f"{value:.2f}" + (f" {scale}" if scale else "")


def parse_rate_mbps(text: str) -> int:
    """A form's '8' or '2.5' (Mbit/s) -> bit/s; ValueError with a sentence otherwise."""
    try:
        value = float(text.strip().replace(",", "."))
    except ValueError:
        raise ValueError(f"the bandwidth {text!r} is not a number of Mbit/s (for example 8 "
                         "or 2.5)") from None
    if not math.isfinite(value) or value <= 0 or value > 1e6:
        raise ValueError(f"the bandwidth {text!r} must be more than 0 and at most 1000000 "
                         "Mbit/s")
    return int(round(value * 1e6))


def parse_day(text: str, end: bool = False) -> float:
    """'2026-12-01' (UTC) -> unix time of the day's start (or, with end, of the next day's)."""
    try:
        day = datetime.datetime.strptime(text.strip(), "%Y-%m-%d").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        raise ValueError(f"the date {text!r} is not YYYY-MM-DD") from None
    if end:
        day += datetime.timedelta(days=1)
    return day.timestamp()


# -- a chart of quality over time ---------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Point:
    t: float        # unix seconds
    mean: float
    worst: float


def quality_chart(points: Sequence[Point], target: float, now: float, span_s: float = 3600.0,
                  scale: str = "MOS", title: str = "", width: int = 560, height: int = 180
                  ) -> str:
    """An SVG line chart of the minute means (and the worst as a lighter line) over the last
    `span_s`, with the target as a dashed line; points below the target are marked red.
    With no points it says so instead of drawing an empty frame."""
    left, right, top, bottom = 44, 10, 14, 26
    w, h = width - left - right, height - top - bottom
    ratio = scale != "MOS"
    low, high = (0.0, max(1.0, target * 1.2)) if ratio else (1.0, 5.0)

    def x(t: float) -> float:
        return left + w * min(1.0, max(0.0, (t - (now - span_s)) / span_s))

    def y(v: float) -> float:
        return top + h * (1 - (min(high, max(low, v)) - low) / (high - low))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f'<title>{esc(title or "quality over the last hour")}</title>',
             f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="frame"/>']
    ticks = (0.0, 0.25, 0.5, 0.75, 1.0) if ratio else (1, 2, 3, 4, 5)
    for tick in ticks:
        value = tick * high if ratio else tick
        parts.append(f'<text x="{left - 4}" y="{y(value) + 4:.1f}" class="axis" '
                     f'text-anchor="end">{value:g}</text>')
    for minutes in range(0, int(span_s // 60) + 1, 15):
        t = now - span_s + minutes * 60
        label = "now" if minutes * 60 >= span_s else f"-{int((span_s - minutes * 60) // 60)} min"
        parts.append(f'<text x="{x(t):.1f}" y="{height - 8}" class="axis" '
                     f'text-anchor="middle">{label}</text>')
    parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y(target):.1f}" y2="{y(target):.1f}" '
                 f'class="target"><title>target {target:g}</title></line>')
    shown = [p for p in points if p.t >= now - span_s - 60 and not math.isnan(p.mean)]
    if not shown:
        parts.append(f'<text x="{left + w / 2}" y="{top + h / 2}" class="empty" '
                     f'text-anchor="middle">no quality measured in this period</text>')
    else:
        worst = " ".join(f"{x(p.t + 30):.1f},{y(p.worst):.1f}" for p in shown)
        mean = " ".join(f"{x(p.t + 30):.1f},{y(p.mean):.1f}" for p in shown)
        parts.append(f'<polyline points="{worst}" class="worst"/>')
        parts.append(f'<polyline points="{mean}" class="mean"/>')
        for p in shown:
            below = " below" if p.mean < target else ""
            parts.append(f'<circle cx="{x(p.t + 30):.1f}" cy="{y(p.mean):.1f}" r="2.5" '
                         f'class="point{below}"><title>{esc(when(p.t))}: mean '
                         f'{p.mean:.2f}, worst {p.worst:.2f}</title></circle>')
    parts.append("</svg>")
    return "".join(parts)


# -- the network picture ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LinkLoad:
    src: int
    dst: int
    src_port: int
    bps: float           # NaN: unknown
    capacity_bps: float  # 0: unknown

    @property
    def utilisation(self) -> float:
        if self.capacity_bps <= 0 or math.isnan(self.bps):
            return math.nan
        return self.bps / self.capacity_bps


def utilisation_class(utilisation: float) -> str:
    if math.isnan(utilisation):
        return "unknown"
    if utilisation >= 0.8:
        return "high"
    if utilisation >= 0.5:
        return "medium"
    return "low"


def layout(switches: Sequence[int], links: Iterable[tuple[int, int]]) -> dict[int, tuple]:
    """Positions in [0, 1]² for the switches: a spring layout with a fixed seed, so the same
    network is drawn the same way on every page load."""
    import networkx as nx  # pylint: disable=import-outside-toplevel
    graph = nx.Graph()
    graph.add_nodes_from(switches)
    graph.add_edges_from((a, b) for a, b in links if a in graph and b in graph)
    if len(switches) == 1:
        return {switches[0]: (0.5, 0.5)}
    raw = nx.spring_layout(graph, seed=7) if switches else {}
    xs = [p[0] for p in raw.values()] or [0.0]
    ys = [p[1] for p in raw.values()] or [0.0]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    return {n: ((p[0] - min(xs)) / span_x, (p[1] - min(ys)) / span_y) for n, p in raw.items()}


@dataclasses.dataclass(frozen=True)
class HostMark:
    dpid: int
    port: int
    label: str        # MAC or address
    customer: str     # "" when no customer claims it


def network_svg(switches: Sequence[int], loads: Sequence[LinkLoad], hosts: Sequence[HostMark],
                connected: set, width: int = 760, height: int = 440) -> str:
    """Switches as boxes, each direction of a link as a line coloured by its utilisation
    (the two directions drawn side by side), hosts as dots beside their switch labelled with
    their customer."""
    margin = 70
    pos = layout(list(switches), [(l.src, l.dst) for l in loads])

    def at(dpid):
        px, py = pos.get(dpid, (0.5, 0.5))
        return margin + px * (width - 2 * margin), margin + py * (height - 2 * margin)

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="network" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             "<title>the network: links coloured by utilisation</title>"]
    for load in loads:
        (x1, y1), (x2, y2) = at(load.src), at(load.dst)
        length = math.hypot(x2 - x1, y2 - y1) or 1.0
        ox, oy = -(y2 - y1) / length * 3, (x2 - x1) / length * 3   # this direction's side
        u = load.utilisation
        text = (f"{load.src:016x} port {load.src_port} to {load.dst:016x}: {mbps(load.bps)}"
                + (f" of {mbps(load.capacity_bps)} ({u:.0%})" if not math.isnan(u) else
                   " (capacity unknown)"))
        parts.append(f'<line x1="{x1 + ox:.1f}" y1="{y1 + oy:.1f}" x2="{x2 + ox:.1f}" '
                     f'y2="{y2 + oy:.1f}" class="link {utilisation_class(u)}">'
                     f'<title>{esc(text)}</title></line>')
    by_switch: dict[int, list[HostMark]] = {}
    for host in hosts:
        by_switch.setdefault(host.dpid, []).append(host)
    for dpid in switches:
        cx, cy = at(dpid)
        for i, host in enumerate(sorted(by_switch.get(dpid, ()), key=lambda h: h.port)):
            angle = 2 * math.pi * i / max(1, len(by_switch[dpid])) + math.pi / 2
            hx, hy = cx + 46 * math.cos(angle), cy + 46 * math.sin(angle)
            who = host.customer or "no customer"
            parts.append(f'<line x1="{cx:.1f}" y1="{cy:.1f}" x2="{hx:.1f}" y2="{hy:.1f}" '
                         f'class="access"/>')
            parts.append(f'<circle cx="{hx:.1f}" cy="{hy:.1f}" r="6" class="host'
                         f'{"" if host.customer else " unclaimed"}"><title>{esc(host.label)} on '
                         f'port {host.port}: {esc(who)}</title></circle>')
            if host.customer:
                parts.append(f'<text x="{hx:.1f}" y="{hy - 9:.1f}" class="hostlabel" '
                             f'text-anchor="middle">{esc(host.customer)}</text>')
        state = "" if dpid in connected else " down"
        parts.append(f'<g class="switch{state}"><rect x="{cx - 26:.1f}" y="{cy - 12:.1f}" '
                     f'width="52" height="24" rx="4"/><text x="{cx:.1f}" y="{cy + 4:.1f}" '
                     f'text-anchor="middle">s{dpid:x}</text><title>switch {dpid:016x}'
                     f'{" (disconnected)" if state else ""}</title></g>')
    if not switches:
        parts.append(f'<text x="{width / 2}" y="{height / 2}" class="empty" '
                     'text-anchor="middle">no switch has connected</text>')
    parts.append("</svg>")
    return "".join(parts)
