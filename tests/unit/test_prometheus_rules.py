"""deploy/prometheus: the rules pass promtool's checks and their own unit tests, every alert
has a test, and every metric the rules name is one the controller exports."""

import pathlib
import re
import subprocess

from prometheus_client import generate_latest

from tests.unit.controller.test_metrics import full_registry

DEPLOY = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True,
                          timeout=60, check=False)


def test_rules_and_the_example_configuration_are_valid():
    checked = promtool("check", "rules", "cems-rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    config = promtool("check", "config", "prometheus.example.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_rules_pass_their_unit_tests():
    tested = promtool("test", "rules", "cems-rules.test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_every_alert_is_tested():
    rules = (DEPLOY / "cems-rules.yml").read_text()
    tests = (DEPLOY / "cems-rules.test.yml").read_text()
    alerts = set(re.findall(r"^\s+- alert: (\w+)", rules, re.M))
    tested = set(re.findall(r"alertname: (\w+)", tests))
    assert len(alerts) >= 8 and alerts == tested, alerts ^ tested


def test_the_rules_name_only_metrics_the_controller_exports():
    exported = {line.split()[2] for line in generate_latest(full_registry()).decode().splitlines()
                if line.startswith("# TYPE")}
    rules = (DEPLOY / "cems-rules.yml").read_text()
    named = set(re.findall(r"(?<![:\w])(cems_[a-z_]+)(?![:\w])", rules))  # not recorded names
    assert named and named <= exported, named - exported
