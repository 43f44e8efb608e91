"""Quality by customer partition: which instance computes which customers' quality, and which
of a batch's records it takes (core: plain data in, plain data out; controller/cluster/leader.py
asks etcd, controller/stream.py reads the records).

Customers fall into `count` partitions by a hash of their id (partition_of), the same on
every instance and across restarts. Each partition has a key in etcd under the lease of the
instance that holds it, shared evenly over the instances alive like the switches
(shares.assign): an instance dying moves only its partitions, one joining takes only what
evens the shares, one hand-back per round.

Every instance reads every batch of the records stream with its own durable consumer and
checks the probe's signature over the whole batch; it then keeps only the records of the
customers of the partitions it takes (RecordPicker) and hands only those to the KPI store
and the quality models. Parsing a batch and finding each record's customer costs about 1/30
of what taking its records does (bench/bench_stream.py measures both: 1.6 million against
48,000 records/s), so doing it on every instance costs little and needs no second stream,
no re-signing of records by the controller and no second hop.

An instance takes a partition from the round the shares give it to it until the round its
key is gone: during a hand-back the old and the new holder both take it for a round, so no
record falls between them (a sample counted twice for a second is the price).
"""

import dataclasses
import hashlib
from typing import Iterable, Mapping

from controller.cluster.shares import assign

NO_CUSTOMER = ""   # records of no customer's address go to partition_of("")


def partition_of(customer_id: str, count: int) -> int:
    """The customer's partition, 0 <= p < count (count >= 1)."""
    digest = hashlib.blake2b(customer_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclasses.dataclass(frozen=True)
class PartitionPlan:
    """What this instance does this round, and which partitions it takes records of."""

    claim: tuple[int, ...] = ()     # create the partition's key (nobody holds it)
    release: tuple[int, ...] = ()   # delete this instance's key: another should have it
    taking: frozenset = frozenset()


def plan_partitions(me: str, members: Iterable[str], holders: Mapping[int, str],
                    count: int) -> PartitionPlan:
    """This instance's claims and hand-backs, and what it takes: the partitions it holds
    and those the shares give it (claimed this round, or held by another until that one
    hands them back). `members`: the instances alive (this one among them); `holders`:
    partition -> the instance holding its key."""
    members = set(members) | {me}
    held = {p: h for p, h in holders.items() if 0 <= p < count}
    wanted = assign(range(count), members, held)
    claim = tuple(p for p in range(count) if p not in held and wanted[p] == me)
    release = ()
    for p in sorted(p for p, holder in held.items() if holder == me):
        if wanted[p] != me:
            release = (p,)
            break
    taking = frozenset(p for p in range(count) if held.get(p) == me or wanted[p] == me)
    return PartitionPlan(claim, release, taking)


def _customer_of_address(address: str, address_to_customer: Mapping[str, str],
                         canonical) -> str:
    """The customer whose address it is (as given, else in canonical form), or NO_CUSTOMER."""
    found = address_to_customer.get(address)
    if found is None:
        try:
            found = address_to_customer.get(canonical(address))
        except (ValueError, TypeError):
            found = None   # the KPI store refuses the record and says why
    return found or NO_CUSTOMER


def customer_of(src: str, dst: str, address_to_customer: Mapping[str, str], canonical) -> str:
    """The customer a record belongs to, as the KPI store joins it: the sender's, else the
    receiver's (`canonical`: address text -> its canonical form, raising ValueError)."""
    return _customer_of_address(src, address_to_customer, canonical) or \
        _customer_of_address(dst, address_to_customer, canonical)


class RecordPicker:
    """Picks a batch's records by their customers' partitions (what an instance's stream
    consumer keeps). What it found of each address and customer is remembered for as long
    as the directory's address mapping is the same object (the directory makes a new one
    when an address changes hands), so a flow's addresses are looked up once, not in every
    batch."""

    def __init__(self, count: int, canonical):
        self.count = count
        self.canonical = canonical
        self._mapping = None
        self._customers: dict[str, str] = {}    # address -> its customer ('' for none)
        self._partitions: dict[str, int] = {}   # customer -> partition

    def _customer(self, address: str, mapping: Mapping[str, str]) -> str:
        found = _customer_of_address(address, mapping, self.canonical)
        if len(self._customers) < 1 << 20:
            self._customers[address] = found
        return found

    def pick(self, records, taking: frozenset, mapping: Mapping[str, str]) -> list:
        """The records (anything with .src and .dst) whose customer's partition is in
        `taking`, in their order."""
        if mapping is not self._mapping:
            self._mapping, self._customers = mapping, {}
        customers, partitions = self._customers, self._partitions
        out = []
        for record in records:
            customer = customers.get(record.src)
            if customer is None:
                customer = self._customer(record.src, mapping)
            if not customer:
                customer = customers.get(record.dst)
                if customer is None:
                    customer = self._customer(record.dst, mapping)
            p = partitions.get(customer)
            if p is None:
                p = partition_of(customer, self.count)
                if len(partitions) < 1 << 20:
                    partitions[customer] = p
            if p in taking:
                out.append(record)
        return out


class Keeper:
    """What a records stream consumer keeps (controller.stream): `taking()` gives the
    partitions this instance takes now, `mapping()` the directory's address -> customer."""

    def __init__(self, picker: RecordPicker, taking, mapping):
        self.picker, self._taking, self._mapping = picker, taking, mapping

    def taking(self) -> frozenset:
        return self._taking()

    def pick(self, records, partitions: frozenset) -> list:
        return self.picker.pick(records, partitions, self._mapping())


def ranges(numbers) -> str:
    """"0-3, 7" of {0, 1, 2, 3, 7}: partitions as people read them."""
    out, run = [], []
    for n in sorted(numbers):
        if run and n == run[-1] + 1:
            run.append(n)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [n]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ", ".join(out)
