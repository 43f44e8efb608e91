"""nDPI in the passive probe's compiled path, on traffic made in the test: the web test
service over HTTP and over HTTPS (TLS with SNI), and a DNS lookup, all on 127.0.0.1,
captured live by `cems-probe passive --iface lo`. nDPI must name each; the controller's
table (qoe.classify) turns the names into services."""

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from lab.emulation import REPO, free_port
from probes import hotpath
from probes.web import WebServer, load_page
from qoe.classify import classify_ndpi

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="capturing needs root; make test runs as root"),
    pytest.mark.skipif(hotpath.fast is None, reason="the compiled hot path is not built"),
]


def certificate(tmp_path) -> tuple[str, str]:
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "1", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost"], check=True, capture_output=True,
                   timeout=60)
    return cert, key


class DnsResponder:
    """Answers every query on 127.0.0.1:53 with one A record, 127.0.0.1. On the standard
    port: nDPI 4.2 looks for DNS only there (and on LLMNR's)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self.sock.bind(("127.0.0.1", 53))
        except OSError as err:
            self.sock.close()
            pytest.skip(f"127.0.0.1:53 is taken on this machine ({err})")
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                query, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            header = struct.pack("!HHHHHH", struct.unpack("!H", query[:2])[0], 0x8180, 1, 1,
                                 0, 0)
            answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + socket.inet_aton(
                "127.0.0.1")
            self.sock.sendto(header + query[12:] + answer, peer)

    def close(self):
        self.stop.set()
        self.thread.join(timeout=5)
        self.sock.close()


def dns_query(port: int, name: str) -> bytes:
    question = b"".join(bytes([len(part)]) + part.encode() for part in name.split(".")) + \
        b"\x00" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(struct.pack("!HHHHHH", 0x2a2a, 0x0100, 1, 0, 0, 0) + question,
                    ("127.0.0.1", port))
        return sock.recv(512)


def test_ndpi_names_the_test_services_http_and_tls_and_a_dns_lookup(tmp_path):
    cert, key = certificate(tmp_path)
    web = WebServer("127.0.0.1", 0, objects=2, object_bytes=2_000).start()
    secure = WebServer("127.0.0.1", 0, objects=2, object_bytes=2_000, certfile=cert,
                       keyfile=key).start()
    dns = DnsResponder()
    http_port, https_port = web.address[1], secure.address[1]
    bpf = f"port {http_port} or port {https_port} or port {dns.port}"
    probe = subprocess.Popen([sys.executable, "-m", "probes.cli", "passive", "--iface", "lo",
                              "--bpf", bpf, "--interval", "0.5"], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        line = probe.stderr.readline()  # "cems-probe: capturing on ring:lo"
        assert "capturing on" in line, line
        plain = load_page(f"http://127.0.0.1:{http_port}/", connections=1)
        tls = load_page(f"https://localhost:{https_port}/", connections=1, cafile=cert)
        assert not plain.errors and not tls.errors, (plain.errors, tls.errors)
        assert dns_query(dns.port, "example.com")[:2] == b"\x2a\x2a"
        time.sleep(1.5)  # the records of the last interval
        assert time.monotonic() < deadline
    finally:
        probe.send_signal(signal.SIGTERM)
        out, err = probe.communicate(timeout=20)
        web.stop()
        secure.stop()
        dns.close()
    assert probe.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    named = {}
    for record in records:
        for port in (http_port, https_port, dns.port):
            if port in (record["sport"], record["dport"]) and record["application"]:
                named.setdefault(port, set()).add((record["application"], record["category"],
                                                   record["detected_by"]))
    print("nDPI named:", named)
    assert {a.split(".")[0] for a, _, _ in named.get(http_port, ())} == {"HTTP"}, named
    assert {a.split(".")[0] for a, _, _ in named.get(https_port, ())} == {"TLS"}, named
    assert {a.split(".")[0] for a, _, _ in named.get(dns.port, ())} == {"DNS"}, named
    for port in named:
        for application, category, _ in named[port]:
            assert classify_ndpi(application, category).service == "web"
    summary = json.loads(err.strip().splitlines()[-1])
    assert summary["hot_path"] == "compiled" and summary["kernel_dropped"] == 0
