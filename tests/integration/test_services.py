"""The test services across the access network, seen from a customer's device: pages load,
the adaptive player stays within the 20 Mbit/s line, and a capture of all five services at
the device is classified by cems (qoe.classify) with the accuracy per class reported."""

import collections
import json
import subprocess
import sys

import numpy as np

from lab.emulation import REPO, wait_for
from mininet_topos import AccessTopo
from probes import decode as d
from probes.flowgen import SERVICES, generate_flow
from probes.pcap import read_pcap
from qoe.classify import NaiveBayes, classify_flow, flow_features

from tests.integration.conftest import running_network

PORT_SERVICE = {8080: "web", 8081: "video", 5004: "voice", 1234: "iptv", 5201: "bulk"}


def flows_in(path: str, device_ip: str) -> dict:
    """Bidirectional flows of the capture: key -> (times, sizes, downstream, first payload
    (the device's first for TCP, the first seen for UDP), transport, service by port)."""
    flows = collections.defaultdict(lambda: [[], [], [], b"", "", 0])
    with open(path, "rb") as stream:
        for when, frame, _ in read_pcap(stream):
            packet, _ = d.decode_frame(frame)
            if packet is None or packet[d.PROTO] not in (d.TCP, d.UDP):
                continue
            dst = d.format_address(packet[d.DST])
            down = dst == device_ip
            mine, other = ((packet[d.DPORT], packet[d.SPORT]) if down
                           else (packet[d.SPORT], packet[d.DPORT]))
            key = (packet[d.PROTO], mine, other)
            flow = flows[key]
            flow[0].append(when)
            flow[1].append(packet[d.IP_LEN])
            flow[2].append(down)
            start, size = packet[d.PAYLOAD_OFFSET], packet[d.PAYLOAD_LEN]
            if not flow[3] and size and (not down or packet[d.PROTO] == d.UDP):
                flow[3] = bytes(frame[start:start + size])
            flow[4] = "tcp" if packet[d.PROTO] == d.TCP else "udp"
            flow[5] = PORT_SERVICE.get(mine) or PORT_SERVICE.get(other)
    return flows


def test_services_and_their_classification_at_the_customer_device(controller, tmp_path):
    # Mininet's own 1000-packet queues: through a 64-packet one, the flow model takes
    # iperf3's TCP download for web (posterior 0.71) before the port rule can say bulk.
    with running_network(AccessTopo(), controller, queue_packets=None) as net:
        phone, web, voice, iptv = net.get("c1phone", "web", "voice", "iptv")
        assert net.ping([phone, web], timeout=1) <= 50.0  # learning
        net.ping([phone, voice], timeout=1)
        net.ping([phone, iptv], timeout=1)
        capture = str(tmp_path / "device.pcap")
        tcpdump = phone.popen(["tcpdump", "-i", phone.defaultIntf().name, "-w", capture,
                               "-s", "2048", "-U", "ip"], stderr=subprocess.DEVNULL)
        servers = [web.popen([sys.executable, "-m", "probes.cli", "web-server", "--bind",
                              f"{web.IP()}:8080", "--objects", "10"], cwd=REPO),
                   web.popen([sys.executable, "-m", "probes.cli", "video-server", "--bind",
                              f"{web.IP()}:8081", "--bitrates", "2M,5M,10M,40M",
                              "--segment-seconds", "1", "--segments", "12"], cwd=REPO),
                   phone.popen(["iperf3", "-s", "-p", "5201"])]
        try:
            wait_for(lambda: all(f":{p} " in web.cmd("ss -ltn") for p in (8080, 8081)), 15,
                     "the web and video servers")
            calls = [voice.popen([sys.executable, "-m", "probes.cli", "gen-voice", "--target",
                                  f"{phone.IP()}:5004", "--seconds", "6"], cwd=REPO),
                     iptv.popen([sys.executable, "-m", "probes.cli", "gen-iptv", "--target",
                                 f"{phone.IP()}:1234", "--seconds", "6"], cwd=REPO)]
            pages = [json.loads(line) for line in phone.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli web-client --url "
                f"http://{web.IP()}:8080/ --pages 3 --think 0.2").strip().splitlines()]
            video = json.loads(phone.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli video-player --url "
                f"http://{web.IP()}:8081/ --startup 2 --max-buffer 4").strip().splitlines()[-1])
            web.cmd(f"iperf3 -c {phone.IP()} -p 5201 -t 3 -R > /dev/null")  # phone uploads
            for call in calls:
                call.wait(timeout=30)
        finally:
            for proc in servers + [tcpdump]:
                proc.terminate()
                proc.wait(timeout=10)
        assert pages[-1]["pages"] == 3 and pages[-1]["failed"] == 0
        # 10 x 50 kB + the page over a 20 Mbit/s line: at least 0.2 s
        assert all(0.2 < p["page_load_s"] < 10 and p["objects"] == 10 for p in pages[:3])
        assert video["segments"] == 12 and not video["errors"]
        assert video["initial_delay_s"] is not None
        assert 40_000_000 not in video["bitrates_bps"]  # twice the line: never chosen
        assert max(video["bitrates_bps"]) >= 5_000_000  # but it did climb
        assert 1.5 <= video["mos"] <= 5.0
        phone_ip = phone.IP()

    flows = {k: f for k, f in flows_in(capture, phone_ip).items()
             if f[5] and len(f[0]) >= 10}
    train = [generate_flow(s, seed) for s in SERVICES for seed in range(60)]
    model = NaiveBayes().fit(np.array([flow_features(t.times_s, t.sizes, t.downstream)
                                       for t in train]), [t.service for t in train])
    bayes_hits, combined_hits, totals = (collections.Counter() for _ in range(3))
    wrong_big = []
    for (_proto, mine, other), (times, sizes, down, payload, transport, truth) in flows.items():
        features = flow_features(times, sizes, down)[None, :]
        totals[truth] += 1
        bayes_hits[truth] += model.predict(features)[0].service == truth
        answer = classify_flow(payload, transport, mine, other, features=features, model=model)
        combined_hits[truth] += answer.service == truth
        if answer.service != truth and sum(sizes) >= 50_000:
            wrong_big.append((truth, answer, len(times)))
    report = ", ".join(f"{s} {bayes_hits[s]}/{totals[s]} bayes, {combined_hits[s]}/{totals[s]} "
                       f"all methods" for s in SERVICES)
    print(f"classification of live generator flows at the device: {report}")
    assert set(totals) == set(SERVICES), totals
    # Signatures (RTP, MPEG-TS, HTTP requests) and then ports decide every flow that carries
    # the service. (iperf3's small control connection looks like web to the flow model.)
    assert not wrong_big, (report, wrong_big)
