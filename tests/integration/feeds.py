"""What several integration tests feed a running controller: customers with tokens, and
probe records of a lossy call over the controller's real gRPC ExportRecords."""

import threading
import time

from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc
from cems.v1 import probe_pb2, probe_pb2_grpc

from client.channel import connect

M = 1_000_000


def create_customers(controller, switch, hosts: dict) -> dict[str, str]:
    """{customer id: Mininet host} -> {customer id: its token}: each on the switch port of its
    host, gsb-economy with bronze 2..4 and gold 2..8 Mbit/s, one SLS change a second."""
    tokens = {}
    channel = controller.channel()
    try:
        stub = pb_grpc.SlaServiceStub(channel)
        for customer_id, host in hosts.items():
            port = switch.ports[host.defaultIntf().link.intf2]
            stub.CreateCustomer(pb.CreateCustomerRequest(
                customer=pb.Customer(customer_id=customer_id, name=customer_id.title(),
                                     segment="soho", access_dpid=int(switch.dpid, 16),
                                     access_port=port, hosts=[host.MAC()]),
                sla=pb.Sla(customer_id=customer_id, variant="gsb-economy",
                           min_change_interval_s=1,
                           bounds=[pb.ClassBounds(service_class=pb.SERVICE_CLASS_BRONZE,
                                                  min_bps=2 * M, max_bps=4 * M),
                                   pb.ClassBounds(service_class=pb.SERVICE_CLASS_GOLD,
                                                  min_bps=2 * M, max_bps=8 * M)])))
            tokens[customer_id] = stub.CreateToken(pb.CreateTokenRequest(
                role=pb.ROLE_CUSTOMER, customer_id=customer_id)).token
    finally:
        channel.close()
    return tokens


class VoiceFeed:
    """RTP records of a call from `src` to `dst`, as a probe would export them once a second
    with its health (10 % loss: the call is degraded), over the controller's real
    ExportRecords."""

    def __init__(self, address: str, token: str, src: str, dst: str):
        self.channel = connect(address, token)
        self.export = probe_pb2_grpc.ProbeServiceStub(self.channel).ExportRecords
        self.src, self.dst = src, dst
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.sent = 0

    def _run(self):
        while not self.stop.is_set():
            now = time.time()
            record = probe_pb2.FlowRecord(
                src=self.src, dst=self.dst, proto=17, sport=40000, dport=5004, kind="rtp",
                interval_start_unix_s=now - 1, interval_end_unix_s=now, packets=50,
                bytes=10_000, throughput_bps=80_000, dscp=46, kpis={
                    "rtp_loss_ratio": 0.10, "rtp_jitter_max_ms": 2.0, "rtp_jitter_ms": 1.0,
                    "rtp_payload_type": 0.0, "rtp_mean_burst_packets": 1.0,
                    "rtp_expected": 50.0, "rtp_lost": 5.0})
            health = probe_pb2.ProbeHealth(time_unix_s=now, source="ring:feed",
                                           frames=50 * (self.sent + 1),
                                           kernel_received=50 * (self.sent + 1),
                                           flows_tracked=1, hot_path="compiled")
            self.export(iter([probe_pb2.ExportRecordsRequest(records=[record],
                                                              health=health)]), timeout=5)
            self.sent += 1
            self.stop.wait(1.0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        self.channel.close()


