"""The decision log and the engine's memory in the controller's SQLite store: numbering goes
on after a restart, old decisions are read from the store, actions in force come back and
reach the contributor before any switch connects, and a mode set by hand is never made
bolder by a restart."""

import dataclasses
import types

import pytest

from controller.config import parse_config
from controller.csm.rules import Refused
from controller.monitor.directory import CustomerDirectory
from controller.policy.compile import PolicyFlows
from controller.policy.engine import PolicyConfig, PolicyMemory, decide
from controller.policy.log import DecisionLog
from controller.policy.model import Decision
from controller.policy_loop import PolicyLoop
from controller.policy_store import DecisionStore, load_memory, save_memory
from controller.state import PublishedState
from controller.store import Store

from tests.unit.controller.policy.world import snapshot


def _decision(i, customer="z", for_customers=("g",), kind="act"):
    return Decision(float(i), kind, i, "meter", "s2-eth2", customer, f"number {i}",
                    {"load_bps": 1.0 * i}, for_customers=for_customers)


def test_numbering_goes_on_and_old_decisions_are_read_from_the_store(store_where):
    path = store_where
    store = Store(path)
    log = DecisionLog(capacity=5, store=DecisionStore(store))
    log.add(_decision(i) for i in range(1, 13))
    log.add([_decision(13, customer="other", for_customers=(), kind="refuse")])
    store.close()
    store = Store(path)
    log = DecisionLog(capacity=5, store=DecisionStore(store))
    assert log.last_seq() == 13
    assert [i.seq for i in log.add([_decision(14)])] == [14]
    # in memory: the newest five; before them, from the store, in order, with filters
    assert [i.seq for i in log.select(after_seq=0, limit=4)] == [1, 2, 3, 4]
    assert log.select(after_seq=0, limit=1)[0].decision == _decision(1)
    assert [i.seq for i in log.select(after_seq=11, limit=10)] == [12, 13, 14]
    assert [i.seq for i in log.select(after_seq=0, limit=100, customer_id="g")] == \
        [s for s in range(1, 15) if s != 13]
    assert [i.seq for i in log.select(after_seq=0, limit=100, customer_id="other")] == [13]
    assert [i.seq for i in log.select(after_seq=0, limit=100, kinds=["refuse"])] == [13]
    store.close()


def test_old_decisions_are_pruned_beyond_what_is_kept(store_where):
    store = Store(store_where)
    decisions = DecisionStore(store, keep=50)
    log = DecisionLog(capacity=10, store=decisions)
    log.add(_decision(i) for i in range(1, 1001))
    assert decisions.last_seq() == 1000
    assert store.query("SELECT MIN(seq), COUNT(*) FROM policy_decisions")[0] == (951, 50)
    store.close()


def test_a_store_that_fails_keeps_the_decision_in_memory_and_says_so(store_where):
    store = Store(store_where)
    failures = []
    log = DecisionLog(store=DecisionStore(store), store_failed=failures.append)
    store.close()   # every write now fails
    logged = log.add([_decision(1)])
    assert [i.seq for i in log.select()] == [1] and logged[0].decision == _decision(1)
    assert len(failures) == 1


def _loop(store, mode="act"):
    flows = PolicyFlows()
    loop = PolicyLoop(None, None, PublishedState(1.0, "os_ken"),
                      parse_config({"policy": {"mode": mode}}), CustomerDirectory(),
                      lambda customer: None, flows, store=store)
    return loop, flows


def _acted(loop):
    """The engine decided on the world's snapshot: its memory and decisions are stored."""
    evaluation = decide(snapshot(), PolicyMemory(), PolicyConfig())
    with loop._lock:   # pylint: disable=protected-access
        loop.memory = evaluation.memory
        loop._save()   # pylint: disable=protected-access
    loop.log.add(evaluation.decisions)
    return evaluation


def test_a_restarted_controller_keeps_the_actions_in_force_and_hands_them_over(store_where):
    path = store_where
    store = Store(path)
    loop, _ = _loop(store)
    evaluation = _acted(loop)
    store.close()
    store = Store(path)
    restarted, flows = _loop(store)
    assert restarted.memory == evaluation.memory
    assert [a.intent.kind for a in flows.actions] == ["meter"]
    assert [i.decision.kind for i in restarted.log.select()] == ["act"]
    # taking it back by hand is stored too: after another restart it is gone and held
    action_id = flows.actions[0].action_id
    assert restarted.revert(action_id, "ops")
    store.close()
    store = Store(path)
    again, flows = _loop(store)
    assert flows.actions == () and again.memory.held
    assert [i.decision.kind for i in again.log.select()] == ["act", "revert"]
    store.close()


def test_a_restart_never_makes_the_engine_bolder_than_the_operator_or_the_config(store_where):
    path = store_where
    store = Store(path)
    loop, _ = _loop(store)
    loop.set_mode("off", "domain manager alice")
    assert load_memory(store)[1:] == ("off", "domain manager alice")
    store.close()
    store = Store(path)
    assert _loop(store)[0].mode == "off"          # paused by hand stays paused
    assert _loop(store, "dry-run")[0].mode == "off"
    _loop(store)[0].set_mode("act", "alice")
    assert _loop(store, "dry-run")[0].mode == "dry-run"   # the config is the ceiling
    assert _loop(store)[0].mode == "act"
    store.close()


def test_an_unreadable_memory_is_logged_and_the_engine_starts_afresh(store_where, caplog):
    store = Store(store_where)
    save_memory(store, PolicyMemory())
    with store.transaction() as db:
        db.execute("UPDATE policy_state SET memory = '{\"format\": 7}'")
    loop, flows = _loop(store)
    assert loop.memory == PolicyMemory() and flows.actions == ()
    assert "cannot be read" in caplog.text
    store.close()


def test_saving_is_skipped_when_nothing_changed(store_where):
    store = Store(store_where)
    loop, _ = _loop(store)
    with loop._lock:   # pylint: disable=protected-access
        loop._save()   # pylint: disable=protected-access
    assert store.query("SELECT COUNT(*) FROM policy_state")[0][0] == 0
    with loop._lock:   # pylint: disable=protected-access
        loop.memory = dataclasses.replace(loop.memory, next_id=7)
        loop._save()   # pylint: disable=protected-access
    assert store.query("SELECT COUNT(*) FROM policy_state")[0][0] == 1
    store.close()


def test_what_a_dry_run_decided_before_a_restart_is_forgotten_when_the_engine_acts(store_where):
    path = store_where
    store = Store(path)
    loop, _ = _loop(store, "dry-run")
    evaluation = decide(snapshot(), PolicyMemory(), PolicyConfig(dry_run=True))
    with loop._lock:   # pylint: disable=protected-access
        loop.memory = evaluation.memory
        loop._save()   # pylint: disable=protected-access
    assert _loop(store, "dry-run")[0].memory.actions   # still a dry run: kept
    acting, flows = _loop(store, "act")
    assert acting.memory.actions == () and flows.actions == ()
    assert acting.memory.last_change == ()   # its cooldowns were about changes not made
    store.close()


def test_a_standby_that_becomes_master_takes_up_what_the_last_master_stored(store_where):
    """Two instances on one store: B starts first (empty), A decides and stores; when B
    becomes master it has A's actions in force and numbers its decisions after A's."""
    store_b = Store(store_where)
    standby, flows_b = _loop(store_b)
    standby.state.leader = False
    store_a = Store(store_where)
    master, _ = _loop(store_a)
    evaluation = _acted(master)
    assert flows_b.actions == ()
    standby.tick(None)                 # a follower decides nothing, but puts the leader's
    assert [a.intent.kind for a in flows_b.actions] == ["meter"]   # actions on its switches
    assert standby.evaluations == 0
    # ...and shows what the master decided and stored, not what it read at its start
    assert standby.log.last_seq() == master.log.last_seq() > 0
    assert [i.seq for i in standby.log.select()] == [i.seq for i in master.log.select()]
    assert standby.status()[1] == evaluation.memory.actions
    standby.state.cluster = types.SimpleNamespace(holder="a:1", members=(("a:1", "10.0.0.1:50051"),))
    for change in (lambda: standby.set_mode("off"), lambda: standby.revert(1, "dm")):
        with pytest.raises(Refused, match="follows: .* for the leader, a:1 at 10.0.0.1:50051"):
            change()
    standby.state.leader = True        # A died; B is master now
    assert standby.master_now()        # what every tick asks first
    assert standby.memory == evaluation.memory
    assert [a.intent.kind for a in flows_b.actions] == ["meter"]
    assert standby.log.last_seq() == master.log.last_seq() > 0
    store_a.close()
    store_b.close()
