"""Start the controller's gRPC server with health checking and reflection (shell)."""

import os
import threading
from concurrent import futures

import grpc
from cems.v1 import customer_pb2, policy_pb2, probe_pb2, qoe_pb2
from cems.v1 import status_pb2 as pb
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controller.api.auth import AuthInterceptor
from controller.api import health
from controller.api.limits import StreamLimits
from controller.api.customer import ReportServicer, SlaServicer, SlsServicer
from controller.monitor.active import ActiveTests
from controller.api.active import ActiveTestServicer
from controller.api.mirror import MirrorServicer
from controller.api.network import NetworkServicer
from controller.api.policy import PolicyServicer
from controller.api.qoe import QoeServicer
from controller.api.probe import ProbeServicer
from controller.api.status import StatusServicer
from controller.config import Address
from controller.csm.service import CustomerChanged, CustomerService, Gate
from controller.monitor.directory import CustomerDirectory
from controller.monitor.scope import scope_of
from controller.csm.store import CsmStore
from controller.monitor.kpis import KpiStore
from controller.state import PublishedState


def build_service_handler(servicer, service, messages_module) -> grpc.GenericRpcHandler:
    """Handlers for every method of `service` that parse requests themselves.

    gRPC's own deserialisation answers a malformed request with INTERNAL; parsing here lets
    cems answer INVALID_ARGUMENT with the message type that was expected.
    """
    handlers = {}
    for method in service.methods:
        request_cls = getattr(messages_module, method.input_type.name)
        response_cls = getattr(messages_module, method.output_type.name)
        behaviour = getattr(servicer, method.name)

        def parse(raw, context, request_cls=request_cls):
            try:
                return request_cls.FromString(raw)
            except DecodeError as err:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"request is not a valid {request_cls.DESCRIPTOR.full_name}: {err}")

        def call(raw, context, behaviour=behaviour, parse=parse):
            return behaviour(parse(raw, context), context)

        def call_stream(raw_iterator, context, behaviour=behaviour, parse=parse):
            return behaviour((parse(raw, context) for raw in raw_iterator), context)

        if method.client_streaming:
            if method.server_streaming:
                raise ValueError(f"{method.full_name}: bidirectional streams are not served")
            handlers[method.name] = grpc.stream_unary_rpc_method_handler(
                call_stream, request_deserializer=None,
                response_serializer=response_cls.SerializeToString)
            continue
        make = (grpc.unary_stream_rpc_method_handler if method.server_streaming
                else grpc.unary_unary_rpc_method_handler)
        handlers[method.name] = make(call, request_deserializer=None,
                                     response_serializer=response_cls.SerializeToString)
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


class GrpcServer:
    """The running server; stop() ends watch streams and shuts it down."""

    def __init__(self, server, stop_event: threading.Event, health_servicer,
                 service_names: tuple[str, ...] = ("",), limits: StreamLimits | None = None,
                 auth: AuthInterceptor | None = None):
        self.limits = limits
        self.auth = auth
        self._server = server
        self._stop_event = stop_event
        self._health = health_servicer
        self.service_names = service_names

    def set_serving(self, serving: bool) -> None:
        """Health of every service: SERVING, or NOT_SERVING while the controller is up but
        not doing its work (GetStatus says why)."""
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in self.service_names:
            self._health.set(name, status)

    def stop(self, grace: float = 1.0):
        self._stop_event.set()
        self._health.enter_graceful_shutdown()
        return self._server.stop(grace)


def server_credentials(cert_path: str, key_path: str, client_ca_path: str = ""):
    """TLS credentials for the server; with a client CA, clients must present a certificate
    it signed (mTLS), whose common name can then name the principal."""
    def read(path):
        with open(path, "rb") as stream:
            return stream.read()
    client_ca = read(client_ca_path) if client_ca_path else None
    return grpc.ssl_server_credentials([(read(key_path), read(cert_path))],
                                       root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def serve_grpc(state: PublishedState, address: Address, csm: CsmStore | None = None,
               gateway_dpid: int = 0, capacities: dict | None = None, on_change=None,
               max_workers: int = 64, credentials=None, kpis: KpiStore | None = None,
               unix_socket: str = "", mirror=None, active=None, max_streams: int = 32,
               max_streams_per_client: int = 8, forget_host=None, experience=None,
               policy=None) -> tuple[GrpcServer, int]:
    """Serve StatusService; with `kpis` ProbeService; with `csm` SlaService, SlsService,
    ReportService, ActiveTestService, (with `mirror`, a MirrorRules) MirrorService, (with
    `experience`) QoeService and (with `policy`, a PolicyLoop) PolicyService behind
    bearer-token authentication; plus health and reflection, on address. `on_change` hears
    every stored customer change (a controller.csm.service.CustomerChanged). At most
    `max_streams` streams are open at once (`max_streams_per_client` per client address), so
    that `max_workers - max_streams` workers always answer unary calls.
    Returns (server, bound port)."""
    if not 0 < max_streams < max_workers:
        raise ValueError(f"max_streams ({max_streams}) must be above 0 and below max_workers "
                         f"({max_workers}): the rest of the workers answer unary calls")
    active = active or ActiveTests()
    stop_event = threading.Event()
    # Which customer an address, a record or a caller's scope belongs to.
    directory = kpis.directory if kpis is not None else CustomerDirectory()
    directory.use_topology(lambda: state.topology)
    listeners = [on_change] if on_change is not None else []
    if csm is not None:
        directory.load(csm.all_current_sls())
        listeners.append(directory.customer_changed)

    def scope_for(principal):
        return scope_of(principal, directory.state)

    services = [(StatusServicer(state, stop_event, scope_for, capacities),
                 pb.DESCRIPTOR.services_by_name["StatusService"], pb)]
    if kpis is not None:
        services.append((ProbeServicer(kpis, state.bus, active, stop_event, scope_for,
                                       experience.assessor.records if experience else None),
                         probe_pb2.DESCRIPTOR.services_by_name["ProbeService"], probe_pb2))
    limits = StreamLimits(max_streams, max_streams_per_client)
    auth = AuthInterceptor(csm.principal_for if csm is not None else lambda token: None)
    interceptors = [limits, auth]
    if csm is not None:
        def changed(change):
            for listener in listeners:
                listener(change)
        # what other instances on a shared (PostgreSQL) store change reaches the same
        # listeners as a change made here: the directory, and the switches through on_change
        csm.watch_other_instances(
            lambda customer_id, state: changed(CustomerChanged(customer_id, state)))
        gate = Gate(csm)
        measurements = None
        if kpis is not None and experience is not None:
            def measurements(customer_id, service_class, start, end):
                records = kpis.select(customer_id, history=True, include_ended=True).records
                return experience.assessor.period(records, customer_id, service_class, start,
                                                  end)
        customers = CustomerService(csm, lambda: state.topology,
                                    lambda dpid: state.meters.get(dpid, ()), gateway_dpid,
                                    capacities, changed, measurements=measurements)
        services += [(SlaServicer(gate, customers),
                      customer_pb2.DESCRIPTOR.services_by_name["SlaService"], customer_pb2),
                     (SlsServicer(gate, customers),
                      customer_pb2.DESCRIPTOR.services_by_name["SlsService"], customer_pb2),
                     (ReportServicer(gate, customers),
                      customer_pb2.DESCRIPTOR.services_by_name["ReportService"], customer_pb2)]
        if kpis is not None:
            services.append((ActiveTestServicer(gate, active, kpis),
                             probe_pb2.DESCRIPTOR.services_by_name["ActiveTestService"],
                             probe_pb2))
        if mirror is not None:
            services.append((MirrorServicer(gate, mirror),
                             probe_pb2.DESCRIPTOR.services_by_name["MirrorService"], probe_pb2))
        services.append((NetworkServicer(gate, state, forget_host or (lambda mac: None)),
                         pb.DESCRIPTOR.services_by_name["NetworkService"], pb))
        if experience is not None:
            services.append((QoeServicer(experience, state, directory, scope_for, stop_event),
                             qoe_pb2.DESCRIPTOR.services_by_name["QoeService"], qoe_pb2))
        if policy is not None:
            services.append((PolicyServicer(gate, policy, state.bus, stop_event),
                             policy_pb2.DESCRIPTOR.services_by_name["PolicyService"],
                             policy_pb2))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="cems-grpc"),
                         interceptors=interceptors,
                         maximum_concurrent_rpcs=4 * max_workers)  # beyond: RESOURCE_EXHAUSTED
    server.add_generic_rpc_handlers(tuple(build_service_handler(servicer, descriptor, module)
                                          for servicer, descriptor, module in services))
    health_servicer = health.HealthServicer(stop_event)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = tuple(d.full_name for _, d, _ in services) + (
        health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, server)
    port = (server.add_secure_port(str(address), credentials) if credentials is not None
            else server.add_insecure_port(str(address)))
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    if unix_socket:
        if os.path.exists(unix_socket):
            os.unlink(unix_socket)  # a socket file left by an earlier run is replaced
        if not server.add_insecure_port(f"unix:{unix_socket}"):
            raise OSError(f"cannot listen for gRPC on unix socket {unix_socket}")
    server.start()
    running = GrpcServer(server, stop_event, health_servicer,
                         ("",) + service_names[:len(services)], limits, auth)
    running.set_serving(state.health.serving)
    return running, port
