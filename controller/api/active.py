"""ActiveTestService servicer and the agents' WatchTasks stream (shell)."""

import queue

from cems.v1 import probe_pb2 as pb

from controller.monitor.active import ActiveTestError, ActiveTests, latest_result
from controller.api import convert
from controller.api.auth import GatedServicer
from controller.csm import rules
from controller.monitor.kpis import KpiStore


def watch_tasks(active: ActiveTests, probe_id: str, context, stop_event=None):
    """ProbeService.WatchTasks: the agent's tasks until it goes away or connects again."""
    tasks = active.connect(probe_id)
    context.send_initial_metadata((("cems-tasks", "connected"),))  # the agent knows it is in
    try:
        while context.is_active() and not (stop_event and stop_event.is_set()):
            try:
                task = tasks.get(timeout=0.5)
            except queue.Empty:
                continue
            if task is None:
                return  # the same probe id connected again elsewhere
            yield (pb.ProbeTask(start_stamp=convert.stamp_spec_pb(task.body))
                   if task.kind == "start" else pb.ProbeTask(stop_test_id=task.body))
    finally:
        active.disconnect(probe_id, tasks)


class ActiveTestServicer(GatedServicer):
    def __init__(self, gate, active: ActiveTests, kpis: KpiStore):
        super().__init__(gate)
        self.active = active
        self.kpis = kpis

    def _test_pb(self, test) -> pb.StampTest:
        return convert.stamp_test_pb(test, latest_result(test, self.kpis.latest()))

    def _do(self, work):
        try:
            return work()
        except ActiveTestError as err:
            raise rules.Refused(err.code, str(err)) from None

    def StartStampTest(self, request, context):
        return self._run(context, "manage", "", lambda _c: self._test_pb(
            self._do(lambda: self.active.start(convert.stamp_spec_from_pb(request)))))

    def StopStampTest(self, request, context):
        return self._run(context, "manage", "", lambda _c: self._test_pb(
            self._do(lambda: self.active.stop(request.test_id))))

    def ListStampTests(self, request, context):
        return self._run(context, "manage", "", lambda _c: pb.ListStampTestsResponse(
            tests=[self._test_pb(t) for t in self.active.tests()]))
