"""Controller configuration: defaults, validation and loading from TOML or YAML (core).

A configuration is validated in one place and frozen. Every problem raises ConfigError
naming the key (dotted path as in the file) and what would have been allowed.
"""

import dataclasses
import ipaddress
import os
import re
import tomllib
from typing import Any, Callable, Mapping, NamedTuple

from controller.monitor.mirror import parse_rule
from controller.network.topology import SwitchPort


class ConfigError(ValueError):
    """A configuration value is wrong; `key` names it as written in the file."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"config key '{key}': {problem}")
        self.key = key
        self.problem = problem


@dataclasses.dataclass(frozen=True)
class Address:
    """A host and port to listen on."""

    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class EgressInterface(NamedTuple):
    """A local interface (a switch port) given GSB HTB classes, and its link rate."""

    ifname: str
    link_bps: int


class EdgeShaping(NamedTuple):
    """A customer's edge host, shaped to its SLS rate: interface `ifname` in the network
    namespace `netns` (a name under /var/run/netns)."""

    customer_id: str
    netns: str
    ifname: str


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    """Everything the controller needs to start; build it with parse_config()."""

    openflow_listen: Address = Address("127.0.0.1", 6653)
    grpc_listen: Address = Address("127.0.0.1", 50051)
    grpc_unix_socket: str = ""    # also serve gRPC on this unix socket (reachable from
    #                               network namespaces that share the file system: probes)
    grpc_tls_cert: str = ""       # PEM server certificate (chain); with the key, gRPC uses TLS
    grpc_tls_key: str = ""
    grpc_tls_client_ca: str = ""  # PEM CA: clients must present a certificate it signed (mTLS)
    grpc_max_workers: int = 64    # threads answering gRPC calls
    grpc_max_streams: int = 32    # streams open at once (each holds a worker); below max_workers
    grpc_max_streams_per_client: int = 8  # streams open at once from one client address
    kpi_max_age_s: float = 60.0   # a flow with no newer record than this has ended
    qoe_iptv_frame_rate: float | None = None   # frames/s of every IPTV channel, unless named
    qoe_iptv_frame_rates: tuple = ()           # ("IP:PORT", frames/s) per channel
    qoe_web_anchors: tuple | None = None       # (t_min_s, t_max_s) of G.1030's model
    qoe_path_agents: tuple = ()                # (customer, agent probe id) for zoom tests
    qoe_stamp_reflector: tuple | None = None   # (IP, port) the zoom's STAMP tests go to
    mirror_baseline_percent: int = 0           # every customer's host pairs, sampled
    kpi_max_bytes: int = 256 << 20  # memory for probe records; the least recent flows go
    metrics_listen: Address | None = Address("127.0.0.1", 9302)
    poll_interval_s: float = 1.0
    rate_window: int = 60
    store_path: str = "/var/lib/cems/cems.sqlite"
    store_url: str = ""   # postgresql://...: a PostgreSQL store shared by instances
    cluster_etcd: str = ""       # http://HOST:PORT of etcd: instances elect the switches' master
    cluster_lease_s: float = 3.0
    cluster_key: str = "/cems/master"
    # probe records from NATS JetStream (controller.stream), beside the gRPC export
    records_nats: str = ""       # nats://HOST:PORT (tls://... for TLS); "" reads none
    records_nats_user: str = ""
    records_nats_password_file: str = ""   # the user's password, alone in a file
    records_nats_tls_ca: str = ""          # PEM CA that signed the NATS server's certificate
    records_consumer: str = ""   # the durable consumer's name; "" for cems-HOST-GRPCPORT
    records_max_age_s: float = 86_400.0    # how long the stream keeps a record (if it makes it)
    records_max_bytes: int = 1 << 30       # and how much it keeps at most
    # with cluster.etcd too: customers fall into this many partitions, and each instance
    # computes the quality of the partitions it holds (controller/cluster/partitions.py);
    # 0: every instance takes every record
    records_partitions: int = 16
    records_warm_s: float = 10.0   # replayed for a customer partition just taken (0: none)
    lldp_interval_s: float = 1.0
    link_timeout_s: float = 3.5
    settle_s: float = 2.5
    log_level: str = "info"
    gateway_dpid: int = 0  # where customers' paths lead (admission); 0: access links only
    link_capacity_bps: tuple = ()  # (SwitchPort, bps) overriding reported port speeds
    egress_interfaces: tuple[EgressInterface, ...] = ()
    edge_shaping: tuple[EdgeShaping, ...] = ()
    mirror_probe: SwitchPort | None = None  # the probe's port
    mirror_customers: tuple = ()  # customers whose traffic is copied to the probe
    mirror_rules: tuple = ()  # MirrorRules: a customer's service or a sample of its traffic
    policy_mode: str = "act"  # act, dry-run (decide and log, change nothing) or off
    policy_cooldown_s: float = 30.0
    policy_max_changes_per_minute: int = 6
    policy_max_customers_per_evaluation: int = 5
    policy_target_utilisation: float = 0.8
    policy_observe_s: float = 15.0
    policy_revert_s: float = 20.0
    policy_admission_utilisation: float = 0.9   # new sessions refused above this
    policy_advice_floor_bps: int = 300_000      # no video is advised below this

    @property
    def store_location(self) -> str:
        """Where the store is: store.url when set (PostgreSQL), else store.path (SQLite)."""
        return self.store_url or self.store_path


LOG_LEVELS = ("debug", "info", "warning", "error")
POLICY_MODES = ("act", "dry-run", "off")


def parse_address(key: str, value: Any, allow_port_zero: bool = False) -> Address:
    """'HOST:PORT' (IPv6 as '[::1]:PORT') -> Address; HOST must be an IP literal."""
    allowed = "'HOST:PORT' with an IP address, for example '127.0.0.1:6653'"
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string {allowed}, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(key, f"expected {allowed}, got {value!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(key, f"'{host}' is not an IP address; expected {allowed}") from None
    low = 0 if allow_port_zero else 1
    if not port_text.isdigit() or not low <= int(port_text) <= 65535:
        raise ConfigError(key, f"port '{port_text}' must be an integer {low}..65535")
    return Address(host, int(port_text))


def _number(lo: float, hi: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
            raise ConfigError(key, f"must be a number from {lo} to {hi}, got {value!r}")
        return float(value)
    return check


def _integer(lo: int, hi: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ConfigError(key, f"must be an integer from {lo} to {hi}, got {value!r}")
        return value
    return check


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigError(key, f"must be one of {', '.join(options)}; got {value!r}")
        return value
    return check


def _url(schemes: tuple[str, ...], limit: int, problem: str, credentials: bool = True
         ) -> Callable[[str, Any], str]:
    """An optional URL ("" for none) starting with one of `schemes`, at most `limit`
    characters (without user or password when not `credentials`); `problem` says what
    it must be."""
    def check(key: str, value: Any) -> str:
        if value == "":
            return ""
        if not isinstance(value, str) or not value.startswith(schemes) or \
                len(value) > limit or (not credentials and "@" in value):
            raise ConfigError(key, problem)
        return value
    return check


_store_url = _url(("postgresql://", "postgres://"), 2000,
                  "must be a PostgreSQL URL, for example "
                  "\"postgresql://cems@db.example.net:5432/cems\" (or \"\" for the SQLite file "
                  "of store.path)")
_etcd_url = _url(("http://", "https://"), 500,
                 "must be etcd's client URL, for example \"http://127.0.0.1:2379\" (or \"\" "
                 "for one instance without a cluster)")
_nats_url = _url(("nats://", "tls://"), 500,
                 "must be a NATS server URL without credentials, for example "
                 "\"nats://127.0.0.1:4222\" (the user and password go in records.nats_user "
                 "and records.nats_password_file; \"\" reads no records from NATS)",
                 credentials=False)


def _nats_user(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 200 or any(c.isspace() for c in value):
        raise ConfigError(key, f"must be a NATS user name without spaces, got {value!r}")
    return value


def _consumer_name(key: str, value: Any) -> str:
    if not isinstance(value, str) or len(value) > 64 or \
            (value and not re.fullmatch(r"[A-Za-z0-9_-]+", value)):
        raise ConfigError(key, "must be a JetStream consumer name: letters, digits, '-' and "
                          "'_', at most 64 (or \"\" for cems-HOST-GRPCPORT)")
    return value


def _etcd_key(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 200:
        raise ConfigError(key, "must be a key path such as \"/cems/master\" (one per network "
                          "the instances share)")
    return value


def _path(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be a non-empty file path (or ':memory:'), got {value!r}")
    return value


def _dpid_port(text: str) -> SwitchPort | None:
    """'DPID:PORT' (DPID decimal or 0x hex) -> SwitchPort, or None if it is not that."""
    dpid_text, sep, port_text = str(text).partition(":")
    try:
        dpid, port = int(dpid_text, 0), int(port_text)
    except ValueError:
        return None
    if not sep or not 0 <= dpid < 1 << 64 or not 0 <= port <= 0xFFFFFF00:
        return None  # a datapath id is unsigned 64-bit; a port at most OFPP_MAX
    return SwitchPort(dpid, port)


def _bit_rates(key: str, value: Any, allowed: str, parse_name) -> tuple:
    """A table NAME = positive integer bit/s -> sorted ((parsed name, bps), ...);
    parse_name returns None for a name it does not accept."""
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be {allowed}")
    out = []
    for name, bps in value.items():
        parsed = parse_name(name)
        if parsed is None:
            raise ConfigError(f"{key}.{name}", f"is not an accepted name; {allowed}")
        if isinstance(bps, bool) or not isinstance(bps, int) or bps <= 0:
            raise ConfigError(f"{key}.{name}", f"must be a positive integer bit/s; {allowed}")
        out.append((parsed, bps))
    return tuple(sorted(out))


def _capacities(key: str, value: Any) -> tuple:
    return _bit_rates(key, value, "a table of \"DPID:PORT\" = bit/s, for example "
                      "{ \"1:4\" = 1000000000 } (DPID decimal or 0x hex)", _dpid_port)


def _interfaces(key: str, value: Any) -> tuple[EgressInterface, ...]:
    def interface(name):
        return name if name and len(name) <= 15 and "/" not in name and " " not in name \
            else None
    return tuple(EgressInterface(*pair) for pair in _bit_rates(
        key, value, "a table of \"IFNAME\" (1 to 15 characters, no '/' or spaces) = link "
        "bit/s, for example { \"s1-eth1\" = 20000000 }", interface))


def _edges(key: str, value: Any) -> tuple[EdgeShaping, ...]:
    allowed = ("a table of CUSTOMER = \"NETNS:IFNAME\", for example "
               "{ alice = \"cems-l1:l1-eth0\" }")
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be {allowed}")
    out = []
    for customer, place in value.items():
        netns, sep, ifname = str(place).partition(":")
        if not sep or not netns or not ifname or len(ifname) > 15:
            raise ConfigError(f"{key}.{customer}", f"must be \"NETNS:IFNAME\"; {allowed}")
        out.append(EdgeShaping(str(customer), netns, ifname))
    return tuple(sorted(out))


def _socket_path(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > 100:
        raise ConfigError(key, f"must be an absolute path of at most 100 characters, got {value!r}")
    return value


def _readable(key: str, value: Any, what: str = "a PEM file") -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(key, f"must be the path of {what}, got {value!r}")
    if not os.access(value, os.R_OK):
        raise ConfigError(key, f"{value} is not a readable file")
    return value


def _switch_port(key: str, value: Any) -> SwitchPort:
    parsed = _dpid_port(value)
    if parsed is None or parsed[1] <= 0:
        raise ConfigError(key, f"must be \"DPID:PORT\" with a port above 0, for example "
                          f"\"2:10\"; got {value!r}")
    return parsed


def _names(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(key, f"must be a list of customer ids, got {value!r}")
    return tuple(value)


def _mirror_rules(key: str, value: Any) -> tuple:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, "must be a list of 'CUSTOMER[:SERVICE[:PERCENT]]' strings, "
                               f"for example ['c1:voice', 'c2:*:10'], got {value!r}")
    try:
        return tuple(parse_rule(v, origin="config") for v in value)
    except ValueError as err:
        raise ConfigError(key, str(err)) from None


def _frame_rates(key: str, value: Any) -> tuple:
    allowed = "a table of \"IP:PORT\" = frames/s, for example { \"239.1.1.1:1234\" = 25 }"
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"must be {allowed}")
    out = []
    for channel, fps in value.items():
        address, sep, port = str(channel).rpartition(":")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise ConfigError(f"{key}.{channel}", f"is not IP:PORT; {allowed}") from None
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{key}.{channel}", f"is not IP:PORT; {allowed}")
        out.append((f"{ipaddress.ip_address(address)}:{int(port)}",
                    _number(1, 240)(f"{key}.{channel}", fps)))
    return tuple(sorted(out))


def _anchors(key: str, value: Any) -> tuple:
    allowed = "a table { t_min_s = 0.67, t_max_s = 6 } (MOS 5 and MOS 1 of G.1030's model)"
    if not isinstance(value, Mapping) or set(value) != {"t_min_s", "t_max_s"}:
        raise ConfigError(key, f"must be {allowed}")
    t_min = _number(0.01, 600)(f"{key}.t_min_s", value["t_min_s"])
    t_max = _number(0.01, 600)(f"{key}.t_max_s", value["t_max_s"])
    if not t_min < t_max:
        raise ConfigError(key, f"t_min_s ({t_min}) must be below t_max_s ({t_max})")
    return (t_min, t_max)


def _agents(key: str, value: Any) -> tuple:
    allowed = "a table of CUSTOMER = \"AGENT-PROBE-ID\", for example { c1 = \"c1phone-agent\" }"
    if not isinstance(value, Mapping) or not all(isinstance(v, str) and v
                                                 for v in value.values()):
        raise ConfigError(key, f"must be {allowed}")
    return tuple(sorted((str(c), a) for c, a in value.items()))


def _reflector(key: str, value: Any) -> tuple:
    address = parse_address(key, value)
    return (address.host, address.port)


def _optional_address(key: str, value: Any) -> Address | None:
    if value in ("", None):
        return None
    return parse_address(key, value)


# file key -> (ControllerConfig field, validator)
_KEYS: dict[str, tuple[str, Callable[[str, Any], Any]]] = {
    "openflow.listen": ("openflow_listen", parse_address),
    "grpc.listen": ("grpc_listen", lambda k, v: parse_address(k, v, allow_port_zero=True)),
    "metrics.listen": ("metrics_listen", _optional_address),
    "grpc.unix_socket": ("grpc_unix_socket", lambda k, v: _socket_path(k, v)),
    "grpc.tls_cert": ("grpc_tls_cert", lambda k, v: _readable(k, v)),
    "grpc.tls_key": ("grpc_tls_key", lambda k, v: _readable(k, v)),
    "grpc.tls_client_ca": ("grpc_tls_client_ca", lambda k, v: _readable(k, v)),
    "grpc.max_workers": ("grpc_max_workers", _integer(2, 4096)),
    "grpc.max_streams": ("grpc_max_streams", _integer(1, 4095)),
    "grpc.max_streams_per_client": ("grpc_max_streams_per_client", _integer(1, 4095)),
    "kpi.max_age_s": ("kpi_max_age_s", _number(1, 86_400)),
    "qoe.iptv_frame_rate": ("qoe_iptv_frame_rate", _number(1, 240)),
    "qoe.iptv_frame_rates": ("qoe_iptv_frame_rates", _frame_rates),
    "qoe.web_anchors": ("qoe_web_anchors", _anchors),
    "qoe.path_agents": ("qoe_path_agents", _agents),
    "qoe.stamp_reflector": ("qoe_stamp_reflector", _reflector),
    "mirror.baseline_percent": ("mirror_baseline_percent", _integer(0, 100)),
    "kpi.max_bytes": ("kpi_max_bytes", _integer(1 << 20, 1 << 40)),
    "stats.poll_interval_s": ("poll_interval_s", _number(0.1, 3600)),
    "stats.rate_window": ("rate_window", _integer(2, 3600)),
    "store.path": ("store_path", _path),
    "store.url": ("store_url", _store_url),
    "cluster.etcd": ("cluster_etcd", _etcd_url),
    "cluster.lease_s": ("cluster_lease_s", _number(1, 60)),
    "cluster.key": ("cluster_key", _etcd_key),
    "records.nats": ("records_nats", _nats_url),
    "records.nats_user": ("records_nats_user", _nats_user),
    "records.nats_password_file": ("records_nats_password_file", lambda k, v: _readable(
        k, v, "a file that holds the password")),
    "records.nats_tls_ca": ("records_nats_tls_ca", lambda k, v: _readable(k, v)),
    "records.consumer": ("records_consumer", _consumer_name),
    "records.max_age_s": ("records_max_age_s", _number(60, 365 * 86_400)),
    "records.max_bytes": ("records_max_bytes", _integer(1 << 20, 1 << 44)),
    "records.partitions": ("records_partitions", _integer(0, 4096)),
    "records.warm_s": ("records_warm_s", _number(0, 3600)),
    "discovery.lldp_interval_s": ("lldp_interval_s", _number(0.1, 60)),
    "discovery.link_timeout_s": ("link_timeout_s", _number(0.3, 600)),
    "discovery.settle_s": ("settle_s", _number(0, 600)),
    "log.level": ("log_level", _choice(LOG_LEVELS)),
    "csm.gateway_dpid": ("gateway_dpid", _integer(0, 2 ** 64 - 1)),
    "csm.link_capacity_bps": ("link_capacity_bps", _capacities),
    "csm.egress_interfaces": ("egress_interfaces", _interfaces),
    "csm.edge_shaping": ("edge_shaping", _edges),
    "mirror.probe": ("mirror_probe", lambda k, v: _switch_port(k, v)),
    "mirror.customers": ("mirror_customers", lambda k, v: _names(k, v)),
    "mirror.rules": ("mirror_rules", lambda k, v: _mirror_rules(k, v)),
    "policy.mode": ("policy_mode", _choice(POLICY_MODES)),
    "policy.cooldown_s": ("policy_cooldown_s", _number(0, 86_400)),
    "policy.max_changes_per_minute": ("policy_max_changes_per_minute", _integer(0, 10_000)),
    "policy.max_customers_per_evaluation": ("policy_max_customers_per_evaluation",
                                            _integer(0, 100_000)),
    "policy.target_utilisation": ("policy_target_utilisation", _number(0.1, 1.0)),
    "policy.observe_s": ("policy_observe_s", _number(1, 3600)),
    "policy.revert_s": ("policy_revert_s", _number(0, 86_400)),
    "policy.admission_utilisation": ("policy_admission_utilisation", _number(0.1, 1.0)),
    "policy.advice_floor_bps": ("policy_advice_floor_bps", _integer(0, 10 ** 12)),
}


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and key not in _KEYS:
            flat.update(_flatten(value, key + "."))
        else:
            flat[key] = value
    return flat


def parse_config(data: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
                 ) -> ControllerConfig:
    """Nested mapping (as read from a file) plus flat overrides (from flags) -> config.

    Overrides use the same dotted keys as the file, for example {'stats.poll_interval_s': 2}.
    Raises ConfigError for an unknown key or a wrong value.
    """
    flat = _flatten(data)
    flat.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values = {}
    for key, value in flat.items():
        if key not in _KEYS:
            raise ConfigError(key, f"unknown key; known keys are {', '.join(sorted(_KEYS))}")
        field, check = _KEYS[key]
        values[field] = check(key, value)
    config = ControllerConfig(**values)
    if bool(config.grpc_tls_cert) != bool(config.grpc_tls_key):
        raise ConfigError("grpc.tls_cert" if not config.grpc_tls_cert else "grpc.tls_key",
                          "grpc.tls_cert and grpc.tls_key must be given together")
    if config.grpc_tls_client_ca and not config.grpc_tls_cert:
        raise ConfigError("grpc.tls_client_ca", "client certificates (mTLS) need TLS: "
                          "give grpc.tls_cert and grpc.tls_key too")
    for key, given in (("mirror.customers", config.mirror_customers),
                       ("mirror.rules", config.mirror_rules),
                       ("mirror.baseline_percent", config.mirror_baseline_percent)):
        if given and config.mirror_probe is None:
            raise ConfigError(key, "needs mirror.probe (the probe's DPID:PORT)")
    if config.grpc_max_streams >= config.grpc_max_workers:
        raise ConfigError("grpc.max_streams", f"must be below grpc.max_workers "
                          f"({config.grpc_max_workers}), so that workers are left for unary "
                          f"calls; got {config.grpc_max_streams}")
    for key, given in (("records.nats_user", config.records_nats_user),
                       ("records.nats_password_file", config.records_nats_password_file),
                       ("records.nats_tls_ca", config.records_nats_tls_ca),
                       ("records.consumer", config.records_consumer)):
        if given and not config.records_nats:
            raise ConfigError(key, "needs records.nats (the NATS server's URL)")
    if bool(config.records_nats_user) != bool(config.records_nats_password_file):
        raise ConfigError("records.nats_user", "records.nats_user and "
                          "records.nats_password_file must be given together")
    if config.link_timeout_s <= config.lldp_interval_s:
        raise ConfigError("discovery.link_timeout_s",
                          f"must be greater than discovery.lldp_interval_s "
                          f"({config.lldp_interval_s}), got {config.link_timeout_s}")
    return config


def read_config_file(path: str) -> dict[str, Any]:
    """Read a TOML (.toml) or YAML (.yaml/.yml) file into a nested mapping."""
    if path.endswith(".toml"):
        with open(path, "rb") as stream:
            try:
                return tomllib.load(stream)
            except tomllib.TOMLDecodeError as err:
                raise ConfigError("<file>", f"{path} is not valid TOML: {err}") from None
    if path.endswith((".yaml", ".yml")):
        import yaml  # pylint: disable=import-outside-toplevel
        with open(path, encoding="utf-8") as stream:
            try:
                data = yaml.safe_load(stream) or {}
            except yaml.YAMLError as err:
                raise ConfigError("<file>", f"{path} is not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError("<file>", f"{path} must hold a mapping at the top level")
        return data
    raise ConfigError("<file>", f"{path}: allowed file types are .toml, .yaml and .yml")
