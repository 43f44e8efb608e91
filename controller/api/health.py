"""grpc.health.v1.Health that cannot be frozen by its watchers (shell).

grpcio-health-checking's servicer holds its lock while it sends on a Watch stream; many
short Watch calls at once froze a whole server here (../shared/ENVIRONMENT.md). This one
keeps a version number under a condition variable and sends outside the lock: a slow or
vanished watcher only ever delays itself. Each Watch stream holds a worker thread while it
lives, so it counts against the server's stream limits (controller.api.limits) like any
other stream.
"""

import threading

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
SERVICE_NAME = "grpc.health.v1.Health"


class HealthServicer(health_pb2_grpc.HealthServicer):
    def __init__(self, stop_event: threading.Event | None = None, poll_s: float = 0.5):
        self._changed = threading.Condition()
        self._status: dict[str, int] = {}
        self._version = 0
        self._stop = stop_event or threading.Event()
        self._poll_s = poll_s

    def set(self, service: str, status: int) -> None:
        with self._changed:
            if self._status.get(service) != status:
                self._status[service] = status
                self._version += 1
                self._changed.notify_all()

    def enter_graceful_shutdown(self) -> None:
        with self._changed:
            for service in self._status:
                self._status[service] = NOT_SERVING
            self._version += 1
            self._changed.notify_all()

    def Check(self, request, context):
        with self._changed:
            status = self._status.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {request.service!r}")
        return health_pb2.HealthCheckResponse(status=status)

    def Watch(self, request, context):
        sent = None
        seen = -1
        while context.is_active() and not self._stop.is_set():
            with self._changed:
                if self._version == seen:
                    self._changed.wait(self._poll_s)
                seen = self._version
                status = self._status.get(request.service, SERVICE_UNKNOWN)
            if status != sent:  # sent outside the lock
                sent = status
                yield health_pb2.HealthCheckResponse(status=status)
