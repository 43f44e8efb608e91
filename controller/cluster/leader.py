"""Which controller instance is master of the switches: the one holding an etcd key under a
lease it renews while it is healthy (shell around etcd; the decisions are in step()).

Every switch connects to every instance. The leader's switches get an OpenFlow role request
MASTER, the others' SLAVE, with the key's create revision as generation id: it grows with
every new leader, so a switch refuses a stale master's late request. When the leader dies or
is cut off, its lease expires after `lease_s` and another instance creates the key and takes
over (the switches' flows stay in place meanwhile, and the new master reconciles them). A
leader that cannot renew its lease steps down by itself two thirds of the way to expiry,
before anyone else can become leader, so two instances never write to the switches at once.
"""

import logging
import os
import socket
import threading
import time

from controller.cluster.etcd import Etcd, EtcdError

LOG = logging.getLogger("cems.cluster")


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    def __init__(self, etcd: Etcd, key: str, instance: str, lease_s: float = 3.0,
                 on_change=lambda leader, generation: None, clock=time.monotonic,
                 about: str = ""):
        self.etcd = etcd
        self.key = key
        self.instance = instance
        self.about = about        # what the others see of this instance (its gRPC address)
        self.members: tuple[tuple[str, str], ...] = ()   # (instance, about) alive, as seen
        self.lease_s = lease_s
        self.on_change = on_change
        self.clock = clock
        self.leader = False
        self.generation = 0
        self.holder = ""          # who holds the key, as last seen
        self.current = 0          # the holder's generation (its key's create revision), seen
        self.problem = ""         # why etcd could not be asked, while it cannot
        self._lease = None
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread = None

    def _become(self, leader: bool, generation: int) -> None:
        changed = leader != self.leader or (leader and generation != self.generation)
        self.leader, self.generation = leader, generation
        if changed:
            LOG.warning("%s is %s of the switches (generation %d)", self.instance,
                        "now master" if leader else "no longer master", generation)
            self.on_change(leader, generation)

    def step(self) -> None:
        """One round: renew as leader, or try to become it."""
        now = self.clock()
        try:
            if self.leader:
                if self.etcd.keepalive(self._lease) > 0:
                    self._renewed = now
                    holder, revision = self.etcd.get(self.key)
                    self.current = revision
                    if holder != self.instance or revision != self.generation:
                        self.holder = holder
                        self._become(False, self.generation)
                else:
                    self._lease = None
                    self._become(False, self.generation)
            else:
                if self._lease is None or self.etcd.keepalive(self._lease) <= 0:
                    self._lease = self.etcd.grant(max(1, round(self.lease_s)))
                    self.etcd.put(f"{self.key}/instances/{self.instance}", self.about,
                                  self._lease)
                self._renewed = now
                _, holder, revision = self.etcd.create(self.key, self.instance, self._lease)
                self.holder, self.current = holder, revision
                if holder == self.instance:
                    self._become(True, revision)
            members = self.etcd.prefix(f"{self.key}/instances/")
            self.members = tuple((key.rsplit("/", 1)[-1], about) for key, about in members)
            if self.problem:
                LOG.warning("etcd %s answers again", self.etcd.url)
            self.problem = ""
        except EtcdError as err:
            if not self.problem:
                LOG.error("cannot ask etcd who is master of the switches: %s", err)
            self.problem = f"cannot reach etcd {self.etcd.url}: {err}"
            if self.leader and now - self._renewed > self.lease_s * 2 / 3:
                self._become(False, self.generation)   # before another can take over

    def lease_age_s(self) -> float:
        """Seconds since this instance last renewed its lease."""
        return max(0.0, self.clock() - self._renewed) if self._renewed else float("nan")

    def start(self) -> "Leadership":
        self._thread = threading.Thread(target=self._run, name="cems-leadership", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # pylint: disable=broad-except
                LOG.exception("leadership round failed; trying again")
            self._stop.wait(self.lease_s / 4)

    def stop(self) -> None:
        """Stop taking part; a leader gives the key up at once (revoking its lease)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._lease is not None:
            try:
                self.etcd.revoke(self._lease)
            except EtcdError:
                pass
