"""cemsctl commands of customer service management: customers, SLAs, SLSs, tokens (shell).

The channel carries the caller's credentials (client.channel: a token from --token-file,
$CEMS_TOKEN or $CEMS_TOKEN_FILE, or an mTLS certificate).
"""

import argparse
import datetime
import time

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from controller.csm.model import SEGMENTS

CLASSES = {"gold": pb.SERVICE_CLASS_GOLD, "silver": pb.SERVICE_CLASS_SILVER,
           "bronze": pb.SERVICE_CLASS_BRONZE}
CLASS_NAMES = {v: k for k, v in CLASSES.items()}
ROLES = {"domain-manager": pb.ROLE_DOMAIN_MANAGER, "customer": pb.ROLE_CUSTOMER,
         "peer-domain": pb.ROLE_PEER_DOMAIN, "probe": pb.ROLE_PROBE}
ROLE_NAMES = {v: k for k, v in ROLES.items()}


def parse_rate(text: str) -> int:
    """'8M', '2.5M', '500k', '1G' or bit/s -> bit/s."""
    scale = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1:].lower())
    try:
        value = float(text[:-1]) * scale if scale else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rate {text!r}: use bit/s or a k/M/G suffix, "
                                         "for example 8M") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"rate {text!r} must be positive")
    return int(value)


def parse_class_bounds(text: str) -> pb.ClassBounds:
    """'gold:2M:8M' -> ClassBounds."""
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in CLASSES:
        raise argparse.ArgumentTypeError(f"{text!r}: use CLASS:MIN:MAX with CLASS one of "
                                         f"{', '.join(CLASSES)}, for example gold:2M:8M")
    return pb.ClassBounds(service_class=CLASSES[parts[0]], min_bps=parse_rate(parts[1]),
                          max_bps=parse_rate(parts[2]))


def parse_access(text: str) -> tuple[int, int]:
    dpid, sep, port = text.partition(":")
    try:
        return int(dpid, 0), int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"access {text!r}: use DPID:PORT, for example 5:3 "
                                         "or 0x5:3") from None


def add_commands(sub) -> None:
    customer = sub.add_parser("customer", help="customers and their SLAs (domain manager)")
    csub = customer.add_subparsers(dest="action", required=True)
    create = csub.add_parser("create", help="a customer with its SLA")
    create.add_argument("customer_id")
    create.add_argument("--name", required=True)
    create.add_argument("--segment", default="residential",
                        choices=list(SEGMENTS))
    create.add_argument("--vip", action="store_true")
    create.add_argument("--access", type=parse_access, required=True, metavar="DPID:PORT")
    create.add_argument("--host", action="append", default=[], metavar="MAC")
    _sla_arguments(create)
    for name in ("show", "delete"):
        csub.add_parser(name).add_argument("customer_id")
    listing = csub.add_parser("list")
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--limit", type=int, default=0)

    sla = sub.add_parser("sla", help="show or change an SLA")
    ssub = sla.add_subparsers(dest="action", required=True)
    ssub.add_parser("show", help="an SLA (your own as a customer)").add_argument(
        "customer_id", nargs="?", default="")
    update = ssub.add_parser("update", help="replace a customer's SLA (domain manager)")
    update.add_argument("customer_id")
    _sla_arguments(update)

    sls = sub.add_parser("sls", help="show or change an SLS (class and bandwidth)")
    lsub = sls.add_subparsers(dest="action", required=True)
    lsub.add_parser("show").add_argument("customer_id", nargs="?", default="")
    change = lsub.add_parser("change", help="for example: cemsctl sls change gold 8M")
    change.add_argument("service_class", choices=list(CLASSES))
    change.add_argument("rate", type=parse_rate)
    change.add_argument("--customer", default="", help="whose SLS (default: your own)")

    report = sub.add_parser("report", help="a customer's report: hours, charges, availability, "
                                           "throughput against the SLA")
    report.add_argument("customer_id", nargs="?", default="", help="default: your own")
    report.add_argument("--start", type=float, default=0.0, metavar="UNIX_S",
                        help="period start (default: start of this month, UTC)")
    report.add_argument("--end", type=float, default=0.0, metavar="UNIX_S",
                        help="period end (default: now)")

    mirror = sub.add_parser("mirror", help="what is copied to the probe port (domain manager)")
    msub = mirror.add_subparsers(dest="action", required=True)
    msub.add_parser("list")
    mset = msub.add_parser("set", help="mirror a customer's traffic, one service of it, or a "
                                       "sample of it")
    mset.add_argument("customer_id")
    mset.add_argument("--service", default="", help="voice, iptv, video, web, bulk (default: "
                                                    "all traffic)")
    mset.add_argument("--sample", type=int, default=100, metavar="PERCENT",
                      help="share of the customer's host pairs (default 100)")
    mremove = msub.add_parser("remove")
    mremove.add_argument("customer_id")
    mremove.add_argument("--service", default="")

    stamp = sub.add_parser("stamp", help="STAMP tests run by probe agents (domain manager)")
    stsub = stamp.add_subparsers(dest="action", required=True)
    stsub.add_parser("list")
    start = stsub.add_parser("start", help="for example: cemsctl stamp start h1-agent 10.0.0.2")
    start.add_argument("sender", help="probe id of the sending agent")
    start.add_argument("reflector", help="ADDRESS[:PORT] of the reflector (port 862 if not given)")
    start.add_argument("--count", type=int, default=0, help="packets (default: until stopped)")
    start.add_argument("--interval", type=float, default=0.01, metavar="SECONDS")
    start.add_argument("--report-interval", type=float, default=1.0, metavar="SECONDS")
    start.add_argument("--id", default="", help="test id (default: chosen by the controller)")
    stsub.add_parser("stop").add_argument("test_id")

    token = sub.add_parser("token", help="bearer tokens: create, list, revoke (domain manager)")
    tsub = token.add_subparsers(dest="action", required=True)
    tcreate = tsub.add_parser("create")
    tcreate.add_argument("role", choices=list(ROLES))
    tcreate.add_argument("--customer", default="", help="for customer and peer-domain tokens")
    tcreate.add_argument("--probe", default="", help="for probe tokens: the probe's id")
    tcreate.add_argument("--expires-in", type=float, default=0.0, metavar="SECONDS",
                         help="the token stops working after this long (default: never)")
    tsub.add_parser("list")
    tsub.add_parser("revoke").add_argument("token_id")


def _sla_arguments(parser) -> None:
    parser.add_argument("--variant", required=True, choices=["gsb-business", "gsb-economy"])
    parser.add_argument("--class", dest="bounds", action="append", type=parse_class_bounds,
                        required=True, metavar="CLASS:MIN:MAX",
                        help="an allowed class and its bandwidth bounds (repeat)")
    parser.add_argument("--availability", type=float, default=0.999)
    parser.add_argument("--min-change-interval", type=float, default=60.0, metavar="SECONDS")


def _sla_from_args(args, customer_id: str) -> pb.Sla:
    return pb.Sla(customer_id=customer_id, variant=args.variant, bounds=args.bounds,
                  availability_target=args.availability,
                  min_change_interval_s=args.min_change_interval)


def _when(unix_s: float) -> str:
    return datetime.datetime.fromtimestamp(unix_s, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%S UTC")


def describe_sla(sla: pb.Sla) -> str:
    lines = [f"SLA of {sla.customer_id}: {sla.variant}, availability "
             f"{sla.availability_target:.3%}, one SLS change per {sla.min_change_interval_s:g} s"]
    for b in sla.bounds:
        lines.append(f"  {CLASS_NAMES[b.service_class]:<7} {b.min_bps / 1e6:g} to "
                     f"{b.max_bps / 1e6:g} Mbit/s")
    return "\n".join(lines)


def describe_sls(sls: pb.Sls) -> str:
    return (f"SLS of {sls.customer_id}: {CLASS_NAMES[sls.service_class]} at "
            f"{sls.rate_bps / 1e6:g} Mbit/s since {_when(sls.changed_unix_s)}")


def _maybe(reply, field: str, fmt: str) -> str:
    return fmt.format(getattr(reply, field)) if reply.HasField(field) else "unknown"


def describe_report(r: pb.GetReportResponse) -> str:
    lines = [f"Report of {r.customer_id} ({r.variant}), {_when(r.start_unix_s)} to "
             f"{_when(r.end_unix_s)}", describe_sls(r.current_sls),
             f"  {'class':<7} {'hours':>8} {'charge':>8}"]
    lines += [f"  {CLASS_NAMES[c.service_class]:<7} {c.hours:>8.2f} {c.charge:>8.2f}"
              for c in r.classes]
    met = "" if not r.HasField("availability_met") else (" (met)" if r.availability_met
                                                         else " (NOT met)")
    lines += [f"  total charge {r.total_charge:.2f}",
              f"availability {_maybe(r, 'availability', '{:.4%}')} against "
              f"{r.availability_target:.3%}{met}",
              f"throughput {_maybe(r, 'throughput_bps', '{:,.0f} bit/s')}, policed by the SLS "
              f"{_maybe(r, 'policed_ratio', '{:.2%}')}"
              + (f" (since {_when(r.throughput_since_unix_s)})"
                 if r.HasField("throughput_since_unix_s") else ""),
              f"delay {_maybe(r, 'delay_ms', '{:.1f} ms')} (target "
              f"{_maybe(r, 'target_delay_ms', '{:g} ms')}), jitter "
              f"{_maybe(r, 'jitter_ms', '{:.1f} ms')} (target "
              f"{_maybe(r, 'target_jitter_ms', '{:g} ms')}), loss "
              f"{_maybe(r, 'loss_ratio', '{:.3%}')} (target "
              f"{_maybe(r, 'target_loss_ratio', '{:g}')}); targets: {r.target_source}"
              + (f"; delay from {r.delay_source}" if r.delay_source else "")
              + (f"; measured since {_when(r.measured_since_unix_s)}"
                 if r.HasField("measured_since_unix_s") else "")]
    for q in r.quality:
        bound = " (an upper bound)" if q.bound == "upper" else ""
        lines.append(f"{q.service} quality: mean {q.mean:.2f}{bound}, worst {q.worst:.2f}, "
                     f"5th percentile {q.p5:.2f} {q.scale} over {q.intervals} intervals"
                     f"{f' ({q.unknown} unknown)' if q.unknown else ''}; "
                     f"{q.time_below_target_s:.0f} s below the target {q.target:g} "
                     f"({q.target_source}); {q.model}")
    lines += [f"NOT MET: {n}" for n in r.not_met]
    lines += [f"unknown: {u}" for u in r.unknown]
    return "\n".join(lines)


def describe_mirror_rule(r) -> str:
    sample = f", {r.sample_percent}% of host pairs" if r.sample_percent < 100 else ""
    return f"{r.service or 'all'} traffic of {r.customer_id}{sample}"


def describe_stamp_test(t) -> str:
    s = t.spec
    count = f"{s.count} packets" if s.count else "until stopped"
    text = (f"{s.test_id}: {s.sender_probe_id} -> {s.reflector_address}:{s.reflector_port}, "
            f"{count} every {s.interval_s * 1000:g} ms, {t.state}")
    if t.HasField("latest"):
        k = t.latest.kpis
        text += (f"; last {t.latest.interval_end_unix_s - t.latest.interval_start_unix_s:.1f} s: "
                 f"rtt {k.get('stamp_rtt_ms', float('nan')):.3f} ms, jitter "
                 f"{k.get('stamp_jitter_ms', float('nan')):.3f} ms, lost "
                 f"{k.get('stamp_lost', 0):.0f} of {k.get('stamp_sent', 0):.0f}")
    return text


def run(channel, args, as_json) -> str:
    """Run one CSM command; returns what to print."""
    sla_stub, sls_stub = pb_grpc.SlaServiceStub(channel), pb_grpc.SlsServiceStub(channel)
    call = {"timeout": args.timeout}
    command, action = args.command, getattr(args, "action", "")
    if command == "customer" and action == "create":
        dpid, port = args.access
        reply = sla_stub.CreateCustomer(pb.CreateCustomerRequest(
            customer=pb.Customer(customer_id=args.customer_id, name=args.name,
                                 segment=args.segment, vip=args.vip, access_dpid=dpid,
                                 access_port=port, hosts=args.host),
            sla=_sla_from_args(args, args.customer_id)), **call)
        text = f"created {args.customer_id}\n{describe_sla(reply.sla)}\n{describe_sls(reply.sls)}"
    elif command == "customer" and action == "show":
        reply = sla_stub.GetCustomer(pb.GetCustomerRequest(customer_id=args.customer_id), **call)
        c = reply.customer
        text = (f"{c.customer_id}: {c.name} ({c.segment}{', VIP' if c.vip else ''}), access "
                f"{c.access_dpid:016x}:{c.access_port}, hosts {', '.join(c.hosts) or '-'}\n"
                f"{describe_sla(reply.sla)}\n{describe_sls(reply.sls)}")
    elif command == "customer" and action == "list":
        reply = sla_stub.ListCustomers(pb.ListCustomersRequest(offset=args.offset,
                                                               limit=args.limit), **call)
        text = "\n".join([f"{reply.total} customers"] + [
            f"  {c.customer_id:<12} {c.name:<24} {c.segment:<12} {c.access_dpid:016x}:"
            f"{c.access_port}" for c in reply.customers])
    elif command == "customer" and action == "delete":
        reply = sla_stub.DeleteCustomer(pb.DeleteCustomerRequest(customer_id=args.customer_id),
                                        **call)
        text = f"deleted {args.customer_id}"
    elif command == "sla" and action == "show":
        reply = sls_stub.GetSla(pb.GetSlaRequest(customer_id=args.customer_id), **call)
        text = describe_sla(reply.sla)
    elif command == "sla" and action == "update":
        reply = sla_stub.UpdateSla(pb.UpdateSlaRequest(
            sla=_sla_from_args(args, args.customer_id)), **call)
        text = f"{describe_sla(reply.sla)}\n{describe_sls(reply.sls)}"
    elif command == "sls" and action == "show":
        reply = sls_stub.GetSls(pb.GetSlsRequest(customer_id=args.customer_id), **call)
        text = describe_sls(reply.sls)
    elif command == "sls" and action == "change":
        reply = sls_stub.ChangeSls(pb.ChangeSlsRequest(
            customer_id=args.customer, service_class=CLASSES[args.service_class],
            rate_bps=args.rate), **call)
        text = (f"{describe_sls(reply.sls)}\nnext change allowed from "
                f"{_when(reply.next_change_allowed_unix_s)}")
    elif command == "report":
        reply = pb_grpc.ReportServiceStub(channel).GetReport(pb.GetReportRequest(
            customer_id=args.customer_id, start_unix_s=args.start, end_unix_s=args.end), **call)
        text = describe_report(reply)
    elif command == "mirror":
        from cems.v1 import probe_pb2, probe_pb2_grpc  # pylint: disable=import-outside-toplevel
        stub = probe_pb2_grpc.MirrorServiceStub(channel)
        if action == "set":
            reply = stub.SetMirrorRule(probe_pb2.MirrorRule(
                customer_id=args.customer_id, service=args.service,
                sample_percent=args.sample), **call)
            text = f"mirroring {describe_mirror_rule(reply)}"
        elif action == "remove":
            reply = stub.RemoveMirrorRule(probe_pb2.RemoveMirrorRuleRequest(
                customer_id=args.customer_id, service=args.service), **call)
            text = f"no longer mirroring {args.service or 'all'} traffic of {args.customer_id}"
        else:
            reply = stub.ListMirrorRules(probe_pb2.ListMirrorRulesRequest(), **call)
            where = (f"probe port {reply.probe_dpid:016x}:{reply.probe_port}" if reply.probe_dpid
                     else "no probe port configured (mirror.probe)")
            text = "\n".join([f"{len(reply.rules)} mirror rules, to {where}"] + [
                f"  {describe_mirror_rule(r)} (from {r.origin})" for r in reply.rules])
    elif command == "stamp":
        from cems.v1 import probe_pb2, probe_pb2_grpc  # pylint: disable=import-outside-toplevel
        stub = probe_pb2_grpc.ActiveTestServiceStub(channel)
        if action == "start":
            host, _, port = args.reflector.partition(":")
            reply = stub.StartStampTest(probe_pb2.StampTestSpec(
                test_id=args.id, sender_probe_id=args.sender, reflector_address=host,
                reflector_port=int(port) if port.isdigit() else 0, count=args.count,
                interval_s=args.interval, report_interval_s=args.report_interval), **call)
            text = f"started {describe_stamp_test(reply)}"
        elif action == "stop":
            reply = stub.StopStampTest(probe_pb2.StopStampTestRequest(test_id=args.test_id),
                                       **call)
            text = describe_stamp_test(reply)
        else:
            reply = stub.ListStampTests(probe_pb2.ListStampTestsRequest(), **call)
            text = "\n".join([f"{len(reply.tests)} STAMP tests"] +
                              [f"  {describe_stamp_test(t)}" for t in reply.tests])
    elif command == "token" and action == "create":
        expires = time.time() + args.expires_in if args.expires_in > 0 else 0.0
        reply = sla_stub.CreateToken(pb.CreateTokenRequest(
            role=ROLES[args.role], customer_id=args.customer, probe_id=args.probe,
            expires_unix_s=expires), **call)
        text = f"token id {reply.token_id}; the token is shown only now:\n{reply.token}"
    elif command == "token" and action == "list":
        reply = sla_stub.ListTokens(pb.ListTokensRequest(), **call)
        text = "\n".join([f"{len(reply.tokens)} tokens"] + [
            f"  {t.token_id}  {ROLE_NAMES.get(t.role, t.role)}"
            f"{' ' + (t.customer_id or t.probe_id) if t.customer_id or t.probe_id else ''}"
            f"  created {_when(t.created_unix_s)}"
            f"{'  expires ' + _when(t.expires_unix_s) if t.expires_unix_s else ''}"
            for t in reply.tokens])
    elif command == "token" and action == "revoke":
        reply = sla_stub.RevokeToken(pb.RevokeTokenRequest(token_id=args.token_id), **call)
        text = f"token {args.token_id} revoked"
    else:
        raise ValueError(f"unknown command {command} {action}")
    return as_json(reply) if args.json else text
