"""The decision log in memory: numbered, bounded, searchable, with listeners (core).

Every Decision the engine makes gets the next sequence number and is kept (the newest
`capacity`); readers page by sequence number, filter by customer or element, and
listeners (the event bus, the metrics) hear each one. Thread-safe.
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
    def __init__(self, capacity: int = 10_000):
        self._lock = threading.Lock()
        self._items: collections.deque[Logged] = collections.deque(maxlen=capacity)
        self._next = 1
        self.listeners: list[Callable[[Logged], None]] = []

    def add(self, decisions: Iterable[Decision]) -> list[Logged]:
        with self._lock:
            logged = []
            for decision in decisions:
                item = Logged(self._next, decision)
                self._next += 1
                self._items.append(item)
                logged.append(item)
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
        with self._lock:
            return self._next - 1
