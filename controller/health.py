"""Whether the controller is doing its work: the judgement of its watchdog (core).

The OpenFlow app handles every event on one event thread; if that thread dies (os-ken's
native threads end silently when a handler raises past cems' guard) or stops making
progress (a handler that never returns), switches are no longer reconciled, statistics no
longer polled and customers' changes no longer reach the network, while the process and
its gRPC server stay up. The timer posts a tick every poll interval, so a healthy loop
finishes an event at least that often.
"""

import dataclasses

STALL_FACTOR = 5        # poll intervals without progress before the loop counts as stalled
MIN_STALL_S = 10.0


@dataclasses.dataclass(frozen=True)
class Health:
    """Whether the controller is doing its work, and if not, why."""

    serving: bool = True
    problems: tuple[str, ...] = ()


def judge_loop(now: float, started: float, last_progress: float | None, poll_interval_s: float,
               thread_alive: bool | None) -> Health:
    """Health of the event loop at monotonic time `now`, given when the controller started,
    when the loop last finished an event (None: never) and whether its thread is alive
    (None: not known yet)."""
    problems = []
    if thread_alive is False:
        problems.append("the OpenFlow event thread has ended: no switch event is handled any "
                        "more; restart cems-controller (its log says what happened before)")
    limit = max(MIN_STALL_S, STALL_FACTOR * poll_interval_s)
    since = now - (last_progress if last_progress is not None else started)
    if since > limit:
        what = "handled no event" if last_progress is None else "finished no event"
        problems.append(f"the OpenFlow event loop has {what} for {since:.0f} s (more than "
                        f"{limit:.0f} s): a handler may be stuck; switches are not reconciled")
    return Health(not problems, tuple(problems))
