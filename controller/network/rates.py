"""Rates from OpenFlow counters: deltas over measured time, resets, removals, bounded windows (core).

CounterRates keeps, for a changing set of keys (flows or ports), the last counter values and
the time they were read, and a ring of the last `window` rate samples per key. It is
vectorised: one update() call handles a whole stats reply with numpy.

Rules:
- rate = (value - previous value) / (now - previous time), per counter;
- a counter that went backwards, or a duration that went backwards, is a reset (the flow was
  re-created or the switch restarted): the delta is the new value itself, over the time since
  the reset when the caller gives the entry's duration, else over the interval;
- the first sample of a key has no rate (NaN): a rate is never invented;
- a counter the switch reports as all ones (2^64-1, OpenFlow's "not supported"; also what
  the ports of interfaces being removed report) or at least 2^63 is unknown: give it as -1
  (as_counters does that); its rate is NaN and its previous value is kept, so it is neither
  a reset nor an overflow;
- with complete=True (a full stats reply), keys absent from the reply were removed and are
  forgotten.
"""

from typing import Hashable, Sequence

import numpy as np


INT64_MAX = (1 << 63) - 1


def as_counters(rows, width: int) -> np.ndarray:
    """OpenFlow's unsigned 64-bit counters (an iterable of rows of ints) -> an int64 array,
    with -1 for a value that is not a counter (at least 2^63: "not supported" all ones)."""
    flat = [v if 0 <= v <= INT64_MAX else -1 for row in rows for v in row]
    return np.array(flat, dtype=np.int64).reshape(-1, width)


class CounterRates:
    """Per-key counter state and rate windows. Not thread-safe: one owner thread."""

    def __init__(self, counters: Sequence[str], window: int = 60, capacity: int = 1024):
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.counters = tuple(counters)
        self.window = window
        self._index: dict[Hashable, int] = {}
        self._keys: list[Hashable | None] = []
        self._free: list[int] = []
        width = len(self.counters)
        self._values = np.zeros((capacity, width), dtype=np.int64)
        self._time = np.zeros(capacity, dtype=np.float64)
        self._duration = np.zeros(capacity, dtype=np.float64)
        self._win_time = np.full((capacity, window), np.nan)
        self._win_rate = np.full((capacity, window, width), np.nan)
        self._win_pos = np.zeros(capacity, dtype=np.int64)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    def _grow(self, needed: int) -> None:
        capacity = self._values.shape[0]
        if needed <= capacity:
            return
        new = max(needed, capacity * 2)
        extra = new - capacity

        def pad(array, fill):
            shape = (extra,) + array.shape[1:]
            return np.concatenate([array, np.full(shape, fill, dtype=array.dtype)])

        self._values = pad(self._values, 0)
        self._time = pad(self._time, 0.0)
        self._duration = pad(self._duration, 0.0)
        self._win_time = pad(self._win_time, np.nan)
        self._win_rate = pad(self._win_rate, np.nan)
        self._win_pos = pad(self._win_pos, 0)

    def _rows_for(self, keys: Sequence[Hashable]) -> tuple[np.ndarray, np.ndarray]:
        """Row per key (allocating new rows); returns (rows, is_new)."""
        index = self._index
        rows = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        is_new = rows < 0
        if is_new.any():
            new_positions = np.flatnonzero(is_new)
            reuse = min(len(self._free), len(new_positions))
            fresh_count = len(new_positions) - reuse
            start = len(self._keys)
            self._grow(start + fresh_count)
            for n, pos in enumerate(new_positions):
                key = keys[pos]
                if key in index:  # the same key twice in one reply: keep the first row
                    rows[pos] = index[key]
                    continue
                if n < reuse:
                    row = self._free.pop()
                    self._keys[row] = key
                else:
                    row = len(self._keys)
                    self._keys.append(key)
                index[key] = row
                rows[pos] = row
                self._win_time[row] = np.nan
                self._win_rate[row] = np.nan
                self._win_pos[row] = 0
        return rows, is_new

    def update(self, now: float, keys: Sequence[Hashable], values: np.ndarray,
               durations_s: np.ndarray | None = None, complete: bool = False) -> np.ndarray:
        """Feed one reply: keys[i] has counter values values[i] (len(counters) wide).

        `now` is when the reply arrived (monotonic seconds); `durations_s` the entries' own
        age if the protocol reports it. Returns rates per second, shape (len(keys), counters),
        NaN where no rate is known yet.
        """
        values = np.asarray(values, dtype=np.int64).reshape(len(keys), len(self.counters))
        rows, is_new = self._rows_for(keys)
        if complete:
            self.retain(keys)
        previous = self._values[rows]
        unknown = values < 0
        values = np.where(unknown, previous, values)
        elapsed = now - self._time[rows]
        delta = values - previous
        reset = (delta < 0).any(axis=1)
        if durations_s is not None:
            durations_s = np.asarray(durations_s, dtype=np.float64)
            reset |= durations_s < self._duration[rows]
            # After a reset only the time since the entry was re-created counts.
            elapsed = np.where(reset, np.minimum(elapsed, np.maximum(durations_s, 1e-3)), elapsed)
            self._duration[rows] = durations_s
        delta = np.where(reset[:, None], values, delta)
        with np.errstate(divide="ignore", invalid="ignore"):
            rates = delta / elapsed[:, None]
        rates[is_new | (elapsed <= 0)] = np.nan
        rates[unknown] = np.nan
        self._values[rows] = values
        self._time[rows] = now
        known = ~np.isnan(rates[:, 0])
        if known.any():
            krows = rows[known]
            pos = self._win_pos[krows] % self.window
            self._win_time[krows, pos] = now
            self._win_rate[krows, pos] = rates[known]
            self._win_pos[krows] += 1
        return rates

    def retain(self, keys: Sequence[Hashable]) -> list[Hashable]:
        """Forget every key not in `keys`; returns the forgotten keys."""
        keep = set(keys)
        gone = [key for key in self._index if key not in keep]
        for key in gone:
            self.forget(key)
        return gone

    def forget(self, key: Hashable) -> None:
        row = self._index.pop(key, None)
        if row is not None:
            self._keys[row] = None
            self._free.append(row)
            self._values[row] = 0
            self._time[row] = 0.0
            self._duration[row] = 0.0

    def latest(self, key: Hashable) -> tuple[float, np.ndarray] | None:
        """Most recent (time, rates) of a key, or None if it has no rate yet."""
        row = self._index.get(key)
        if row is None or self._win_pos[row] == 0:
            return None
        pos = (self._win_pos[row] - 1) % self.window
        return float(self._win_time[row, pos]), self._win_rate[row, pos].copy()

    def history(self, key: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """The window of a key, oldest first: (times (n,), rates (n, counters))."""
        row = self._index.get(key)
        if row is None:
            return np.empty(0), np.empty((0, len(self.counters)))
        count = int(min(self._win_pos[row], self.window))
        start = int(self._win_pos[row]) - count
        order = [(start + i) % self.window for i in range(count)]
        return self._win_time[row, order].copy(), self._win_rate[row, order].copy()

    def values(self, key: Hashable) -> np.ndarray | None:
        """Last counter values of a key."""
        row = self._index.get(key)
        return None if row is None else self._values[row].copy()

    def nbytes(self) -> int:
        """Bytes held by the numpy state (for memory-per-entry figures)."""
        return sum(a.nbytes for a in (self._values, self._time, self._duration, self._win_time,
                                      self._win_rate, self._win_pos))
