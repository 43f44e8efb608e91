"""The watchdog's judgement, and the guard that keeps one failing event from ending the loop."""

import logging

import pytest

from controller.health import judge_loop


def test_a_loop_that_finishes_events_is_serving_and_one_that_stops_is_not():
    assert judge_loop(100.0, 0.0, 99.0, 1.0, True).serving
    stalled = judge_loop(100.0, 0.0, 80.0, 1.0, True)
    assert not stalled.serving and "for 20 s" in stalled.problems[0]
    assert judge_loop(100.0, 0.0, 80.0, 10.0, True).serving  # 5 poll intervals of 10 s
    never = judge_loop(30.0, 0.0, None, 1.0, None)
    assert not never.serving and "handled no event" in never.problems[0]
    assert judge_loop(5.0, 0.0, None, 1.0, None).serving  # just started
    dead = judge_loop(100.0, 0.0, 99.5, 1.0, False)
    assert not dead.serving and "thread has ended" in dead.problems[0]


class FakeApp:
    """What the guard and the failure report use of the app."""

    def __init__(self):
        from prometheus_client import CollectorRegistry
        from controller.metrics import ControllerMetrics
        from controller.state import PublishedState
        self.state = PublishedState(1.0, "os_ken")
        self.metrics = ControllerMetrics(CollectorRegistry())
        self._failures = set()
        self.handled = []


def test_a_failing_handler_is_caught_logged_once_counted_and_the_next_event_is_handled(caplog):
    from controller.app import CemsApp, guarded

    class Event:
        class msg:  # noqa: N801
            class datapath:  # noqa: N801
                id = 5

    def handler(self, ev):
        if ev == "bad":
            raise KeyError("no such port")
        self.handled.append(ev)

    handler.__name__ = "_port_status"
    app = FakeApp()
    app._failed = CemsApp._failed.__get__(app)
    run = guarded(handler)
    with caplog.at_level(logging.DEBUG, logger="cems.app"):
        for ev in (Event(), "bad", "bad", "fine"):
            run(app, "bad" if ev == "bad" else ev)
    assert app.handled[-1] == "fine" and app.state.loop_progress is not None
    assert app.state.counters.handler_errors_total == 2
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "handler port_status failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None  # with its traceback, once
    sample = app.metrics.registry.get_sample_value("cems_handler_errors_total",
                                                    {"handler": "port_status"})
    assert sample == 2


def test_the_runtime_switches_health_on_transitions_only():
    from controller.runtime import Runtime
    from controller.config import parse_config

    class Server:
        def __init__(self):
            self.calls = []

        def set_serving(self, serving):
            self.calls.append(serving)

    runtime = Runtime.build(parse_config({"store": {"path": ":memory:"}}))
    runtime.grpc_server = Server()
    start = runtime.state.started_monotonic
    runtime.check_health(start + 1)
    runtime.check_health(start + 60)   # never handled an event
    runtime.check_health(start + 61)
    runtime.state.loop_progress = start + 61
    runtime.check_health(start + 62)
    assert runtime.grpc_server.calls == [False, True]
    assert runtime.state.health.serving
    # a shared store whose listening connection is lost: not serving, and it says why
    problems = runtime.store._listen_problems   # pylint: disable=protected-access
    problems["cems_customers"] = "not hearing the changes other instances make (test)"
    runtime.check_health(start + 63)
    assert not runtime.state.health.serving and runtime.grpc_server.calls[-1] is False
    assert "not hearing the changes" in runtime.state.health.problems[-1]
    problems.clear()
    runtime.check_health(start + 64)
    assert runtime.state.health.serving and runtime.grpc_server.calls[-1] is True
    runtime.store.close()
