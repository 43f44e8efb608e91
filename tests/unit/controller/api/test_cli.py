"""cemsctl against a real gRPC server holding a known state."""

import json

import pytest

from controller import cli
from controller.events import HostLearned

from tests.unit.controller.served import Served


@pytest.fixture
def server(state, monkeypatch):
    served = Served(state)
    monkeypatch.setenv("CEMS_TOKEN", served.manager)  # cemsctl reads it from the environment
    yield served.address
    served.close()


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_tables_for_people(server, capsys):
    code, out, _ = run(capsys, "--server", server, "status")
    assert code == 0 and "switches connected  2" in out
    code, out, _ = run(capsys, "--server", server, "topology")
    assert "Switches (2)" in out and "Links (2)" in out and "00:00:00:00:00:01" in out
    code, out, _ = run(capsys, "--server", server, "flows", "--component", "forwarding")
    # per switch: the pair's two directions, the ARP of its host and the ARP from the link
    assert "1.00 kbit/s" in out and out.count("forwarding") == 8
    code, out, _ = run(capsys, "--server", server, "ports", "--dpid", "2")
    assert code == 0 and "0000000000000002" in out


def test_json_for_scripts(server, capsys):
    code, out, _ = run(capsys, "--server", server, "--json", "flows", "--dpid", "0x1")
    flows = json.loads(out)["flows"]
    assert code == 0 and len(flows) == 8 and all(f["dpid"] == "1" for f in flows)
    code, out, _ = run(capsys, "--server", server, "--json", "meters")
    assert code == 0 and json.loads(out) == {"meters": []}


def test_errors_are_one_clear_line(server, capsys):
    code, _, err = run(capsys, "--server", server, "flows", "--dpid", "9")
    assert code == 1
    assert err.strip() == ("cemsctl: flows failed: NOT_FOUND: no switch with dpid 9 (0x9); "
                           "known dpids: 1, 2")
    code, _, err = run(capsys, "--server", "127.0.0.1:1", "--timeout", "1", "status")
    assert code == 1 and ("UNAVAILABLE" in err or "DEADLINE_EXCEEDED" in err)


def test_watch_prints_events(server, state, capsys):
    import threading
    host = state.topology.hosts[0]
    done = threading.Event()

    def publish():
        while not done.is_set():
            state.bus.publish(HostLearned(1.0, host))
            done.wait(0.05)

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        code, out, _ = run(capsys, "--server", server, "watch", "--kind", "host", "--count", "2")
    finally:
        done.set()
        publisher.join()
    assert code == 0
    assert out.splitlines() == [f"host {host.mac} 10.0.0.1 at 0000000000000001:1"] * 2


def test_hosts_are_listed_and_an_unknown_one_cannot_be_forgotten(server, capsys):
    code, out, _ = run(capsys, "--server", server, "host", "list")
    assert code == 0 and "00:00:00:00:00:01" in out and "10.0.0.2" in out
    code, out, _ = run(capsys, "--server", server, "host", "forget", "00:00:00:00:00:01")
    assert code == 0 and "forgotten" in out
    code, _, err = run(capsys, "--server", server, "host", "forget", "00:00:00:00:00:77")
    assert code == 1 and "NOT_FOUND: no host 00:00:00:00:00:77 is known" in err
