"""The aggregator stays up under hostile traffic and refuses bad settings (issue 15).

Real aggregator and daemon processes on loopback, each test bounded to seconds:

- Health.Watch churn (issue 15 item 1): threads opening and cancelling
  ``grpc.health.v1.Health/Watch`` while rounds run and after training has
  finished must leave Health.Check and Poll answering, and SIGTERM must stop
  the process.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.server import SERVICE
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc
from tests.integration.harness import Cluster, expected_sha256, wait_for

pytestmark = pytest.mark.integration

DIM = 64
Status = health_pb2.HealthCheckResponse


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def base_config(**extra: object) -> dict[str, object]:
    config: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "state_dir": "state",
        "insecure": True,
        "profile": "semi-honest",
        "dim": DIM,
        "rounds": 1,
        "phase_timeout_s": 8.0,
        "start_timeout_s": 30.0,
        "poll_wait_s": 1.0,
        "max_workers": 16,
    }
    config.update(extra)
    return config


def completed_exact(cluster: Cluster) -> list[int]:
    """Rounds recorded as completed, each checked for the exact sum."""
    path = cluster.workdir / "state" / "rounds.jsonl"
    if not path.exists():
        return []
    done = []
    for r in cluster.rounds():
        if r["completed"]:
            survivors = r["survivors"]
            assert isinstance(survivors, list)
            assert r["total_sha256"] == expected_sha256(survivors, int(str(r["round"])), DIM)
            done.append(int(str(r["round"])))
    return done


class WatchChurn:
    """Threads that open Health/Watch, read the first status, cancel, and again."""

    def __init__(self, port: int, threads: int) -> None:
        self.stop = threading.Event()
        self.opened = 0
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(port,), daemon=True) for _ in range(threads)
        ]

    def _run(self, port: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while not self.stop.is_set():
                call = stub.Watch(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
                try:
                    next(call)
                except (grpc.RpcError, StopIteration):
                    pass
                call.cancel()
                with self._lock:
                    self.opened += 1

    def __enter__(self) -> WatchChurn:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=5)


def answers(port: int) -> int:
    """Health.Check's status and one Poll, each within 5 s (raises RpcError otherwise)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        status = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=5
        )
        pb_grpc.AggregatorStub(channel).Poll(pb.PollRequest(client=1), timeout=5)
        return int(status.status)


@pytest.mark.slow
def test_health_watch_churn_starves_nothing_and_sigterm_stops(cluster: Cluster) -> None:
    cluster.start_aggregator(base_config(), extra=["--clients", "3"], exit_when_finished=False)
    assert cluster.aggregator is not None
    with WatchChurn(cluster.port, threads=8) as churn:
        time.sleep(6.0)  # churn alone: the server keeps answering
        assert answers(cluster.port) == Status.SERVING
        started = time.monotonic()
        for c in (1, 2, 3):
            cluster.start_client(c, ["--insecure", "--exact-levels"])
        assert wait_for(lambda: completed_exact(cluster) == [0], timeout=30)
        took = time.monotonic() - started
        # Finished: the status flips once to NOT_SERVING while Watches keep churning.
        assert wait_for(lambda: answers(cluster.port) == Status.NOT_SERVING, timeout=10)
        time.sleep(3.0)
        assert answers(cluster.port) == Status.NOT_SERVING
        assert churn.opened > 100
        cluster.aggregator.send_signal(signal.SIGTERM)
        assert cluster.aggregator.wait(timeout=15) == 0
    assert took < 25, f"an honest round under Watch churn took {took:.1f} s"


def test_health_watch_is_capped_per_peer_and_follows_changes() -> None:
    """Over the per-peer cap a Watch is refused at once; an open one sees each change once."""
    from concurrent import futures as cf

    from aggregator.health import BoundedHealth

    health = BoundedHealth(max_watchers=4, per_peer=1, max_watch_s=30)
    server = grpc.server(cf.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((health.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    health.set(SERVICE, Status.NOT_SERVING)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=SERVICE)
            first = stub.Watch(request, timeout=10)
            assert next(first).status == Status.NOT_SERVING
            second = stub.Watch(request, timeout=10)
            with pytest.raises(grpc.RpcError) as refused:
                next(second)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            health.set(SERVICE, Status.NOT_SERVING)  # unchanged: nothing is sent
            health.set(SERVICE, Status.SERVING)
            assert next(first).status == Status.SERVING
            assert stub.Check(request, timeout=5).status == Status.SERVING
            first.cancel()
            assert wait_for(lambda: health.watching == 0, timeout=5)
            with pytest.raises(grpc.RpcError) as unknown:
                stub.Check(health_pb2.HealthCheckRequest(service="nope"), timeout=5)
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        health.close()
        server.stop(0).wait()
        health.shutdown()
