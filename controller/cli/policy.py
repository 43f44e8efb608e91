"""cemsctl decisions, policy, what-if and admit: the closed loop's log, mode, actions, and
questions to its twin (gRPC client)."""

import time

from cems.v1 import policy_pb2 as pb
from cems.v1 import policy_pb2_grpc as pb_grpc

from controller.cli.csm import parse_rate

COMMANDS = ("decisions", "policy", "what-if", "admit")


def add_commands(sub) -> None:
    decisions = sub.add_parser("decisions", help="the policy engine's decision log, oldest "
                               "first: what it did, refused, reverted, and what came of it")
    decisions.add_argument("--customer", default="", help="about or for this customer")
    decisions.add_argument("--element", default="", help="about this element")
    decisions.add_argument("--kind", dest="kinds", action="append", default=[],
                           choices=["act", "refuse", "revert", "rollback", "outcome",
                                    "advise"])
    decisions.add_argument("--after", type=int, default=0, metavar="SEQ",
                           help="only those after this sequence number")
    decisions.add_argument("--limit", type=int, default=100)
    policy = sub.add_parser("policy", help="the engine's mode and the actions in force")
    psub = policy.add_subparsers(dest="action")
    psub.add_parser("show")
    psub.add_parser("mode", help="act, dry-run (decide and log only) or off"
                    ).add_argument("mode", choices=["act", "dry-run", "off"])
    psub.add_parser("revert", help="take an action back now").add_argument("action_id",
                                                                           type=int)
    what_if = sub.add_parser("what-if", help="what the twin predicts a change would do, "
                             "without applying it: a meter on a customer's traffic, a "
                             "re-marking of one of its services, an SLS change, or a "
                             "reroute of its traffic around an element")
    what_if.add_argument("kind", choices=["meter", "priority", "sls", "reroute"])
    what_if.add_argument("customer")
    what_if.add_argument("--rate", type=parse_rate, default=0,
                         help="meter, sls: for example 20M")
    what_if.add_argument("--class", dest="service_class", default="",
                         choices=["", "gold", "silver", "bronze"])
    what_if.add_argument("--service", default="", help="priority: the service re-marked")
    what_if.add_argument("--around", default="", metavar="ELEMENT",
                         help="reroute: the element to go around, as `cemsctl decisions` "
                              "names it")
    admit = sub.add_parser("admit", help="would a new session between two hosts be admitted "
                           "now? (what applications ask before a unicast stream)")
    admit.add_argument("service", choices=["iptv", "video", "voice", "web", "bulk"])
    admit.add_argument("--rate", type=parse_rate, required=True, help="for example 4M")
    admit.add_argument("--sender", dest="src", required=True, metavar="IPV4",
                       help="the sending host (the server)")
    admit.add_argument("--receiver", dest="dst", required=True, metavar="IPV4",
                       help="the receiving host")


def _clock(unix_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix_s))


def _figures(values, names=None) -> str:
    keys = [k for k in (names or sorted(values)) if k in values]
    return ", ".join(f"{k} {values[k]:.3g}" for k in keys)


def show_decisions(reply) -> str:
    if not reply.decisions:
        return "no decisions yet"
    lines = []
    for d in reply.decisions:
        head = (f"{d.seq:>5} {_clock(d.time_unix_s)} {'DRY RUN ' if d.dry_run else ''}"
                f"{d.kind}" + (f" #{d.action_id}" if d.action_id else "")
                + (f" {d.intent_kind}" if d.intent_kind else "")
                + (f" of {d.customer_id}'s traffic" if d.customer_id else "")
                + (f" on {d.element}" if d.element else "")
                + (f" for {', '.join(d.for_customers)}" if d.for_customers else ""))
        lines.append(head)
        lines.append(f"      {d.reason}")
        if d.predicted:
            lines.append("      predicted: " + _figures(d.predicted))
        if d.observed:
            lines.append("      observed: " + _figures(d.observed))
    return "\n".join(lines)


def show_policy(status) -> str:
    error = (f"{status.twin_mean_abs_error:.2f} MOS over {status.twin_outcomes} outcomes"
             if status.twin_outcomes else "no outcome yet")
    lines = [f"mode {status.mode}, {status.evaluations} evaluations, twin error {error}"]
    if not status.actions:
        lines.append("no action in force")
    for a in status.actions:
        what = {"meter": f"metered to {a.rate_bps / 1e6:.1f} Mbit/s",
                "priority": f"re-marked to {a.service_class}",
                "reroute": "moved to " + " ".join(f"{d:x}" for d in a.path)}.get(
                    a.intent_kind, a.intent_kind)
        lines.append(f"  #{a.action_id} since {_clock(a.applied_unix_s)}"
                     f"{' (dry run)' if a.dry_run else ''}: {a.customer_id}'s traffic on "
                     f"{a.element} {what}, for {', '.join(a.for_customers)}")
    return "\n".join(lines)


def _scores(p) -> list[str]:
    return [f"      {k}: {p.scores_before[k]:.2f} -> {p.scores_after[k]:.2f}"
            for k in sorted(p.scores_after) if k in p.scores_before]


def _element(p) -> str:
    return (f"  {p.element}: utilisation {p.utilisation_before:.0%} -> "
            f"{p.utilisation_after:.0%}, loss {p.loss_before:.2%} -> {p.loss_after:.2%}, "
            f"queueing delay {p.delay_ms_before:.1f} -> {p.delay_ms_after:.1f} ms")


def show_what_if(reply) -> str:
    lines = [f"predicted by {reply.model}; assumed: {reply.assumption}"]
    quiet = 0
    for p in reply.elements:
        if max(p.utilisation_before, p.utilisation_after) < 0.05:
            quiet += 1   # nothing to see: --json has them all
            continue
        lines.append(_element(p))
        lines.extend(_scores(p))
    if quiet:
        lines.append(f"  ({quiet} more element(s) below 5 % before and after; --json lists "
                     "them)")
    return "\n".join(lines)


def show_admission(reply) -> str:
    lines = [("ADMITTED" if reply.admitted else "REFUSED") +
             (f" for {reply.customer_id}" if reply.customer_id else "") + f": {reply.reason}"]
    if reply.decision_seq:
        lines.append(f"  decision {reply.decision_seq} in `cemsctl decisions`")
    if reply.prediction.element:
        lines.append(_element(reply.prediction))
        lines.extend(_scores(reply.prediction))
    return "\n".join(lines)


def run(channel, args, as_json) -> str:
    stub = pb_grpc.PolicyServiceStub(channel)
    if args.command == "what-if":
        reply = stub.WhatIf(pb.WhatIfRequest(
            kind=args.kind, customer_id=args.customer, rate_bps=args.rate,
            service_class=args.service_class, service=args.service, element=args.around),
            timeout=args.timeout)
        return as_json(reply) if args.json else show_what_if(reply)
    if args.command == "admit":
        reply = stub.AdmitSession(pb.AdmitSessionRequest(
            service=args.service, rate_bps=args.rate, src_address=args.src,
            dst_address=args.dst), timeout=args.timeout)
        return as_json(reply) if args.json else show_admission(reply)
    if args.command == "decisions":
        reply = stub.ListDecisions(pb.ListDecisionsRequest(
            after_seq=args.after, limit=args.limit, customer_id=args.customer,
            element=args.element, kinds=args.kinds), timeout=args.timeout)
        return as_json(reply) if args.json else show_decisions(reply)
    if args.action == "mode":
        reply = stub.SetPolicyMode(pb.SetPolicyModeRequest(mode=args.mode),
                                   timeout=args.timeout)
    elif args.action == "revert":
        reply = stub.RevertAction(pb.RevertActionRequest(action_id=args.action_id),
                                  timeout=args.timeout)
    else:
        reply = stub.GetPolicy(pb.GetPolicyRequest(), timeout=args.timeout)
    return as_json(reply) if args.json else show_policy(reply)
