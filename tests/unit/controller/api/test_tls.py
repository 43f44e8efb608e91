"""gRPC over TLS and mTLS with certificates made by openssl for the test."""

import subprocess

import grpc
import pytest
from cems.v1 import customer_pb2 as pb
from cems.v1 import customer_pb2_grpc as pb_grpc

from controller import cli
from controller.api.server import serve_grpc, server_credentials
from controller.config import Address
from controller.csm.model import ClassBounds, Customer, ServiceClass, Sla
from controller.csm.rules import initial_sls
from controller.csm.store import CsmStore
from controller.monitor.kpis import KpiStore
from controller.state import PublishedState
from controller.store import Store


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def issue(directory, name: str, common_name: str, ext: str = "") -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={common_name}",
            cwd=directory)
    extra = []
    if ext:
        (directory / f"{name}.ext").write_text(ext)
        extra = ["-extfile", f"{name}.ext"]
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *extra, cwd=directory)


@pytest.fixture
def tls_server(tmp_path):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj",
            "/CN=cems-test-ca", cwd=tmp_path)
    issue(tmp_path, "server", "cems", "subjectAltName=IP:127.0.0.1\n")
    issue(tmp_path, "alice", "customer:alice")
    issue(tmp_path, "cpe", "probe:cpe-1")
    store = Store(str(tmp_path / "cems.sqlite"))
    csm = CsmStore(store)
    sla = Sla("alice", "gsb-business", {ServiceClass.SILVER: ClassBounds(1_000_000, 5_000_000)})
    csm.create_customer(Customer("alice", "Alice", access_dpid=1, access_port=1), sla,
                        initial_sls(sla, 0.0), lambda committed: None)
    credentials = server_credentials(str(tmp_path / "server.pem"), str(tmp_path / "server.key"),
                                     str(tmp_path / "ca.pem"))
    kpis = KpiStore()
    server, port = serve_grpc(PublishedState(1.0, "os_ken"), Address("127.0.0.1", 0), csm=csm,
                              credentials=credentials, kpis=kpis)
    yield tmp_path, f"127.0.0.1:{port}", kpis
    server.stop(0)
    store.close()


def test_mtls_client_certificate_names_the_principal(tls_server, capsys):
    certs, address, _ = tls_server
    code = cli.main(["--server", address, "--tls-ca", str(certs / "ca.pem"), "--tls-cert",
                     str(certs / "alice.pem"), "--tls-key", str(certs / "alice.key"), "sls",
                     "show"])
    assert code == 0 and "SLS of alice: silver at 1 Mbit/s" in capsys.readouterr().out
    code = cli.main(["--server", address, "--tls-ca", str(certs / "ca.pem"), "--tls-cert",
                     str(certs / "alice.pem"), "--tls-key", str(certs / "alice.key"), "customer",
                     "list"])
    assert code == 1 and "PERMISSION_DENIED" in capsys.readouterr().err


def test_no_client_certificate_or_plaintext_is_refused(tls_server):
    certs, address, _ = tls_server
    no_client_cert = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    for channel in (grpc.secure_channel(address, no_client_cert), grpc.insecure_channel(address)):
        with channel:
            with pytest.raises(grpc.RpcError) as err:
                pb_grpc.SlsServiceStub(channel).GetSls(pb.GetSlsRequest(), timeout=5)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_a_probe_exports_over_mtls_under_the_id_its_certificate_names(tls_server):
    import math
    from client.channel import Credentials
    from lab.emulation import wait_for
    from probes.export import RecordExporter
    from probes.flows import FlowRecord
    certs, address, kpis = tls_server
    exporter = RecordExporter(address, "", interval_s=0.05, credentials=Credentials(
        tls_ca=str(certs / "ca.pem"), tls_cert=str(certs / "cpe.pem"),
        tls_key=str(certs / "cpe.key"))).start()
    try:
        exporter.offer([FlowRecord("10.0.0.1", "10.0.0.2", 17, 4000, 5004, "rtp", 1.0, 2.0, 50,
                                   10_000, 80_000.0, 46, {"rtp_jitter_ms": math.nan})])
        wait_for(lambda: exporter.sent == 1, 10, "the record to be accepted")
    finally:
        exporter.close()
    assert [r.probe_id for r in kpis.latest()] == ["cpe-1"]
