"""Aggregation of per-flow quality records to per customer, per service, per time window (core).

Vectorised with numpy: one sort of all records, then per-group reductions. For each group:
number of records, records with unknown quality (NaN, never averaged in), mean, worst,
percentiles (linear interpolation between closest ranks, as numpy.percentile's default),
and the time spent below a threshold (sum of the records' durations whose score is below it).
"""

import dataclasses

import numpy as np

from qoe.errors import QoeInputError

PERCENTILES = (5.0, 50.0, 95.0)


@dataclasses.dataclass(frozen=True)
class WindowAggregates:
    """One row per (customer, service, window) that has records; arrays of equal length."""

    customer: np.ndarray
    service: np.ndarray
    window_start_s: np.ndarray
    count: np.ndarray          # records with a known score
    unknown: np.ndarray        # records whose score was unknown (NaN)
    mean: np.ndarray           # NaN where count == 0
    worst: np.ndarray
    percentiles: np.ndarray    # shape (rows, len(PERCENTILES))
    time_below_s: np.ndarray

    def __len__(self) -> int:
        return len(self.customer)


def _pack(columns: tuple[np.ndarray, ...]) -> np.ndarray:
    """Integer columns -> one int64 key that sorts like the tuple of columns."""
    key = np.zeros(len(columns[0]), dtype=np.int64)
    for column in columns:
        if not len(column):
            return key
        low = column.min()
        span = int(column.max() - low) + 1
        if span > (1 << 62) // max(int(key.max()) + 1, 1):
            # Too wide to pack: fall back to dense ranks of the tuples.
            _, key = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)
            return key.astype(np.int64).ravel()
        key = key * span + (column - low)
    return key


def _order_by_key_then_value(key: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Permutation sorting by key, then by value (NaN last): one float sort to rank the
    values, one int64 sort of key * n + rank (twice as fast as lexsort); lexsort if the
    packed number would overflow."""
    n = len(key)
    if n and int(key.max()) < (1 << 62) // max(n, 1):
        rank = np.empty(n, dtype=np.int64)
        rank[np.argsort(values, kind="stable")] = np.arange(n)
        return np.argsort(key * n + rank)
    return np.lexsort((values, key))


def aggregate_windows(time_s, customer, service, score, duration_s, window_s: float,
                      threshold: float, percentiles=PERCENTILES) -> WindowAggregates:
    """Records (parallel arrays) -> aggregates per customer, service and window.

    Windows are [k * window_s, (k + 1) * window_s) on the records' own time axis. Records
    with score NaN count as unknown. Rows come sorted by customer, service, window.
    """
    t = np.asarray(time_s, dtype=np.float64)
    cust = np.asarray(customer, dtype=np.int64)
    serv = np.asarray(service, dtype=np.int64)
    values = np.asarray(score, dtype=np.float64)
    dur = np.asarray(duration_s, dtype=np.float64)
    if not (t.shape == cust.shape == serv.shape == values.shape == dur.shape) or t.ndim != 1:
        raise ValueError("time_s, customer, service, score and duration_s must be 1-D arrays "
                         "of the same length")
    if window_s <= 0:
        raise QoeInputError("window_s", window_s, "more than 0 s")
    if np.isnan(t).any():
        raise QoeInputError("time_s", "NaN", "numbers")
    if (dur < 0).any() or np.isnan(dur).any():
        raise QoeInputError("duration_s", "negative or NaN", "0 s or more")
    window = np.floor(t / window_s).astype(np.int64)
    # One packed int64 key per (customer, service, window), dense ranks for each part, then a
    # two-key sort: by group, and by score inside it (NaN last) so percentiles read off it.
    key = _pack((cust, serv, window))
    order = _order_by_key_then_value(key, values)
    key, values, dur = key[order], values[order], dur[order]
    unknown = np.isnan(values)
    boundary = np.empty(len(order), dtype=bool)
    if len(order):
        boundary[0] = True
        boundary[1:] = key[1:] != key[:-1]
    starts = np.flatnonzero(boundary)
    sizes = np.diff(np.append(starts, len(order)))
    known = ~unknown
    if not len(starts):
        empty = np.empty(0)
        return WindowAggregates(empty.astype(np.int64), empty.astype(np.int64), empty,
                                empty.astype(np.int64), empty.astype(np.int64), empty, empty,
                                np.empty((0, len(percentiles))), empty)
    count = np.add.reduceat(known.astype(np.int64), starts)
    filled = np.where(known, values, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.add.reduceat(filled, starts) / count
    worst = np.minimum.reduceat(np.where(known, values, np.inf), starts)
    worst = np.where(count > 0, worst, np.nan)
    below = np.add.reduceat(np.where(known & (values < threshold), dur, 0.0), starts)
    # Known scores sit at the start of each group (NaN sorts last): interpolate ranks there.
    table = np.empty((len(starts), len(percentiles)))
    safe_count = np.maximum(count, 1)
    for column, p in enumerate(percentiles):
        rank = (safe_count - 1) * (p / 100.0)
        low = np.floor(rank).astype(np.int64)
        high = np.minimum(low + 1, safe_count - 1)
        frac = rank - low
        table[:, column] = values[starts + low] * (1 - frac) + values[starts + high] * frac
    table[count == 0] = np.nan
    first = order[starts]
    return WindowAggregates(cust[first], serv[first], window[first] * window_s, count,
                            sizes - count, mean, worst, table, below)
