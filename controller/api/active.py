"""ActiveTestService servicer and the agents' WatchTasks stream (shell)."""

import queue

import grpc
from cems.v1 import probe_pb2 as pb

from controller.active import DEFAULT_PORT, ActiveTestError, ActiveTests, StampSpec, TestState
from controller.api.convert import kpi_record_pb
from controller.api.customer import _Base
from controller.csm import rules
from controller.kpis import KpiStore


def spec_from_pb(m: pb.StampTestSpec) -> StampSpec:
    return StampSpec(m.test_id, m.sender_probe_id, m.reflector_address,
                     m.reflector_port or DEFAULT_PORT, m.count, m.interval_s or 0.01,
                     m.report_interval_s or 1.0)


def spec_pb(s: StampSpec) -> pb.StampTestSpec:
    return pb.StampTestSpec(test_id=s.test_id, sender_probe_id=s.sender_probe_id,
                            reflector_address=s.reflector_address,
                            reflector_port=s.reflector_port, count=s.count,
                            interval_s=s.interval_s, report_interval_s=s.report_interval_s)


def watch_tasks(active: ActiveTests, request, context, stop_event=None):
    """ProbeService.WatchTasks: the agent's tasks until it goes away or connects again."""
    if not request.probe_id:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "probe_id is required")
    tasks = active.connect(request.probe_id)
    context.send_initial_metadata((("cems-tasks", "connected"),))  # the agent knows it is in
    try:
        while context.is_active() and not (stop_event and stop_event.is_set()):
            try:
                task = tasks.get(timeout=0.5)
            except queue.Empty:
                continue
            if task is None:
                return  # the same probe id connected again elsewhere
            kind, body = task
            yield (pb.ProbeTask(start_stamp=spec_pb(body)) if kind == "start"
                   else pb.ProbeTask(stop_test_id=body))
    finally:
        active.disconnect(request.probe_id, tasks)


class ActiveTestServicer(_Base):
    def __init__(self, active: ActiveTests, kpis: KpiStore, csm, state):
        super().__init__(csm, state)
        self.active = active
        self.kpis = kpis

    def _test_pb(self, test: TestState) -> pb.StampTest:
        spec = test.spec
        found = [r for r in self.kpis.latest()
                 if r.kind == "stamp" and r.probe_id == spec.sender_probe_id
                 and r.dst == spec.reflector_address and r.dport == spec.reflector_port
                 and r.end_unix_s >= test.started_unix_s]
        reply = pb.StampTest(spec=spec_pb(spec), state=test.state,
                             started_unix_s=test.started_unix_s)
        if found:
            reply.latest.CopyFrom(kpi_record_pb(max(found, key=lambda r: r.end_unix_s)))
        return reply

    def _do(self, work):
        try:
            return work()
        except ActiveTestError as err:
            raise rules.Refused(err.code, str(err)) from None

    def StartStampTest(self, request, context):
        return self._run(context, "manage", "", lambda _p: self._test_pb(
            self._do(lambda: self.active.start(spec_from_pb(request)))))

    def StopStampTest(self, request, context):
        return self._run(context, "manage", "", lambda _p: self._test_pb(
            self._do(lambda: self.active.stop(request.test_id))))

    def ListStampTests(self, request, context):
        return self._run(context, "manage", "", lambda _p: pb.ListStampTestsResponse(
            tests=[self._test_pb(t) for t in self.active.tests()]))
