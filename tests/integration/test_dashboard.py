"""deploy/grafana/cems-dashboard.json against a real Prometheus (Debian's, with cems' rules
loaded) scraping a real controller on an emulated network with a customer whose call a
probe reports: every query of every panel returns series, and a scrape passes promtool."""

import contextlib
import json
import pathlib
import subprocess
import tempfile
import urllib.parse
import urllib.request

from lab.emulation import REPO, free_port, wait_for
from lab.servers import answers, stop
from mininet_topos import DumbbellTopo

from tests.integration.conftest import running_network
from tests.integration.feeds import VoiceFeed, create_customers

DEPLOY = pathlib.Path(REPO) / "deploy"
JOB = "cems-test"


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with the dashboard's variables as Grafana would
    fill them for this job."""
    board = json.loads((DEPLOY / "grafana" / "cems-dashboard.json").read_text())
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", ()):
            expr = target["expr"].replace("$job", JOB).replace("$__rate_interval", "1m")
            out.append((panel["title"], expr))
    return out


@contextlib.contextmanager
def prometheus(metrics_port: int):
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="cems-prom-") as work:
        config = pathlib.Path(work) / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {DEPLOY / 'prometheus' / 'cems-rules.yml'}\n"
            f"scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics_port}']\n")
        log = open(pathlib.Path(work) / "prometheus.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
        proc = subprocess.Popen(["prometheus", f"--config.file={config}",
                                 f"--storage.tsdb.path={work}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(lambda: answers(f"{base}/-/ready"), 30, "Prometheus to be ready")
            yield base
        finally:
            stop(proc, 15)
            log.close()


def query(base: str, expr: str) -> list:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    reply = json.loads(urllib.request.urlopen(url, timeout=10).read())
    assert reply["status"] == "success", reply
    return reply["data"]["result"]


def test_every_dashboard_query_returns_series_from_a_running_controller(controller):
    queries = dashboard_queries()
    assert len(queries) >= 20
    with running_network(DumbbellTopo(n=2, bottleneck_mbps=20), controller, 64) as net:
        assert net.pingAll(timeout=1) == 0.0
        l1, r1, s1 = net.get("l1", "r1", "s1")
        create_customers(controller, s1, {"alice": l1})
        feed = VoiceFeed(controller.grpc_address, controller.probe_token("core-probe"),
                         r1.IP(), l1.IP())
        with feed, prometheus(controller.metrics_port) as base:
            l1.cmd(f"ping -c 20 -i 0.2 {r1.IP()} >/dev/null 2>&1 &")
            missing = []

            def all_answer():
                missing[:] = [(title, expr) for title, expr in queries
                              if not query(base, expr)]
                return not missing
            try:
                wait_for(all_answer, 90, "every dashboard query to return series")
            except AssertionError as err:
                raise AssertionError(f"{err}; still empty: {missing}") from None
            rules = json.loads(urllib.request.urlopen(f"{base}/api/v1/rules",
                                                      timeout=10).read())
            health = [(r["name"], r["health"], r.get("lastError", ""))
                      for group in rules["data"]["groups"] for r in group["rules"]]
            assert health and all(h == "ok" for _, h, _ in health), health
        text = urllib.request.urlopen(f"http://127.0.0.1:{controller.metrics_port}/metrics",
                                      timeout=5).read().decode()
        lint = subprocess.run(["promtool", "check", "metrics"], input=text, text=True,
                              capture_output=True, timeout=30, check=False)
        assert lint.returncode == 0, lint.stdout + lint.stderr
