"""Start the controller's gRPC server with health checking and reflection (shell)."""

import threading
from concurrent import futures

import grpc
from cems.v1 import status_pb2 as pb
from cems.v1 import status_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from controller.api.status import StatusServicer
from controller.config import Address
from controller.state import PublishedState


class GrpcServer:
    """The running server; stop() ends watch streams and shuts it down."""

    def __init__(self, server, stop_event: threading.Event, health_servicer):
        self._server = server
        self._stop_event = stop_event
        self._health = health_servicer

    def stop(self, grace: float = 1.0):
        self._stop_event.set()
        self._health.enter_graceful_shutdown()
        return self._server.stop(grace)


def serve_grpc(state: PublishedState, address: Address, max_workers: int = 32
               ) -> tuple[GrpcServer, int]:
    """Serve StatusService (+ health, reflection) on address; returns (server, bound port)."""
    stop_event = threading.Event()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="cems-grpc"))
    pb_grpc.add_StatusServiceServicer_to_server(StatusServicer(state, stop_event), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    service_names = (pb.DESCRIPTOR.services_by_name["StatusService"].full_name,
                     health.SERVICE_NAME, reflection.SERVICE_NAME)
    reflection.enable_server_reflection(service_names, server)
    port = server.add_insecure_port(str(address))
    if port == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    server.start()
    for name in ("", service_names[0]):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return GrpcServer(server, stop_event, health_servicer), port
