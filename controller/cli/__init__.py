"""cemsctl: the command-line gRPC client of cems (shell).

    cemsctl [--server HOST:PORT] [--json] status|topology|flows|ports|meters|kpis|watch
    cemsctl customer|sla|sls|token|report|mirror|stamp ...

Every command needs a credential: a bearer token from --token-file, $CEMS_TOKEN or the file
named by $CEMS_TOKEN_FILE, or an mTLS client certificate (--tls-cert, --tls-key).
"""

import argparse
import math
import sys
import time

import grpc
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc
from google.protobuf import json_format

from client.channel import TokenError, add_arguments as add_client_arguments, connect, \
    read_token
from controller.cli import csm as cli_csm
from controller.cluster.partitions import ranges
from controller.cli import policy as cli_policy


def _table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    return "\n".join(lines)


def _bits(bytes_per_second: float) -> str:
    bps = bytes_per_second * 8
    for unit, scale in (("Gbit/s", 1e9), ("Mbit/s", 1e6), ("kbit/s", 1e3)):
        if bps >= scale:
            return f"{bps / scale:.2f} {unit}"
    return f"{bps:.0f} bit/s"


def _dpid(dpid: int) -> str:
    return f"{dpid:016x}"


def _as_json(message) -> str:
    return json_format.MessageToJson(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def show_status(stub, args) -> str:
    r = stub.GetStatus(pb.GetStatusRequest(), timeout=args.timeout)
    if args.json:
        return _as_json(r)
    rows = [
        ["health", "SERVING" if r.serving else "NOT SERVING"],
        ["version", r.version], ["runtime", r.openflow_runtime], ["uptime", f"{r.uptime_s:.0f} s"],
        ["switches connected", r.switches_connected], ["switches ready", r.switches_ready],
        ["links", r.links], ["hosts", r.hosts],
        ["flows", r.flows], ["openflow errors", r.openflow_errors_total],
        ["packet-ins", f"{r.packet_in_total} ({r.packet_in_malformed_total} malformed)"],
        ["handler errors", r.handler_errors_total], ["send errors", r.send_errors_total],
        ["poll interval", f"{r.poll_interval_s:g} s"]]
    if r.store:
        rows.append(["store", r.store])
    if not r.master:
        rows.append(["role", "follower: another instance is the cluster's leader, whose "
                     "policy engine acts"])
    if r.instance:
        rows.append(["instance", f"{r.instance} (lease renewed {r.lease_age_s:.1f} s ago)"])
        rows += [["cluster", f"{m.instance} at {m.about}" + (" (leader)" if m.master else "")
                  + f": master of {len(m.switches)} switches"
                  + (f" ({', '.join(f'{d:016x}' for d in m.switches)})" if m.switches else "")
                  + (f"; quality of {len(m.partitions)} of {m.partition_count} customer "
                     f"partitions" + (f" ({ranges(m.partitions)})" if m.partitions else "")
                     if m.partition_count else "")]
                 for m in r.cluster]
    if r.HasField("stream"):
        m = r.stream
        rows.append(["records stream", f"{m.url} consumer {m.consumer}: "
                     + (f"{m.pending} message(s) behind, {m.ack_pending} unacknowledged"
                        if m.reading else "NOT READING")
                     + f"; {m.taken} taken ({m.records} records"
                     + (f", {m.records_elsewhere} of other instances' partitions left to them"
                        if m.records_elsewhere else "")
                     + (f", {m.records_replayed} replayed for partitions taken over"
                        if m.records_replayed else "")
                     + (f", {m.replay_failures} replays FAILED" if m.replay_failures else "")
                     + f"), {m.rejected} rejected"])
    rows += [["problem", problem] for problem in r.problems]
    return _table(["field", "value"], rows)


def show_topology(stub, args) -> str:
    r = stub.GetTopology(pb.GetTopologyRequest(), timeout=args.timeout)
    if args.json:
        return _as_json(r)
    switches = _table(["dpid", "connected", "address", "ports"], [
        [_dpid(s.dpid), "yes" if s.connected else "no", s.address,
         " ".join(f"{p.port_no}:{p.name}{'' if p.up else '(down)'}" for p in s.ports)]
        for s in r.switches])
    links = _table(["from", "to"], [
        [f"{_dpid(l.src_dpid)}:{l.src_port}", f"{_dpid(l.dst_dpid)}:{l.dst_port}"]
        for l in r.links])
    hosts = _table(["mac", "ipv4", "switch", "port"], [
        [h.mac, ",".join(h.ipv4), _dpid(h.dpid), h.port_no] for h in r.hosts])
    return (f"Switches ({len(r.switches)})\n{switches}\n\nLinks ({len(r.links)})\n{links}\n\n"
            f"Hosts ({len(r.hosts)})\n{hosts}")


def _flow_rows(flows) -> list[list]:
    return [[_dpid(f.dpid), f.priority, f.component, f.match, f.actions, f.packet_count,
             f.byte_count, _bits(f.bytes_per_second) if f.rate_known else "-",
             f"{f.packets_per_second:.1f}" if f.rate_known else "-"] for f in flows]


_FLOW_HEADERS = ["switch", "prio", "component", "match", "actions", "packets", "bytes", "rate",
                 "pkt/s"]


def _for_switch(request, args):
    """Set the optional dpid filter of a List*Request from --dpid."""
    if args.dpid is not None:
        request.dpid = args.dpid
    return request


def show_flows(stub, args) -> str:
    request = pb.ListFlowsRequest(component=args.component or "", limit=args.limit)
    r = stub.ListFlows(_for_switch(request, args), timeout=args.timeout)
    if args.json:
        return _as_json(r)
    flows = [f for f in r.flows if not args.active or f.bytes_per_second > 0]
    return _table(_FLOW_HEADERS, _flow_rows(flows))


def show_ports(stub, args) -> str:
    r = stub.ListPorts(_for_switch(pb.ListPortsRequest(), args), timeout=args.timeout)
    if args.json:
        return _as_json(r)
    return _table(["switch", "port", "rx", "tx", "rx pkt/s", "tx pkt/s", "drops/s", "errors/s",
                   "rx bytes", "tx bytes"], [
        [_dpid(p.dpid), p.port_no, _bits(p.rx_bytes_per_second), _bits(p.tx_bytes_per_second),
         f"{p.rx_packets_per_second:.1f}", f"{p.tx_packets_per_second:.1f}",
         f"{p.rx_dropped_per_second + p.tx_dropped_per_second:.1f}",
         f"{p.rx_errors_per_second + p.tx_errors_per_second:.1f}", p.rx_bytes, p.tx_bytes]
        for p in r.ports])


def show_meters(stub, args) -> str:
    r = stub.ListMeters(_for_switch(pb.ListMetersRequest(), args), timeout=args.timeout)
    if args.json:
        return _as_json(r)
    return _table(["switch", "meter", "configured", "flows", "in rate", "in pkt/s",
                   "band drops/s", "packets in", "band packets"], [
        [_dpid(m.dpid), m.meter_id, _bits(m.rate_kbps * 125) if m.rate_kbps else "-",
         m.flow_count, _bits(m.bytes_in_per_second), f"{m.packets_in_per_second:.1f}",
         f"{m.band_packets_per_second:.1f}", m.packets_in, m.band_packets] for m in r.meters])


def show_kpis(channel, args) -> str:
    from cems.v1 import probe_pb2, probe_pb2_grpc  # pylint: disable=import-outside-toplevel
    reply = probe_pb2_grpc.ProbeServiceStub(channel).ListKpis(probe_pb2.ListKpisRequest(
        customer_id=args.customer or "", service=args.service or "", limit=args.limit,
        include_ended=args.ended, page_token=args.page), timeout=args.timeout)
    if args.json:
        return _as_json(reply)
    keys = ("rtp_loss_ratio", "rtp_jitter_ms", "ts_cc_errors", "mdi_df_ms", "tcp_rtt_ms",
            "tcp_retransmissions", "stamp_rtt_ms", "stamp_jitter_ms", "stamp_loss_ratio")

    def kpi_text(record):
        return " ".join(f"{k}={record.kpis[k]:.4g}" for k in keys if k in record.kpis)
    rows = [[r.customer_id or "-", r.service + (f" ({r.service_method})" if r.service_method
                                                else ""),
             r.application or "-", r.kind, f"{r.src}:{r.sport}", f"{r.dst}:{r.dport}",
             _bits(r.throughput_bps / 8), f"{r.age_s:.0f} s", kpi_text(r)]
            for r in reply.records]
    probes = "".join(
        f"\nprobe {h.probe_id} ({h.source}"
        f"{', ' + h.hot_path + ' hot path' if h.hot_path else ''}): frames {h.frames}, "
        f"malformed {h.malformed}, "
        f"kernel dropped {h.kernel_dropped} of {h.kernel_received + h.kernel_dropped}, "
        f"flows {h.flows_tracked} (evicted {h.flows_evicted}), "
        f"export dropped {h.export_dropped}" for h in reply.probes)
    more = (f"\n{len(reply.records)} of {reply.total}; the next page: --page "
            f"{reply.next_page_token}" if reply.next_page_token else "")
    return (_table(["customer", "service (by)", "application", "kind", "from", "to", "rate",
                    "age", "KPIs"], rows)
            + more
            + f"\nrecords accepted {reply.accepted_total}, rejected {reply.rejected_total}, "
              f"dropped by probes {reply.probe_dropped_total}" + probes)


def _score(value: float, scale: str = "MOS") -> str:
    if value != value:  # NaN
        return "-"
    return f"{value:.2f}" if scale == "MOS" else f"{value:.0%}"


def describe_quality(q) -> str:
    if not q.known:
        return "unknown: needs " + ", ".join(q.missing)
    text = f"{q.scale} {_score(q.score, q.scale)} ({q.model})"
    if q.bound:
        text += f", an {q.bound} bound: not measured: {', '.join(q.missing)}"
    if q.extrapolated:
        text += f", extrapolated: {', '.join(q.extrapolated)}"
    return text


def run_qoe(channel, args) -> str:
    from cems.v1 import qoe_pb2, qoe_pb2_grpc  # pylint: disable=import-outside-toplevel
    stub = qoe_pb2_grpc.QoeServiceStub(channel)
    if args.command == "findings":
        reply = stub.ListFindings(qoe_pb2.ListFindingsRequest(), timeout=args.timeout)
        if args.json:
            return _as_json(reply)
        if not reply.findings:
            return "no findings: no degraded customer, or nothing they share"
        return "\n".join(
            f"{f.element} (score {f.score:.2f}): {', '.join(f.affected_customers)} "
            f"[{', '.join(f.services)}]; " + "; ".join(f.evidence) for f in reply.findings)
    if args.command == "zoom":
        reply = stub.RequestZoom(qoe_pb2.ZoomRequest(customer_id=args.customer,
                                                     reason=args.reason, seconds=args.seconds),
                                 timeout=args.timeout)
        if args.json:
            return _as_json(reply)
        z = reply.zoom
        return (f"zoomed in on {z.customer_id}: {z.reason}" + (f"; mirroring {z.mirror}"
                if z.mirror else "") + (f"; STAMP test {z.stamp_test_id}" if z.stamp_test_id
                                        else ""))
    if args.customer:
        reply = stub.GetExperience(qoe_pb2.GetExperienceRequest(customer_id=args.customer),
                                   timeout=args.timeout)
        if args.json:
            return _as_json(reply)
        lines = [f"Experience of {reply.customer_id} ({reply.service_class} at "
                 f"{reply.sls_rate_bps / 1e6:g} Mbit/s): meter passes "
                 f"{_bits(reply.meter_passed_bps / 8) if reply.meter_passed_bps == reply.meter_passed_bps else '-'}"
                 f", policed {_score(reply.meter_policed_ratio, 'ratio')}, one-way delay "
                 + (f"{reply.one_way_delay_ms:.1f} ms ({reply.delay_source})"
                    if reply.one_way_delay_ms == reply.one_way_delay_ms else "not measured")]
        lines += [f"  zoomed in: {z}" for z in reply.zoom]
        for e in reply.services:
            ten = next((w for w in e.windows if w.window_s == 10.0), None)
            lines.append(f"  {e.service}: {e.status} since {_clock(e.status_since_unix_s)} "
                         f"({e.status_reason}); 10 s mean {_score(ten.mean if ten else math.nan, e.latest.scale or 'MOS')}"
                         f" against {e.target:g} ({e.target_source})")
            lines.append(f"    latest: {describe_quality(e.latest)}")
        return "\n".join(lines)
    reply = stub.ListExperience(qoe_pb2.ListExperienceRequest(
        service=args.service, status=args.status, segment=args.segment,
        service_class=args.service_class, limit=args.worst or 0), timeout=args.timeout)
    if args.json:
        return _as_json(reply)
    rows = []
    for e in reply.experience:
        ten = next((w for w in e.windows if w.window_s == 10.0), None)
        rows.append([e.customer_id, e.service, e.service_class or "-", e.status,
                     _score(ten.mean if ten else math.nan, e.latest.scale or "MOS"),
                     f"{e.target:g}", e.latest.bound or "",
                     e.latest.model.split(",")[0] if e.latest.known else
                     "needs " + ", ".join(e.latest.missing)[:60]])
    return (_table(["customer", "service", "class", "status", "10 s", "target", "bound",
                    "model"], rows) + f"\n{len(rows)} of {reply.total}")


def _clock(unix_s: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(unix_s))


def run_host(channel, args) -> str:
    if args.action == "forget":
        pb_grpc.NetworkServiceStub(channel).ForgetHost(pb.ForgetHostRequest(mac=args.mac),
                                                       timeout=args.timeout)
        return f"host {args.mac.lower()} forgotten"
    reply = pb_grpc.StatusServiceStub(channel).GetTopology(pb.GetTopologyRequest(),
                                                           timeout=args.timeout)
    if args.json:
        return _as_json(pb.GetTopologyResponse(hosts=reply.hosts))
    return _table(["mac", "ipv4", "switch", "port"], [
        [h.mac, ",".join(h.ipv4), _dpid(h.dpid), h.port_no] for h in reply.hosts])


def watch(stub, args, out) -> None:
    kinds = [pb.EventKind.Value("EVENT_KIND_" + k.upper()) for k in args.kinds or []]
    stream = stub.WatchEvents(pb.WatchEventsRequest(kinds=kinds))
    count = 0
    for event in stream:
        if args.json:
            out.write(json_format.MessageToJson(event, preserving_proto_field_name=True,
                                                indent=None) + "\n")
        else:
            out.write(_describe(event) + "\n")
        out.flush()
        count += 1
        if args.count and count >= args.count:
            stream.cancel()
            return


def _describe(event) -> str:
    body = event.WhichOneof("body")
    if body == "switch":
        s = event.switch
        return f"switch {_dpid(s.dpid)} {'up' if s.up else 'down'} {s.address}"
    if body == "link":
        l = event.link.link
        return (f"link {_dpid(l.src_dpid)}:{l.src_port} -> {_dpid(l.dst_dpid)}:{l.dst_port} "
                f"{'up' if event.link.up else 'down'}")
    if body == "host":
        h = event.host.host
        return f"host {h.mac} {','.join(h.ipv4)} at {_dpid(h.dpid)}:{h.port_no}"
    if body == "port":
        p = event.port.port
        return f"port {_dpid(p.dpid)}:{p.port_no} {p.name} {'up' if p.up else 'down'}"
    if body == "flow_rates":
        active = [f for f in event.flow_rates.flows if f.bytes_per_second > 0]
        lines = [f"flow rates {_dpid(event.flow_rates.dpid)}: {len(active)} active of "
                 f"{len(event.flow_rates.flows)}"]
        lines += [f"  {f.match} -> {f.actions}: {_bits(f.bytes_per_second)}" for f in active]
        return "\n".join(lines)
    if body == "kpi":
        return "\n".join(
            f"kpi {r.customer_id or '-'} {r.service} {r.kind} {r.src}:{r.sport} -> "
            f"{r.dst}:{r.dport} {_bits(r.throughput_bps / 8)} "
            + " ".join(f"{k}={v:.4g}" for k, v in sorted(r.kpis.items()))
            for r in event.kpi.records)
    return str(event)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cemsctl", description="Query a cems controller.")
    parser.add_argument("--server", default="127.0.0.1:50051", help="gRPC address of cems")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)  # prefer the file
    add_client_arguments(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("status", help="controller summary")
    sub.add_parser("topology", help="switches, links and hosts")
    flows = sub.add_parser("flows", help="cems flows with their rates")
    flows.add_argument("--dpid", type=lambda v: int(v, 0), help="only this switch")
    flows.add_argument("--component", help="control, forwarding, ...")
    flows.add_argument("--limit", type=int, default=0)
    flows.add_argument("--active", action="store_true", help="only flows with traffic now")
    ports = sub.add_parser("ports", help="port counters and rates")
    ports.add_argument("--dpid", type=lambda v: int(v, 0), help="only this switch")
    kpis = sub.add_parser("kpis", help="latest probe KPIs per flow, with customer and service")
    kpis.add_argument("--customer", help="only this customer")
    kpis.add_argument("--service", help="voice, iptv, video, web, bulk, unknown")
    kpis.add_argument("--limit", type=int, default=0, help="records per page (default 1000)")
    kpis.add_argument("--page", default="", help="the page a previous answer named")
    kpis.add_argument("--ended", action="store_true",
                      help="also flows whose latest record is older than kpi.max_age_s")
    qoe = sub.add_parser("qoe", help="experience per customer and service, worst first")
    qoe.add_argument("--customer", help="one customer, in detail")
    qoe.add_argument("--worst", type=int, default=0, metavar="N", help="only the N worst")
    qoe.add_argument("--service", default="", help="voice, iptv, video, web, bulk")
    qoe.add_argument("--status", default="", choices=["", "ok", "degraded", "unknown"])
    qoe.add_argument("--segment", default="")
    qoe.add_argument("--class", dest="service_class", default="",
                     choices=["", "gold", "silver", "bronze"])
    sub.add_parser("findings", help="root-cause findings: suspected elements and scope")
    zoom = sub.add_parser("zoom", help="look closer at a customer for a while")
    zoom.add_argument("customer")
    zoom.add_argument("--seconds", type=float, default=0.0, help="default 120")
    zoom.add_argument("--reason", default="")
    host = sub.add_parser("host", help="hosts the controller learned; forget a mistaken one")
    hsub = host.add_subparsers(dest="action", required=True)
    hsub.add_parser("list")
    hsub.add_parser("forget", help="it is learned again, where it is, when it next sends"
                    ).add_argument("mac")
    meters = sub.add_parser("meters", help="meter counters and rates")
    meters.add_argument("--dpid", type=lambda v: int(v, 0), help="only this switch")
    watch_parser = sub.add_parser("watch", help="stream live events")
    watch_parser.add_argument("--kind", dest="kinds", action="append",
                              choices=["switch", "link", "host", "port", "flow_rates", "kpi"],
                              help="only these kinds (repeatable)")
    watch_parser.add_argument("--count", type=int, default=0, help="stop after N events")
    cli_csm.add_commands(sub)
    cli_policy.add_commands(sub)
    _json_anywhere(parser)
    return parser


def _json_anywhere(parser: argparse.ArgumentParser) -> None:
    """--json is accepted after the command as well (`cemsctl qoe --json`)."""
    for action in parser._actions:  # pylint: disable=protected-access
        if isinstance(action, argparse._SubParsersAction):  # pylint: disable=protected-access
            for command in action.choices.values():
                if "--json" not in command._option_string_actions:  # pylint: disable=protected-access
                    command.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                                         help="print JSON for scripts")
                _json_anywhere(command)


def _channel(args):
    return connect(args.server, read_token(args.token, args.token_file), args.tls_ca,
                   args.tls_cert, args.tls_key)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        channel = _channel(args)
    except (TokenError, OSError) as err:
        print(f"cemsctl: {err}", file=sys.stderr)
        return 2
    with channel:
        stub = pb_grpc.StatusServiceStub(channel)
        try:
            if args.command == "watch":
                watch(stub, args, sys.stdout)
                return 0
            if args.command == "kpis":
                print(show_kpis(channel, args))
                return 0
            if args.command in ("customer", "sla", "sls", "token", "report", "mirror", "stamp"):
                print(cli_csm.run(channel, args, _as_json))
                return 0
            if args.command == "host":
                print(run_host(channel, args))
                return 0
            if args.command in ("qoe", "findings", "zoom"):
                print(run_qoe(channel, args))
                return 0
            if args.command in cli_policy.COMMANDS:
                print(cli_policy.run(channel, args, _as_json))
                return 0
            show = {"status": show_status, "topology": show_topology, "flows": show_flows,
                    "ports": show_ports, "meters": show_meters}[args.command]
            print(show(stub, args))
        except grpc.RpcError as err:
            print(f"cemsctl: {args.command} failed: {err.code().name}: {err.details()}",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
