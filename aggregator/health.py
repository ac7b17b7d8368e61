"""grpc.health.v1.Health without the reference servicer's deadlock, and with bounded Watch.

Why not ``grpc_health.v1.health.HealthServicer``: its non-blocking Watch sends
the first status while holding the servicer's lock, and grpcio's sync server
makes that send wait for the completion-queue polling thread. The callback
that forgets a cancelled Watch runs *on* that polling thread and takes the
same lock. One Watch starting while another is cancelled (or ``set`` running
while any Watch is cancelled) is then a lock-order cycle: the polling thread
waits for the lock, the lock holder waits for the polling thread, and since
that one thread delivers every event of the server, every later call
(Poll, Health.Check) times out and ``server.stop`` never returns (issue 15).

Here no lock is ever held while anything is sent: ``set`` only records the
status and wakes watchers; each Watch is a generator that waits on a
condition with a timeout, yields outside the lock and notices a cancelled
call through ``context.is_active()``. Watches run on their own small thread
pool (never the protocol workers), at most ``max_watchers`` at once and
``per_peer`` per peer address, each for at most ``max_watch_s`` (the client
simply watches again); a Watch over a cap gets RESOURCE_EXHAUSTED at once.
The request and response types are the grpc health library's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2

SERVICE_NAME = "grpc.health.v1.Health"
Status = health_pb2.HealthCheckResponse
WAKE_S = 1.0  # a Watch re-checks whether its call is still active at least this often


def peer_host(context: grpc.ServicerContext) -> str:
    """The peer's address without its port ("ipv4:127.0.0.1:5555" -> "ipv4:127.0.0.1")."""
    peer = context.peer() or ""
    return peer.rpartition(":")[0] or peer


class BoundedHealth:
    """Health.Check and Health.Watch over a status table; ``handler()`` registers it."""

    def __init__(self, *, max_watchers: int = 8, per_peer: int = 2, max_watch_s: float = 300.0):
        self.max_watchers = max_watchers
        self.per_peer = per_peer
        self.max_watch_s = max_watch_s
        self._cond = threading.Condition()
        self._status: dict[str, int] = {"": Status.SERVING}
        self._version = 0  # bumped on every change; watchers compare it
        self._frozen = False
        self._closed = False
        self._watching: dict[str, int] = {}
        # A few threads beyond the cap so that a Watch over it is refused at once,
        # never queued behind the watchers that hold the pool.
        self.pool = futures.ThreadPoolExecutor(
            max_workers=max_watchers + 2, thread_name_prefix="health-watch"
        )

    # ----------------------------------------------------------------- status

    def set(self, service: str, status: int) -> None:
        """Record ``service``'s status; a no-op if unchanged or after graceful shutdown."""
        with self._cond:
            if self._frozen or self._status.get(service) == status:
                return
            self._status[service] = status
            self._version += 1
            self._cond.notify_all()

    def get(self, service: str) -> int | None:
        with self._cond:
            return self._status.get(service)

    def enter_graceful_shutdown(self) -> None:
        """Every service NOT_SERVING, for good (later ``set`` calls are ignored)."""
        with self._cond:
            for service in self._status:
                self._status[service] = Status.NOT_SERVING
            self._frozen = True
            self._version += 1
            self._cond.notify_all()

    def close(self) -> None:
        """End every Watch now (server shutdown); new ones are refused.

        The pool itself is left to :meth:`shutdown` once the server has
        stopped: the server's polling thread dies if it cannot submit a call.
        """
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def shutdown(self) -> None:
        """Stop the Watch pool; only after the gRPC server has stopped."""
        self.pool.shutdown(wait=False)

    @property
    def watching(self) -> int:
        with self._cond:
            return sum(self._watching.values())

    # ------------------------------------------------------------------- RPCs

    def check(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        status = self.get(request.service)
        if status is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return Status(status=status)

    def watch_rpc(
        self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        peer = peer_host(context)
        with self._cond:
            total = sum(self._watching.values())
            mine = self._watching.get(peer, 0)
            refused = self._closed or total >= self.max_watchers or mine >= self.per_peer
            if not refused:
                self._watching[peer] = mine + 1
        if refused:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many health watches")
        try:
            yield from self._watch(request.service, context)
        finally:
            with self._cond:
                left = self._watching[peer] - 1
                if left:
                    self._watching[peer] = left
                else:
                    del self._watching[peer]

    def _watch(
        self, service: str, context: grpc.ServicerContext
    ) -> Iterator[health_pb2.HealthCheckResponse]:
        end = time.monotonic() + self.max_watch_s
        sent: int | None = None
        version = -1
        while context.is_active() and time.monotonic() < end:
            with self._cond:
                if self._closed:
                    return
                if version == self._version:
                    self._cond.wait(WAKE_S)
                    continue
                version = self._version
                status = self._status.get(service, Status.SERVICE_UNKNOWN)
            if status != sent:  # yielded outside the lock
                sent = status
                yield Status(status=status)

    def handler(self) -> grpc.GenericRpcHandler:
        """A generic handler for the Health service, Watch on its own bounded pool."""
        from grpc_health.v1 import health_pb2 as messages

        def watch(
            request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext
        ) -> Iterator[health_pb2.HealthCheckResponse]:
            return self.watch_rpc(request, context)

        watch.experimental_thread_pool = self.pool  # type: ignore[attr-defined]
        decode = messages.HealthCheckRequest.FromString
        encode = messages.HealthCheckResponse.SerializeToString
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check, request_deserializer=decode, response_serializer=encode
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    watch, request_deserializer=decode, response_serializer=encode
                ),
            },
        )
