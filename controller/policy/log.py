"""The decision log: numbered, bounded in memory, stored, searchable, with listeners (core).

Every Decision the engine makes gets the next sequence number and is kept (the newest
`capacity` in memory); readers page by sequence number, filter by customer or element, and
listeners (the event bus, the metrics) hear each one. Thread-safe.

With a `store` (controller.policy_store.DecisionStore: append, last_seq, newest, select),
every decision is also written there as it is added, numbering goes on from the stored
log after a restart, and a reader asking for decisions older than those in memory is
answered from the store. A decision the store cannot take stays in memory and is handed to
`store_failed`, so that the shell can say so; the loop goes on.
"""

import collections
import dataclasses
import threading
from typing import Callable, Iterable

from controller.policy.model import Decision


@dataclasses.dataclass(frozen=True)
class Logged:
    seq: int
    decision: Decision


class DecisionLog:
    def __init__(self, capacity: int = 10_000, store=None,
                 store_failed: Callable[[Exception], None] = lambda err: None):
        self._lock = threading.Lock()
        self._items: collections.deque[Logged] = collections.deque(maxlen=capacity)
        self._next = 1
        self.listeners: list[Callable[[Logged], None]] = []
        self.store = store
        self.store_failed = store_failed
        # a standby instance of a cluster: the master writes the decisions to the shared
        # store, and reads come from there, not from what this one read when it started
        self.follow_store = False
        if store is not None:
            self.resume()

    def resume(self) -> None:
        """Read the newest decisions and the numbering from the store again (another
        instance, master until now, went on writing them)."""
        with self._lock:
            self._items.clear()
            self._items.extend(self.store.newest(self._items.maxlen))
            self._next = max(self._next, self.store.last_seq() + 1)

    def add(self, decisions: Iterable[Decision]) -> list[Logged]:
        with self._lock:
            logged = []
            for decision in decisions:
                item = Logged(self._next, decision)
                self._next += 1
                self._items.append(item)
                logged.append(item)
            if self.store is not None and logged:
                try:
                    self.store.append(logged)
                except Exception as err:  # pylint: disable=broad-except
                    self.store_failed(err)
        for item in logged:
            for listener in self.listeners:
                listener(item)
        return logged

    def select(self, after_seq: int = 0, limit: int = 100, customer_id: str = "",
               element: str = "", kinds: Iterable[str] = ()) -> list[Logged]:
        """Oldest first, from after `after_seq`; a customer sees the decisions about its
        own traffic and those made for it (`customer_id`)."""
        kinds = set(kinds)
        with self._lock:
            items = list(self._items)
        if self.store is not None and (self.follow_store or not items or
                                       after_seq + 1 < items[0].seq):
            return self.store.select(after_seq, limit, customer_id, element, sorted(kinds))
        out = []
        for item in items:
            d = item.decision
            if item.seq <= after_seq or (kinds and d.kind not in kinds) or \
                    (element and d.element != element):
                continue
            if customer_id and d.customer_id != customer_id and \
                    customer_id not in d.for_customers:
                continue
            out.append(item)
            if len(out) >= limit:
                break
        return out

    def last_seq(self) -> int:
        if self.store is not None and self.follow_store:
            return self.store.last_seq()
        with self._lock:
            return self._next - 1
