import struct

import numpy as np
import pytest

from probes.flowgen import SERVICES, generate_flow
from probes.tsgen import TsMuxer
from qoe.classify import (NaiveBayes, classify_flow, classify_payload, classify_ports,
                          flow_features, tls_server_name)


def client_hello(name: bytes) -> bytes:
    sni = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    body = b"\x03\x03" + b"\x00" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(sni)) + sni
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(handshake)) + handshake


def test_signatures():
    rtp = struct.pack("!BBHII", 0x80, 8, 1, 160, 7) + b"\x55" * 160
    assert classify_payload(rtp, "udp").service == "voice"
    ts = TsMuxer().datagrams(1)[0][0]
    assert classify_payload(ts, "udp").service == "iptv"
    rtp_ts = struct.pack("!BBHII", 0x80, 33, 1, 160, 7) + ts
    assert classify_payload(rtp_ts, "udp").reason == "MPEG-TS in RTP"
    assert classify_payload(b"GET /live/seg_12.m4s HTTP/1.1\r\nHost: cdn\r\n\r\n", "tcp").service \
        == "video"
    web = classify_payload(b"GET / HTTP/1.1\r\nHost: shop.example\r\n\r\n", "tcp")
    assert (web.service, web.reason) == ("web", "HTTP request to shop.example")
    hello = client_hello(b"news.example")
    assert tls_server_name(hello) == "news.example"
    assert classify_payload(hello, "tcp").service == "web"
    assert classify_payload(b"\x00" * 40, "udp") is None
    assert tls_server_name(hello[:30]) is None


def test_ports_and_dscp_are_weak_hints():
    assert classify_ports("tcp", 40000, 443).service == "web"
    assert classify_ports("udp", 40000, 40001, dscp=46).service == "voice"
    assert classify_ports("udp", 40000, 40001) is None
    answer = classify_flow(None, "udp", 40000, 40001, dscp=0)
    assert answer.service == "unknown" and answer.confidence == 0.0


def test_naive_bayes_on_generated_flows_per_class_accuracy(capsys):
    def dataset(seeds):
        flows = [generate_flow(s, seed) for s in SERVICES for seed in seeds]
        x = np.array([flow_features(f.times_s, f.sizes, f.downstream) for f in flows])
        return x, [f.service for f in flows]

    train_x, train_y = dataset(range(0, 60))
    test_x, test_y = dataset(range(1000, 1040))
    model = NaiveBayes().fit(train_x, train_y)
    predicted = [c.service for c in model.predict(test_x)]
    accuracy = {s: np.mean([p == s for p, t in zip(predicted, test_y) if t == s]) for s in SERVICES}
    with capsys.disabled():
        print("\nnaive Bayes accuracy per class on generated flows: "
              + ", ".join(f"{s} {a:.0%}" for s, a in accuracy.items()))
    assert all(a >= 0.85 for a in accuracy.values()), accuracy
    confidences = [c.confidence for c in model.predict(test_x)]
    assert all(0 < c <= 1 for c in confidences)


def test_classify_flow_prefers_signatures_then_confident_model():
    flows = [generate_flow(s, seed) for s in SERVICES for seed in range(20)]
    model = NaiveBayes().fit([flow_features(f.times_s, f.sizes, f.downstream) for f in flows],
                             [f.service for f in flows])
    bulk = generate_flow("bulk", 500)
    features = flow_features(bulk.times_s, bulk.sizes, bulk.downstream)
    answer = classify_flow(bulk.first_payload, "tcp", bulk.src_port, bulk.dst_port,
                           features=features, model=model)
    assert (answer.service, answer.method) == ("bulk", "bayes")
    voice = generate_flow("voice", 500)
    assert classify_flow(voice.first_payload, "udp", 1, 2).method == "signature"


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown service labels"):
        NaiveBayes().fit(np.zeros((2, 6)), ["voice", "email"])
    with pytest.raises(RuntimeError):
        NaiveBayes().predict_proba(np.zeros((1, 6)))
    with pytest.raises(ValueError, match="two packets"):
        flow_features([0.0], [100], [True])
    with pytest.raises(ValueError, match="unknown service"):
        generate_flow("email", 1)


def test_ndpi_names_map_to_services_application_first_then_protocol_then_category():
    from qoe.classify import classify_ndpi
    assert classify_ndpi("TLS.YouTube", "Media").service == "video"
    assert classify_ndpi("TLS.Zoom", "Video").service == "voice"  # the application decides
    assert classify_ndpi("HTTP", "Web").service == "web"
    assert classify_ndpi("DNS", "Network").service == "web"
    assert classify_ndpi("BitTorrent", "Download").service == "bulk"
    assert classify_ndpi("Unknown.SomeNew", "Streaming").service == "video"  # by category
    assert classify_ndpi("Redis", "Database") is None  # ports decide
    assert classify_ndpi("", "") is None
    found = classify_ndpi("QUIC.NetFlix", "Video")
    assert (found.method, found.reason) == ("ndpi", "nDPI: QUIC.NetFlix")
