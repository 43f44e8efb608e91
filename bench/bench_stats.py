"""Benchmark of the statistics pipeline: decoding flow-stats replies, then turning entries into
rates, for 10,000 and 100,000 flows; plus memory per tracked flow.

Prints figures and ratios against baselines measured in the same run:
- decode: os-ken's own parser on the wire bytes of real OFPMP_FLOW replies (64 KiB parts);
- normalise: OFPFlowStats -> FlowEntry keys and counter arrays (entry_from_stats);
- wire decoder (controller.openflow.wire_stats): the same bytes -> the same FlowEntries and
  counter arrays, on a switch's first reply (every entry decoded) and on the next (entries
  remembered), against decode + normalise (the aim: at least 10 times faster);
- rates: CounterRates.update on those keys and arrays (the vectorised core), against a plain
  per-entry Python dict loop computing the same rates (the baseline).

Run: make bench   (or .venv/bin/python bench/bench_stats.py [--sizes 10000,100000])
"""

import argparse
import importlib
import struct
import tracemalloc

import numpy as np

from controller import compat
from controller.compat import ofproto_v1_3 as ofp
from controller.compat import ofproto_v1_3_parser as parser
from controller.network.forwarding import forwarding_cookie
from controller.network.rates import CounterRates
from controller.network.stats import FLOW_COUNTERS, compute_flow_views
from controller.openflow.messages import build_flow_add, entry_from_stats
from controller.openflow.pipeline import PRIORITY, FlowEntry
from controller.openflow.wire_stats import FlowStatsDecoder
from timing import best_of

_FLOW_STATS_HEAD = "!HBxIIHHHH4xQQQ"  # ofp_flow_stats up to the match


def mac(n: int) -> str:
    return ":".join(f"{(n >> s) & 0xFF:02x}" for s in (40, 32, 24, 16, 8, 0))


def make_entries(count: int) -> list[FlowEntry]:
    return [FlowEntry.make(0, PRIORITY["forwarding"], {"eth_src": mac(i), "eth_dst": mac(i + 1)},
                           (("output", 1 + i % 48),), forwarding_cookie(mac(i), mac(i + 1)))
            for i in range(count)]


def encode_flow_stats(entry: FlowEntry, packets: int, bytes_: int, duration_s: int) -> bytes:
    """One ofp_flow_stats on the wire, built from the same classes the controller sends."""
    mod = build_flow_add(entry)
    body = bytearray()
    match_len = mod.match.serialize(body, 0)
    for inst in mod.instructions:
        inst.serialize(body, len(body))
    head = struct.pack(_FLOW_STATS_HEAD, struct.calcsize(_FLOW_STATS_HEAD) + len(body),
                       entry.table_id, duration_s, 0, entry.priority, 0, 0, 0, entry.cookie,
                       packets, bytes_)
    assert match_len > 0
    return head + bytes(body)


def encode_replies(entries: list[FlowEntry], packets: np.ndarray, duration_s: int,
                   part_limit: int = 65535) -> list[bytes]:
    """Wire messages of a multipart flow stats reply, split as a switch splits them."""
    messages, body = [], bytearray()
    header_len = 16

    def flush(more: bool):
        flags = ofp.OFPMPF_REPLY_MORE if more else 0
        length = header_len + len(body)
        messages.append(struct.pack("!BBHIHH4x", ofp.OFP_VERSION, ofp.OFPT_MULTIPART_REPLY,
                                    length, 1, ofp.OFPMP_FLOW, flags) + bytes(body))

    for entry, count in zip(entries, packets):
        stat = encode_flow_stats(entry, int(count), int(count) * 1000, duration_s)
        if header_len + len(body) + len(stat) > part_limit:
            flush(True)
            body.clear()
        body += stat
    flush(False)
    return messages


class FakeDatapath:
    """What os-ken's message parser needs of a datapath."""

    ofproto = ofp
    ofproto_parser = parser


def decode(messages: list[bytes]) -> list:
    ofproto_parser = importlib.import_module(f"{compat.RUNTIME}.ofproto.ofproto_parser")
    stats = []
    for raw in messages:
        version, msg_type, msg_len, xid = ofproto_parser.header(raw)
        msg = ofproto_parser.msg(FakeDatapath(), version, msg_type, msg_len, xid, raw)
        stats.extend(msg.body)
    return stats


def baseline_rates(state: dict, now: float, keys: list, values: np.ndarray) -> list:
    """Per-entry Python loop computing what CounterRates.update computes (no window)."""
    out = []
    for key, (packets, bytes_) in zip(keys, values.tolist()):
        previous = state.get(key)
        if previous is None:
            out.append((float("nan"), float("nan")))
        else:
            t0, p0, b0 = previous
            dt = now - t0
            dp = packets - p0 if packets >= p0 else packets
            db = bytes_ - b0 if bytes_ >= b0 else bytes_
            out.append((dp / dt, db / dt))
        state[key] = (now, packets, bytes_)
    return out


def run(size: int, window: int) -> dict:
    entries = make_entries(size)
    packets = np.arange(size, dtype=np.int64) * 3 + 7
    messages = encode_replies(entries, packets, duration_s=10)
    wire_bytes = sum(len(m) for m in messages)

    decode_s = best_of(lambda: decode(messages), repeat=2)
    stats = decode(messages)
    assert len(stats) == size

    parts = [raw[16:] for raw in messages]  # the bodies, after the multipart header
    cold = FlowStatsDecoder()
    wire_cold_s = best_of(lambda: FlowStatsDecoder().decode(parts), repeat=2)
    batch = cold.decode(parts)
    assert batch.entries == entries and batch.counters[:, 0].tolist() == packets.tolist()
    wire_warm_s = best_of(lambda: cold.decode(parts), repeat=3)
    assert cold.framework == 0

    keys_holder = {}
    normalise_s = best_of(lambda: keys_holder.__setitem__("k", [entry_from_stats(s) for s in stats]))
    keys = keys_holder["k"]
    assert keys == entries  # the wire round trip gives back exactly the desired entries

    values = np.stack([packets, packets * 1000], axis=1)
    rates = CounterRates(FLOW_COUNTERS, window=window)
    rates.update(0.0, keys, values)  # first sample: rows allocated
    clock = [1.0]

    def vectorised():
        clock[0] += 1.0
        rates.update(clock[0], keys, values + int(clock[0]))
    rates_s = best_of(vectorised, repeat=5)

    state: dict = {}
    baseline_rates(state, 0.0, keys, values)
    base_clock = [1.0]

    def baseline():
        base_clock[0] += 1.0
        baseline_rates(state, base_clock[0], keys, values + int(base_clock[0]))
    baseline_s = best_of(baseline, repeat=5)

    views_rates = CounterRates(FLOW_COUNTERS, window=window)
    compute_flow_views(1, 0.0, stats, views_rates)
    pipeline_s = best_of(lambda: compute_flow_views(1, 1.0, stats, views_rates), repeat=2)
    wire_rates = CounterRates(FLOW_COUNTERS, window=window)
    compute_flow_views(1, 0.0, cold.decode(parts), wire_rates)
    wire_pipeline_s = best_of(lambda: compute_flow_views(1, 1.0, cold.decode(parts), wire_rates),
                              repeat=2)

    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    remembering = FlowStatsDecoder()
    remembering.decode(parts)
    del batch
    decoder_bytes = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()

    # Memory per tracked flow: the rate state (numpy) and the keys it holds (FlowEntry + dict).
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    fresh_keys = make_entries(size)
    tracked = CounterRates(FLOW_COUNTERS, window=window, capacity=size)
    tracked.update(0.0, fresh_keys, values)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {
        "size": size, "parts": len(messages), "wire_bytes": wire_bytes,
        "decode_per_s": size / decode_s, "normalise_per_s": size / normalise_s,
        "wire_cold_per_s": size / wire_cold_s, "wire_warm_per_s": size / wire_warm_s,
        "rates_per_s": size / rates_s, "baseline_per_s": size / baseline_s,
        "pipeline_per_s": size / pipeline_s, "wire_pipeline_per_s": size / wire_pipeline_s,
        "decoder_bytes_per_flow": decoder_bytes / size,
        "bytes_per_flow": (after - before) / size, "numpy_bytes_per_flow": tracked.nbytes() / size,
    }


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--sizes", default="10000,100000")
    args.add_argument("--window", type=int, default=60)
    opts = args.parse_args()
    print(f"statistics pipeline benchmark (rate window {opts.window} samples, one core)")
    for size in (int(s) for s in opts.sizes.split(",")):
        r = run(size, opts.window)
        print(f"\n{r['size']:,} flows: {r['parts']} reply parts, {r['wire_bytes'] / 1e6:.1f} MB on the wire")
        print(f"  decode (os-ken parser)           {r['decode_per_s']:>12,.0f} entries/s")
        print(f"  normalise (entry_from_stats)     {r['normalise_per_s']:>12,.0f} entries/s")
        framework = 1 / (1 / r["decode_per_s"] + 1 / r["normalise_per_s"])
        print(f"  decode + normalise (framework)   {framework:>12,.0f} entries/s")
        print(f"  wire decoder, first reply        {r['wire_cold_per_s']:>12,.0f} entries/s"
              f"   {r['wire_cold_per_s'] / framework:.1f}x the framework")
        print(f"  wire decoder, next replies       {r['wire_warm_per_s']:>12,.0f} entries/s"
              f"   {r['wire_warm_per_s'] / framework:.1f}x the framework (aim 10x)")
        print(f"  rates (CounterRates.update)      {r['rates_per_s']:>12,.0f} entries/s"
              f"   {r['rates_per_s'] / r['baseline_per_s']:.1f}x the per-entry dict loop"
              f" ({r['baseline_per_s']:,.0f}/s)")
        print(f"  whole compute_flow_views         {r['pipeline_per_s']:>12,.0f} entries/s"
              " (from the framework's objects)")
        print(f"  wire bytes -> views (the app)    {r['wire_pipeline_per_s']:>12,.0f} entries/s"
              f"   {r['wire_pipeline_per_s'] / (1 / (1 / framework + 1 / r['pipeline_per_s'])):.1f}x"
              " framework decode + views")
        print(f"  decode is {r['rates_per_s'] / r['decode_per_s']:.0f}x slower than rates; "
              f"one poll of all flows costs {r['size'] / r['decode_per_s']:.2f} s decoding + "
              f"{r['size'] / r['normalise_per_s']:.2f} s normalising + "
              f"{r['size'] / r['rates_per_s']:.3f} s rates")
        print(f"  memory per tracked flow          {r['bytes_per_flow']:>12,.0f} bytes "
              f"({r['numpy_bytes_per_flow']:,.0f} of them numpy rate state)")
        print(f"  wire decoder's memory per flow   {r['decoder_bytes_per_flow']:>12,.0f} bytes "
              "(the last reply's entries, remembered)")


if __name__ == "__main__":
    main()
