"""The machine-wide lock under which every emulated network is built (lab.emulation)."""

import os
import threading
import time

import pytest

from lab.emulation import exclusive_network


def test_a_second_network_waits_for_the_first_and_names_its_process(tmp_path, capsys):
    path = str(tmp_path / "lock")
    with exclusive_network(lock_path=path):
        with open(path, encoding="ascii") as lock:
            assert lock.read() == str(os.getpid())
        with pytest.raises(TimeoutError, match=f"process {os.getpid()}"):
            with exclusive_network(timeout_s=0.3, lock_path=path):
                pytest.fail("two networks held the lock at once")
    assert f"emulated network of process {os.getpid()}" in capsys.readouterr().err


def test_the_waiting_network_starts_when_the_first_ends(tmp_path):
    path = str(tmp_path / "lock")
    order = []
    first_holds = threading.Event()

    def first():
        with exclusive_network(lock_path=path):
            first_holds.set()
            time.sleep(0.5)
            order.append("first ends")

    thread = threading.Thread(target=first)
    thread.start()
    first_holds.wait(5)
    with exclusive_network(timeout_s=10, lock_path=path):
        order.append("second starts")
    thread.join()
    assert order == ["first ends", "second starts"]
