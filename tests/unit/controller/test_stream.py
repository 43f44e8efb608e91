"""Probe records on NATS JetStream: what a record message must be to be taken
(controller.stream.check_message), and the probe's publisher and the controller's consumer
against a real nats-server (started by the test on 127.0.0.1, with a user per probe):
everything published is taken once, a forged or altered batch is refused and counted, a
consumer stopped mid-stream leaves what it had not acknowledged to the next one, and a
customer partition just taken is replayed from the stream's last seconds, once."""

import threading
import time

import pytest
from cems.v1 import probe_pb2 as pb

from client.stream import (MSG_ID_HEADER, SIGNATURE_HEADER, TOKEN_ID_HEADER, key_of,
                           signature, subject_for, token_id_of)
from controller.stream import ProbeKey, Rejected, RecordStream, Seen, check_message
from probes.flows import FlowRecord

TOKEN = "cems_0123abcd_" + "s" * 32
OTHER = "cems_89abcdef_" + "t" * 32
KEYS = {"0123abcd": ProbeKey("p1", key_of(TOKEN), None),
        "89abcdef": ProbeKey("p2", key_of(OTHER), None),
        "00000000": ProbeKey("p1", key_of("cems_00000000_old"), 1000.0)}


def message(body: bytes, token: str = TOKEN, subject: str = "cems.records.p1",
            msg_id: str = "p1.b.1"):
    headers = {MSG_ID_HEADER: msg_id, TOKEN_ID_HEADER: token_id_of(token),
               SIGNATURE_HEADER: signature(key_of(token), subject, msg_id, body)}
    return subject, headers, body


def batch(*sports: int, probe_id: str = "") -> bytes:
    return pb.ExportRecordsRequest(probe_id=probe_id, records=[
        pb.FlowRecord(src="10.0.0.1", dst="10.0.0.2", proto=17, sport=s, dport=5004,
                      kind="rtp", packets=1) for s in sports]).SerializeToString()


def test_a_signed_batch_of_the_tokens_probe_is_taken():
    probe_id, request = check_message(*message(batch(1, 2, probe_id="p1")), KEYS.get, 0.0)
    assert probe_id == "p1" and [r.sport for r in request.records] == [1, 2]


@pytest.mark.parametrize("change, reason", [
    (lambda s, h, b: ("cems.records.p1.x", h, b), "subject"),
    (lambda s, h, b: ("other.p1", h, b), "subject"),
    (lambda s, h, b: (s, {}, b), "unsigned"),
    (lambda s, h, b: (s, None, b), "unsigned"),
    (lambda s, h, b: (s, {**h, TOKEN_ID_HEADER: "ffffffff"}, b), "unknown token"),
    (lambda s, h, b: (s, {**h, TOKEN_ID_HEADER: "x" * 500}, b), "unknown token"),
    (lambda s, h, b: (s, h, b + b"\x00"), "bad signature"),          # altered on the way
    (lambda s, h, b: (s, {**h, MSG_ID_HEADER: "p1.b.2"}, b), "bad signature"),  # replayed id
    (lambda s, h, b: ("cems.records.p2", h, b), "wrong probe"),       # p1's token on p2's subject
])
def test_what_is_refused_and_why(change, reason):
    with pytest.raises(Rejected) as refused:
        check_message(*change(*message(batch(1))), KEYS.get, 0.0)
    assert refused.value.reason == reason
    assert refused.value.detail   # a sentence for the log


def test_a_token_of_another_probe_an_expired_one_and_a_body_that_is_no_batch():
    with pytest.raises(Rejected, match="probe 'p2'"):
        check_message(*message(batch(1), token=OTHER), KEYS.get, 0.0)   # p2's token, p1's subject
    with pytest.raises(Rejected) as refused:
        check_message(*message(batch(1), token="cems_00000000_old"), KEYS.get, 2000.0)
    assert refused.value.reason == "expired token"
    with pytest.raises(Rejected) as refused:
        check_message(*message(b"\xff\xff\xff"), KEYS.get, 0.0)
    assert refused.value.reason == "malformed"
    with pytest.raises(Rejected) as refused:   # a batch whose records name another probe
        check_message(*message(pb.ExportRecordsRequest(records=[pb.FlowRecord(
            probe_id="p2")]).SerializeToString()), KEYS.get, 0.0)
    assert refused.value.reason == "wrong probe"


def test_seen_is_bounded_and_forgets_the_oldest():
    seen = Seen(size=3)
    for sequence in (1, 2, 3, 3, 4):
        seen.add(sequence)
    assert 1 not in seen and all(s in seen for s in (2, 3, 4))


def test_handle_counts_outcomes_and_takes_a_redelivery_once():
    taken = []
    stream = RecordStream("nats://unused", "c", lambda probe_id, request, _records: (
        taken.append(len(request.records)) or len(request.records), ["one bad"]), KEYS.get)
    subject, headers, body = message(batch(1, 2))
    assert stream.handle(subject, headers, body, 7) == "taken"
    assert stream.handle(subject, headers, body, 7) == "duplicate"
    assert stream.handle(subject, {}, body, 8) == "rejected"
    assert taken == [2]
    assert stream.messages == {"taken": 1, "duplicate": 1, "rejected": 1}
    assert stream.rejected == {"unsigned": 1}
    assert (stream.records_taken, stream.records_refused) == (2, 1)

    # the same signed batch stored again under a new stream sequence: not taken twice
    assert stream.handle(subject, headers, body, 12) == "rejected"
    assert stream.rejected["replayed"] == 1 and taken == [2]

    def broken(probe_id, request):
        raise RuntimeError("a bug")
    stream.take = broken
    assert stream.handle(*message(batch(3), msg_id="p1.b.3"), 9) == "failed"   # logged, counted


# -- against a real nats-server ------------------------------------------------------------
@pytest.fixture
def server():   # one per test: a new consumer takes what the stream kept of the last minute
    from lab.servers import nats, nats_permissions  # pylint: disable=import-outside-toplevel
    users = nats_permissions(["p1"])
    with nats(users) as (url, _work):
        yield url, users


def record(sport: int) -> FlowRecord:
    now = time.time()
    return FlowRecord("10.0.0.1", "10.0.0.2", 17, sport, 5004, "rtp", now - 1, now, 10, 1000,
                      8000.0, 0, {"rtp_loss_ratio": 0.0})


def wait(condition, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


class Sink:
    """What a consumer took: the sports of the records, in order. Once it holds `limit`
    records, taking waits for `hold`."""

    def __init__(self, limit: int = 1 << 30):
        self.sports: list[int] = []
        self.limit = limit
        self.hold = threading.Event()
        self.waiting = threading.Event()
        self.replayed: list[int] = []

    def take(self, probe_id, request, _records=None, replayed_unix_s=None):
        assert probe_id == "p1"
        if len(self.sports) >= self.limit:
            self.waiting.set()
            self.hold.wait()
        records = request.records if _records is None else _records
        self.sports.extend(r.sport for r in records)
        if replayed_unix_s is not None:
            assert time.time() - 60 < replayed_unix_s <= time.time()
            self.replayed.extend(r.sport for r in records)
        return len(records), []


class Parity:
    """A consumer's keeper (controller.cluster.partitions.Keeper): a record's partition is
    its source port's parity; `now` is what the instance takes."""

    def __init__(self, *taking: int):
        self.now = frozenset(taking)

    def taking(self) -> frozenset:
        return self.now

    def pick(self, records, partitions) -> list:
        return [r for r in records if r.sport % 2 in partitions]


def consumer(server, name: str, sink: Sink, **options) -> RecordStream:
    url, users = server
    stream = RecordStream(url, name, sink.take, KEYS.get, "cems", users["cems"][0], **options)
    stream.start()
    wait(lambda: stream.lag_checked_unix_s > 0)
    return stream


def publisher(server, **options):
    from probes.stream import StreamExporter  # pylint: disable=import-outside-toplevel
    url, users = server
    return StreamExporter(url, "p1", TOKEN, "p1", users["p1"][0], **options).start()


def test_every_published_record_is_taken_once_and_the_lag_is_shown(server):
    sink = Sink()
    stream = consumer(server, "all-once", sink)
    exporter = publisher(server, batch=100)
    try:
        exporter.offer([record(i) for i in range(1000)])
        exporter.close()
        assert exporter.sent == 1000 and exporter.pending() == 0
        wait(lambda: len(sink.sports) == 1000)
        assert sink.sports == list(range(1000))
        assert stream.messages["taken"] == 10 and stream.problem == ""
        wait(lambda: stream.lag_checked_unix_s > time.time() - 0.5)
        time.sleep(1.2)
        assert (stream.pending, stream.ack_pending) == (0, 0)
    finally:
        stream.stop()


def test_partitioned_consumers_each_take_their_own_records_and_together_all_once(server):
    sinks = [Sink(), Sink()]
    streams = [consumer(server, f"part-{k}", sinks[k], keep=Parity(k)) for k in (0, 1)]
    exporter = publisher(server, batch=100)
    try:
        exporter.offer([record(i) for i in range(1000, 1600)])
        exporter.close()
        wait(lambda: len(sinks[0].sports) + len(sinks[1].sports) == 600)
        assert sinks[0].sports == list(range(1000, 1600, 2))
        assert sinks[1].sports == list(range(1001, 1600, 2))
        for stream in streams:   # every batch read, half of each left to the other
            assert stream.messages["taken"] == 6
            assert (stream.records_taken, stream.records_elsewhere) == (300, 300)
    finally:
        for stream in streams:
            stream.stop()


def test_a_partition_just_taken_is_replayed_from_the_last_seconds_once(server):
    keeper, sink = Parity(0), Sink()
    stream = consumer(server, "warm", sink, keep=keeper, warm_s=30.0)
    exporter = publisher(server, batch=100)
    try:
        exporter.offer([record(i) for i in range(2000, 2200)])
        wait(lambda: len(sink.sports) == 100 and stream.records_elsewhere == 100)
        assert sink.sports == list(range(2000, 2200, 2)) and sink.replayed == []
        keeper.now = frozenset({0, 1})   # it takes partition 1 over: noticed at the next
        exporter.offer([record(i) for i in range(2200, 2300)])   # message, replayed first
        wait(lambda: len(sink.sports) == 300)
        assert sink.sports[100:200] == sink.replayed == list(range(2001, 2200, 2))
        assert sink.sports[200:] == list(range(2200, 2300))
        keeper.now = frozenset({0})      # handed back; then taken again: replayed are only
        exporter.offer([record(i) for i in range(2300, 2400)])   # those it left meanwhile
        wait(lambda: len(sink.sports) == 350)
        keeper.now = frozenset({0, 1})
        exporter.offer([record(i) for i in range(2400, 2500)])
        wait(lambda: len(sink.sports) == 500)
        assert sink.sports[350:400] == list(range(2301, 2400, 2))
        assert sink.replayed[100:] == list(range(2301, 2400, 2))
        assert sorted(sink.sports) == list(range(2000, 2500))   # each record once
        # three replays: at its first message (a process started again has lost its book;
        # here the stream began after the consumer), and the two partitions taken
        assert (stream.replays, stream.records_replayed, stream.replay_failures) == (3, 150, 0)
    finally:
        exporter.close()
        stream.stop()


def test_replay_takes_only_what_was_left_and_skips_a_refused_message():
    keeper, sink = Parity(0), Sink()
    stream = RecordStream("nats://127.0.0.1:1", "c", sink.take, KEYS.get, keep=keeper)
    assert stream.handle(*message(batch(1, 2, 3), msg_id="p1.b.1"), 10) == "taken"
    assert stream.newly_taken(10) == frozenset({0})   # the first message: nothing to replay
    keeper.now = frozenset({1})
    assert stream.newly_taken(11) == frozenset({1})   # partition 0 not taken from 11 on
    assert stream.replay(*message(batch(4, 5), msg_id="p1.b.2"), 10, {1}, time.time()) == 1
    assert stream.replay(*message(batch(7), msg_id="p1.b.3"), 11, {0}, time.time()) == 0
    assert stream.replay(*message(batch(6, 8), msg_id="p1.b.4"), 11, {0}, time.time()) == 2
    subject, headers, body = message(batch(9), msg_id="p1.b.5")
    assert stream.replay(subject, headers, body + b"x", 12, {1}, time.time()) == 0
    assert sink.sports == [2, 5, 6, 8] and sink.replayed == [5, 6, 8]


def test_a_forged_batch_on_the_probes_subject_is_refused_and_counted(server):
    import asyncio  # pylint: disable=import-outside-toplevel
    import nats  # pylint: disable=import-outside-toplevel
    url, users = server
    sink = Sink()
    stream = consumer(server, "forged", sink)

    async def forge():   # a NATS user allowed to publish, without the probe's token
        client = await nats.connect(url, user="cems", password=users["cems"][0])
        js = client.jetstream()
        body = batch(60999)
        await js.publish(subject_for("p1"), body, headers={
            TOKEN_ID_HEADER: "0123abcd", SIGNATURE_HEADER: "0" * 64, MSG_ID_HEADER: "f.1"})
        await js.publish(subject_for("p1"), body)
        await client.close()
    try:
        asyncio.run(forge())
        wait(lambda: stream.messages["rejected"] == 2)
        assert stream.rejected == {"bad signature": 1, "unsigned": 1}
        assert 60999 not in sink.sports
    finally:
        stream.stop()


def test_a_consumer_stopped_mid_stream_leaves_the_rest_to_the_next_one(server):
    first = Sink(limit=50)
    stream = consumer(server, "restarted", first, batch=10, ack_wait_s=2.0)
    exporter = publisher(server, batch=10)
    try:
        exporter.offer([record(i) for i in range(300)])
        wait(first.waiting.is_set)   # mid-fetch: what it fetched after this is not acknowledged
    finally:
        stream._stop.set()   # pylint: disable=protected-access
        first.hold.set()
        stream.stop()
    exporter.close()
    assert exporter.sent == 300
    second = Sink()
    stream = consumer(server, "restarted", second, batch=10, ack_wait_s=2.0)
    try:
        wait(lambda: len(set(first.sports) | set(second.sports)) == 300)
        assert 0 < len(second.sports) < 300
        # nothing lost; what is taken twice is at most what was fetched and not acknowledged
        assert len(first.sports) + len(second.sports) - 300 <= 10
    finally:
        stream.stop()


def test_a_probe_publishes_while_no_server_answers_and_sends_once_one_does_each_time():
    from lab.emulation import free_port  # pylint: disable=import-outside-toplevel
    from lab.servers import nats, nats_permissions  # pylint: disable=import-outside-toplevel
    port = free_port()
    users = nats_permissions(["p1"])
    exporter = publisher((f"nats://127.0.0.1:{port}", users), batch=50, interval_s=0.05,
                         max_backoff_s=0.5)
    try:
        exporter.offer([record(i) for i in range(100)])
        time.sleep(1.0)
        assert exporter.sent == 0 and exporter.pending() == 100
        assert exporter.problems == [f"cannot connect to NATS at nats://127.0.0.1:{port}: "
                                     f"[Errno 111] Connect call failed ('127.0.0.1', {port})"]
        with nats(users, port=port) as (url, _work):
            sink = Sink()
            stream = consumer((url, users), "late", sink)
            try:
                wait(lambda: exporter.sent == 100, 30)
                wait(lambda: len(sink.sports) == 100)
            finally:
                stream.stop()
        exporter.offer([record(i) for i in range(100, 200)])   # NATS is gone again...
        time.sleep(0.5)
        with nats(users, port=port) as (url, _work):             # ...and back, empty
            sink = Sink()
            stream = consumer((url, users), "again", sink)
            try:
                wait(lambda: exporter.sent == 200, 30)
                wait(lambda: sink.sports == list(range(100, 200)))
            finally:
                stream.stop()
    finally:
        exporter.close(flush_timeout_s=0.1)


def test_without_nats_the_consumer_says_why_and_stops_when_told():
    from lab.emulation import free_port  # pylint: disable=import-outside-toplevel
    port = free_port()
    stream = RecordStream(f"nats://127.0.0.1:{port}", "c", lambda *a: (0, []), KEYS.get)
    stream.start()
    wait(lambda: stream.problem)
    assert stream.problem.startswith(f"cannot connect to NATS at nats://127.0.0.1:{port} (")
    assert stream.problem.endswith("; probe records are not read")
    started = time.monotonic()
    stream.stop()
    assert time.monotonic() - started < 2 and not stream._thread.is_alive()  # pylint: disable=protected-access


def test_a_flood_of_made_up_token_ids_does_not_become_a_flood_of_store_lookups():
    asked = []

    def key_of_token(token_id):
        asked.append(token_id)
        return KEYS.get(token_id)
    stream = RecordStream("nats://unused", "c", lambda *a: (0, []), key_of_token)
    subject, headers, body = message(batch(1))
    assert stream.handle(*message(batch(2), msg_id="p1.b.0"), 99) == "taken"   # a probe
    for n in range(500):   # as fast as a publisher can: far more than the store may take
        stream.handle(subject, {**headers, TOKEN_ID_HEADER: f"{0x10000000 + n:08x}"}, body,
                      100 + n)
    assert len(asked) <= 61 and stream.rejected["unknown token"] == 500
    stream._keys.clear()   # pylint: disable=protected-access   # its cache entry expired:
    assert stream.handle(subject, headers, body, 1) == "taken"   # a known probe's token is
    assert asked[-1] == "0123abcd"                                # looked up all the same


def test_a_batch_with_more_records_than_the_grpc_export_allows_is_refused():
    from controller.api.probe import MAX_RECORDS_PER_REQUEST  # pylint: disable=import-outside-toplevel
    big = pb.ExportRecordsRequest(records=[pb.FlowRecord()] * (MAX_RECORDS_PER_REQUEST + 1))
    with pytest.raises(Rejected) as refused:
        check_message(*message(big.SerializeToString()), KEYS.get, 0.0)
    assert refused.value.reason == "too many records"
