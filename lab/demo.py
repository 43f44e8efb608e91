"""The cems demo on an emulated access network (shell): `make demo`.

Starts the controller, builds the `access` topology on userspace Open vSwitch, shows that all
hosts reach each other and prints the topology. Then the QoE chain: customer c1 is created,
its traffic is mirrored to the probe port on the core switch, a passive probe there exports
KPIs, voice and IPTV generators send to c1's phone and set-top box while a bulk transfer and
an adaptive-video session run for others, a STAMP test runs between two probe agents, and
cemsctl shows flow rates, KPIs per customer and service, and the active test.

Then the experience: customers c1 and c2 (behind access switch s5) and c3 (behind s6) have a
probe at their phones; voice and IPTV run to each, c2's PC plays adaptive video and c3's PC
loads web pages, both reporting to cems; `cemsctl qoe` shows each customer's quality with its
model. Bulk UDP to c1's and c2's PCs then congests the 30 Mbit/s aggregation link s3 -> s5:
their voice turns degraded, c3's does not, `cemsctl findings` names the link, cems zooms in on
the two; after the congestion they return to ok, and c1's report shows what its calls lost
against its class target.

Then the closed loop: c2, a Bronze customer, downloads 40 Mbit/s across the same link; c1's
experience degrades, the policy engine meters c2's traffic across the link on s1 (where it
enters), c1 recovers while the download goes on, and when it ends the meter is taken back
and s1's flows and meters are again what they were. The demo prints the timeline and the
decisions and writes them, with c1's quality before, during and after, to loop-report.json.

The portal (cems-portal) runs from the start on http://127.0.0.1:8080/ (--portal-port);
the tokens to sign in with (the domain manager's, and each customer's once it exists) are
written to portal-tokens.txt in the controller's work directory, readable by root only. At
the end the demo keeps the network, the controller and the portal up until Ctrl-C when it
runs in a terminal (--keep / --no-keep decide otherwise), so that the pages can be looked at.
Everything is torn down, also on failure or Ctrl-C.
"""

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time

from controller import cli
from lab.emulation import REPO, ControllerProcess, build_network, exclusive_network, \
    expected_counts, start_network, switch_state, udp_flow, wait_for, wait_for_topology, \
    window_mean, worst_statuses


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def cemsctl(controller: ControllerProcess, *args: str) -> None:
    """cemsctl as the domain manager (its token in $CEMS_TOKEN, as an operator would have it)."""
    print(f"$ cemsctl {' '.join(args)}", flush=True)
    os.environ["CEMS_TOKEN"] = controller.token
    cli.main(["--server", controller.grpc_address, *args])
    sys.stdout.flush()


def probe_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "probes.cli", *args]


def start_traffic(net, seconds: int, procs: list) -> list:
    """Service traffic of the access topology; every process it starts goes into `procs`
    as soon as it runs, so that the caller stops it also when this fails half-way."""
    phone, stb, pc, video_pc = net.get("c1phone", "c1stb", "c3pc", "c2pc")
    voice, iptv, web = net.get("voice", "iptv", "web")
    procs.append(voice.popen(probe_cmd("gen-voice", "--target", f"{phone.IP()}:5004",
                                       "--seconds", str(seconds)), cwd=REPO,
                             stdout=subprocess.DEVNULL))
    print("  voice -> c1phone: G.711 RTP, 50 packets/s")
    procs.append(iptv.popen(probe_cmd("gen-iptv", "--target", f"{stb.IP()}:1234",
                                      "--seconds", str(seconds)), cwd=REPO,
                            stdout=subprocess.DEVNULL))
    print("  iptv -> c1stb: MPEG-TS over UDP, 4 Mbit/s")
    procs.append(pc.popen(["iperf3", "-s", "-1", "-p", "5301"]))
    wait_for(lambda: ":5301 " in pc.cmd("ss -ltn"), 10, "iperf3 on c3pc")
    procs.append(web.popen(["iperf3", "-c", pc.IP(), "-p", "5301", "-t", str(seconds),
                            "-b", "8M"], stdout=subprocess.DEVNULL))
    print("  web -> c3pc: an 8 Mbit/s download")
    procs.append(web.popen(probe_cmd("video-server", "--bind", f"{web.IP()}:8081",
                                     "--bitrates", "1M,2M,4M,8M", "--segment-seconds", "1",
                                     "--segments", str(seconds)), cwd=REPO,
                           stdout=subprocess.DEVNULL))
    wait_for(lambda: ":8081 " in web.cmd("ss -ltn"), 15, "the video server on web")
    player = video_pc.popen(probe_cmd("video-player", "--url", f"http://{web.IP()}:8081/",
                                      "--startup", "2"), cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    procs.append(player)
    print("  web -> c2pc: adaptive video, 1 s segments at 1 to 8 Mbit/s")
    return procs


EXPERIENCE_CUSTOMERS = {"c1": "5:3", "c2": "5:6", "c3": "6:3"}


def experience_act(net, controller: ControllerProcess, socket_path: str, procs: list) -> list:
    """The experience part of the demo; its processes go into `procs` (stopped by the
    caller, also when this fails)."""
    from cems.v1 import qoe_pb2, qoe_pb2_grpc  # pylint: disable=import-outside-toplevel
    voice, iptv, web = net.get("voice", "iptv", "web")
    for customer, access in EXPERIENCE_CUSTOMERS.items():
        if customer != "c1":   # c1 exists since the first act; c2 is a Bronze customer
            hosts = [a for d in ("phone", "stb", "pc")
                     for a in ("--host", net.get(f"{customer}{d}").MAC())]
            plan = ("gsb-economy", "bronze:2M:40M") if customer == "c2" else \
                ("gsb-business", "silver:10M:20M")
            cemsctl(controller, "customer", "create", customer, "--name", customer.upper(),
                    "--access", access, *hosts, "--variant", plan[0], "--class", plan[1])
    for customer in EXPERIENCE_CUSTOMERS:
        phone = net.get(f"{customer}phone")
        probe_id = f"{customer}-cpe"
        procs.append(phone.popen(probe_cmd(
            "passive", "--iface", phone.defaultIntf().name, "--controller",
            f"unix:{socket_path}", "--probe-id", probe_id), cwd=REPO,
            env={**os.environ, "CEMS_TOKEN": controller.probe_token(probe_id)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for host, what, port in ((voice, "gen-voice", 5004), (iptv, "gen-iptv", 1234)):
            procs.append(host.popen(probe_cmd(what, "--target", f"{phone.IP()}:{port}",
                                              "--seconds", "600"), cwd=REPO,
                                    stdout=subprocess.DEVNULL))
    print("passive probes on the phones of c1, c2, c3; voice and IPTV to each phone")
    agent_env = {**os.environ, "CEMS_TOKEN": controller.probe_token("pc-agent")}
    procs.append(web.popen(probe_cmd("web-server", "--bind", f"{web.IP()}:8080"), cwd=REPO,
                           stdout=subprocess.DEVNULL))
    procs.append(web.popen(probe_cmd("video-server", "--bind", f"{web.IP()}:8081",
                                     "--bitrates", "1M,2M,4M", "--segment-seconds", "1"),
                           cwd=REPO, stdout=subprocess.DEVNULL))
    wait_for(lambda: all(f":{p} " in web.cmd("ss -ltn") for p in (8080, 8081)), 15,
             "the web and video servers on web")
    procs.append(net.get("c3pc").popen(probe_cmd(
        "web-client", "--url", f"http://{web.IP()}:8080/", "--pages", "1000", "--think", "5",
        "--controller", f"unix:{socket_path}"), cwd=REPO, env=agent_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    procs.append(net.get("c2pc").popen(probe_cmd(
        "video-player", "--url", f"http://{web.IP()}:8081/", "--startup", "2", "--segments",
        "6", "--controller", f"unix:{socket_path}"), cwd=REPO, env=agent_env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    print("c3pc loads web pages, c2pc plays a video; both report their sessions to cems")

    with controller.channel() as channel:
        qoe = qoe_pb2_grpc.QoeServiceStub(channel)

        def voice_status() -> dict:
            """customer -> the worse status of its voice and IPTV (a congested port of the
            userspace datapath sometimes spares voice's small packets; IPTV's large ones
            share the bulk's fate, ../shared/ENVIRONMENT.md)."""
            return worst_statuses(qoe, ("voice", "iptv"))
        wait_for(lambda: voice_status() == dict.fromkeys(EXPERIENCE_CUSTOMERS, "ok") or None,
                 60, "the voice and IPTV of c1, c2 and c3 ok")
        wait_for(lambda: {"web", "video"} <= {e.service for e in qoe.ListExperience(
            qoe_pb2.ListExperienceRequest(), timeout=5).experience} or None, 60,
            "web and video sessions reported")
        banner("experience per customer and service (10 s mean, against the class target)")
        cemsctl(controller, "qoe")
        cemsctl(controller, "qoe", "--customer", "c1")

        banner("the policy engine in dry-run for now: it decides and logs, changes nothing")
        cemsctl(controller, "policy", "mode", "dry-run")
        banner("congestion: 2 x 18 Mbit/s of bulk UDP into the 30 Mbit/s link s3 -> s5")
        bulk = [udp_flow(web, net.get(f"{customer}pc"), 5601, "18M", 30, procs)
                for customer in ("c1", "c2")]
        began = time.monotonic()
        wait_for(lambda: (lambda s: s if s.get("c1") == s.get("c2") == "degraded" else None)(
            voice_status()), 40, "the experience of c1 and c2 degraded")
        print(f"c1 and c2 degraded {time.monotonic() - began:.1f} s after the congestion began")
        wait_for(lambda: qoe.ListFindings(qoe_pb2.ListFindingsRequest(), timeout=5).findings
                 or None, 20, "a root-cause finding")
        cemsctl(controller, "qoe", "--worst", "6")
        cemsctl(controller, "findings")
        cemsctl(controller, "qoe", "--customer", "c1")
        for proc in bulk:
            proc.terminate()
            proc.wait(timeout=10)
        banner("the congestion ends")
        ended = time.monotonic()
        wait_for(lambda: voice_status() == dict.fromkeys(EXPERIENCE_CUSTOMERS, "ok") or None,
                 60, "the voice and IPTV of c1, c2 and c3 ok again")
        print(f"ok again {time.monotonic() - ended:.1f} s after the congestion ended")
        cemsctl(controller, "qoe", "--service", "voice")
        banner("what the policy engine would have done (dry run)")
        cemsctl(controller, "decisions", "--kind", "act", "--kind", "refuse")
        banner("c1's report: what its calls lost, against its class target")
        cemsctl(controller, "report", "c1")
    return procs


def loop_act(net, controller: ControllerProcess, procs: list) -> list:
    """The closed loop: a Bronze download congests the link of a Silver customer, cems acts,
    the customer recovers, cems takes the action back; prints the timeline and writes it
    with the decisions to loop-report.json in the controller's directory. Its processes go
    into `procs`."""
    from cems.v1 import policy_pb2, policy_pb2_grpc  # pylint: disable=import-outside-toplevel
    from cems.v1 import qoe_pb2, qoe_pb2_grpc  # pylint: disable=import-outside-toplevel
    from cems.v1 import status_pb2, status_pb2_grpc  # pylint: disable=import-outside-toplevel
    from google.protobuf.json_format import MessageToDict  # pylint: disable=import-outside-toplevel
    web, pc = net.get("web", "c2pc")
    with controller.channel() as channel:
        qoe = qoe_pb2_grpc.QoeServiceStub(channel)
        policy = policy_pb2_grpc.PolicyServiceStub(channel)
        sampler = QualitySampler(qoe, status_pb2_grpc.StatusServiceStub(channel), status_pb2,
                                 qoe_pb2, "c1", (3, 5)).start()

        since: dict = {}

        def c1() -> dict:
            reply = qoe.GetExperience(qoe_pb2.GetExperienceRequest(customer_id="c1"),
                                      timeout=5)
            services = [e for e in reply.services if e.service in ("voice", "iptv")]
            since.update({(e.service, e.status): e.status_since_unix_s for e in services})
            return {e.service: (e.status, window_mean(e, 10.0)) for e in services}

        def c1_is(status: str):
            now = c1()
            return now if now and all(st == status for st, _ in now.values()) else None

        def c1_degraded():
            now = c1()
            return now if any(st == "degraded" for st, _ in now.values()) else None
        wait_for(lambda: c1_is("ok"), 60, "c1's voice and IPTV ok")
        banner("the policy engine acts from now on")
        cemsctl(controller, "policy", "mode", "act")
        before_state = switch_state("s1")
        quality = {"before": c1()}
        seq = policy.ListDecisions(policy_pb2.ListDecisionsRequest(limit=1), timeout=5).last_seq
        banner("closed loop: c2 (Bronze) downloads 40 Mbit/s across the 30 Mbit/s link "
               "s3 -> s5, where c1 (Silver) talks and watches IPTV")
        onset = time.time()
        bulk = udp_flow(web, pc, 5602, "40M", 35, procs)
        timeline = [("congestion begins: c2's download starts", onset)]
        quality["during"] = wait_for(c1_degraded, 40, "c1 degraded")
        first = min((since[(service, "degraded")], service) for service, (status, _)
                    in quality["during"].items() if status == "degraded")
        timeline.append((f"c1 {first[1]} degraded (a sustained fall, not one sample)",
                         first[0]))
        meter = wait_for(lambda: [f for f in switch_state("s1")[0] if "meter:" in f] or None,
                         30, "the policy's meter on s1")
        timeline.append(("the meter is on switch s1 (ovs-ofctl)", time.time()))
        acts = [d for d in policy.ListDecisions(policy_pb2.ListDecisionsRequest(
            after_seq=seq, kinds=["act"]), timeout=5).decisions]
        if acts:
            timeline.append((f"decision {acts[0].seq}: {acts[0].intent_kind} of "
                             f"{acts[0].customer_id}'s traffic on {acts[0].element}",
                             acts[0].time_unix_s))
        print(f"on s1: {meter[0]}")
        cemsctl(controller, "decisions", "--after", str(seq))
        cemsctl(controller, "policy")
        banner("admission control: may c2 start a 4 Mbit/s unicast IPTV stream to its PC "
               "now? (what `cems-probe gen-iptv --controller` asks first)")
        cemsctl(controller, "admit", "iptv", "--rate", "4M", "--sender",
                net.get("iptv").IP(), "--receiver", pc.IP())
        banner("what-if: the twin's prediction for a tighter meter of 8 Mbit/s on c2's "
               "traffic (nothing is applied)")
        cemsctl(controller, "what-if", "meter", "c2", "--rate", "8M")
        quality["recovered"] = wait_for(lambda: c1_is("ok"), 60, "c1 ok again")
        timeline.append(("c1's voice and IPTV ok again" + (
            ", the download still running" if bulk.poll() is None else ""),
            max(since.get((service, "ok"), 0.0) for service in quality["recovered"])))
        cemsctl(controller, "qoe", "--customer", "c1")
        bulk.wait(timeout=60)
        timeline.append(("the download ends", time.time()))
        wait_for(lambda: switch_state("s1") == before_state or None, 90,
                 "s1 back to its flows and meters before the congestion")
        timeline.append(("s1's flows and meters as before the congestion (ovs-ofctl)",
                         time.time()))
        for d in policy.ListDecisions(policy_pb2.ListDecisionsRequest(
                after_seq=seq, kinds=["revert", "rollback"]), timeout=5).decisions:
            what = "revert" if d.kind == "revert" else \
                "rollback: quality was worse with the action than without it"
            timeline.append((f"decision {d.seq}: {what}", d.time_unix_s))
        quality["after"] = c1()
        time.sleep(3)   # a few seconds of the calm after the revert on the chart
        samples = sampler.stop()
        back = scores_back(samples, sampler.targets,
                           next(w for what, w in timeline if "the meter is on" in what))
        if back is not None:
            timeline.append(("c1's 1 s scores back at their targets (the 10 s status "
                             "follows)", back))
        banner("the loop's timeline (seconds from the start of the congestion)")
        for what, when in sorted(timeline, key=lambda item: item[1]):
            print(f"  {when - onset:+6.1f} s  {what}")
        for phase, figures in quality.items():
            print(f"  c1 {phase:>9}: " + ", ".join(
                f"{service} {status} {score:.2f}" for service, (status, score) in
                sorted(figures.items())))
        cemsctl(controller, "decisions", "--after", str(seq), "--kind", "outcome", "--kind",
                "revert", "--kind", "rollback")
        decisions = policy.ListDecisions(policy_pb2.ListDecisionsRequest(after_seq=seq),
                                         timeout=5)
        report = {"onset_unix_s": onset,
                  "timeline": [{"s": round(when - onset, 2), "event": what}
                               for what, when in sorted(timeline, key=lambda i: i[1])],
                  "quality_c1": {phase: {service: {"status": st, "score_10s": score}
                                         for service, (st, score) in figures.items()}
                                 for phase, figures in quality.items()},
                  "decisions": MessageToDict(decisions)["decisions"]
                  if decisions.decisions else []}
        report["samples"] = [{"s": round(x["t"] - onset, 2),
                              **{k: v for k, v in x.items() if k != "t"}} for x in samples]
        path = os.path.join(controller.workdir, "loop-report.json")
        with open(path, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=2)
        print(f"timeline, quality, samples and decisions written to {path}")
        chart = draw_loop_chart(controller.workdir, report, sampler.targets,
                                sampler.capacity_bps)
        print(f"chart of quality over time with the loop's events: {chart}")
    return procs


class QualitySampler:
    """Twice a second, on its own thread: a customer's latest voice and IPTV scores (the
    1 s window) and the load of one link (its source port's transmit rate), for the chart."""

    def __init__(self, qoe, status, status_pb2, qoe_pb2, customer: str, link: tuple[int, int]):
        import threading  # pylint: disable=import-outside-toplevel
        self.qoe, self.status, self.status_pb2, self.qoe_pb2 = qoe, status, status_pb2, qoe_pb2
        self.customer, self.link = customer, link
        self.samples: list[dict] = []
        self.targets: dict[str, float] = {}
        self.capacity_bps = 30e6
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-sampler", daemon=True)

    def start(self) -> "QualitySampler":
        self._thread.start()
        return self

    def stop(self) -> list[dict]:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.samples

    def _port(self):
        links = self.status.GetTopology(self.status_pb2.GetTopologyRequest(), timeout=5).links
        return next((l.src_port for l in links
                     if (l.src_dpid, l.dst_dpid) == self.link), None)

    def _run(self) -> None:
        port = None
        while not self._stop.wait(0.5):
            sample = {"t": time.time()}
            try:
                reply = self.qoe.GetExperience(self.qoe_pb2.GetExperienceRequest(
                    customer_id=self.customer), timeout=2)
                for e in reply.services:
                    if e.service in ("voice", "iptv"):
                        self.targets[e.service] = e.target
                        sample[e.service] = window_mean(e, 1.0)
                port = port or self._port()
                if port is not None:
                    stats = self.status.ListPorts(self.status_pb2.ListPortsRequest(
                        dpid=self.link[0]), timeout=2).ports
                    sample["load_bps"] = next((p.tx_bytes_per_second * 8 for p in stats
                                               if p.port_no == port), float("nan"))
            except Exception:  # pylint: disable=broad-except  # a gap on the chart, no more
                pass
            self.samples.append(sample)


def scores_back(samples: list[dict], targets: dict, after: float, hold: int = 4):
    """The time of the first sample after `after` from which every watched score is at its
    target for `hold` samples running (2 s at two a second); None if never."""
    def good(x):
        return targets and all(x.get(s, float("nan")) >= t for s, t in targets.items())
    later = [x for x in samples if x["t"] >= after]
    for i in range(len(later) - hold + 1):
        if all(good(x) for x in later[i:i + hold]):
            return later[i]["t"]
    return None


def draw_loop_chart(workdir: str, report: dict, targets: dict, capacity_bps: float) -> str:
    from lab.chart import loop_chart  # pylint: disable=import-outside-toplevel
    events = [(e["s"], e["event"]) for e in report["timeline"]]
    starts = [e["s"] for e in report["timeline"] if "the meter is on" in e["event"]]
    ends = [e["s"] for e in report["timeline"] if "revert" in e["event"]
            or "rollback" in e["event"]]
    spans = [(starts[0], ends[0] if ends else report["samples"][-1]["s"],
              "the policy's meter in force")] if starts and report["samples"] else []
    return loop_chart(os.path.join(workdir, "loop-chart.png"), report["samples"], events,
                      targets, capacity_bps, "cems closed loop: c1 (Silver) while c2 (Bronze) "
                      "congests s3 -> s5", spans)


def services_seen(controller: ControllerProcess) -> set[str]:
    from cems.v1 import probe_pb2, probe_pb2_grpc  # pylint: disable=import-outside-toplevel
    with controller.channel() as channel:
        reply = probe_pb2_grpc.ProbeServiceStub(channel).ListKpis(
            probe_pb2.ListKpisRequest(customer_id="c1"), timeout=5)
    return {r.service for r in reply.records}


def stop(procs: list) -> None:
    for proc in procs:
        with contextlib.suppress(Exception):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=10)


def start_portal(controller: ControllerProcess, port: int, procs: list) -> str:
    """cems-portal for the controller on 127.0.0.1:`port` (a free one if it is taken);
    returns its address once it answers."""
    import socket  # pylint: disable=import-outside-toplevel
    from lab import servers  # pylint: disable=import-outside-toplevel
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            port = 0
    proc, address = servers.start_portal(controller.grpc_address,
                                         os.path.join(controller.workdir, "portal.log"), port)
    procs.append(proc)
    return address


def write_tokens(controller: ControllerProcess, customers=()) -> str:
    """The tokens to sign in to the portal with, in a file only root reads."""
    path = os.path.join(controller.workdir, "portal-tokens.txt")
    lines = [f"domain manager: {controller.token}"]
    lines += [f"customer {c}: {controller._make_token('customer', c)}"  # pylint: disable=protected-access
              for c in customers]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")
    return path


def keep_until_interrupted(portal: str, tokens: str) -> None:
    banner("the network, the controller and the portal stay up until Ctrl-C")
    print(f"portal on {portal}/ (sign in with a token from {tokens})", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        while True:
            time.sleep(3600)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="cems-demo", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=12, help="how long traffic runs")
    parser.add_argument("--portal-port", type=int, default=8080,
                        help="where the portal listens on 127.0.0.1 (default 8080; a free "
                             "port if it is taken)")
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument("--keep", dest="keep", action="store_true", default=None,
                      help="at the end, keep everything up until Ctrl-C (the default in a "
                           "terminal)")
    keep.add_argument("--no-keep", dest="keep", action="store_false",
                      help="tear down at the end (the default without a terminal)")
    args = parser.parse_args(argv)
    if args.keep is None:
        args.keep = sys.stdin.isatty() and sys.stdout.isatty()
    from mininet.log import setLogLevel  # pylint: disable=import-outside-toplevel
    from mininet_topos import AccessTopo  # pylint: disable=import-outside-toplevel
    setLogLevel("error")

    socket_path = f"/tmp/cems-demo-{os.getpid()}.sock"
    capacities = ", ".join(f'"{dpid}:{port}" = 30000000' for dpid in (3, 4) for port in (3, 4))
    controller = ControllerProcess(
        extra_config=f'[mirror]\nprobe = "2:10"\n[qoe]\niptv_frame_rate = 25\n'
                     f'[csm]\nlink_capacity_bps = {{ {capacities} }}\n',
        unix_socket=socket_path)
    net = None
    network_lock = contextlib.ExitStack()
    procs: list = []
    probes: list = []
    portal_procs: list = []
    try:
        banner("starting the cems controller")
        controller.start()
        print(f"gRPC on {controller.grpc_address}, OpenFlow on 127.0.0.1:{controller.openflow_port}, "
              f"metrics on http://127.0.0.1:{controller.metrics_port}/metrics")
        print(f"log: {controller.log_path}")
        portal = start_portal(controller, args.portal_port, portal_procs)
        tokens = write_tokens(controller)
        print(f"portal on {portal}/ (sign in with a token from {tokens})")

        banner("building the access network (6 switches, 16 hosts, userspace Open vSwitch, "
               "30 Mbit/s aggregation links, 50 Mbit/s customer lines)")
        topo = AccessTopo(agg_mbps=30, line_mbps=50)
        network_lock.enter_context(exclusive_network())
        net = build_network(topo, controller.openflow_port)
        start_network(net)
        switches, links = expected_counts(topo)
        wait_for_topology(controller, switches, links)
        print(f"{switches} switches connected, {links // 2} links discovered by LLDP")

        banner("all hosts reach each other")
        net.pingAll(timeout=1)  # the controller learns every host from this round
        loss = net.pingAll(timeout=1)
        hosts = len(net.hosts)
        print(f"{hosts * (hosts - 1)} pings between {hosts} hosts: {loss:.0f}% loss")

        banner("topology as cems sees it")
        cemsctl(controller, "topology")

        banner("customer c1, its traffic mirrored to the probe port s2:10")
        phone, stb = net.get("c1phone", "c1stb")
        cemsctl(controller, "customer", "create", "c1", "--name", "Customer One", "--segment",
                "business", "--access", "5:3", "--host", phone.MAC(), "--host", stb.MAC(),
                "--host", net.get("c1pc").MAC(), "--variant", "gsb-business", "--class",
                "silver:10M:20M")
        cemsctl(controller, "mirror", "set", "c1")
        wait_for(lambda: "output:10" in subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "s2", "table=1"],
            capture_output=True, text=True).stdout, 20, "the mirror flows on s2")
        probes.append(subprocess.Popen(
            probe_cmd("passive", "--iface", "s2-eth10", "--controller", controller.grpc_address,
                      "--bpf", "udp or tcp"), cwd=REPO,
            env={**os.environ, "CEMS_TOKEN": controller.probe_token("core-probe")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        print("passive probe core-probe on s2-eth10 (TPACKET_V3 ring), exporting to cems")
        voice_host = net.get("voice")
        for host, extra in ((phone, []), (voice_host, ["--reflect", "862"])):
            log = os.path.join(controller.workdir, f"{host.name}-agent.log")
            with open(log, "w", encoding="utf-8") as stderr:
                probes.append(host.popen(probe_cmd(
                    "agent", "--controller", f"unix:{socket_path}", *extra), cwd=REPO,
                    stderr=stderr, env={**os.environ, "CEMS_TOKEN": controller.probe_token(
                        f"{host.name}-agent")}))
        print("probe agents on c1phone and voice (the latter also a STAMP reflector), logs in "
              f"{controller.workdir}")

        banner(f"service traffic for {args.seconds} s")
        start_traffic(net, args.seconds, procs)
        wait_for(lambda: subprocess.run(
            [sys.executable, "-m", "controller.cli", "--server", controller.grpc_address,
             "stamp", "start", "c1phone-agent", voice_host.IP(), "--count",
             str(50 * (args.seconds - 2)), "--interval", "0.02"], cwd=REPO,
            capture_output=True).returncode == 0, 20, "the c1phone agent to take a STAMP test")
        print("STAMP test c1phone -> voice started over gRPC")
        time.sleep(min(5, args.seconds / 2))
        wait_for(lambda: {"voice", "iptv", "active-test"} <= services_seen(controller), 20,
                 "voice, IPTV and STAMP records at the controller")
        banner("live flow rates (flows with traffic now)")
        cemsctl(controller, "flows", "--component", "forwarding", "--active")
        banner("KPIs of c1's mirrored voice and IPTV, and of the active test")
        cemsctl(controller, "kpis", "--customer", "c1")
        cemsctl(controller, "kpis", "--service", "active-test")
        cemsctl(controller, "stamp", "list")
        banner("the adaptive-video session on c2pc")
        out, _ = procs[-1].communicate(timeout=args.seconds * 4 + 30)
        video = json.loads(out.strip().splitlines()[-1])
        print(f"initial delay {video['initial_delay_s']:.2f} s, {video['stalls']} stalls, "
              f"bitrates chosen (Mbit/s): "
              f"{' '.join(f'{b / 1e6:g}' for b in video['bitrates_bps'])}, "
              f"MOS {video['mos']:.2f} (Hossfeld et al. 2011, from stalls)")
        stop(probes[:1])   # the core probe: from here the probes sit at the customers
        stop(procs)
        procs.clear()
        banner("experience: quality per customer and service, root cause, zoom-in")
        experience_act(net, controller, socket_path, procs)
        loop_act(net, controller, procs)
        banner("controller status")
        cemsctl(controller, "status")
        tokens = write_tokens(controller, customers=("c1", "c2", "c3"))
        print(f"portal on {portal}/: customers c1, c2 and c3 and the domain manager sign in "
              f"with the tokens in {tokens}")
        if args.keep:
            keep_until_interrupted(portal, tokens)
        return 0 if loss == 0 else 1
    except KeyboardInterrupt:
        return 130
    finally:
        banner("tearing down")
        stop(procs + probes + portal_procs)
        if net is not None:
            net.stop()
        network_lock.close()
        controller.stop()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        print("done")


if __name__ == "__main__":
    sys.exit(main())
