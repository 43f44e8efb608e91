"""Quality digests between cluster instances (controller.cluster.digest): what one instance
says of its customers is what another reads, merged with its own book; a digest not signed
with the cluster's key, stamped far from now, older than one taken, or on another instance's
subject is refused and counted; an instance that stops sending stops counting."""

import dataclasses

import pytest

from controller.cluster.digest import (SIGNATURE_HEADER, ClusterBook, DigestChannel, Digests,
                                       build_digests, sign, subject_of)
from controller.cluster.partitions import partition_of
from controller.monitor.experience import ExperienceBook
from controller.monitor.quality import Quality

KEY = b"k" * 32
NOW = 1_000_000.0


@dataclasses.dataclass
class Record:
    customer_id: str
    src: str
    dst: str
    service: str


def voice(score):
    return Quality("voice", score, "MOS", "G.107")


def book_with(customer, score, samples=12, start=NOW - 11):
    book = ExperienceBook()
    for i in range(samples):
        book.add(customer, "voice", voice(score), start + i, 1.0, "gold", "residential")
    book.evaluate(NOW)
    return book


def signed(digest, key=KEY, subject=None):
    subject = subject or subject_of(digest.instance)
    body = digest.SerializeToString()
    return subject, {SIGNATURE_HEADER: sign(key, subject, body)}, body


def digests_of(instance, book, partitions, count=4, records=(), sequence=1, now=NOW):
    return build_digests(instance, sequence, now, partitions, count, book.digest_rows(now),
                         records)


def test_what_one_instance_says_another_reads_merged_with_its_own():
    a_book = book_with("ca", 2.0)                     # a computes ca: degraded
    a_part = partition_of("ca", 4)
    records = [Record("ca", "10.0.0.1", "10.0.9.9", "voice"), Record("", "1.1.1.1", "2.2.2.2", "")]
    [digest] = digests_of("a:1", a_book, {a_part}, records=records)
    heard = Digests("b:2", lambda: KEY, clock=lambda: NOW)
    assert heard.add(*signed(digest))
    b_book = book_with("cb", 4.4)                     # b computes cb: ok
    book = ClusterBook(b_book, heard, lambda c: partition_of(c, 4) != a_part)
    assert book.statuses() == {("ca", "voice"): "degraded", ("cb", "voice"): "ok"}
    assert book.degraded() == [("ca", "voice")]
    [view] = book.of_customer("ca", NOW)
    assert view.status.status == "degraded" and view.score == pytest.approx(2.0)
    assert view.service_class == "gold" and view.target.minimum == pytest.approx(4.03)
    assert "computed by cluster instance a:1" in view.latest.missing[0]
    assert [v.customer_id for v in book.select(NOW)] == ["ca", "cb"]     # worst first
    assert [v.customer_id for v in book.select(NOW, statuses=["ok"])] == ["cb"]
    assert book.peer_addresses("ca") == {"10.0.0.1", "10.0.9.9"}
    assert book.pair_services() == {("10.0.0.1", "10.0.9.9"): "voice"}
    # a's change of status reaches b's engine as a change, once
    changes = book.evaluate(NOW)
    assert [(c.customer_id, c.before, c.after.status) for c in changes] == \
        [("ca", "unknown", "degraded")]
    assert book.evaluate(NOW) == []
    assert book.summary(NOW) == b_book.summary(NOW)   # Prometheus: each instance its own


def test_an_own_entry_of_a_customer_the_other_computes_gives_way_to_the_others():
    a_part = partition_of("ca", 4)
    heard = Digests("b:2", lambda: KEY, clock=lambda: NOW)
    heard.add(*signed(digests_of("a:1", book_with("ca", 2.0), {a_part})[0]))
    stale_own = book_with("ca", 4.4)                  # b took ca's records before a did
    book = ClusterBook(stale_own, heard, lambda c: partition_of(c, 4) != a_part)
    assert book.statuses() == {("ca", "voice"): "degraded"}
    # while b takes ca's partition itself, its own entry counts
    book = ClusterBook(stale_own, heard, lambda c: True)
    assert book.statuses() == {("ca", "voice"): "ok"}


def test_a_digest_that_is_not_the_clusters_is_refused_and_counted():
    now = [NOW]
    heard = Digests("b:2", lambda: KEY, clock=lambda: now[0])
    [digest] = digests_of("a:1", book_with("ca", 2.0), {0})
    subject, headers, body = signed(digest)
    assert not heard.add(subject, headers, body + b"\x00")              # altered
    assert not heard.add(*signed(digest, key=b"x" * 32))                 # another key
    assert not heard.add(subject, {}, body)                              # unsigned
    assert not heard.add(*signed(digest, subject=subject_of("c:3")))    # a's digest as c's
    assert not heard.add(subject, {SIGNATURE_HEADER: sign(KEY, subject, b"\xff")}, b"\xff")
    now[0] = NOW + 60
    assert not heard.add(subject, headers, body)                         # replayed later
    now[0] = NOW
    assert heard.add(subject, headers, body)
    older = digests_of("a:1", book_with("ca", 2.0), {0}, sequence=0)[0]
    assert not heard.add(*signed(older))
    assert heard.rejected == {"bad signature": 3, "wrong subject": 1, "malformed": 1,
                              "stale": 1, "replayed": 1}
    assert not Digests("b:2", lambda: b"").add(subject, headers, body)   # no key yet


def test_an_instance_that_stops_sending_stops_counting():
    now = [NOW]
    heard = Digests("b:2", lambda: KEY, stale_s=3.0, clock=lambda: now[0])
    heard.add(*signed(digests_of("a:1", book_with("ca", 2.0), {0})[0]))
    book = ClusterBook(ExperienceBook(), heard, lambda c: False)
    assert book.degraded() == [("ca", "voice")]
    now[0] = NOW + 4
    assert book.degraded() == [] and book.statuses() == {}


def test_many_customers_take_several_messages_and_the_channel_signs_them():
    book = ExperienceBook()
    for i in range(25):
        book.add(f"c{i}", "voice", voice(4.0), NOW - 1, 1.0)
    parts = build_digests("a:1", 7, NOW, {0, 1}, 4, book.digest_rows(NOW), [], per_message=10)
    assert [len(p.customers) for p in parts] == [10, 10, 5]
    assert {p.parts for p in parts} == {3} and [p.part for p in parts] == [0, 1, 2]
    heard = Digests("b:2", lambda: KEY, clock=lambda: NOW)
    for part in parts:
        assert heard.add(*signed(part))
    assert len(ClusterBook(ExperienceBook(), heard, lambda c: False).statuses()) == 25

    class Leadership:
        instance, digest_key, taking, partitions = "a:1", KEY, frozenset({1}), 4

    class Kpis:
        def latest(self, include_ended=False):
            return []
    channel = DigestChannel(Leadership(), heard, book, Kpis(), clock=lambda: NOW)
    out = channel.outgoing()
    assert out and all(s == subject_of("a:1") for s, _, _ in out)
    other = Digests("c:3", lambda: KEY, clock=lambda: NOW)
    assert all(other.add(s, h, b) for s, b, h in out)
    Leadership.digest_key = b""
    assert channel.outgoing() == []     # nobody could check them
