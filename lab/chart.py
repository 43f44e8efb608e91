"""The demo's chart: quality over time with the loop's events marked (matplotlib, no display).

loop_chart() draws two panels sharing the time axis (seconds from the onset of the
congestion): above, each watched service's score (MOS) with its target as a dashed line of
the same colour; below, the congested link's load against its capacity. Every timeline
event is a vertical line, numbered, with the numbers explained under the chart, so that a
person can read what happened when without the terminal.
"""

import math

import matplotlib

matplotlib.use("Agg")   # files only: the demo runs as root without a display
import matplotlib.pyplot as plt  # noqa: E402  pylint: disable=wrong-import-position

COLOURS = {"voice": "tab:blue", "iptv": "tab:orange", "video": "tab:green", "web": "tab:purple"}


def loop_chart(path: str, samples: list[dict], events: list[tuple[float, str]],
               targets: dict[str, float], capacity_bps: float | None = None,
               title: str = "", spans: list[tuple[float, float, str]] = ()) -> str:
    """samples: {"s": seconds from the onset, "<service>": score, "load_bps": the link's
    load} (missing or NaN values leave gaps); events: (seconds, what); spans: (from, to,
    what), shaded (an action in force). Writes a PNG; returns its path."""
    services = sorted({k for s in samples for k in s if k not in ("s", "load_bps")})
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    times = [s["s"] for s in samples]
    for service in services:
        colour = COLOURS.get(service, "tab:gray")
        values = [s.get(service, math.nan) for s in samples]
        top.plot(times, values, color=colour, linewidth=1.8, label=f"{service} MOS")
        if service in targets:
            top.axhline(targets[service], color=colour, linestyle="--", linewidth=1,
                        label=f"{service} target {targets[service]:g}")
    top.set_ylabel("MOS (1 s score)")
    top.set_ylim(1.0, 4.6)
    top.grid(alpha=0.3)
    top.legend(loc="lower right", fontsize=8, ncol=2)
    loads = [s.get("load_bps", math.nan) / 1e6 for s in samples]
    bottom.plot(times, loads, color="tab:red", linewidth=1.5, label="link load")
    if capacity_bps:
        bottom.axhline(capacity_bps / 1e6, color="black", linestyle="--", linewidth=1,
                       label=f"capacity {capacity_bps / 1e6:g} Mbit/s")
    bottom.set_ylim(bottom=0)
    bottom.set_ylabel("Mbit/s")
    for start, end, what in spans:
        for axis in (top, bottom):
            axis.axvspan(start, end, color="tab:green", alpha=0.12,
                         label=what if axis is bottom else None)
    bottom.set_xlabel("seconds from the start of the congestion")
    bottom.grid(alpha=0.3)
    bottom.legend(loc="upper right", fontsize=8)   # after the spans: they are in it
    legend = []
    for number, (when, what) in enumerate(sorted(events), start=1):
        for axis in (top, bottom):
            axis.axvline(when, color="gray", linewidth=0.8, alpha=0.8)
        top.annotate(str(number), (when, 4.5), ha="center", fontsize=8,
                     bbox={"boxstyle": "circle,pad=0.2", "fc": "white", "ec": "gray"})
        legend.append(f"{number}  {when:+.1f} s  {what}")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.text(0.01, 0.01, "\n".join(legend), fontsize=7.5, family="monospace", va="bottom")
    fig.subplots_adjust(left=0.07, right=0.98, top=0.93,
                        bottom=0.1 + 0.022 * len(legend), hspace=0.08)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
