import pytest

from controller.config import Address, ConfigError, ControllerConfig, parse_config, read_config_file


def test_defaults_are_local_and_one_second():
    config = parse_config({})
    assert config == ControllerConfig()
    assert config.openflow_listen == Address("127.0.0.1", 6653)
    assert config.grpc_listen == Address("127.0.0.1", 50051)
    assert config.poll_interval_s == 1.0


def test_file_values_and_flag_overrides():
    config = parse_config({"stats": {"poll_interval_s": 2}, "grpc": {"listen": "[::1]:7000"}},
                          {"stats.poll_interval_s": 0.5, "store.path": None})
    assert config.poll_interval_s == 0.5
    assert config.grpc_listen == Address("::1", 7000)
    assert str(config.grpc_listen) == "[::1]:7000"


@pytest.mark.parametrize("data, key, words", [
    ({"stats": {"poll_interval_s": 0}}, "stats.poll_interval_s", "0.1 to 3600"),
    ({"stats": {"poll_interval_s": "fast"}}, "stats.poll_interval_s", "number"),
    ({"openflow": {"listen": "localhost:6653"}}, "openflow.listen", "not an IP address"),
    ({"openflow": {"listen": "127.0.0.1:70000"}}, "openflow.listen", "1..65535"),
    ({"openflow": {"listen": "127.0.0.1"}}, "openflow.listen", "HOST:PORT"),
    ({"log": {"level": "loud"}}, "log.level", "debug, info, warning, error"),
    ({"stats": {"pol_interval_s": 1}}, "stats.pol_interval_s", "known keys"),
    ({"discovery": {"lldp_interval_s": 2, "link_timeout_s": 1}}, "discovery.link_timeout_s",
     "greater than"),
])
def test_wrong_values_name_the_key_and_what_is_allowed(data, key, words):
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert err.value.key == key
    assert key in str(err.value) and words in str(err.value)


def test_grpc_may_ask_for_any_port_but_openflow_may_not():
    assert parse_config({"grpc": {"listen": "127.0.0.1:0"}}).grpc_listen.port == 0
    with pytest.raises(ConfigError):
        parse_config({"openflow": {"listen": "127.0.0.1:0"}})


def test_metrics_can_be_disabled():
    assert parse_config({"metrics": {"listen": ""}}).metrics_listen is None


def test_toml_and_yaml_files(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('[stats]\npoll_interval_s = 3\n[store]\npath = "/tmp/x.sqlite"\n')
    assert parse_config(read_config_file(str(toml))).poll_interval_s == 3
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("stats:\n  poll_interval_s: 4\n")
    assert parse_config(read_config_file(str(yaml_file))).poll_interval_s == 4
    bad = tmp_path / "c.toml.txt"
    bad.write_text("")
    with pytest.raises(ConfigError, match="allowed file types"):
        read_config_file(str(bad))
    broken = tmp_path / "b.toml"
    broken.write_text("[stats\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_config_file(str(broken))


def test_the_example_file_holds_the_defaults():
    import os
    example = os.path.join(os.path.dirname(__file__), "..", "..", "..", "cems.example.toml")
    assert parse_config(read_config_file(example)) == ControllerConfig()


def test_link_capacities_and_gateway():
    config = parse_config({"csm": {"gateway_dpid": 1,
                                   "link_capacity_bps": {"0x5:1": 100_000_000, "3:2": 10**9}}})
    assert config.gateway_dpid == 1
    assert config.link_capacity_bps == (((3, 2), 10**9), ((5, 1), 100_000_000))
    with pytest.raises(ConfigError, match="csm.link_capacity_bps.x"):
        parse_config({"csm": {"link_capacity_bps": {"x": 5}}})
    with pytest.raises(ConfigError, match="positive integer"):
        parse_config({"csm": {"link_capacity_bps": {"1:2": -5}}})


def test_tls_files_must_exist_and_come_in_pairs(tmp_path):
    cert = tmp_path / "c.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="grpc.tls_key"):
        parse_config({"grpc": {"tls_cert": str(cert)}})
    with pytest.raises(ConfigError, match="not a readable file"):
        parse_config({"grpc": {"tls_cert": str(tmp_path / "missing.pem"), "tls_key": str(cert)}})
    with pytest.raises(ConfigError, match="need TLS"):
        parse_config({"grpc": {"tls_client_ca": str(cert)}})
    config = parse_config({"grpc": {"tls_cert": str(cert), "tls_key": str(cert)}})
    assert config.grpc_tls_cert == str(cert)


def test_interfaces_edges_and_mirror():
    config = parse_config({"csm": {"egress_interfaces": {"s1-eth1": 20_000_000},
                                   "edge_shaping": {"alice": "cems-l1:l1-eth0"}},
                           "mirror": {"probe": "0x2:10", "customers": ["alice"]}})
    assert config.egress_interfaces == (("s1-eth1", 20_000_000),)
    assert config.edge_shaping == (("alice", "cems-l1", "l1-eth0"),)
    assert (config.mirror_probe, config.mirror_customers) == ((2, 10), ("alice",))
    with pytest.raises(ConfigError, match="csm.egress_interfaces.a/b"):
        parse_config({"csm": {"egress_interfaces": {"a/b": 1}}})
    with pytest.raises(ConfigError, match="port above 0"):
        parse_config({"mirror": {"probe": "2"}})
    with pytest.raises(ConfigError, match="needs mirror.probe"):
        parse_config({"mirror": {"customers": ["alice"]}})
    with pytest.raises(ConfigError, match="NETNS:IFNAME"):
        parse_config({"csm": {"edge_shaping": {"alice": "no-colon"}}})
    rules = parse_config({"mirror": {"probe": "2:10", "rules": ["bob:voice", "carol:*:10"]}})
    assert [(r.customer_id, r.service, r.sample_percent) for r in rules.mirror_rules] == [
        ("bob", "voice", 100), ("carol", "", 10)]
    with pytest.raises(ConfigError, match="mirror.rules.*'bob:telepathy'.*not one of"):
        parse_config({"mirror": {"probe": "2:10", "rules": ["bob:telepathy"]}})
    with pytest.raises(ConfigError, match="needs mirror.probe"):
        parse_config({"mirror": {"rules": ["bob"]}})


def test_the_records_stream_needs_a_url_and_a_user_with_a_password_file(tmp_path):
    password = tmp_path / "nats-password"
    password.write_text("secret\n")
    config = parse_config({"records": {"nats": "nats://127.0.0.1:4222", "nats_user": "cems",
                                       "nats_password_file": str(password),
                                       "consumer": "cems-a_1"}})
    assert (config.records_nats, config.records_nats_user, config.records_consumer) == (
        "nats://127.0.0.1:4222", "cems", "cems-a_1")
    with pytest.raises(ConfigError, match="records.consumer.*needs records.nats"):
        parse_config({"records": {"consumer": "x"}})
    with pytest.raises(ConfigError, match="without credentials"):   # no password in a URL
        parse_config({"records": {"nats": "nats://cems:secret@127.0.0.1:4222"}})
    with pytest.raises(ConfigError, match="go.* together|given together"):
        parse_config({"records": {"nats": "nats://h:1", "nats_user": "cems"}})
    with pytest.raises(ConfigError, match="consumer name"):
        parse_config({"records": {"nats": "nats://h:1", "consumer": "a.b"}})
    with pytest.raises(ConfigError, match="not a readable file"):
        parse_config({"records": {"nats": "nats://h:1", "nats_user": "cems",
                                  "nats_password_file": str(tmp_path / "missing")}})
