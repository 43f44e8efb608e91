"""Limits that keep held streams from starving everyone else (shell).

The gRPC server is synchronous: every open stream (WatchEvents, an agent's WatchTasks, a
probe's ExportRecords, Health/Watch, reflection) holds one worker thread for as long as it
lives, and with every worker held no unary call (GetStatus, ChangeSls) is answered at all.
StreamLimits refuses a stream beyond `max_streams` open at once, or beyond `per_client`
open from one client address, with RESOURCE_EXHAUSTED and a message that says which limit
and how to raise it; the server has more workers than `max_streams`, so the rest always
serve unary calls. Clients on the unix socket (local processes, such as probes in network
namespaces) count against the total only.
"""

import collections
import threading

import grpc


def client_of(peer: str) -> str | None:
    """'ipv4:127.0.0.1:5555' -> 'ipv4:127.0.0.1' (the address without the port); None for
    a unix-socket peer."""
    if peer.startswith("unix"):
        return None
    host, _, _port = peer.rpartition(":")
    return host or peer


class StreamLimits(grpc.ServerInterceptor):
    def __init__(self, max_streams: int, per_client: int):
        self.max_streams = max_streams
        self.per_client = per_client
        self._lock = threading.Lock()
        self._open = 0
        self._by_client: collections.Counter = collections.Counter()
        self.refused_total = 0

    def open_streams(self) -> int:
        with self._lock:
            return self._open

    def _enter(self, context) -> str | None:
        client = client_of(context.peer())
        with self._lock:
            problem = ""
            if self._open >= self.max_streams:
                problem = (f"{self._open} streams are open, the most this controller serves at "
                           "once (grpc.max_streams)")
            elif client is not None and self._by_client[client] >= self.per_client:
                problem = (f"{client} has {self._by_client[client]} streams open, the most one "
                           "client may hold (grpc.max_streams_per_client)")
            if problem:
                self.refused_total += 1
            else:
                self._open += 1
                if client is not None:
                    self._by_client[client] += 1
        if problem:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"{problem}; close a stream or "
                          "try again later")
        return client

    def _leave(self, client: str | None) -> None:
        with self._lock:
            self._open -= 1
            if client is not None:
                self._by_client[client] -= 1
                if not self._by_client[client]:
                    del self._by_client[client]

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        if handler.response_streaming:
            behaviour = handler.stream_stream or handler.unary_stream

            def streamed(request, context):
                client = self._enter(context)
                try:
                    yield from behaviour(request, context)
                finally:
                    self._leave(client)
            make = (grpc.stream_stream_rpc_method_handler if handler.request_streaming
                    else grpc.unary_stream_rpc_method_handler)
            return make(streamed, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer)
        behaviour = handler.stream_unary

        def answered(request_iterator, context):
            client = self._enter(context)
            try:
                return behaviour(request_iterator, context)
            finally:
                self._leave(client)
        return grpc.stream_unary_rpc_method_handler(
            answered, request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer)
