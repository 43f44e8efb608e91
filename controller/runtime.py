"""The objects one controller process shares between the OpenFlow app and its servers (shell).

main() builds a Runtime and hands it to the app with offer_runtime(); under Ryu's own
manager, where cems does not construct the app, the app builds one from the config file
named by CEMS_CONFIG instead.
"""

import dataclasses
import functools
import logging
import os
import threading
import time

from prometheus_client import CollectorRegistry

from controller import compat, validation
from controller.config import ControllerConfig, parse_config, read_config_file
from controller.csm.store import CsmStore
from controller.experience_loop import ExperienceLoop
from controller.health import Health, judge_loop
from controller.monitor.active import ActiveTests
from controller.monitor.assess import Assessor
from controller.monitor.engine import Experience, ExperienceEngine
from controller.monitor.experience import ExperienceBook
from controller.monitor.quality import QualitySettings
from controller.monitor.zoom import ZoomBook
from controller.policy.compile import PolicyFlows
from controller.policy_loop import PolicyLoop
from qoe.web import G1030_FIG_II4, WebAnchors
from controller.monitor.kpis import KpiStore
from controller.metrics import ClusterCollector, ControllerMetrics, ExperienceCollector, \
    GrpcCollector, KpiCollector, StreamCollector, serve_metrics
from controller.monitor.mirror_rules import MirrorRules
from controller.monitor.mirror import MirrorRule
from controller.state import PublishedState
from controller.store import MIRROR_CHANNEL, Store, describe

LOG = logging.getLogger("cems.runtime")


@dataclasses.dataclass
class Runtime:
    config: ControllerConfig
    state: PublishedState
    metrics: ControllerMetrics
    store: Store
    grpc_server: object = None
    grpc_port: int = 0
    metrics_server: object = None
    # called (from gRPC threads) with a CustomerChanged after every stored customer change
    customers_changed: list = dataclasses.field(default_factory=list)
    # called (from gRPC threads) with the MAC of a host to forget
    hosts_to_forget: list = dataclasses.field(default_factory=list)
    kpis: KpiStore = dataclasses.field(default_factory=KpiStore)  # probe records
    mirror: MirrorRules | None = None  # what is copied to the probe (config + gRPC)
    experience: object = None          # controller.monitor.engine.Experience
    active: object = None              # controller.monitor.active.ActiveTests
    experience_loop: object = None
    policy_flows: PolicyFlows = dataclasses.field(default_factory=PolicyFlows)
    policy: object = None              # controller.policy_loop.PolicyLoop
    leadership: object = None          # controller.cluster.leader.Leadership, with a cluster
    stream: object = None              # controller.stream.RecordStream, with records.nats
    digests: object = None             # controller.cluster.digest.Digests, with partitions
    digest_channel: object = None      # and what the stream sends and hears of them
    # called (from the experience ticker) after the policy's actions in force changed
    policy_changed: list = dataclasses.field(default_factory=list)
    _watchdog_stop: threading.Event = dataclasses.field(default_factory=threading.Event)

    def forget_host(self, mac: str) -> None:
        for callback in list(self.hosts_to_forget):
            callback(mac)

    def notify_customers_changed(self, change) -> None:
        for callback in list(self.customers_changed):
            callback(change)

    @staticmethod
    def build(config: ControllerConfig) -> "Runtime":
        registry = CollectorRegistry()
        kpis = KpiStore(max_bytes=config.kpi_max_bytes, max_age_s=config.kpi_max_age_s)
        registry.register(KpiCollector(kpis))
        store = Store(config.store_location)
        configured = tuple(MirrorRule(c, origin="config") for c in config.mirror_customers)
        mirror = MirrorRules(store, configured + config.mirror_rules, config.mirror_probe)
        # mirror rules another instance on a shared store sets or removes (PostgreSQL)
        store.listen(MIRROR_CHANNEL, lambda _subject: mirror.reload(),
                     lambda missed: mirror.reload() if missed else None)
        runtime = Runtime(config, PublishedState(config.poll_interval_s, compat.RUNTIME),
                          ControllerMetrics(registry), store, kpis=kpis, mirror=mirror,
                          experience=build_experience(config, kpis), active=ActiveTests())
        runtime.state.store = f"{store.engine} {describe(store.path)}"
        if config.cluster_etcd:
            from controller.cluster.etcd import Etcd  # pylint: disable=import-outside-toplevel
            from controller.cluster.leader import Leadership, instance_name  # pylint: disable=import-outside-toplevel
            runtime.leadership = Leadership(
                Etcd(config.cluster_etcd), config.cluster_key, instance_name(),
                config.cluster_lease_s,
                about=f"{config.grpc_listen.host}:{config.grpc_listen.port}",
                partitions=config.records_partitions if config.records_nats else 0)
            runtime.state.leader = False
            runtime.state.cluster = runtime.leadership
            registry.register(ClusterCollector(runtime.leadership))
            if runtime.leadership.partitions:
                runtime.share_experience()
        registry.register(ExperienceCollector(runtime.experience, kpis.directory))
        runtime.customers_changed.append(
            lambda change: change.state is None and runtime.experience.book.forget(
                change.customer_id))
        runtime.policy = PolicyLoop(
            runtime.experience, kpis, runtime.state, config, kpis.directory,
            CsmStore(store).sla, runtime.policy_flows, runtime.notify_policy_changed,
            metrics=runtime.metrics, store=store)
        runtime.customers_changed.append(runtime.policy.customer_changed)
        return runtime

    def notify_policy_changed(self) -> None:
        for callback in list(self.policy_changed):
            callback()

    def start_servers(self) -> None:
        """Start gRPC (and the metrics exporter if configured)."""
        from controller.api.server import (  # pylint: disable=import-outside-toplevel
            serve_grpc, server_credentials)
        credentials = None
        if self.config.grpc_tls_cert:
            credentials = server_credentials(self.config.grpc_tls_cert, self.config.grpc_tls_key,
                                             self.config.grpc_tls_client_ca)
        self.grpc_server, self.grpc_port = serve_grpc(
            self.state, self.config.grpc_listen, credentials=credentials, csm=CsmStore(self.store),
            kpis=self.kpis, unix_socket=self.config.grpc_unix_socket,
            gateway_dpid=self.config.gateway_dpid,
            capacities=dict(self.config.link_capacity_bps),
            on_change=self.notify_customers_changed, mirror=self.mirror,
            max_workers=self.config.grpc_max_workers, max_streams=self.config.grpc_max_streams,
            max_streams_per_client=self.config.grpc_max_streams_per_client,
            forget_host=self.forget_host, experience=self.experience, active=self.active,
            policy=self.policy)
        LOG.info("gRPC serving on %s:%d", self.config.grpc_listen.host, self.grpc_port)
        self.metrics.registry.register(GrpcCollector(self.grpc_server))
        if self.config.metrics_listen is not None:
            self.metrics_server = serve_metrics(self.metrics.registry, self.config.metrics_listen)
            LOG.info("Prometheus metrics on http://%s/metrics", self.config.metrics_listen)
        self.watch()
        self.experience_loop = ExperienceLoop(self.experience, self.state, self.config,
                                              self.mirror, self.active)
        if self.policy is not None:
            self.experience_loop.after_tick.append(("policy", self.policy.tick))
        self.experience_loop.start()
        if self.config.records_nats:
            self.stream = self.start_stream()

    def start_stream(self):
        """The records stream's consumer (controller.stream), taking batches as the gRPC
        export's are taken, and checking each against the store's probe tokens."""
        from controller.api.probe import take_records  # pylint: disable=import-outside-toplevel
        from controller.stream import (ProbeKey, RecordStream,  # pylint: disable=import-outside-toplevel
                                       default_consumer)
        from client.stream import read_password  # pylint: disable=import-outside-toplevel
        config, csm = self.config, CsmStore(self.store)
        on_records = self.experience.assessor.records if self.experience else None

        def key_of_token(token_id):
            found = csm.probe_token(token_id)
            return ProbeKey(found[0], found[1].encode(), found[2]) if found else None
        stream = RecordStream(
            config.records_nats, config.records_consumer or default_consumer(self.grpc_port),
            lambda probe_id, request, records, replayed_unix_s=None: take_records(
                self.kpis, self.state.bus, on_records, probe_id, request, records,
                replayed_unix_s),
            key_of_token, config.records_nats_user,
            read_password(config.records_nats_password_file), config.records_nats_tls_ca,
            config.records_max_age_s, config.records_max_bytes, config.kpi_max_age_s,
            keep=self._partition_keeper(), side=self.digest_channel,
            warm_s=config.records_warm_s)
        self.state.stream = stream
        self.metrics.registry.register(StreamCollector(stream))
        LOG.info("reading probe records from %s (consumer %s)", stream.url, stream.consumer)
        return stream.start()

    def share_experience(self) -> None:
        """With customer partitions: the experience engine, the policy engine, the API and
        the metrics read this instance's book merged with the other instances' digests
        (controller.cluster.digest); the assessor still adds to this instance's own."""
        from controller.cluster.digest import ClusterBook, Digests, DigestChannel  # pylint: disable=import-outside-toplevel
        from controller.cluster.partitions import partition_of  # pylint: disable=import-outside-toplevel
        leadership, local = self.leadership, self.experience.book
        self.digests = Digests(leadership.instance, lambda: leadership.digest_key,
                               stale_s=max(3.0, 1.5 * leadership.lease_s))
        book = ClusterBook(local, self.digests, lambda customer: partition_of(
            customer, leadership.partitions) in leadership.taking)
        self.experience.book = self.experience.engine.book = book
        self.digest_channel = DigestChannel(leadership, self.digests, local, self.kpis)

    def _partition_keeper(self):
        """With customer partitions: what the records stream keeps of a batch, the records
        of the customers of the partitions this instance takes (controller.cluster.
        partitions); else None."""
        leadership = self.leadership
        if leadership is None or not leadership.partitions:
            return None
        from controller.cluster.partitions import Keeper, RecordPicker  # pylint: disable=import-outside-toplevel
        directory = self.kpis.directory
        picker = RecordPicker(leadership.partitions,
                              functools.partial(validation.ip_address, "address"))
        return Keeper(picker, lambda: leadership.taking, lambda: directory.current()[1])

    def watch(self, interval_s: float = 1.0) -> threading.Thread:
        """Start the watchdog: health follows the app's event loop (controller.health)."""
        thread = threading.Thread(target=self._watch, args=(interval_s,), name="cems-watchdog",
                                  daemon=True)
        thread.start()
        return thread

    def _watch(self, interval_s: float) -> None:
        while not self._watchdog_stop.wait(interval_s):
            self.check_health(time.monotonic())

    def check_health(self, now: float) -> None:
        state = self.state
        health = judge_loop(now, state.started_monotonic, state.loop_progress,
                            state.poll_interval_s, _alive(state.loop_thread))
        if self.store.listening_problem:   # a shared store whose changes this one misses
            health = Health(False, health.problems + (self.store.listening_problem,))
        if self.leadership is not None and self.leadership.problem:   # no say in mastership
            health = Health(False, health.problems + (
                f"{self.leadership.problem}: this instance can neither stay nor become "
                f"master of the switches",))
        if self.stream is not None and self.stream.problem:   # blind to the probes
            health = Health(False, health.problems + (f"records stream: {self.stream.problem}",))
        changed = health.serving != state.health.serving
        state.health = health  # the problems' text stays current (how long it has stalled)
        if not changed:
            return
        self.metrics.serving.set(int(health.serving))
        if self.grpc_server is not None:
            self.grpc_server.set_serving(health.serving)
        if health.serving:
            LOG.warning("serving again: the OpenFlow event loop makes progress and the store "
                        "is heard")
        else:
            LOG.error("NOT SERVING: %s", "; ".join(health.problems))

    def stop_servers(self) -> None:
        self._watchdog_stop.set()
        if self.experience_loop is not None:
            self.experience_loop.stop()
        if self.stream is not None:
            self.stream.stop()
        if self.grpc_server is not None:
            self.grpc_server.stop(grace=1.0).wait(2.0)
        if self.metrics_server is not None:
            server, _thread = self.metrics_server
            server.shutdown()
        self.store.close()


def build_experience(config: ControllerConfig, kpis: KpiStore):
    """The experience core: book, assessor (with the config's QoE settings) and engine."""
    settings = QualitySettings(
        config.qoe_iptv_frame_rate, dict(config.qoe_iptv_frame_rates),
        WebAnchors(*config.qoe_web_anchors, "the controller's config (qoe.web_anchors)")
        if config.qoe_web_anchors else G1030_FIG_II4)
    book = ExperienceBook()
    return Experience(book, Assessor(book, kpis.directory, settings),
                      ExperienceEngine(book, ZoomBook(), kpis, kpis.directory))


def _alive(thread) -> bool | None:
    """Whether a native or green thread still runs (None: no thread yet)."""
    if thread is None:
        return None
    if hasattr(thread, "is_alive"):
        return thread.is_alive()
    return not getattr(thread, "dead", False)


_pending: list[Runtime] = []
_lock = threading.Lock()


def offer_runtime(runtime: Runtime) -> None:
    """Give the next CemsApp instance its runtime."""
    with _lock:
        _pending.append(runtime)


def take_runtime() -> Runtime:
    """The runtime offered by main(), or one built from $CEMS_CONFIG (Ryu's manager)."""
    with _lock:
        if _pending:
            return _pending.pop()
    return build_runtime_from_environment()


def build_runtime_from_environment() -> Runtime:
    """Runtime from the config file named by $CEMS_CONFIG (defaults without it), started."""
    path = os.environ.get("CEMS_CONFIG")
    config = parse_config(read_config_file(path) if path else {})
    runtime = Runtime.build(config)
    runtime.start_servers()
    return runtime
