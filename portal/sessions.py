"""Signed-in sessions of the portal (core: no I/O).

A session is kept in this process only: the browser holds a random session id in a cookie
(HttpOnly, SameSite=Strict, Secure over TLS), never the token; the token stays here, to be
sent to the controller with each call, and is never shown or logged. Each session has its
own CSRF token that every form carries. Sessions end at sign-out, after `idle_s` without a
request, after `max_age_s` in any case, or when the portal restarts (then everyone signs in
again: nothing of a session is written anywhere).
"""

from __future__ import annotations

import collections
import dataclasses
import hmac
import secrets
import threading
import time


@dataclasses.dataclass
class Session:
    session_id: str
    token: str = dataclasses.field(repr=False)   # never in a repr, a log or a page
    role: str                     # domain-manager, customer, peer-domain
    subject: str                  # the customer id of a customer or peer domain
    csrf: str = dataclasses.field(repr=False)
    created: float
    seen: float
    flash: list = dataclasses.field(default_factory=list)  # (kind, text) for the next page

    def check_csrf(self, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(self.csrf, offered)


class Sessions:
    def __init__(self, idle_s: float = 1800.0, max_age_s: float = 12 * 3600.0,
                 max_sessions: int = 10_000, clock=time.monotonic):
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self.clock = clock
        self._lock = threading.Lock()
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def create(self, token: str, role: str, subject: str) -> Session:
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), token, role, subject,
                          secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[session.session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)   # the least recently used
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        now = self.clock()
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                return None
            if now - session.seen > self.idle_s or now - session.created > self.max_age_s:
                del self._sessions[session_id]
                return None
            session.seen = now
            self._sessions.move_to_end(session_id)
            return session

    def end(self, session_id: str | None) -> None:
        with self._lock:
            self._sessions.pop(session_id or "", None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


class SignInLimiter:
    """At most `max_failures` failed sign-ins per client address within `window_s`: guessing
    tokens through the portal is slowed to a crawl (the tokens themselves are 192 random
    bits), and a flood of guesses does not become a flood of calls to the controller."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0,
                 max_clients: int = 10_000, clock=time.monotonic):
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_clients = max_clients
        self.clock = clock
        self._lock = threading.Lock()
        self._failures: collections.OrderedDict[str, collections.deque] = \
            collections.OrderedDict()

    def wait_s(self, client: str) -> float:
        """0 when `client` may try now, else the seconds until it may."""
        now = self.clock()
        with self._lock:
            times = self._failures.get(client)
            if not times:
                return 0.0
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if len(times) < self.max_failures:
                return 0.0
            return times[0] + self.window_s - now

    def failed(self, client: str) -> None:
        with self._lock:
            times = self._failures.setdefault(client, collections.deque(
                maxlen=self.max_failures))
            times.append(self.clock())
            self._failures.move_to_end(client)
            while len(self._failures) > self.max_clients:
                self._failures.popitem(last=False)
