"""What the instances of a cluster with customer partitions tell each other of their
customers' experience, and the merged view each instance reads (core: no I/O; the records
stream's thread, controller/stream.py, sends and hears the messages on NATS).

With customer partitions (controller/cluster/partitions.py) each instance computes the
quality of its own partitions' customers only. Once a second each one publishes a digest of
what its ExperienceBook holds (build_digests): per customer and service the status, its
reason and since when, and the samples of the last 10 s (count, unknown, mean, worst); per
customer the addresses its flows talk to (root cause's peers) and the services the probes
saw between two addresses (the policy snapshot's). A digest is signed with the cluster's
digest key, which only holders of the cluster's etcd have (an instance creates it in etcd
once, the others read it): anyone else who can publish on NATS cannot make the leader's
policy engine act on a made-up degradation.

ClusterBook is what the experience engine, the policy engine, the QoE API and the metrics
read instead of the instance's own ExperienceBook: the instance's own entries for the
customers of the partitions it takes, and for the others what the instance taking them
says (an entry of its own for a customer another instance computes, such as a session
report it was sent, fills in a service that one does not have). A digest older than
`stale_s` counts no more: an instance that died stops counting within seconds, and its
partitions' new holder counts from its first digest. Of another instance's customer, only
the digest's figures are here: the 10 s window's count, mean and worst, not its percentiles,
its other windows, its history or its latest sample's details (those are on that instance).
"""

import collections
import hashlib
import hmac
import logging
import math
import threading
import time

from cems.v1 import qoe_pb2 as pb
from google.protobuf.message import DecodeError

from controller.cluster.partitions import partition_of
from controller.monitor.experience import (DEGRADED, OK, UNKNOWN, ServiceExperience, Status,
                                           StatusChange, WindowFigures, target_for)
from controller.monitor.quality import Quality

LOG = logging.getLogger("cems.cluster")
SUBJECT_PREFIX = "cems.digest."
SIGNATURE_HEADER = "Cems-Digest-Signature"
CUSTOMERS_PER_MESSAGE = 2000       # about 200 kB: below NATS's 1 MB default max payload
MAX_AGE_S = 10.0                   # a digest stamped further from this instance's clock is refused


def subject_of(instance: str) -> str:
    """The NATS subject of an instance's digests (a subject token has no dots or spaces)."""
    return SUBJECT_PREFIX + "".join(c if c.isalnum() or c in "-_" else "-" for c in instance)


def sign(key: bytes, subject: str, body: bytes) -> str:
    return hmac.new(key, subject.encode() + b"\n" + body, hashlib.sha256).hexdigest()


def build_digests(instance: str, sequence: int, now: float, partitions, count: int, rows,
                  records, per_message: int = CUSTOMERS_PER_MESSAGE) -> list:
    """QualityDigest messages of one round. `rows`: ExperienceBook.digest_rows(); `records`:
    the KPI store's latest record of each flow (customer_id, src, dst, service)."""
    customers: dict[str, pb.CustomerDigest] = {}

    def of(customer_id):
        found = customers.get(customer_id)
        if found is None:
            found = customers[customer_id] = pb.CustomerDigest(customer_id=customer_id)
        return found
    for customer_id, service, service_class, segment, status, n, unknown, mean, worst in rows:
        of(customer_id).services.append(pb.ServiceDigest(
            service=service, service_class=service_class, segment=segment,
            status=status.status, status_since_unix_s=status.since_unix_s,
            status_reason=status.reason, count=n, unknown=unknown, mean=mean, worst=worst))
    addresses: dict[str, set] = collections.defaultdict(set)
    pairs: dict[str, dict] = collections.defaultdict(dict)
    for record in records:
        if not record.customer_id:
            continue
        addresses[record.customer_id].update((record.src, record.dst))
        if record.service:
            pairs[record.customer_id][(record.src, record.dst)] = record.service
    for customer_id in addresses.keys() | pairs.keys():
        digest = of(customer_id)
        digest.addresses.extend(sorted(addresses.get(customer_id, ())))
        digest.pairs.extend(pb.PairService(src=s, dst=d, service=v) for (s, d), v in
                            sorted(pairs.get(customer_id, {}).items()))
    ordered = [customers[c] for c in sorted(customers)]
    chunks = [ordered[i:i + per_message] for i in range(0, len(ordered), per_message)] or [[]]
    return [pb.QualityDigest(instance=instance, time_unix_s=now, sequence=sequence, part=i,
                             parts=len(chunks), partitions=sorted(partitions),
                             partition_count=count, customers=chunk)
            for i, chunk in enumerate(chunks)]


class Digests:
    """The latest digests of the other instances (thread-safe: the stream's thread adds,
    the experience ticker and gRPC threads read)."""

    def __init__(self, me: str, key_of=lambda: b"", stale_s: float = 3.0, clock=time.time):
        self.me = me
        self.key_of = key_of        # -> the cluster's digest key (b"" while not known)
        self.stale_s = stale_s
        self.clock = clock
        self.version = 0            # grows with every digest taken
        self.taken = 0
        self.rejected: collections.Counter = collections.Counter()   # reason -> count
        self._logged: set = set()
        self._lock = threading.Lock()
        # instance -> (partitions, partition count, last sequence, {customer: (when, digest)})
        self._instances: dict[str, tuple] = {}

    def _refuse(self, reason: str, detail: str) -> bool:
        self.rejected[reason] += 1
        if reason not in self._logged and len(self._logged) < 100:
            self._logged.add(reason)
            LOG.warning("quality digest refused: %s (further ones like it are counted, not "
                        "logged)", detail)
        return False

    def add(self, subject: str, headers, body: bytes) -> bool:
        """Take one message heard on cems.digest.*; False (counted) when it is refused."""
        key = self.key_of()
        if not key:
            return self._refuse("no key", "this instance has not read the cluster's digest "
                                "key from etcd yet")
        given = (headers or {}).get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(given, sign(key, subject, body)):
            return self._refuse("bad signature", f"a message on {subject} not signed with the "
                                "cluster's digest key: forged, or from another cluster")
        try:
            digest = pb.QualityDigest.FromString(body)
        except DecodeError as err:
            return self._refuse("malformed", f"a message on {subject} that is no "
                                f"QualityDigest ({err})")
        if subject != subject_of(digest.instance):
            return self._refuse("wrong subject", f"a digest of {digest.instance!r} on "
                                f"{subject}")
        now = self.clock()
        if not abs(now - digest.time_unix_s) <= MAX_AGE_S:
            return self._refuse("stale", f"a digest of {digest.instance} stamped "
                                f"{now - digest.time_unix_s:.0f} s from this instance's clock "
                                "(replayed, or the clocks differ)")
        if digest.instance == self.me:
            return True
        with self._lock:
            _, _, last, customers = self._instances.get(digest.instance, ((), 0, 0, {}))
            if digest.sequence < last:
                return self._refuse("replayed", f"a digest of {digest.instance} older than "
                                    "one already taken")
            customers = dict(customers)
            for customer in digest.customers:
                customers[customer.customer_id] = (now, customer)
            self._instances[digest.instance] = (frozenset(digest.partitions),
                                                digest.partition_count, digest.sequence,
                                                customers)
            self.version += 1
            self.taken += 1
        return True

    def fresh(self) -> list[tuple[str, frozenset, int, dict]]:
        """(instance, its partitions, their count, {customer: CustomerDigest}) of what is
        younger than stale_s."""
        cutoff = self.clock() - self.stale_s
        with self._lock:
            items = list(self._instances.items())
        out = []
        for instance, (partitions, count, _, customers) in items:
            live = {c: d for c, (when, d) in customers.items() if when >= cutoff}
            if live:
                out.append((instance, partitions, count, live))
        return out


def _remote_view(customer_id: str, entry: pb.ServiceDigest, instance: str, targets
                 ) -> ServiceExperience:
    scale = "ratio" if entry.service == "bulk" else "MOS"
    nan = math.nan
    latest = Quality(entry.service, None, scale, "", missing=(
        f"computed by cluster instance {instance}: its latest sample and its other windows "
        "are there",))
    return ServiceExperience(
        customer_id, entry.service, entry.service_class, entry.segment,
        Status(entry.status, entry.status_since_unix_s, entry.status_reason),
        target_for(targets, entry.service, entry.service_class), latest,
        (WindowFigures(10.0, entry.count, entry.unknown, entry.mean, entry.worst, nan, nan,
                       nan, nan),))


class ClusterBook:
    """The ExperienceBook's reading methods over this instance's book and the others'
    digests; everything else (adding samples, history, summary, targets) is the local
    book's. `takes(customer_id)`: whether this instance takes that customer's records."""

    def __init__(self, local, digests: Digests, takes):
        self.local = local
        self.digests = digests
        self.takes = takes
        self._cache = (None, {}, {}, {})   # (key, remote, addresses, pairs)
        self._last_remote: dict[tuple[str, str], str] = {}

    def __getattr__(self, name):
        return getattr(self.local, name)

    def _remote(self):
        """{(customer, service): (ServiceDigest, instance)}, {customer: addresses},
        {(src, dst): service}: for each key the entry of the instance taking the customer's
        partition, else of any."""
        key = (self.digests.version, int(self.digests.clock() / 0.5))
        if self._cache[0] == key:
            return self._cache[1:]
        remote, addresses, pairs = {}, {}, {}
        for instance, partitions, count, customers in self.digests.fresh():
            for customer_id, digest in customers.items():
                owner = count > 0 and partition_of(customer_id, count) in partitions
                for entry in digest.services:
                    k = (customer_id, entry.service)
                    if owner or k not in remote:
                        remote[k] = (entry, instance)
                if owner or customer_id not in addresses:
                    addresses[customer_id] = set(digest.addresses)
                for pair in digest.pairs:
                    pairs[(pair.src, pair.dst)] = pair.service
        self._cache = (key, remote, addresses, pairs)
        return remote, addresses, pairs

    def _shown(self):
        """(local statuses shown, remote entries shown)."""
        remote = self._remote()[0]
        local = {k: s for k, s in self.local.statuses().items()
                 if k not in remote or self.takes(k[0])}
        return local, {k: v for k, v in remote.items() if k not in local}

    def statuses(self) -> dict[tuple[str, str], str]:
        local, remote = self._shown()
        return {**local, **{k: entry.status for k, (entry, _) in remote.items()}}

    def degraded(self) -> list[tuple[str, str]]:
        return sorted(k for k, s in self.statuses().items() if s == DEGRADED)

    def evaluate(self, now: float) -> list[StatusChange]:
        """The local book's changes (of what it shows), and the other instances' as their
        digests tell them."""
        changes = self.local.evaluate(now)
        local, remote = self._shown()
        out = [c for c in changes if (c.customer_id, c.service) in local]
        for k, (entry, _) in sorted(remote.items()):
            before = self._last_remote.get(k, UNKNOWN)
            if entry.status != before:
                out.append(StatusChange(k[0], k[1], before, Status(
                    entry.status, entry.status_since_unix_s, entry.status_reason)))
        self._last_remote = {k: entry.status for k, (entry, _) in remote.items()}
        return out

    def _views(self, remote, customers=None) -> list[ServiceExperience]:
        targets = self.local.targets
        return [_remote_view(k[0], entry, instance, targets)
                for k, (entry, instance) in remote.items()
                if customers is None or k[0] in customers]

    def of_customer(self, customer_id: str, now: float) -> list[ServiceExperience]:
        local, remote = self._shown()
        views = [v for v in self.local.of_customer(customer_id, now)
                 if (v.customer_id, v.service) in local]
        views += self._views({k: v for k, v in remote.items() if k[0] == customer_id})
        return sorted(views, key=lambda v: v.service)

    def select(self, now: float, services=(), statuses=(), segment: str = "",
               service_class: str = "", customers=None) -> list[ServiceExperience]:
        services, statuses = set(services), set(statuses)
        wanted = None if customers is None else set(customers)
        local, remote = self._shown()
        views = [v for v in self.local.select(now, services, statuses, segment, service_class,
                                              wanted)
                 if (v.customer_id, v.service) in local]
        views += [v for v in self._views(remote, wanted)
                  if (not services or v.service in services)
                  and (not statuses or v.status.status in statuses)
                  and (not segment or v.segment == segment)
                  and (not service_class or v.service_class == service_class)]
        rank = {DEGRADED: 0, OK: 1, UNKNOWN: 2}
        return sorted(views, key=lambda v: (rank.get(v.status.status, 2),
                                            v.score if v.score == v.score else 99.0,
                                            v.customer_id, v.service))

    def pair_services(self) -> dict[tuple[str, str], str]:
        return dict(self._remote()[2])

    def peer_addresses(self, customer_id: str) -> set[str]:
        return set(self._remote()[1].get(customer_id, ()))


class DigestChannel:
    """The records stream's side messages (controller.stream.RecordStream `side`): this
    instance's digest out every `every_s`, the others' in."""

    subject = SUBJECT_PREFIX + "*"

    def __init__(self, leadership, digests: Digests, book, kpis, every_s: float = 1.0,
                 clock=time.time):
        self.leadership = leadership   # controller.cluster.leader.Leadership
        self.digests = digests
        self.book = book               # this instance's own ExperienceBook
        self.kpis = kpis
        self.every_s = every_s
        self.clock = clock
        self.sequence = 0
        self.sent = 0

    def heard(self, subject: str, headers, body: bytes) -> None:
        self.digests.add(subject, headers, body)

    def outgoing(self) -> list[tuple[str, bytes, dict]]:
        key = self.leadership.digest_key
        if not key:
            return []   # etcd not asked yet: nobody could check them
        now = self.clock()
        self.sequence += 1
        subject = subject_of(self.leadership.instance)
        out = []
        for digest in build_digests(self.leadership.instance, self.sequence, now,
                                    self.leadership.taking, self.leadership.partitions,
                                    self.book.digest_rows(now),
                                    self.kpis.latest(include_ended=True)):
            body = digest.SerializeToString()
            out.append((subject, body, {SIGNATURE_HEADER: sign(key, subject, body)}))
        self.sent += len(out)
        return out
