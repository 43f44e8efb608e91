"""End to end on the access network: a customer's voice and IPTV flows are mirrored to the
probe port (voice from the config file, IPTV set over gRPC, other traffic not at all), the
passive probe computes their KPIs and exports them, and `cemsctl kpis` shows them joined
with the customer."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import grpc
from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc
from cems.v1 import probe_pb2, probe_pb2_grpc

from lab.emulation import REPO, wait_for
from mininet_topos import AccessTopo

from tests.integration.conftest import running_network
from tests.integration.test_customer_service import auth, create_token



def test_mirrored_voice_and_iptv_kpis_reach_the_controller(make_controller):
    controller = make_controller(extra_config='[mirror]\nprobe = "2:10"\nrules = ["c1:voice"]\n')
    with running_network(AccessTopo(), controller) as net:
        net.pingAll(timeout=1)
        phone, stb, voice, iptv = net.get("c1phone", "c1stb", "voice", "iptv")
        channel = controller.channel()
        manager = create_token(controller, "domain-manager")
        pb_grpc.SlaServiceStub(channel).CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id="c1", name="C1", access_dpid=5, access_port=3,
                                 hosts=[phone.MAC(), stb.MAC()]),
            sla=pb.Sla(customer_id="c1", variant="gsb-business", bounds=[
                pb.ClassBounds(service_class=pb.SERVICE_CLASS_SILVER, min_bps=10_000_000,
                               max_bps=20_000_000)])), metadata=auth(manager))
        probe_pb2_grpc.MirrorServiceStub(channel).SetMirrorRule(
            probe_pb2.MirrorRule(customer_id="c1", service="iptv"), metadata=auth(manager))
        # The mirror is on the core switch s2, port 10; the probe reads that port's egress
        # in the root namespace, where the controller's gRPC address is reachable.

        def mirror_flows():
            dump = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "s2",
                                   "table=1"], capture_output=True, text=True).stdout
            return [line for line in dump.splitlines() if "output:10" in line]
        def both(flows):
            return flows if all(any(re.search(rf"tp_dst={port}\b", line) for line in flows)
                                for port in (1234, 5004)) else None
        flows = wait_for(lambda: both(mirror_flows()), 20,
                         "voice and IPTV mirror flows on s2")  # OVS prints udp_dst as tp_dst
        assert not any(re.search(r"tp_(src|dst)=80\b", line) for line in flows)
        probe = subprocess.Popen([sys.executable, "-m", "probes.cli", "passive", "--iface",
                                  "s2-eth10", "--controller", controller.grpc_address,
                                  "--probe-id", "core-probe"], cwd=REPO,
                                 env={**os.environ,
                                      "CEMS_TOKEN": controller.probe_token("core-probe")},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            voice_truth = json.loads(voice.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli gen-voice --target "
                f"{phone.IP()}:5004 --seconds 4").strip().splitlines()[-1])
            iptv_truth = json.loads(iptv.cmd(
                f"cd {REPO} && {sys.executable} -m probes.cli gen-iptv --target "
                f"{stb.IP()}:1234 --seconds 4").strip().splitlines()[-1])
            # RTP to a port no service rule names: forwarded, not mirrored
            voice.cmd(f"cd {REPO} && {sys.executable} -m probes.cli gen-voice --target "
                      f"{phone.IP()}:7000 --seconds 1")
            stub = probe_pb2_grpc.ProbeServiceStub(channel)

            def records():
                reply = stub.ListKpis(probe_pb2.ListKpisRequest(customer_id="c1"))
                found = {r.service: r for r in reply.records}
                return found if {"voice", "iptv"} <= set(found) else None
            found = wait_for(records, 20, "voice and IPTV records of c1")
        finally:
            probe.send_signal(signal.SIGTERM)
            _, err = probe.communicate(timeout=20)
        assert voice_truth["packets"] == 200 and iptv_truth["packets"] > 1000
        history = found["voice"]
        assert history.kind == "rtp" and history.dport == 5004 and history.probe_id == "core-probe"
        assert history.kpis["rtp_loss_ratio"] == 0.0
        assert found["iptv"].kind == "mpegts" and found["iptv"].kpis["ts_cc_errors"] == 0
        every = probe_pb2_grpc.ProbeServiceStub(channel).ListKpis(
            probe_pb2.ListKpisRequest(history=True)).records
        assert not [r for r in every if 7000 in (r.sport, r.dport)]
        summary = json.loads(err.strip().splitlines()[-1])
        assert summary["exported"] > 0 and summary["export_dropped"] == 0
        # forwarding is untouched by the mirror: the phone still answers
        assert net.ping([voice, phone], timeout=1) == 0.0
        channel.close()



def test_congestion_raises_voice_loss_and_jitter_and_they_fall_back(make_controller, tmp_path):
    controller = make_controller(unix_socket=f"/tmp/cems-{tmp_path.name[-20:]}.sock")
    with running_network(AccessTopo(), controller) as net:
        net.pingAll(timeout=1)
        phone, voice, web = net.get("c1phone", "voice", "web")
        channel = controller.channel()
        manager = create_token(controller, "domain-manager")
        pb_grpc.SlaServiceStub(channel).CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id="c1", name="C1", access_dpid=5, access_port=3,
                                 hosts=[phone.MAC()]),
            sla=pb.Sla(customer_id="c1", variant="gsb-business", bounds=[
                pb.ClassBounds(service_class=pb.SERVICE_CLASS_SILVER, min_bps=20_000_000,
                               max_bps=20_000_000)])), metadata=auth(manager))
        # The probe sits at the customer's side of its 20 Mbit/s line, after the bottleneck,
        # and reaches the controller through its unix socket.
        probe = phone.popen([sys.executable, "-m", "probes.cli", "passive", "--iface",
                             phone.defaultIntf().name, "--controller",
                             f"unix:{controller.unix_socket}", "--probe-id", "c1-cpe"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CEMS_TOKEN": controller.probe_token("c1-cpe")})
        bulk_server = phone.popen(["iperf3", "-s", "-1", "-p", "5601"])
        calls = voice.popen([sys.executable, "-m", "probes.cli", "gen-voice", "--target",
                             f"{phone.IP()}:5004", "--seconds", "18"], cwd=REPO,
                            stdout=subprocess.PIPE, text=True)
        try:
            time.sleep(6)   # calm: the voice call alone (scenario timing, not a wait)
            web.cmd(f"iperf3 -c {phone.IP()} -p 5601 -u -b 40M -t 6")  # congests the line
            calls.communicate(timeout=60)  # calm again until the call ends
            stub = probe_pb2_grpc.ProbeServiceStub(channel)

            def voice_history():
                reply = stub.ListKpis(probe_pb2.ListKpisRequest(customer_id="c1", service="voice",
                                                                history=True))
                return list(reply.records) if len(reply.records) >= 16 else None
            history = wait_for(voice_history, 20, "16 s of voice records from the customer probe")
        finally:
            for proc in (bulk_server, calls):
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            probe.send_signal(signal.SIGTERM)
            probe.communicate(timeout=20)
        loss = [r.kpis.get("rtp_loss_ratio", 0.0) for r in history]
        jitter = [r.kpis.get("rtp_jitter_ms", 0.0) for r in history]
        calm_before, calm_after = slice(1, 5), slice(-3, None)
        congested = max(range(len(history)), key=lambda i: loss[i] + jitter[i] / 10)
        assert max(loss[calm_before]) == 0.0 and max(loss[calm_after]) == 0.0, loss
        assert loss[congested] > 0.01 or jitter[congested] > 3 * max(jitter[calm_before]), \
            (loss, jitter)
        # after the calm records (the probe starts up to a second after the call, so the
        # congestion's first record is the 6th or the 7th) and before the calm after it
        assert calm_before.stop <= congested <= len(history) - 3, (congested, loss, jitter)
        channel.close()
