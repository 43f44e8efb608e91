"""Which hot path the probe runs, and that the fallback says so."""

import importlib
import os
import subprocess
import sys

import pytest

from probes import hotpath


def test_setup_built_the_compiled_path_and_the_probe_uses_it():
    if os.environ.get("CEMS_SKIP_FAST") == "1":
        pytest.skip("CEMS_SKIP_FAST=1: built without the compiled hot path")
    assert hotpath.HOTPATH == "compiled"
    assert type(hotpath.new_table()).__name__ == "FastFlowTable"


def test_without_the_extension_the_probe_runs_the_reference_and_says_why(monkeypatch):
    import probes
    monkeypatch.setitem(sys.modules, "probes._fast", None)  # as if it were never built
    monkeypatch.delattr(probes, "_fast", raising=False)
    try:
        reloaded = importlib.reload(hotpath)
        assert reloaded.HOTPATH == "python"
        assert "not built" in reloaded.HOTPATH_REASON and "setup.sh" in reloaded.HOTPATH_REASON
        assert type(reloaded.new_table(max_flows=5)).__name__ == "FlowTable"
    finally:
        monkeypatch.undo()
        importlib.reload(hotpath)


def test_version_names_the_hot_path_and_the_reference_can_be_forced():
    env = dict(os.environ, CEMS_PROBE_HOTPATH="python")
    out = subprocess.run([sys.executable, "-m", "probes.cli", "--version"], env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout
    assert "hot path: python (CEMS_PROBE_HOTPATH=python, no nDPI)" in out
    env["CEMS_PROBE_HOTPATH"] = "fastest"
    run = subprocess.run([sys.executable, "-m", "probes.cli", "--version"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "allowed values are 'compiled' and 'python'" in run.stderr


def test_version_of_the_compiled_path_names_ndpi():
    if hotpath.fast is None:
        pytest.skip("the compiled hot path is not built")
    out = subprocess.run([sys.executable, "-m", "probes.cli", "--version"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    assert "hot path: compiled" in out and "nDPI 4." in out
