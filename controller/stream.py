"""Probe records from NATS JetStream (shell): one durable consumer per controller instance.

With `records.nats`, the controller reads the stream `CEMS_RECORDS` (client.stream), beside
the gRPC export that stays the single-instance default. It creates the stream when it is not
there yet (file storage, `records.max_age_s` and `records.max_bytes`, two minutes of
duplicate detection by message id) and binds to its own durable pull consumer,
`records.consumer` (default `cems-HOST-GRPCPORT`). Every instance has its own, so every
instance sees every record: a standby's experience is as warm as the master's.

Each message is one batch of a probe's records, checked before anything is taken from it
(check_message): the subject names the probe, the token id header names one of the store's
probe tokens for that probe (not expired, not revoked), the signature is that token's, and
the records name no other probe. Its message id must not be one this instance has taken
lately (a batch stored again after JetStream's duplicate window, or replayed). A message
that fails is rejected for good (`term`), counted by reason and logged once per reason and
probe. What passes goes to the same place
as the gRPC export's batches (controller.api.probe.take_records), and is acknowledged only
then: a consumer killed mid-stream leaves the rest, and what it was taking, to the next
one on the same durable name. A message delivered again to the same process (its
acknowledgement was lost or late) is recognised by its stream sequence and not taken twice.

With customer partitions (controller/cluster/partitions.py), `keep` picks the records of
the batch this instance takes (those of its partitions' customers) after the batch has been
checked whole; the others are counted (`records_elsewhere`) and acknowledged with it: the
instances holding their partitions take them from their own consumers. When the instance
starts taking a partition (another instance died or handed it over, or this one has just
started), the stream replays the partition's records of the last `warm_s` seconds that this
consumer had left to others, before the next message: an ephemeral consumer from that time up
to the message's stream sequence, each batch checked again, its samples counted as of when it
was stored (Assessor.records). The new holder's book then has the last seconds of its new
customers instead of nothing, and their quality is known at once, not a few seconds later.
Records of a partition this instance itself took before are not replayed (`_left_at`).

A new consumer starts at the records of the last `kpi.max_age_s` seconds: older ones
describe flows that have ended. While the instance cannot read the stream (no connection,
no stream, no consumer) it is NOT SERVING and `problem` says why.

nats-py is asyncio: the consumer is one thread that runs its own event loop, and it makes the
connection again itself when it is lost (so that stop() is heard while NATS is away).
"""

import asyncio
import collections
import dataclasses
import datetime
import logging
import socket
import threading
import time

from cems.v1 import probe_pb2 as pb
from google.protobuf.message import DecodeError

from controller.api.probe import MAX_RECORDS_PER_REQUEST
from controller.cluster.partitions import ranges
from client.stream import (MSG_ID_HEADER, SIGNATURE_HEADER, STREAM, SUBJECTS, TOKEN_ID_HEADER,
                           connect_options, probe_of, signed)

LOG = logging.getLogger("cems.stream")
DUPLICATE_WINDOW_S = 120.0
TOKEN_CACHE_S = 5.0     # a revoked probe token stops working within this
LOOKUPS_PER_S, LOOKUP_BURST = 20.0, 50   # store lookups of token ids never valid


class Rejected(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason      # a short label: the metric's and the log's
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class ProbeKey:
    probe_id: str
    key: bytes                    # the token's hex SHA-256, as the store keeps it
    expires_unix_s: float | None


def check_message(subject: str, headers: dict | None, body: bytes, key_of_token,
                  now_unix_s: float) -> tuple[str, pb.ExportRecordsRequest]:
    """(probe id, batch) of a record message, or Rejected saying why not.
    `key_of_token(token_id)`: its ProbeKey, or None for no such probe token."""
    probe_id = probe_of(subject)
    if not probe_id:
        raise Rejected("subject", f"subject {subject!r} is not cems.records.<probe id>")
    headers = headers or {}
    token_id = headers.get(TOKEN_ID_HEADER, "")
    given = headers.get(SIGNATURE_HEADER, "")
    if not token_id or not given:
        raise Rejected("unsigned", f"a message on {subject} without {TOKEN_ID_HEADER} and "
                       f"{SIGNATURE_HEADER}: not from a cems probe")
    known = key_of_token(token_id) if len(token_id) <= 64 else None
    if known is None:
        raise Rejected("unknown token", f"a message on {subject} signed with token "
                       f"{token_id[:64]!r}, which is no probe token of this controller's "
                       f"store (revoked, or never made)")
    if known.probe_id != probe_id:
        raise Rejected("wrong probe", f"a message on {subject} signed with the token of "
                       f"probe {known.probe_id!r}")
    if known.expires_unix_s is not None and now_unix_s >= known.expires_unix_s:
        raise Rejected("expired token", f"a message on {subject} signed with token "
                       f"{token_id}, which expired")
    if not signed(known.key, subject, headers.get(MSG_ID_HEADER, ""), body, given):
        raise Rejected("bad signature", f"a message on {subject} whose signature is not "
                       f"token {token_id}'s: changed on the way, or forged")
    try:
        request = pb.ExportRecordsRequest.FromString(body)
    except DecodeError as err:
        raise Rejected("malformed", f"a message on {subject} that is no ExportRecordsRequest "
                       f"({err})") from None
    if len(request.records) > MAX_RECORDS_PER_REQUEST:
        raise Rejected("too many records", f"a message on {subject} with "
                       f"{len(request.records)} records, more than {MAX_RECORDS_PER_REQUEST}")
    named = {request.probe_id, request.health.probe_id, *(m.probe_id for m in request.records)}
    if named - {"", probe_id}:
        raise Rejected("wrong probe", f"a message on {subject} whose records name probe "
                       f"{sorted(named - {'', probe_id})[0]!r}")
    return probe_id, request


class Seen:
    """What was taken lately (bounded, the oldest forgotten first): stream sequences, so that
    a message delivered again is not taken twice, and message ids, so that a batch stored
    again is not either."""

    def __init__(self, size: int = 1 << 16):
        self._order: collections.deque = collections.deque()
        self._set: set = set()
        self.size = size

    def __contains__(self, sequence) -> bool:
        return sequence in self._set

    def add(self, sequence) -> None:
        if sequence in self._set:
            return
        self._order.append(sequence)
        self._set.add(sequence)
        while len(self._order) > self.size:
            self._set.discard(self._order.popleft())


def default_consumer(grpc_port: int) -> str:
    host = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:40] or "host"
    return f"cems-{host}-{grpc_port}"


class RecordStream:
    def __init__(self, url: str, consumer: str, take, key_of_token, user: str = "",
                 password: str = "", tls_ca: str = "", max_age_s: float = 86_400.0,
                 max_bytes: int = 1 << 30, start_back_s: float = 60.0, batch: int = 64,
                 ack_wait_s: float = 5.0, keep=None, side=None, warm_s: float = 10.0):
        self.url = url
        self.consumer = consumer
        self.take = take                  # (probe id, ExportRecordsRequest, records or
        #                                   None for all, replayed at or None) -> (n, problems)
        # `keep`: .taking() -> the partitions this instance takes now, .pick(records,
        # partitions) -> those of the records whose customers are in them
        self.keep = keep
        self.warm_s = warm_s              # replayed for a partition just taken (0: none)
        self._taking = None               # keep.taking() at the last message
        self._left_at: dict[int, int] = {}   # partition -> first stream sequence not taken
        self.replays = 0                  # partitions just taken, replayed (runs)
        self.records_replayed = 0
        self.replay_failures = 0
        # `side`: messages beside the records on the same connection (the cluster's quality
        # digests): .subject to hear, .heard(subject, headers, body), and every .every_s
        # .outgoing() -> [(subject, body, headers)] to publish (core NATS, not stored)
        self.side = side
        self.side_failures = 0
        self._side_at = 0.0
        self.key_of_token = key_of_token  # token id -> ProbeKey | None (the store)
        self.user, self.password, self.tls_ca = user, password, tls_ca
        self.max_age_s, self.max_bytes = max_age_s, max_bytes
        self.start_back_s = start_back_s
        self.batch, self.ack_wait_s = batch, ack_wait_s
        self.seen = Seen()                # stream sequences taken lately
        self.seen_ids = Seen(1 << 17)     # (subject, message id) of batches taken lately
        self.connected = False
        self.problem = ""                 # why records are not read now ("" when they are)
        self._why, self._since = "", ""
        self._nats_error = None           # what the last failed connection said
        self.messages: collections.Counter = collections.Counter()   # outcome -> count
        self.rejected: collections.Counter = collections.Counter()   # reason -> count
        self.records_taken = 0
        self.records_refused = 0          # records the KpiStore found wrong
        self.records_elsewhere = 0        # records of other instances' customer partitions
        self.pending = 0                  # in the stream, not yet delivered to this consumer
        self.ack_pending = 0              # delivered, not yet acknowledged
        self.lag_checked_unix_s = 0.0
        self._logged: set[tuple[str, str]] = set()
        self._keys: dict[str, tuple[float, ProbeKey | None]] = {}
        self._valid: set[str] = set()     # token ids that were a probe's token once
        self._credit, self._credited = float(LOOKUP_BURST), time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cems-stream", daemon=True)

    def start(self) -> "RecordStream":
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    # -- what happens to one message (no I/O but the take and the store's token lookup) --
    def _key(self, token_id: str) -> ProbeKey | None:
        """The token's ProbeKey, from the store at most every TOKEN_CACHE_S. A token id
        never found valid is looked up at most LOOKUPS_PER_S times a second in all: a
        flood of made-up ids (anyone who may publish on NATS) does not become a flood of
        store queries; past that rate such ids count as unknown."""
        now = time.monotonic()
        cached = self._keys.get(token_id)
        if cached is None or now - cached[0] > TOKEN_CACHE_S:
            if token_id not in self._valid:
                self._credit = min(LOOKUP_BURST, self._credit + (now - self._credited) *
                                   LOOKUPS_PER_S)
                self._credited = now
                if self._credit < 1:
                    return None
                self._credit -= 1
            if len(self._keys) > 10_000:
                self._keys.clear()
            cached = (now, self.key_of_token(token_id))
            self._keys[token_id] = cached
            if cached[1] is not None and len(self._valid) < 10_000:
                self._valid.add(token_id)
        return cached[1]

    def handle(self, subject: str, headers, body: bytes, sequence: int) -> str:
        """Take one message; its outcome: taken, duplicate, rejected or failed."""
        if sequence in self.seen:
            self.messages["duplicate"] += 1
            return "duplicate"
        try:
            probe_id, request = check_message(subject, headers, body, self._key, time.time())
            msg_id = (headers or {}).get(MSG_ID_HEADER, "")
            if msg_id and (subject, msg_id) in self.seen_ids:
                # the same signed batch stored again (after JetStream's two minutes of
                # duplicate detection): a probe's late retry, or someone replaying it
                raise Rejected("replayed", f"a message on {subject} with message id "
                               f"{msg_id[:80]!r}, which this instance has already taken")
        except Rejected as rejected:
            self.messages["rejected"] += 1
            self.rejected[rejected.reason] += 1
            if (rejected.reason, subject) not in self._logged and len(self._logged) < 1000:
                self._logged.add((rejected.reason, subject))
                LOG.warning("records stream: rejected %s (stream sequence %d; further ones "
                            "like it are counted, not logged)", rejected.detail, sequence)
            return "rejected"
        try:
            records = None
            if self.keep is not None:
                taking = self.keep.taking() if self._taking is None else self._taking
                records = self.keep.pick(request.records, taking)
                if len(records) == len(request.records):
                    records = None
                else:
                    self.records_elsewhere += len(request.records) - len(records)
            taken, problems = self.take(probe_id, request, records)
        except Exception:  # pylint: disable=broad-except
            self.messages["failed"] += 1
            if ("failed", subject) not in self._logged:
                self._logged.add(("failed", subject))
                LOG.exception("records stream: taking a batch of probe %s failed (stream "
                              "sequence %d); it is dropped, further failures are counted",
                              probe_id, sequence)
            return "failed"
        self.seen.add(sequence)
        if msg_id:
            self.seen_ids.add((subject, msg_id))
        self.messages["taken"] += 1
        self.records_taken += taken
        self.records_refused += len(problems)
        return "taken"

    def newly_taken(self, sequence: int) -> frozenset:
        """The partitions this instance has started taking since the last message (which is
        at stream `sequence`); notes where it stopped taking the others."""
        taking = self.keep.taking()
        before, self._taking = self._taking, taking
        if before is None:
            before = frozenset()
        for p in before - taking:
            self._left_at[p] = sequence
        return taking - before

    def replay(self, subject: str, headers, body: bytes, sequence: int, partitions,
               at_unix_s: float) -> int:
        """Take, of one message stored before `partitions` were taken, their records (those
        this consumer left to others then); how many were taken. A message refused now is
        skipped: it was refused when it came, or its token has been revoked since."""
        partitions = frozenset(p for p in partitions if sequence >= self._left_at.get(p, 0))
        if not partitions:
            return 0
        try:
            probe_id, request = check_message(subject, headers, body, self._key, time.time())
        except Rejected:
            return 0
        records = self.keep.pick(request.records, partitions)
        if not records:
            return 0
        taken, problems = self.take(probe_id, request, records, at_unix_s)
        self.records_refused += len(problems)
        return taken

    # -- NATS ---------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.run(self._main())

    def _set_problem(self, why: str) -> None:
        """`why` records are not read now ("" when they are); logged when it starts, when
        the reason changes and when it ends, not at every retry."""
        if why and why != self._why:
            self._since = self._since or time.strftime("%H:%M:%S")
            LOG.error("records stream %s: %s; probe records are not read (retrying)",
                      self.url, why)
        elif not why and self._why:
            LOG.warning("records stream %s: reading consumer %s again", self.url, self.consumer)
            self._since = ""
        self._why = why
        self.problem = f"{why} since {self._since}; probe records are not read" if why else ""

    async def _connect(self):
        import nats  # pylint: disable=import-outside-toplevel

        async def error(err):
            self._nats_error = err   # what a failed connection says (nats-py raises
            LOG.debug("records stream: NATS says %s", err)   # only "no servers")

        async def lost():
            self.connected = False
            if not self._stop.is_set():
                self._set_problem(f"lost the connection to NATS at {self.url}")
        self._nats_error = None
        return await nats.connect(
            **connect_options(self.url, self.user, self.password, self.tls_ca),
            error_cb=error, disconnected_cb=lost, name=self.consumer)   # lost: _main again

    async def _subscribe(self, client):
        from nats.js import api  # pylint: disable=import-outside-toplevel
        from nats.js.errors import NotFoundError  # pylint: disable=import-outside-toplevel
        stream = client.jetstream(timeout=5)
        try:
            await stream.stream_info(STREAM)
        except NotFoundError:
            await stream.add_stream(api.StreamConfig(
                name=STREAM, subjects=[SUBJECTS], storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS, discard=api.DiscardPolicy.OLD,
                max_age=self.max_age_s, max_bytes=self.max_bytes,
                duplicate_window=DUPLICATE_WINDOW_S))
            LOG.warning("records stream: created the stream %s on %s (records kept %g s, "
                        "at most %d bytes)", STREAM, self.url, self.max_age_s, self.max_bytes)
        start = datetime.datetime.fromtimestamp(time.time() - self.start_back_s,
                                                datetime.timezone.utc)
        config = api.ConsumerConfig(
            durable_name=self.consumer, ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s, max_ack_pending=10_000, filter_subject=SUBJECTS,
            deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=start)
        return await stream.pull_subscribe(SUBJECTS, durable=self.consumer, stream=STREAM,
                                     config=config)

    async def _side(self, client, heard) -> None:
        """Hear the side subject once per connection; publish the side's messages every
        `every_s`. A failure to make them is logged once and counted, never stops the
        records."""
        side = self.side
        if not heard:
            async def on_message(message):
                try:
                    side.heard(message.subject, message.headers, message.data)
                except Exception:  # pylint: disable=broad-except
                    self._side_failed("taking a message on " + message.subject)
            heard.append(await client.subscribe(side.subject, cb=on_message))
        if time.monotonic() - self._side_at < side.every_s:
            return
        self._side_at = time.monotonic()
        try:
            outgoing = side.outgoing()
        except Exception:  # pylint: disable=broad-except
            self._side_failed("making the messages to publish")
            return
        for subject, body, headers in outgoing:
            await client.publish(subject, body, headers=headers)

    def _side_failed(self, what: str) -> None:
        self.side_failures += 1
        if ("side", what) not in self._logged:
            self._logged.add(("side", what))
            LOG.exception("records stream: %s failed; further failures are counted", what)

    async def _main(self) -> None:
        from nats.errors import TimeoutError as NoMessages  # pylint: disable=import-outside-toplevel
        client = subscription = None
        heard: list = []      # the side subscription of this connection
        backoff = 1.0
        while not self._stop.is_set():
            try:
                if client is None:
                    client = await self._connect()
                    self.connected = True
                    heard = []
                if subscription is None:
                    subscription = await self._subscribe(client)
                    self._set_problem("")
                    backoff = 1.0
                if self.side is not None:
                    await self._side(client, heard)
                if time.time() - self.lag_checked_unix_s >= 1.0:
                    await self._check_lag(subscription)
                try:
                    messages = await subscription.fetch(self.batch, timeout=0.5)
                except NoMessages:
                    continue
                for message in messages:
                    if self._stop.is_set():   # the rest is delivered again, to the next one
                        break
                    sequence = message.metadata.sequence.stream
                    if self.keep is not None:
                        new = self.newly_taken(sequence)
                        if new and self.warm_s > 0:
                            await self._warm(client, new, sequence)
                    outcome = self.handle(message.subject, message.headers, message.data,
                                          sequence)
                    if outcome in ("taken", "duplicate"):
                        await message.ack()
                    else:   # never delivered again: it would be refused again
                        await message.term()
            except Exception as err:  # pylint: disable=broad-except
                # no server, no JetStream, a permission refused, a connection lost mid-call
                why = str(err) or type(err).__name__
                if client is None:
                    cause = self._nats_error
                    self._set_problem(f"cannot connect to NATS at {self.url} "
                                      f"({cause or why})")
                elif client.is_connected:
                    self._set_problem(f"cannot read the stream {STREAM} with consumer "
                                      f"{self.consumer} ({why})")
                    subscription = None   # bound again (or made again) at the next try
                else:
                    self._set_problem(f"lost the connection to NATS at {self.url}")
                    try:
                        await client.close()
                    except Exception:  # pylint: disable=broad-except
                        pass
                    client, subscription = None, None
                await self._pause(backoff)
                backoff = min(backoff * 2, 5.0)
        if client is not None:
            try:
                await client.close()
            except Exception:  # pylint: disable=broad-except
                pass

    async def _warm(self, client, partitions: frozenset, before: int) -> None:
        """Replay, for partitions just taken, the stream's messages of the last `warm_s`
        seconds up to stream sequence `before` (an ephemeral consumer, deleted after). A
        failure is logged once and counted; the live records go on either way."""
        from nats.errors import TimeoutError as NoMessages  # pylint: disable=import-outside-toplevel
        from nats.js import api  # pylint: disable=import-outside-toplevel
        began, taken, subscription = time.monotonic(), 0, None
        start = datetime.datetime.fromtimestamp(time.time() - self.warm_s,
                                                datetime.timezone.utc)
        stream = client.jetstream(timeout=5)
        try:
            subscription = await stream.pull_subscribe(
                SUBJECTS, stream=STREAM, config=api.ConsumerConfig(
                    ack_policy=api.AckPolicy.NONE, filter_subject=SUBJECTS,
                    deliver_policy=api.DeliverPolicy.BY_START_TIME, opt_start_time=start,
                    inactive_threshold=30.0, mem_storage=True))
            done = False
            while not done and not self._stop.is_set():
                try:
                    messages = await subscription.fetch(256, timeout=0.5)
                except NoMessages:
                    break
                for message in messages:
                    sequence = message.metadata.sequence.stream
                    if sequence >= before:
                        done = True
                        break
                    taken += self.replay(message.subject, message.headers, message.data,
                                         sequence, partitions,
                                         message.metadata.timestamp.timestamp())
        except Exception:  # pylint: disable=broad-except
            self.replay_failures += 1
            if ("replay", "") not in self._logged:
                self._logged.add(("replay", ""))
                LOG.exception("records stream: replaying the last %g s for partitions %s "
                              "just taken failed; their customers' quality starts from the "
                              "next records (further failures are counted)", self.warm_s,
                              ranges(partitions))
        finally:
            if subscription is not None:
                try:
                    name = (await subscription.consumer_info()).name
                    await subscription.unsubscribe()
                    await stream.delete_consumer(STREAM, name)
                except Exception:  # pylint: disable=broad-except
                    pass   # an ephemeral consumer goes by itself after inactive_threshold
        self.replays += 1
        self.records_replayed += taken
        LOG.info("records stream: took partitions %s; replayed %d of their records of the "
                 "last %g s in %.0f ms", ranges(partitions), taken, self.warm_s,
                 (time.monotonic() - began) * 1000)

    async def _check_lag(self, subscription) -> None:
        info = await subscription.consumer_info()
        self.pending = info.num_pending or 0
        self.ack_pending = info.num_ack_pending or 0
        self.lag_checked_unix_s = time.time()

    async def _pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(0.05)
