"""Zoom-in: monitor at a high level, look closer only where experience declines (core).

TM Forum's CEM 2.0 way: a baseline of sampled mirroring watches everyone a little; when a
customer's status turns degraded (or the operator or the customer asks), cems zooms in on
that customer: all its traffic is mirrored to the probe and, when an agent on its path is
configured and connected, a STAMP test measures its path. A zoom that a degraded status
started ends once every service of the customer has been out of degraded for `recover_s`;
one that was asked for ends after its time. Every start and end is an event with its
reason. The effects (mirror rules, tests) are the shell's to apply; this only decides.
"""

import dataclasses
from typing import Iterable, Mapping

DEGRADED = "degraded"


@dataclasses.dataclass(frozen=True)
class Zoom:
    customer_id: str
    reason: str
    started_unix_s: float
    until_unix_s: float | None  # None: until the customer has recovered
    asked: bool                 # asked for (by an operator or the customer), not automatic


@dataclasses.dataclass(frozen=True)
class ZoomEvent:
    zoom: Zoom
    active: bool     # started (True) or ended (False)
    reason: str


class ZoomBook:
    def __init__(self, recover_s: float = 30.0, asked_s: float = 120.0, max_zooms: int = 100):
        self.recover_s = recover_s
        self.asked_s = asked_s
        self.max_zooms = max_zooms  # mirroring everything of too many customers helps nobody
        self._zooms: dict[str, Zoom] = {}
        self._healthy_since: dict[str, float] = {}
        self.refused_total = 0

    def active(self) -> dict[str, Zoom]:
        return dict(self._zooms)

    def _start(self, zoom: Zoom) -> list[ZoomEvent]:
        if zoom.customer_id in self._zooms:
            return []
        if len(self._zooms) >= self.max_zooms:
            self.refused_total += 1
            return []
        self._zooms[zoom.customer_id] = zoom
        return [ZoomEvent(zoom, True, zoom.reason)]

    def request(self, customer_id: str, reason: str, seconds: float | None, now: float
                ) -> tuple[Zoom | None, list[ZoomEvent]]:
        """Zoom in on a customer for `seconds` (default asked_s), or extend one running."""
        until = now + (seconds or self.asked_s)
        current = self._zooms.get(customer_id)
        if current is not None:
            longer = dataclasses.replace(current, until_unix_s=None if current.until_unix_s
                                         is None else max(current.until_unix_s, until))
            self._zooms[customer_id] = longer
            return longer, []
        zoom = Zoom(customer_id, reason or "asked for", now, until, True)
        events = self._start(zoom)
        return (zoom if events else None), events

    def tick(self, now: float, statuses: Mapping[tuple[str, str], str]) -> list[ZoomEvent]:
        """Start zooms on customers with a degraded service; end those whose time is up or
        whose customer has recovered for recover_s."""
        degraded: dict[str, list[str]] = {}
        for (customer, service), status in statuses.items():
            if status == DEGRADED:
                degraded.setdefault(customer, []).append(service)
        events = []
        for customer, services in sorted(degraded.items()):
            self._healthy_since.pop(customer, None)
            if customer not in self._zooms:
                events += self._start(Zoom(customer, f"{', '.join(sorted(services))} degraded",
                                           now, None, False))
        for customer, zoom in sorted(self._zooms.items()):
            if customer in degraded:
                continue
            if zoom.until_unix_s is not None:
                if now >= zoom.until_unix_s:
                    events.append(ZoomEvent(zoom, False, "its time is up"))
                continue
            since = self._healthy_since.setdefault(customer, now)
            if now - since >= self.recover_s:
                events.append(ZoomEvent(zoom, False, f"no service degraded for "
                                                     f"{self.recover_s:g} s"))
        for event in events:
            if not event.active:
                self._zooms.pop(event.zoom.customer_id, None)
                self._healthy_since.pop(event.zoom.customer_id, None)
        return events

    def forget(self, customers: Iterable[str]) -> None:
        for customer in customers:
            self._zooms.pop(customer, None)
            self._healthy_since.pop(customer, None)
