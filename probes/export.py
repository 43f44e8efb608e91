"""Export of flow records to the controller over gRPC, with a bounded buffer (shell).

offer() never blocks the capture loop: records go into a bounded buffer (the oldest are
dropped and counted when it is full) and a sender thread ships them in batches, each batch
one ExportRecords client stream. When the controller cannot be reached the records wait in
the buffer and the sender retries with backoff; the count of dropped records travels with
the next batch, so the controller knows what it did not get. The probe's own counters
(set_health) travel with the next batch too, or alone when there are no records.
"""

import collections
import math
import threading

import grpc
from cems.v1 import probe_pb2 as pb
from cems.v1 import probe_pb2_grpc as pb_grpc

from client.channel import Credentials

from probes.flows import FlowRecord


def record_pb(record: FlowRecord, probe_id: str) -> pb.FlowRecord:
    return pb.FlowRecord(
        src=record.src, dst=record.dst, proto=record.proto, sport=record.sport,
        dport=record.dport, kind=record.kind, interval_start_unix_s=record.interval_start_unix_s,
        interval_end_unix_s=record.interval_end_unix_s, packets=record.packets, bytes=record.bytes,
        throughput_bps=record.throughput_bps, dscp=record.dscp, probe_id=probe_id,
        application=record.application, category=record.category,
        detected_by=record.detected_by,
        kpis={k: float(v) for k, v in record.kpis.items()
              if v is not None and not (isinstance(v, float) and math.isnan(v))})


class RecordExporter:
    def __init__(self, address: str, probe_id: str, max_buffer: int = 10_000,
                 batch: int = 500, interval_s: float = 0.5, max_backoff_s: float = 5.0,
                 credentials: Credentials = Credentials()):
        self.address = address
        self.credentials = credentials  # a probe token (or certificate) names the probe
        self.probe_id = probe_id
        self.batch = batch
        self.interval_s = interval_s
        self.max_backoff_s = max_backoff_s
        self._buffer: collections.deque = collections.deque(maxlen=max_buffer)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.dropped = 0          # records lost to a full buffer, ever
        self._dropped_unreported = 0
        self.sent = 0
        self.rejected = 0
        self.problems: list[str] = []
        self._in_flight = 0
        self._health: pb.ProbeHealth | None = None
        self._thread = threading.Thread(target=self._run, name="cems-export", daemon=True)

    def start(self) -> "RecordExporter":
        self._thread.start()
        return self

    def offer(self, records: list[FlowRecord]) -> None:
        with self._lock:
            for record in records:
                if len(self._buffer) == self._buffer.maxlen:
                    self.dropped += 1
                    self._dropped_unreported += 1
                self._buffer.append(record_pb(record, self.probe_id))

    def set_health(self, health: pb.ProbeHealth) -> None:
        """The probe's latest counters; replaces any not yet sent."""
        health.probe_id = self.probe_id
        health.export_dropped = self.dropped
        with self._lock:
            self._health = health

    def pending(self) -> int:
        """Records not yet accepted by the controller (buffered or being sent)."""
        with self._lock:
            return len(self._buffer) + self._in_flight

    def close(self, flush_timeout_s: float = 5.0) -> None:
        """Send what is buffered (for up to flush_timeout_s), then stop."""
        deadline = threading.Event()
        timer = threading.Timer(flush_timeout_s, deadline.set)
        timer.start()
        while self.pending() and not deadline.is_set() and self._thread.is_alive():
            deadline.wait(0.05)
        timer.cancel()
        self._stop.set()
        self._thread.join(timeout=flush_timeout_s)

    def _take(self) -> tuple[list, int, pb.ProbeHealth | None]:
        with self._lock:
            count = min(self.batch, len(self._buffer))
            records = [self._buffer.popleft() for _ in range(count)]
            dropped, self._dropped_unreported = self._dropped_unreported, 0
            health, self._health = self._health, None
            self._in_flight = count
        return records, dropped, health

    def _give_back(self, records: list, dropped: int, health: pb.ProbeHealth | None) -> None:
        with self._lock:
            self._in_flight = 0
            if self._health is None:
                self._health = health
            for record in reversed(records):
                if len(self._buffer) == self._buffer.maxlen:
                    self.dropped += 1
                    self._dropped_unreported += 1
                    continue
                self._buffer.appendleft(record)
            self._dropped_unreported += dropped

    def _run(self) -> None:
        backoff = self.interval_s
        channel = self.credentials.connect(self.address)
        stub = pb_grpc.ProbeServiceStub(channel)
        try:
            while not self._stop.is_set():
                records, dropped, health = self._take()
                if not records and not dropped and health is None:
                    self._stop.wait(self.interval_s)
                    continue
                request = pb.ExportRecordsRequest(probe_id=self.probe_id, records=records,
                                                  dropped_records=dropped, health=health)
                try:
                    # wait_for_ready: a channel still backing off from an earlier failure
                    # waits for the controller (up to the timeout) instead of failing at once
                    reply = stub.ExportRecords(iter([request]), timeout=2, wait_for_ready=True)
                except grpc.RpcError:
                    self._give_back(records, dropped, health)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.max_backoff_s)
                    continue
                backoff = self.interval_s
                with self._lock:
                    self._in_flight = 0
                self.sent += reply.accepted
                self.rejected += reply.rejected
                self.problems = (self.problems + list(reply.problems))[-20:]
        finally:
            channel.close()
