"""End to end on the access network: congestion on one aggregation link degrades the voice of
the two customers behind it, not of the one elsewhere; the controller says so over gRPC,
names that link as the cause, zooms in on the two (their traffic mirrored to the probe)
and, after the congestion, returns them to ok. The web and video test services report
their sessions and their MOS appears in `cemsctl qoe`.

Access network with 30 Mbit/s aggregation links: c1 and c2 are on s5, c3 on s6. Forwarding
breaks ties in dpid order, so s1 -> s2 -> s3 -> s5 carries c1's and c2's traffic and
s2 -> s3 -> s6 c3's: the link s3 port 3 -> s5 is the only element the two degraded
customers share and the healthy one does not cross. Each customer's phone runs a passive
probe (at the customer's side of the bottleneck) that exports to the controller.
"""

import json
import os
import signal
import subprocess
import sys
import time

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc
from cems.v1 import probe_pb2, probe_pb2_grpc, qoe_pb2, qoe_pb2_grpc

from lab.emulation import REPO, udp_flow, wait_for, worst_statuses
from mininet_topos import AccessTopo

from tests.integration.conftest import running_network

CONGESTED_LINK = "link 0000000000000003:3->0000000000000005"
CUSTOMERS = {"c1": (5, 3), "c2": (5, 6), "c3": (6, 3)}   # access switch and port of the phone
CONFIG = ('[mirror]\nprobe = "2:10"\n'
          '[qoe]\niptv_frame_rate = 25\n'
          '[csm]\nlink_capacity_bps = { "3:3" = 30000000, "4:3" = 30000000, '
          '"3:4" = 30000000, "4:4" = 30000000 }\n')


def _stop(procs) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def test_congested_link_degrades_two_customers_names_the_link_and_they_recover(
        make_controller, tmp_path):
    controller = make_controller(extra_config=CONFIG,
                                 unix_socket=f"/tmp/cems-{tmp_path.name[-20:]}.sock")
    with running_network(AccessTopo(agg_mbps=30), controller) as net:
        net.pingAll(timeout=1)
        channel = controller.channel()
        sla = pb_grpc.SlaServiceStub(channel)
        for customer, (dpid, port) in CUSTOMERS.items():
            hosts = [net.get(f"{customer}{device}").MAC() for device in ("phone", "stb", "pc")]
            sla.CreateCustomer(pb.CreateCustomerRequest(
                customer=pb.Customer(customer_id=customer, name=customer.upper(),
                                     access_dpid=dpid, access_port=port, hosts=hosts),
                sla=pb.Sla(customer_id=customer, variant="gsb-business", bounds=[
                    pb.ClassBounds(service_class=pb.SERVICE_CLASS_SILVER, min_bps=20_000_000,
                                   max_bps=20_000_000)])))
        qoe = qoe_pb2_grpc.QoeServiceStub(channel)
        voice, iptv, web = net.get("voice", "iptv", "web")
        socket = f"unix:{controller.unix_socket}"
        procs = []

        def start(host, args, **options):
            options.setdefault("stdout", subprocess.PIPE)
            proc = host.popen([sys.executable, "-m", "probes.cli", *args], cwd=REPO,
                              stderr=subprocess.PIPE, text=True, **options)
            procs.append(proc)
            return proc

        def statuses():
            return worst_statuses(qoe, ("voice",))
        try:
            for customer in CUSTOMERS:
                phone = net.get(f"{customer}phone")
                start(phone, ["passive", "--iface", phone.defaultIntf().name, "--controller",
                              socket, "--probe-id", f"{customer}-cpe"],
                      env={**os.environ,
                           "CEMS_TOKEN": controller.probe_token(f"{customer}-cpe")},
                      # records go to the controller; a pipe nobody reads fills and then
                      # blocks the probe's loop (after some 40 s of records)
                      stdout=subprocess.DEVNULL)
                start(voice, ["gen-voice", "--target", f"{phone.IP()}:5004", "--seconds", "150"])
                start(iptv, ["gen-iptv", "--target", f"{phone.IP()}:1234", "--seconds", "150"])
            wait_for(lambda: statuses() == dict.fromkeys(CUSTOMERS, "ok") or None, 40,
                     "the voice of c1, c2 and c3 ok before the congestion")
            assert not qoe.ListFindings(qoe_pb2.ListFindingsRequest()).findings

            # bulk UDP to c1's and c2's PCs: 2 x 18 Mbit/s into the 30 Mbit/s link s3 -> s5,
            # each within its customer's 20 Mbit/s line
            bulk = [udp_flow(web, net.get(f"{customer}pc"), 5601, "18M", 25, procs)
                    for customer in ("c1", "c2")]
            congested_at = time.monotonic()
            wait_for(lambda: (lambda s: s if s.get("c1") == s.get("c2") == "degraded" else None)(
                statuses()), 25, "c1's and c2's voice degraded")
            degraded_after_s = time.monotonic() - congested_at
            assert statuses()["c3"] == "ok", qoe.GetExperience(
                qoe_pb2.GetExperienceRequest(customer_id="c3"))

            findings = wait_for(lambda: list(qoe.ListFindings(
                qoe_pb2.ListFindingsRequest()).findings) or None, 15, "a finding")
            top = findings[0]
            assert top.element == CONGESTED_LINK, findings
            assert set(top.affected_customers) == {"c1", "c2"}
            assert "voice" in top.services and top.inputs["utilisation"] > 0.8, top

            experience = qoe.GetExperience(qoe_pb2.GetExperienceRequest(customer_id="c1"))
            voice_c1 = next(s for s in experience.services if s.service == "voice")
            assert voice_c1.latest.known and voice_c1.latest.score < voice_c1.target
            assert voice_c1.latest.inputs["loss_ratio"] > 0.01
            assert "G.107" in voice_c1.latest.model
            assert any("degraded" in z for z in experience.zoom), experience.zoom

            def zoom_rules():
                rules = probe_pb2_grpc.MirrorServiceStub(channel).ListMirrorRules(
                    probe_pb2.ListMirrorRulesRequest()).rules
                return {r.customer_id for r in rules if r.origin == "zoom"}
            assert zoom_rules() == {"c1", "c2"}
            mirrored = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "s2",
                                       "table=1"], capture_output=True, text=True).stdout
            c1_phone = net.get("c1phone").MAC()
            assert any(c1_phone in line and "output:10" in line
                       for line in mirrored.splitlines()), mirrored

            for proc in bulk:
                proc.wait(timeout=60)
            recovered_at = time.monotonic()
            wait_for(lambda: statuses() == dict.fromkeys(CUSTOMERS, "ok") or None, 40,
                     "c1's and c2's voice ok again after the congestion")
            recovered_after_s = time.monotonic() - recovered_at
            wait_for(lambda: not zoom_rules() or None, 60, "the zooms ended after recovery")

            # the month's report of c1 says what its calls lost, against its class target
            report = pb_grpc.ReportServiceStub(channel).GetReport(
                pb.GetReportRequest(customer_id="c1"))
            assert report.loss_ratio > report.target_loss_ratio, report
            assert any(n.startswith("loss_ratio") for n in report.not_met), report.not_met
            voice_period = next(q for q in report.quality if q.service == "voice")
            assert voice_period.intervals > 30 and voice_period.worst < voice_period.target
            assert voice_period.time_below_target_s >= 5 and voice_period.bound == "upper"
            c3_report = pb_grpc.ReportServiceStub(channel).GetReport(
                pb.GetReportRequest(customer_id="c3"))
            assert c3_report.loss_ratio < 0.01 and c3_report.HasField("jitter_ms"), c3_report
            print(f"degraded {degraded_after_s:.1f} s after the congestion began, ok again "
                  f"{recovered_after_s:.1f} s after it ended")
        finally:
            _stop(procs)
            channel.close()


def test_web_and_video_sessions_reach_cemsctl_qoe(make_controller, tmp_path):
    controller = make_controller(unix_socket=f"/tmp/cems-{tmp_path.name[-20:]}.sock")
    with running_network(AccessTopo(customers_per_access=1), controller) as net:
        net.pingAll(timeout=1)
        pc, web = net.get("c1pc", "web")
        channel = controller.channel()
        pb_grpc.SlaServiceStub(channel).CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id="c1", name="C1", access_dpid=5, access_port=5,
                                 hosts=[pc.MAC()]),
            sla=pb.Sla(customer_id="c1", variant="gsb-business", bounds=[
                pb.ClassBounds(service_class=pb.SERVICE_CLASS_SILVER, min_bps=20_000_000,
                               max_bps=20_000_000)])))
        servers = [web.popen([sys.executable, "-m", "probes.cli", what, "--bind",
                              f"0.0.0.0:{port}"], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
                   for what, port in (("web-server", 8080), ("video-server", 8081))]
        try:
            for port in (8080, 8081):
                wait_for(lambda port=port: f":{port} " in web.cmd("ss -ltn"), 10,
                         f"the test server on port {port}")
            env = f"CEMS_TOKEN={controller.probe_token('c1-agent')}"
            socket = f"unix:{controller.unix_socket}"
            loads = pc.cmd(f"cd {REPO} && {env} {sys.executable} -m probes.cli web-client "
                           f"--url http://{web.IP()}:8080/ --pages 2 --think 0.2 "
                           f"--controller {socket}")
            played = pc.cmd(f"cd {REPO} && {env} {sys.executable} -m probes.cli video-player "
                            f"--url http://{web.IP()}:8081/ --segments 3 --startup 2 "
                            f"--controller {socket}")
            assert json.loads(loads.strip().splitlines()[-1])["failed"] == 0, loads
            assert "stalls" in played, played
            out = subprocess.run(
                [sys.executable, "-m", "controller.cli", "--server", controller.grpc_address,
                 "--token", controller.token, "qoe", "--json"], cwd=REPO, capture_output=True,
                text=True, timeout=30)
            assert out.returncode == 0, out.stderr
            rows = {row["service"]: row for row in json.loads(out.stdout)["experience"]
                    if row["customer_id"] == "c1"}
            assert {"web", "video"} <= set(rows), rows
            for service in ("web", "video"):
                quality = rows[service]["latest"]
                assert quality["known"] and 1.0 <= quality["score"] <= 5.0, rows[service]
                assert quality["scale"] == "MOS"
            assert "G.1030" in rows["web"]["latest"]["model"]
            table = subprocess.run(
                [sys.executable, "-m", "controller.cli", "--server", controller.grpc_address,
                 "--token", controller.token, "qoe"], cwd=REPO, capture_output=True, text=True,
                timeout=30).stdout
            assert "web" in table and "video" in table and "G.1030" in table, table
        finally:
            _stop(servers)
            channel.close()
