"""Active tests the controller runs through probe agents: STAMP sessions (core).

An agent (`cems-probe agent`) holds a WatchTasks stream open; starting a test queues a task
on its stream, stopping one queues a stop. The results come back like passive records
(kind "stamp") through ExportRecords. A test with a packet count is finished once its
packets and the last answers' timeout have had time to pass; one without runs until it is
stopped. Thread-safe: gRPC threads start, stop, list and stream.
"""

import collections
import dataclasses
import ipaddress
import itertools
import queue
import threading
import time
from typing import NamedTuple

from controller import validation

DEFAULT_PORT = 862
MAX_TESTS = 1000


class ActiveTestError(ValueError):
    """A test cannot be started or stopped; `code` is the gRPC status name to answer with."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class AgentTask(NamedTuple):
    """What an agent's WatchTasks stream carries: start a test (body: its StampSpec) or stop
    one (body: its test id)."""

    kind: str  # "start" or "stop"
    body: object


@dataclasses.dataclass(frozen=True)
class StampSpec:
    test_id: str
    sender_probe_id: str
    reflector_address: str
    reflector_port: int = DEFAULT_PORT
    count: int = 0                # 0: until stopped
    interval_s: float = 0.01
    report_interval_s: float = 1.0


def check_spec(spec: StampSpec) -> str:
    """'' if the test can run, else what is wrong with it."""
    if spec.test_id and (len(spec.test_id) > 64 or not spec.test_id.replace("-", "")
                         .replace("_", "").replace(".", "").isalnum()):
        return (f"test_id {spec.test_id[:40]!r} must be 1 to 64 letters, digits, '.', '_' "
                "or '-' (or empty, for one the controller chooses)")
    if not spec.sender_probe_id:
        return "sender_probe_id is required"
    try:
        validation.probe_id("sender_probe_id", spec.sender_probe_id)
    except ValueError as err:
        return str(err)
    try:
        ipaddress.IPv4Address(spec.reflector_address)
    except ValueError:
        return f"reflector_address {spec.reflector_address!r} is not an IPv4 address"
    if not 1 <= spec.reflector_port <= 65535:
        return f"reflector_port must be 1..65535, got {spec.reflector_port}"
    if spec.count < 0 or spec.count > 10_000_000:
        return f"count must be 0 (until stopped) .. 10000000, got {spec.count}"
    if not 0.001 <= spec.interval_s <= 60:
        return f"interval_s must be 0.001..60, got {spec.interval_s}"
    if not 0.1 <= spec.report_interval_s <= 3600:
        return f"report_interval_s must be 0.1..3600, got {spec.report_interval_s}"
    return ""


@dataclasses.dataclass
class TestState:
    spec: StampSpec
    state: str          # running, stopped, finished
    started_unix_s: float

    def ends_unix_s(self) -> float | None:
        """When a counted test is over (its packets, then 1 s for the last answers)."""
        if not self.spec.count:
            return None
        return self.started_unix_s + self.spec.count * self.spec.interval_s + \
            self.spec.report_interval_s + 1.0


class ActiveTests:
    def __init__(self, clock=time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._tests: collections.OrderedDict[str, TestState] = collections.OrderedDict()
        self._agents: dict[str, queue.Queue] = {}
        self._ids = itertools.count(1)

    # -- agents --------------------------------------------------------------------------
    def connect(self, probe_id: str) -> queue.Queue:
        """The task queue of a newly connected agent; an older stream of the same probe id
        is ended (it gets None). Tests already running on the probe are sent again."""
        tasks: queue.Queue = queue.Queue()
        with self._lock:
            old = self._agents.get(probe_id)
            if old is not None:
                old.put(None)
            self._agents[probe_id] = tasks
            for test in self._tests.values():
                if test.spec.sender_probe_id == probe_id and self._running(test):
                    tasks.put(AgentTask("start", test.spec))
        return tasks

    def disconnect(self, probe_id: str, tasks: queue.Queue) -> None:
        with self._lock:
            if self._agents.get(probe_id) is tasks:
                del self._agents[probe_id]

    def connected(self) -> list[str]:
        with self._lock:
            return sorted(self._agents)

    # -- tests ---------------------------------------------------------------------------
    def _running(self, test: TestState) -> bool:
        if test.state == "running":
            ends = test.ends_unix_s()
            if ends is not None and self._clock() > ends:
                test.state = "finished"
        return test.state == "running"

    def start(self, spec: StampSpec) -> TestState:
        problem = check_spec(spec)
        if problem:
            raise ActiveTestError("INVALID_ARGUMENT", problem)
        with self._lock:
            if spec.test_id in self._tests:
                raise ActiveTestError("ALREADY_EXISTS", f"test {spec.test_id!r} exists already")
            tasks = self._agents.get(spec.sender_probe_id)
            if tasks is None:
                raise ActiveTestError(
                    "FAILED_PRECONDITION",
                    f"probe {spec.sender_probe_id!r} is not connected; run `cems-probe agent "
                    f"--probe-id {spec.sender_probe_id} --controller ADDR` on the sending host "
                    f"(connected: {', '.join(sorted(self._agents)) or 'none'})")
            if not spec.test_id:
                spec = dataclasses.replace(spec, test_id=f"stamp-{next(self._ids)}")
                while spec.test_id in self._tests:
                    spec = dataclasses.replace(spec, test_id=f"stamp-{next(self._ids)}")
            test = TestState(spec, "running", self._clock())
            self._tests[spec.test_id] = test
            while len(self._tests) > MAX_TESTS:
                self._tests.popitem(last=False)
            tasks.put(AgentTask("start", spec))
            return dataclasses.replace(test)

    def stop(self, test_id: str) -> TestState:
        with self._lock:
            test = self._tests.get(test_id)
            if test is None:
                raise ActiveTestError("NOT_FOUND", f"no test {test_id!r}")
            if self._running(test):
                test.state = "stopped"
                tasks = self._agents.get(test.spec.sender_probe_id)
                if tasks is not None:
                    tasks.put(AgentTask("stop", test_id))
            return dataclasses.replace(test)

    def tests(self) -> list[TestState]:
        with self._lock:
            for test in self._tests.values():
                self._running(test)
            return [dataclasses.replace(t) for t in self._tests.values()]


def latest_result(test: TestState, records) -> object | None:
    """The newest record of `test` among probe records (kind "stamp", from its sender to its
    reflector, since it started), or None."""
    spec = test.spec
    found = [r for r in records
             if r.kind == "stamp" and r.probe_id == spec.sender_probe_id
             and r.dst == spec.reflector_address and r.dport == spec.reflector_port
             and r.interval_end_unix_s >= test.started_unix_s]
    return max(found, key=lambda r: r.interval_end_unix_s) if found else None
