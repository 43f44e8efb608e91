"""Benchmark of the QoE engine on flow records: the E-model and the aggregation.

For N records (default 1,000,000) of voice flows with measured loss, burstiness and delay:
- E-model vectorised (r_factor_array + mos_from_r on whole arrays) against a plain
  per-record loop over the scalar API (r_factor + mos_from_r), measured in the same run on
  a slice of the records and reported per second;
- aggregation of the records' MOS per customer (2,000), service (5) and 60 s window;
- memory per record of the arrays involved.

Run: make bench   (or .venv/bin/python bench/bench_qoe.py [--records N])
"""

import argparse
import tracemalloc

import numpy as np

from qoe import emodel
from timing import best_of
from qoe.aggregate import aggregate_windows


def make_records(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    codecs = sorted(emodel.CODECS)
    which = rng.integers(0, len(codecs), n)
    ie = np.array([emodel.codec(c)[0] for c in codecs])[which]
    bpl = np.array([emodel.codec(c)[1] for c in codecs])[which]
    return {
        "time_s": np.sort(rng.uniform(0, 600, n)),
        "customer": rng.integers(0, 2_000, n),
        "service": rng.integers(0, 5, n),
        "ppl": np.clip(rng.exponential(1.0, n), 0, 20),
        "burstr": 1 + rng.exponential(0.5, n),
        "ta": rng.uniform(20, 400, n),
        "ie": ie, "bpl": bpl,
        "duration_s": np.ones(n),
    }


def vectorised_mos(r: dict[str, np.ndarray]) -> np.ndarray:
    return emodel.mos_from_r(emodel.r_factor_array(
        ppl=r["ppl"], burstr=r["burstr"], ie=r["ie"], bpl=r["bpl"], **emodel.voice_delays(r["ta"])))


def loop_mos(r: dict[str, np.ndarray], count: int) -> list[float]:
    out = []
    for i in range(count):
        ta = float(r["ta"][i])
        out.append(emodel.mos_from_r(emodel.r_factor(
            ppl=float(r["ppl"][i]), burstr=float(r["burstr"][i]), ie=float(r["ie"][i]),
            bpl=float(r["bpl"][i]), ta=ta, t=ta, tr=2 * ta)))
    return out



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--loop-records", type=int, default=5_000)
    args = parser.parse_args()
    n = args.records
    records = make_records(n)

    vector_s = best_of(lambda: vectorised_mos(records))
    mos = vectorised_mos(records)
    loop_n = min(args.loop_records, n)
    loop_s = best_of(lambda: loop_mos(records, loop_n), repeat=1)
    np.testing.assert_allclose(loop_mos(records, 100), mos[:100], rtol=1e-12)

    agg_s = best_of(lambda: aggregate_windows(records["time_s"], records["customer"],
                                              records["service"], mos, records["duration_s"],
                                              window_s=60.0, threshold=3.6))
    groups = len(aggregate_windows(records["time_s"], records["customer"], records["service"],
                                   mos, records["duration_s"], window_s=60.0, threshold=3.6))
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    mos2 = vectorised_mos(records)
    result = aggregate_windows(records["time_s"], records["customer"], records["service"], mos2,
                               records["duration_s"], window_s=60.0, threshold=3.6)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    input_bytes = sum(a.nbytes for a in records.values())
    del result, mos2

    vector_rate, loop_rate = n / vector_s, loop_n / loop_s
    print(f"QoE engine benchmark, {n:,} voice flow records, one core")
    print(f"  E-model + MOS, vectorised       {vector_rate:>14,.0f} records/s")
    print(f"  E-model + MOS, per-record loop  {loop_rate:>14,.0f} records/s "
          f"(measured on {loop_n:,} records)")
    print(f"  ratio vectorised / loop         {vector_rate / loop_rate:>14,.0f} x")
    print(f"  aggregation to {groups:,} customer/service/60 s windows "
          f"{n / agg_s:>10,.0f} records/s")
    print(f"  E-model + aggregation together  {n / (vector_s + agg_s):>14,.0f} records/s")
    print(f"  memory per record               {input_bytes / n:>14,.0f} bytes of input, "
          f"{(peak - base) / n:,.0f} bytes peak working set")


if __name__ == "__main__":
    main()
