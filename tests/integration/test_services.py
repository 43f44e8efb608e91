"""The web and adaptive-video test services across the access network: a customer loads
pages, and its player adapts to the 20 Mbit/s line instead of asking for more."""

import json
import sys

from controller.emulation import REPO, wait_for
from mininet_topos import AccessTopo

from tests.integration.conftest import running_network


def test_pages_load_and_the_player_stays_within_the_line(controller):
    with running_network(AccessTopo(), controller) as net:
        phone, web = net.get("c1phone", "web")
        assert net.ping([phone, web], timeout=1) <= 50.0  # learning
        servers = [web.popen([sys.executable, "-m", "probes.cli", "web-server", "--bind",
                              f"{web.IP()}:8080", "--objects", "10"], cwd=REPO),
                   web.popen([sys.executable, "-m", "probes.cli", "video-server", "--bind",
                              f"{web.IP()}:8081", "--bitrates", "2M,5M,10M,40M",
                              "--segment-seconds", "1", "--segments", "12"], cwd=REPO)]
        try:
            wait_for(lambda: all(f":{p} " in web.cmd("ss -ltn") for p in (8080, 8081)), 15,
                     "the web and video servers")
            pages = [json.loads(line) for line in phone.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli web-client --url "
                f"http://{web.IP()}:8080/ --pages 3 --think 0.2").strip().splitlines()]
            video = json.loads(phone.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli video-player --url "
                f"http://{web.IP()}:8081/ --startup 2 --max-buffer 4").strip().splitlines()[-1])
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
        assert pages[-1]["pages"] == 3 and pages[-1]["failed"] == 0
        # 10 x 50 kB + the page over a 20 Mbit/s line: at least 0.2 s
        assert all(0.2 < p["page_load_s"] < 10 and p["objects"] == 10 for p in pages[:3])
        assert video["segments"] == 12 and not video["errors"]
        assert video["initial_delay_s"] is not None
        assert 40_000_000 not in video["bitrates_bps"]  # twice the line: never chosen
        assert max(video["bitrates_bps"]) >= 5_000_000  # but it did climb
        assert 1.5 <= video["mos"] <= 5.0
