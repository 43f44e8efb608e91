"""Which controller instance is master of which switch, and which one's policy engine acts:
keys in etcd under a lease each instance renews while it is healthy (shell around etcd; the
decisions are in controller/cluster/shares.py).

Every switch connects to every instance. Each switch has a key, `<key>/switches/<dpid>`,
created under the lease of the instance that is its master; the switches are shared evenly
over the instances alive (shares.assign). The master sends the switch an OpenFlow role
request MASTER, the others SLAVE, with the key's create revision as generation id: it grows
with every new master, so a switch refuses a stale master's late request. When an instance
dies or is cut off, its lease expires after `lease_s`, its keys go with it, and the others
take its switches (the flows stay in place meanwhile, and each new master reconciles).
An instance that cannot renew its lease steps down by itself two thirds of the way to
expiry, before anyone else can take over, so two instances never write to a switch at once.

The leader key, `<key>` itself, names the one instance whose policy engine decides and acts
for the whole network; the others follow what it stores. Each instance's member key,
`<key>/instances/<instance>`, says its gRPC address and the switches connected to it.

With `partitions`, the customers' quality is shared the same way: `<key>/partitions/<p>`
names the instance that computes the quality of partition p's customers
(controller/cluster/partitions.py). `taking` is what this instance takes records of; when
etcd cannot be reached it keeps taking what it took (two instances computing a customer's
quality for a while is harmless; nobody computing it is not). `<key>/digest-key`, made by the
first instance and kept, signs the digests the instances tell each other their customers'
experience with (controller/cluster/digest.py).
"""

import json
import logging
import os
import secrets
import socket
import threading
import time

from controller.cluster.etcd import Etcd, EtcdError
from controller.cluster.partitions import plan_partitions, ranges
from controller.cluster.shares import plan_switches

LOG = logging.getLogger("cems.cluster")


def _member(value: str) -> tuple[str, frozenset[int]]:
    """(about, switches connected) from a member key's value."""
    try:
        data = json.loads(value)
        return str(data.get("about", "")), frozenset(int(d) for d in data.get("switches", ()))
    except (ValueError, TypeError, AttributeError):
        return value, frozenset()   # written by a cems without per-switch mastership


def instance_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    def __init__(self, etcd: Etcd, key: str, instance: str, lease_s: float = 3.0,
                 on_change=lambda leader, generation: None, clock=time.monotonic,
                 about: str = "", on_switch=lambda dpid, master, generation: None,
                 partitions: int = 0):
        self.etcd = etcd
        self.key = key
        self.instance = instance
        self.about = about        # what the others see of this instance (its gRPC address)
        self.members: tuple[tuple[str, str], ...] = ()   # (instance, about) alive, as seen
        self.lease_s = lease_s
        self.on_change = on_change
        self.on_switch = on_switch
        self.clock = clock
        self.leader = False
        self.generation = 0
        self.holder = ""          # who holds the key, as last seen
        self.problem = ""         # why etcd could not be asked, while it cannot
        # Per switch: `seen` is set by the app (the switches connected to this instance);
        # `switches` are those this instance is master of (dpid -> generation); `holders`
        # who holds each switch's key (dpid -> (instance, generation)); `connected` what
        # each member says it is connected to. Each is replaced whole, never changed in
        # place: other threads read them.
        self.seen: frozenset[int] = frozenset()
        self.switches: dict[int, int] = {}
        self.holders: dict[int, tuple[str, int]] = {}
        self.connected: dict[str, frozenset[int]] = {}
        self._releasing: set[int] = set()
        # Per partition (with `partitions`): who holds each key (p -> instance), and the
        # partitions this instance takes records of (replaced whole, like the above).
        self.partitions = partitions
        self.partition_holders: dict[int, str] = {}
        self.taking: frozenset[int] = frozenset()
        self._releasing_partitions: set[int] = set()
        # signs the quality digests (controller/cluster/digest.py): made by the first
        # instance, `<key>/digest-key` with no lease, read by the others
        self.digest_key = b""
        self._unheld_since: dict[int, float] = {}
        self._published = None
        self._lease = None
        self._renewed = 0.0
        self._stop = threading.Event()
        self._thread = None

    def _become(self, leader: bool, generation: int) -> None:
        changed = leader != self.leader or (leader and generation != self.generation)
        self.leader, self.generation = leader, generation
        if changed:
            LOG.warning("%s is %s of the cluster (generation %d): its policy engine %s",
                        self.instance, "now leader" if leader else "no longer leader",
                        generation, "acts" if leader else "follows")
            self.on_change(leader, generation)

    def _switch_key(self, dpid: int) -> str:
        return f"{self.key}/switches/{dpid:016x}"

    def _lose(self, dpids) -> None:
        for dpid in sorted(dpids):
            if dpid in self.switches:
                generation = self.switches[dpid]
                self.switches = {d: g for d, g in self.switches.items() if d != dpid}
                LOG.warning("%s is no longer master of switch %016x", self.instance, dpid)
                self.on_switch(dpid, False, generation)

    def step(self) -> None:
        """One round: renew the lease, hold or try to take the leader key, then the
        switches' keys."""
        now = self.clock()
        try:
            if self._lease is not None and self.etcd.keepalive(self._lease) <= 0:
                self._lease = None             # expired: every key under it is gone
                self._lose(self.switches)
                self._become(False, self.generation)
            if self._lease is None:
                self._lease = self.etcd.grant(max(1, round(self.lease_s)))
                self._published = None
            self._renewed = now
            self._publish()
            if self.leader:
                holder, revision = self.etcd.get(self.key)
                if holder != self.instance or revision != self.generation:
                    self.holder = holder
                    self._become(False, self.generation)
            else:
                _, holder, revision = self.etcd.create(self.key, self.instance, self._lease)
                self.holder = holder
                if holder == self.instance:
                    self._become(True, revision)
            members = self.etcd.prefix(f"{self.key}/instances/")
            self.members = tuple((key.rsplit("/", 1)[-1], _member(value)[0])
                                 for key, value in members)
            self.connected = {key.rsplit("/", 1)[-1]: _member(value)[1]
                              for key, value in members}
            self._switch_round(now)
            if self.partitions:
                if not self.digest_key:
                    _, value, _ = self.etcd.create(f"{self.key}/digest-key",
                                                   secrets.token_hex(32), 0)
                    self.digest_key = value.encode()
                self._partition_round()
            if self.problem:
                LOG.warning("etcd %s answers again", self.etcd.url)
            self.problem = ""
        except EtcdError as err:
            if not self.problem:
                LOG.error("cannot ask etcd which instance is master of which switch: %s", err)
            self.problem = f"cannot reach etcd {self.etcd.url}: {err}"
            if now - self._renewed > self.lease_s * 2 / 3:   # before another can take over
                self._lose(self.switches)
                if self.leader:
                    self._become(False, self.generation)

    def _publish(self) -> None:
        """This instance's member key: its gRPC address and the switches connected to it
        (an instance hands a switch only to one that is connected to it)."""
        value = json.dumps({"about": self.about, "switches": sorted(self.seen)})
        if value != self._published:
            self.etcd.put(f"{self.key}/instances/{self.instance}", value, self._lease)
            self._published = value

    def _switch_round(self, now: float) -> None:
        """Claim the switches assigned to this instance that nobody holds, hand back one
        assigned to another (controller.cluster.shares decides)."""
        holders = {}
        for key, holder, revision in self.etcd.prefix_revisions(f"{self.key}/switches/"):
            try:
                holders[int(key.rsplit("/", 1)[-1], 16)] = (holder, revision)
            except ValueError:
                continue   # not a key cems wrote
        # a switch handed back last round: the app has stepped back, now the key goes
        for dpid in sorted(self._releasing):
            if holders.get(dpid, ("", 0))[0] == self.instance:
                self.etcd.delete(self._switch_key(dpid))
                del holders[dpid]
        self._releasing = set()
        self._lose(d for d, g in self.switches.items() if holders.get(d) != (self.instance, g))
        for dpid, (holder, revision) in sorted(holders.items()):
            if holder == self.instance and dpid not in self.switches:
                self._take(dpid, revision)   # created by a call whose answer was lost
        known = set(self.seen) | set(holders)
        self._unheld_since = {d: self._unheld_since.get(d, now) for d in known
                              if d not in holders}
        plan = plan_switches(
            self.instance, [name for name, _ in self.members], self.seen,
            {d: h for d, (h, _) in holders.items()}, self.connected,
            [d for d, since in self._unheld_since.items() if now - since >= self.lease_s])
        for dpid in plan.claim:
            _, holder, revision = self.etcd.create(self._switch_key(dpid), self.instance,
                                                   self._lease)
            holders[dpid] = (holder, revision)
            if holder == self.instance:
                self._take(dpid, revision)
        for dpid in plan.release:
            LOG.info("%s hands switch %016x back: it is another connected instance's share",
                     self.instance, dpid)
            self._releasing.add(dpid)
            self._lose([dpid])
        self.holders = holders

    def _partition_key(self, partition: int) -> str:
        return f"{self.key}/partitions/{partition:04d}"

    def _partition_round(self) -> None:
        """Claim the partitions the shares give this instance that nobody holds; delete the
        key of one handed back last round (the new holder takes it from the round it was
        handed back), and hand one back (controller.cluster.partitions decides)."""
        holders = {}
        for key, holder in self.etcd.prefix(f"{self.key}/partitions/"):
            try:
                holders[int(key.rsplit("/", 1)[-1])] = holder
            except ValueError:
                continue   # not a key cems wrote
        for partition in sorted(self._releasing_partitions):
            if holders.get(partition) == self.instance:
                self.etcd.delete(self._partition_key(partition))
                del holders[partition]
        self._releasing_partitions = set()
        plan = plan_partitions(self.instance, [name for name, _ in self.members], holders,
                               self.partitions)
        for partition in plan.claim:
            _, holder, _ = self.etcd.create(self._partition_key(partition), self.instance,
                                            self._lease)
            holders[partition] = holder
        for partition in plan.release:
            LOG.info("%s hands partition %d back: it is another instance's share",
                     self.instance, partition)
            self._releasing_partitions.add(partition)
        if plan.taking != self.taking:
            gained, lost = plan.taking - self.taking, self.taking - plan.taking
            LOG.warning("%s takes the records of %d of %d customer partitions (%s%s)",
                        self.instance, len(plan.taking), self.partitions,
                        f"now also {ranges(gained)}" if gained else "",
                        f"{'; ' if gained else ''}no longer {ranges(lost)}" if lost else "")
        self.taking = plan.taking
        self.partition_holders = holders

    def _take(self, dpid: int, generation: int) -> None:
        self.switches = {**self.switches, dpid: generation}
        LOG.warning("%s is now master of switch %016x (generation %d)", self.instance, dpid,
                    generation)
        self.on_switch(dpid, True, generation)

    def holder_of(self, dpid: int) -> tuple[str, int]:
        """(instance, generation) holding the switch's key as last seen, or ("", 0)."""
        return self.holders.get(dpid, ("", 0))

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
