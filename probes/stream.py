"""Export of flow records to NATS JetStream instead of the controller's gRPC (shell).

The same bounded buffer and batches as probes.export.RecordExporter: offer() never blocks,
the oldest records go (counted) when the buffer is full, and the probe's health and the
count of dropped records travel with the next batch. Each batch is one message on
`cems.records.<probe id>` (client.stream: signed with the probe's cems token, with a
message id that JetStream deduplicates), and it counts as sent once the stream has stored
it (JetStream's acknowledgement). A batch whose acknowledgement does not come is published
again with the same message id, so it is stored once; meanwhile the others wait in the
buffer. Which controller reads the records, and when, is the stream's business: the probe
needs no controller to be up.

nats-py is asyncio: the sender is one thread that runs its own event loop, and it makes the
connection again itself when it is lost (so that close() is heard while NATS is away).
"""

import asyncio
import secrets

from cems.v1 import probe_pb2 as pb

from client.stream import (MSG_ID_HEADER, SIGNATURE_HEADER, STREAM, TOKEN_ID_HEADER,
                           connect_options, key_of, signature, subject_for, token_id_of)
from probes.export import RecordExporter


class StreamExporter(RecordExporter):
    def __init__(self, url: str, probe_id: str, token: str, user: str = "",
                 password: str = "", tls_ca: str = "", max_buffer: int = 10_000,
                 batch: int = 500, interval_s: float = 0.5, max_backoff_s: float = 5.0):
        if not probe_id:
            raise ValueError("records on NATS need the probe's id (--probe-id): it is the "
                             "subject they are published on")
        super().__init__(url, probe_id, max_buffer, batch, interval_s, max_backoff_s)
        self.token_id = token_id_of(token)   # ValueError for something that is not a token
        self._key = key_of(token)
        self.user, self.password, self.tls_ca = user, password, tls_ca
        self.subject = subject_for(probe_id)
        self._boot = secrets.token_hex(4)    # message ids of this run never meet another's
        self._batches = 0
        self._held = None                    # (msg id, body, records, dropped, health)
        self.connected = False
        self._nats_error = None              # what the last failed connection said
        self._thread.name = "cems-export-nats"

    def _run(self) -> None:
        asyncio.run(self._main())

    def _problem(self, text: str) -> None:
        if not self.problems or self.problems[-1] != text:   # a retry says it once
            self.problems = (self.problems + [text])[-20:]

    async def _connect(self):
        import nats  # pylint: disable=import-outside-toplevel

        async def quiet(err):   # nats-py's own default prints every error
            self._nats_error = err
            if self.connected:    # a failed connection is said once, by _main
                self._problem(f"NATS at {self.address}: {err or type(err).__name__}")

        async def lost():
            self.connected = False
        self._nats_error = None
        client = await nats.connect(
            **connect_options(self.address, self.user, self.password, self.tls_ca),
            error_cb=quiet, disconnected_cb=lost)   # a lost one: _main connects again
        self.connected = True
        return client

    def _next(self):
        """The batch to publish: the one whose acknowledgement did not come, else a new one
        (None when there is nothing to say)."""
        if self._held is not None:
            return self._held
        records, dropped, health = self._take()
        if not records and not dropped and health is None:
            return None
        self._batches += 1
        body = pb.ExportRecordsRequest(probe_id=self.probe_id, records=records,
                                       dropped_records=dropped,
                                       health=health).SerializeToString()
        self._held = (f"{self.probe_id}.{self._boot}.{self._batches}", body, records, dropped,
                      health)
        return self._held

    async def _main(self) -> None:
        client, backoff = None, self.interval_s
        try:
            while not self._stop.is_set():
                if client is None:
                    try:
                        client = await self._connect()
                        stream = client.jetstream(timeout=2)
                    except Exception as err:  # pylint: disable=broad-except
                        # nats-py raises OSError, its own errors or a timeout here
                        cause = self._nats_error or err
                        self._problem(f"cannot connect to NATS at {self.address}: "
                                      f"{cause or type(cause).__name__}")
                        client = None
                        self.connected = False
                        await self._pause(backoff)
                        backoff = min(backoff * 2, self.max_backoff_s)
                        continue
                batch = self._next()
                if batch is None:
                    await self._pause(self.interval_s)
                    continue
                msg_id, body, records, dropped, health = batch
                if len(body) > client.max_payload and len(records) > 1:
                    # too big for the server: give it back and send smaller batches
                    self._held = None
                    self._batches -= 1
                    self._give_back(records, dropped, health)
                    self.batch = max(1, self.batch // 2)
                    continue
                headers = {MSG_ID_HEADER: msg_id, TOKEN_ID_HEADER: self.token_id,
                           SIGNATURE_HEADER: signature(self._key, self.subject, msg_id, body)}
                try:
                    await stream.publish(self.subject, body, stream=STREAM, headers=headers)
                except Exception as err:  # pylint: disable=broad-except
                    # not acknowledged (timeout, no stream yet, reconnecting): the same
                    # batch again later, under the same message id
                    self._problem(f"NATS did not store a batch: {err or type(err).__name__}")
                    if not client.is_connected:   # lost: closed, and made again next time
                        try:
                            await client.close()
                        except Exception:  # pylint: disable=broad-except
                            pass
                        client = None
                    await self._pause(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                backoff = self.interval_s
                self._held = None
                with self._lock:
                    self._in_flight = 0
                self.sent += len(records)
        finally:
            if client is not None:
                try:
                    await client.close()
                except Exception:  # pylint: disable=broad-except
                    pass

    async def _pause(self, seconds: float) -> None:
        """Sleep, but wake within 50 ms of close()."""
        end = asyncio.get_running_loop().time() + seconds
        while not self._stop.is_set() and asyncio.get_running_loop().time() < end:
            await asyncio.sleep(0.05)

