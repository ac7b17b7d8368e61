"""Build and run the aggregator: gRPC server, health service, driver thread, shutdown.

mTLS is required unless the settings say ``insecure = true`` (development
only, refused otherwise, and refused on a non-loopback address unless
``allow_insecure_remote`` forces it). After recovery the store's retention
is applied once (finishing a prune a crash interrupted). SIGTERM: health
goes NOT_SERVING at once, in-flight calls get a grace period, new ones get
UNAVAILABLE, and the process exits 0.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import threading
import time
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2
from prometheus_client import Gauge

from aggregator import spool, statecheck
from aggregator.coordinator import Coordinator
from aggregator.diskfull import is_disk_full
from aggregator.durable import FolderLock
from aggregator.faults import fault_point
from aggregator.health import BoundedHealth
from aggregator.operator import OperatorServer
from aggregator.preflight import check_round_parameters
from aggregator.ratelimit import Admission, Limits
from aggregator.servicer import AggregatorServicer, certificate_identity, insecure_identity
from aggregator.settings import AggregatorSettings
from aggregator.store import Retention, Store
from aggregator.streams import StreamWatchdog, UploadSlots
from protocol.roster import Roster
from secagg.errors import ParameterError

log = logging.getLogger("secagg.aggregator")
SERVICE = "secagg.v1.Aggregator"
MAX_MESSAGE = 16 * 1024 * 1024
M_ARENA_MAX = -8  # glibc <malloc.h>
SUMMARY_EVERY_S = 60.0  # the refused-calls summary line
DRIVER_LOG_EVERY_S = 30.0  # one traceback per this long from a driver that keeps failing


def limit_malloc_arenas(count: int) -> bool:
    """Cap glibc's malloc arenas for this whole process; False where that is not glibc.

    Without a cap each thread that meets contention gets an arena of its own
    (up to 8 per core), and arenas keep the freed upload chunks and slices
    their threads allocated: RSS then grows with the number of gRPC workers a
    burst of calls has woken, not with the work (settings.malloc_arenas).
    """
    if count <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, count))


def _roster(settings: AggregatorSettings, clients: int | None) -> Roster | dict[int, bytes]:
    if settings.insecure and not settings.pki_dir:
        if settings.profile == "active" or not clients:
            raise ParameterError("without a PKI only the semi-honest profile with --clients N runs")
        return {c: b"" for c in range(1, clients + 1)}
    from aggregator.pki import load_roster

    return load_roster(Path(settings.pki_dir))


class AggregatorServer:
    """One running aggregator."""

    def __init__(self, settings: AggregatorSettings, *, clients: int | None = None) -> None:
        self.settings = settings
        limit_malloc_arenas(settings.malloc_arenas)  # first: before worker threads allocate
        if settings.insecure and not settings.allow_insecure_remote:
            from aggregator import tls  # before any state is touched or port bound

            tls.check_server_security(
                True, None, options=[("grpc.so_reuseport", 0)], address=settings.listen
            )
        roster = _roster(settings, clients)
        keys = roster.signing_keys() if isinstance(roster, Roster) else roster
        check_round_parameters(settings, len(keys))  # before any state is touched
        # One aggregator per state folder: taken before the store is opened, held until stop.
        self.folder_lock = FolderLock(Path(settings.state_dir))
        statecheck.check_before_open(Path(settings.state_dir))  # never silently reset
        self.store = Store(
            Path(settings.state_dir) / "state.sqlite",
            synchronous=settings.synchronous,
            retention=Retention(settings.keep_rounds, settings.keep_checkpoints),
        )
        self.coordinator = Coordinator(settings, keys, self.store)
        self._retention_metrics()
        self.operator: OperatorServer | None = None
        if settings.operator_listen:
            host, _, port = settings.operator_listen.rpartition(":")
            self.operator = OperatorServer(
                self.coordinator.metrics, self.status, host=host, port=int(port)
            )
        identify: Callable[[grpc.ServicerContext, int], int] = insecure_identity
        if settings.insecure:
            options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        else:
            from aggregator import tls

            tls.check_server_security(False, Path(settings.pki_dir))
            assert isinstance(roster, Roster)
            identify = certificate_identity(roster)
            options = list(tls.SERVER_OPTIONS)
        options += [
            ("grpc.max_receive_message_length", MAX_MESSAGE),
            ("grpc.max_send_message_length", MAX_MESSAGE),
        ]
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.max_workers),
            options=options,
            maximum_concurrent_rpcs=settings.max_workers * 2,
        )
        max_payload = self.coordinator.driver.max_payload()  # the mode's largest upload
        limits = Limits(
            rate=settings.rate_limit_per_s,
            burst=settings.rate_limit_burst,
            max_inflight=settings.max_inflight_per_client,
            bytes_rate=settings.upload_bytes_per_s,
            bytes_burst=2 * max_payload,  # two of the largest uploads at once
        )
        spool_dir = Path(settings.state_dir) / "spool"
        spool.clear(spool_dir)  # uploads a crash interrupted were never acknowledged
        self.servicer = AggregatorServicer(
            self.coordinator,
            identify,
            max_payload=max_payload,
            admission=Admission(limits),
            spool_dir=spool_dir,
            watchdog=StreamWatchdog(settings.stream_idle_timeout_s, settings.stream_timeout_s),
            upload_slots=UploadSlots(
                settings.max_uploads or max(1, settings.max_workers // 2),
                settings.max_uploads_per_client,
            ),
        )
        self.servicer.register(self.server)  # bodies parsed under admission (servicer.py)
        # Not grpc_health's reference servicer: its Watch deadlocks (aggregator/health.py).
        self.health = BoundedHealth()
        self.server.add_generic_rpc_handlers((self.health.handler(),))
        if settings.insecure:
            self.port = self.server.add_insecure_port(settings.listen)
            if self.port == 0:
                raise ParameterError(f"cannot listen on {settings.listen}")
        else:
            from aggregator import tls

            self.port = tls.add_secure_port(self.server, settings.listen, Path(settings.pki_dir))
        self._stop = threading.Event()
        self._driver = threading.Thread(target=self._drive, name="round-driver", daemon=True)

    def status(self) -> dict[str, Any]:
        """The coordinator's status plus what the state directory retains (`secagg status`)."""
        return {
            **self.coordinator.status(),
            "retention": self.store.retained(),
            "disk": self.servicer.disk.status(),
        }

    def _retention_metrics(self) -> None:
        """Gauges read at scrape time: state size on disk, rounds whose bodies are kept."""
        registry = self.coordinator.metrics.registry

        def state_bytes() -> float:
            kept = self.store.retained()
            return float(kept["database_bytes"] + kept["checkpoint_bytes"])

        Gauge(
            "secagg_state_bytes",
            "Bytes of state.sqlite, its WAL and the checkpoint files",
            registry=registry,
        ).set_function(state_bytes)
        Gauge(
            "secagg_retained_rounds",
            "Rounds whose message bodies the event log still holds",
            registry=registry,
        ).set_function(lambda: float(self.store.retained()["rounds_with_bodies"]))

    def _drive(self) -> None:
        errors, logged = 0, -DRIVER_LOG_EVERY_S
        summarised = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - summarised >= SUMMARY_EVERY_S:
                summarised = time.monotonic()
                summary = self.servicer.refusal_summary()
                if summary:  # one line a minute, however many calls were refused
                    log.warning("refused in the last %.0f s: %s", SUMMARY_EVERY_S, summary)
            try:
                self.coordinator.tick()
            except Exception as exc:  # the driver must survive anything a round throws
                errors += 1
                if is_disk_full(exc):
                    self.servicer.disk.record(exc)  # logged once per 30 s there
                elif time.monotonic() - logged >= DRIVER_LOG_EVERY_S:  # not 20 tracebacks/s
                    logged = time.monotonic()
                    log.exception("round driver error (%d so far)", errors)
            if self.coordinator.finished:  # set() is a no-op once it is NOT_SERVING
                self.health.set(SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
            self._stop.wait(0.05)

    def start(self) -> None:
        """Serve; NOT_SERVING, and UNAVAILABLE to every RPC, until the state is replayed."""
        for name in (SERVICE, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        self.server.start()
        if self.operator is not None:
            self.operator.start()
            log.info(
                "operator endpoint on http://%s:%d",
                self.operator.httpd.server_address[0],
                self.operator.port,
            )
        fault_point("during_recovery")
        try:
            self.coordinator.recover()
            statecheck.check_after_recovery(Path(self.settings.state_dir), self.coordinator.round)
        except BaseException:  # refused: stop serving and release the folder, then say why
            self.stop(0)
            raise
        self.store.prune(self.coordinator.round, at=time.time())
        self.servicer.ready.set()
        self._driver.start()
        for name in (SERVICE, ""):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("aggregator listening on port %d", self.port)

    def stop(self, grace: float = 5.0) -> None:
        """Graceful shutdown: NOT_SERVING first, then let in-flight calls finish."""
        self.health.enter_graceful_shutdown()
        self._stop.set()
        stopped = self.server.stop(grace)
        self.health.close()  # ends every Watch now rather than at its next wake-up
        stopped.wait()
        self.health.shutdown()
        self.servicer.watchdog.stop()
        if self.operator is not None:
            self.operator.stop()
        if self._driver.is_alive():  # it may be mid-write: let it finish before closing
            self._driver.join(timeout=10)
        self.store.close()
        self.folder_lock.release()

    def wait(self, *, exit_when_finished: bool) -> None:
        """Block until SIGTERM/SIGINT (or the last round, if asked)."""
        done = threading.Event()

        def on_signal(signum: int, frame: object) -> None:
            del frame
            log.info("signal %d: shutting down", signum)
            done.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not done.wait(0.2):
            if exit_when_finished and self.coordinator.finished:
                done.wait(2 * self.settings.poll_wait_s)  # let clients see "finished"
                break
        self.stop()
