"""The aggregator stays up under hostile traffic and refuses bad settings (issue 15).

Real aggregator and daemon processes on loopback, each test bounded to seconds:

- Health.Watch churn (issue 15 item 1): threads opening and cancelling
  ``grpc.health.v1.Health/Watch`` while rounds run and after training has
  finished must leave Health.Check and Poll answering, and SIGTERM must stop
  the process.
- Stalled uploads (item 3): 64 uploads that stall (before their first chunk,
  or after a signed one) from enrolled identities outside the cohort while 4
  honest daemons complete 5 exact rounds; in development mode (identities
  claimed, so unknown until the first chunk) a stalled stream is cut after the
  idle timeout and the upload caps refuse the excess at once.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aggregator.pki import init_pki
from aggregator.server import SERVICE
from aggregator.tls import secure_channel
from clients.lab.cluster import CLI, child_env
from protocol.request_auth import NONCE_BYTES, masked_digest, sign_request
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc
from tests.integration.harness import Cluster, expected_sha256, wait_for
from tests.integration.test_request_auth import signing_key

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


def completed_exact(cluster: Cluster, dim: int = DIM) -> list[int]:
    """Rounds recorded as completed, each checked for the exact sum."""
    path = cluster.workdir / "state" / "rounds.jsonl"
    if not path.exists():
        return []
    done = []
    for r in cluster.rounds():
        if r["completed"]:
            survivors = r["survivors"]
            assert isinstance(survivors, list)
            assert r["total_sha256"] == expected_sha256(survivors, int(str(r["round"])), dim)
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
        time.sleep(20.0)  # churn alone for 20 s (the figure): the server keeps answering
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


class StalledUploads:
    """Threads that each keep one Upload open and silent, opening another when it ends."""

    def __init__(self, channels: dict[int, grpc.Channel], per_identity: int, pki: Path | None):
        self.stop = threading.Event()
        self.codes: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pki = pki
        self._threads = [
            threading.Thread(target=self._run, args=(client, ch, i % 2 == 1), daemon=True)
            for client, ch in channels.items()
            for i in range(per_identity)
        ]

    def _chunks(
        self, client: int, signed: bool, release: threading.Event
    ) -> Iterator[pb.UploadChunk]:
        if signed:  # a first chunk signed by the identity's own key, then nothing
            digest = os.urandom(32)
            first = pb.UploadChunk(client=client, round=0, offset=0, total_length=1 << 10)
            first.data, first.sha256 = b"x" * 16, digest
            if self._pki is not None:
                auth = sign_request(
                    signing_key(self._pki, client),
                    session=os.urandom(32),
                    nonce=os.urandom(NONCE_BYTES),
                    round_=0,
                    phase="masked",
                    sender=client,
                    body=masked_digest(client, 0, digest),
                )
                first.upload_id = auth.nonce.hex()
                first.auth.CopyFrom(codec.auth_to_proto(auth))
            yield first
        release.wait(60)

    def _run(self, client: int, channel: grpc.Channel, signed: bool) -> None:
        stub = pb_grpc.AggregatorStub(channel)
        while not self.stop.is_set():
            release = threading.Event()
            future = stub.Upload.future(self._chunks(client, signed, release), timeout=60)
            try:
                future.result()
                code = "OK"
            except grpc.RpcError as exc:
                code = exc.code().name
            release.set()
            with self._lock:
                self.codes[code] += 1
            self.stop.wait(0.2)

    def __enter__(self) -> StalledUploads:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=5)


@pytest.mark.slow
def test_stalled_uploads_do_not_stop_honest_rounds(cluster: Cluster) -> None:
    pki = cluster.workdir / "pki"
    init_pki(pki, clients=8, server_names=["localhost", "127.0.0.1"], days=1)
    config = base_config(
        insecure=False,
        pki_dir=str(pki),
        profile="active",
        rounds=5,
        min_clients=4,
        max_workers=16,  # 64 stalled streams are 4x the workers
        stream_idle_timeout_s=2.0,
    )
    cluster.start_aggregator(config)
    attackers = {c: secure_channel(f"127.0.0.1:{cluster.port}", pki, c) for c in (5, 6, 7, 8)}
    try:
        with StalledUploads(attackers, per_identity=16, pki=pki) as stalls:
            time.sleep(2.0)  # every attacker stream open before the first round
            started = time.monotonic()
            for c in (1, 2, 3, 4):
                cluster.start_client(c, ["--pki-dir", str(pki), "--exact-levels"])
            assert cluster.wait(timeout=60) == 0
            took = time.monotonic() - started
    finally:
        for channel in attackers.values():
            channel.close()
    assert completed_exact(cluster) == [0, 1, 2, 3, 4]
    assert sum(stalls.codes.values()) >= 64
    # CANCELLED: the watchdog cut an idle stream (context.cancel()), as it should.
    allowed = {"CANCELLED", "FAILED_PRECONDITION", "RESOURCE_EXHAUSTED", "UNAVAILABLE"}
    assert set(stalls.codes) <= allowed, stalls.codes
    log = (cluster.workdir / "aggregator.log").read_text()
    assert "Traceback" not in log
    assert took < 45, f"5 rounds under 64 stalled uploads took {took:.1f} s"


def test_a_stalled_upload_is_cut_and_the_caps_refuse_the_excess(tmp_path: Path) -> None:
    """Development mode: the caller is only known from the first chunk, so the caps matter."""
    from aggregator.server import AggregatorServer
    from aggregator.settings import AggregatorSettings

    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=16,
        max_workers=8,
        max_uploads=3,
        stream_idle_timeout_s=1.0,
        start_timeout_s=600.0,  # no round starts: only the streams are under test
    )
    server = AggregatorServer(settings, clients=3)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    try:
        with StalledUploads({1: channel}, per_identity=6, pki=None) as stalls:
            assert wait_for(lambda: server.servicer.watchdog.cut["idle"] >= 3, timeout=10)
            assert wait_for(lambda: stalls.codes["RESOURCE_EXHAUSTED"] >= 3, timeout=10)
        # Silent from the start: cut by the idle timeout (the server cancels the call, so the
        # client sees CANCELLED). Signed first chunks: refused at once, as no round runs.
        assert stalls.codes["CANCELLED"] >= 3, stalls.codes
        assert stalls.codes["FAILED_PRECONDITION"] >= 3, stalls.codes
        assert set(stalls.codes) <= {"CANCELLED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION"}
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as other:  # workers are free
            pb_grpc.AggregatorStub(other).Poll(pb.PollRequest(client=2), timeout=5)
    finally:
        channel.close()
        server.stop(0)


def test_a_second_aggregator_on_the_same_state_folder_is_refused(cluster: Cluster) -> None:
    cluster.start_aggregator(base_config(), extra=["--clients", "3"], exit_when_finished=False)
    first = cluster.aggregator
    assert first is not None
    config = cluster.workdir / "aggregator.toml"
    second = subprocess.run(
        [*CLI, "aggregator", "serve", "--config", str(config), "--clients", "3"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
    assert "in use by another aggregator" in lines[0]
    assert answers(cluster.port) == Status.SERVING  # the first one is untouched
    first.kill()  # the kernel drops the lock with the process, even on kill -9
    first.wait(timeout=10)
    cluster.start_aggregator(base_config(), extra=["--clients", "3"], exit_when_finished=False)
    assert answers(cluster.port) == Status.SERVING


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def send_garbage(port: int, count: int, channel: grpc.Channel | None = None) -> Counter[str]:
    """``count`` undecodable Submit bodies, 24 in flight at a time; the codes seen.

    24 stays under the server's cap on concurrent calls (2 x max_workers = 32), whose
    RESOURCE_EXHAUSTED would otherwise mix into what the servicer answers.
    """
    codes: Counter[str] = Counter()
    with channel or grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        submit = channel.unary_unary(
            "/secagg.v1.Aggregator/Submit",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        bodies = [b"\x0a\xff", b"\xff" * 11, b"\x12\x05\x08\x01", b"\x7b"]
        for start in range(0, count, 24):
            stop = min(count, start + 24)
            futures = [submit.future(bodies[i % 4], timeout=30) for i in range(start, stop)]
            for f in futures:
                try:
                    f.result()
                    codes["OK"] += 1
                except grpc.RpcError as exc:
                    codes[exc.code().name] += 1
    return codes


@pytest.mark.slow
def test_undecodable_bodies_are_invalid_argument_and_rss_stays_level(cluster: Cluster) -> None:
    cluster.start_aggregator(base_config(), extra=["--clients", "3"], exit_when_finished=False)
    assert cluster.aggregator is not None
    pid = cluster.aggregator.pid
    send_garbage(cluster.port, 4000)  # warm-up: thread stacks, arenas, caches
    before = rss_bytes(pid)
    codes = send_garbage(cluster.port, 100_000)
    growth = rss_bytes(pid) - before
    assert codes == Counter({"INVALID_ARGUMENT": 100_000}), codes
    assert growth < 20 << 20, f"RSS grew {growth / 1e6:.1f} MB over 100,000 undecodable bodies"
    assert answers(cluster.port) == Status.SERVING
    log = (cluster.workdir / "aggregator.log").read_text()
    assert log.count("Traceback") == 0
    assert len(log.splitlines()) < 50  # summarised, never a line per request


def test_undecodable_bodies_are_rate_limited_per_certificate(tmp_path: Path) -> None:
    from aggregator.server import AggregatorServer
    from aggregator.settings import AggregatorSettings

    pki = tmp_path / "pki"
    init_pki(pki, clients=3, server_names=["localhost", "127.0.0.1"], days=1)
    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        pki_dir=str(pki),
        state_dir=str(tmp_path / "state"),
        dim=16,
        max_workers=16,
        rate_limit_per_s=1.0,
        rate_limit_burst=20,
        operator_listen="127.0.0.1:0",
    )
    server = AggregatorServer(settings)
    server.start()
    try:
        channel = secure_channel(f"127.0.0.1:{server.port}", pki, 2)
        codes = send_garbage(server.port, 100, channel)
        assert codes["INVALID_ARGUMENT"] in range(20, 25), codes  # the burst, and the refill
        assert codes["RESOURCE_EXHAUSTED"] == 100 - codes["INVALID_ARGUMENT"], codes
        assert server.servicer.admission.refused[2] == codes["RESOURCE_EXHAUSTED"]
        registry = server.coordinator.metrics.registry
        assert registry.get_sample_value("secagg_undecodable_total") == 100
        for code in ("INVALID_ARGUMENT", "RESOURCE_EXHAUSTED"):
            refused = registry.get_sample_value("secagg_refused_total", {"code": code})
            assert refused == codes[code], code
        summary = server.servicer.refusal_summary()  # the line the driver logs each minute
        assert summary == (
            f"{codes['INVALID_ARGUMENT']} INVALID_ARGUMENT, "
            f"{codes['RESOURCE_EXHAUSTED']} RESOURCE_EXHAUSTED"
        )
        assert server.servicer.refusal_summary() is None
    finally:
        server.stop(0)


def operator_status(cluster: Cluster) -> dict[str, object]:
    log = (cluster.workdir / "aggregator.log").read_text()
    port = re.findall(r"operator endpoint on http://127.0.0.1:(\d+)", log)[-1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=5) as reply:
        status = json.loads(reply.read())
    assert isinstance(status, dict)
    return status


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)])
    return done.returncode == 0


@pytest.mark.slow
def test_disk_full_during_uploads_is_retryable_and_rounds_recover(cluster: Cluster) -> None:
    spool = cluster.workdir / "state" / "spool"
    if not _mount_tmpfs(spool, "256k"):
        pytest.skip("needs root to mount a small tmpfs as the full disk")
    try:
        filler = spool / "filler"
        with open(filler, "wb", buffering=0) as handle:  # fill it: every upload meets ENOSPC
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:
                pass
        config = base_config(rounds=2, dim=4096, operator_listen="127.0.0.1:0")
        config["phase_timeout_s"] = 20.0
        cluster.start_aggregator(config, extra=["--clients", "3"])
        for c in (1, 2, 3):
            cluster.start_client(c, ["--insecure", "--exact-levels"])

        def refused() -> int:
            disk = operator_status(cluster)["disk"]
            assert isinstance(disk, dict)
            return int(disk["disk_full_refusals"])

        assert wait_for(lambda: refused() >= 3, timeout=30)
        filler.unlink()  # space returns: the daemons' retries go through
        assert cluster.wait(timeout=60) == 0
        assert completed_exact(cluster, dim=4096) == [0, 1]
        log = (cluster.workdir / "aggregator.log").read_text()
        assert "Traceback" not in log
        assert 1 <= log.count("disk full:") <= 3  # one warning per 30 s, not one per request
    finally:
        subprocess.run(["umount", "-l", str(spool)], check=False)


def serve_once(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    config = cluster.workdir / "aggregator.toml"
    return subprocess.run(
        [*CLI, "aggregator", "serve", "--config", str(config), "--clients", "3"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


@pytest.mark.slow
def test_a_deleted_database_is_refused_at_start(cluster: Cluster) -> None:
    cluster.start_aggregator(base_config(), extra=["--clients", "3"])
    for c in (1, 2, 3):
        cluster.start_client(c, ["--insecure", "--exact-levels"])
    assert cluster.wait(timeout=60) == 0
    assert completed_exact(cluster) == [0]
    state = cluster.workdir / "state"
    for name in ("state.sqlite", "state.sqlite-wal", "state.sqlite-shm"):
        (state / name).unlink(missing_ok=True)
    refused = serve_once(cluster)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "state.sqlite is missing" in lines[0], refused.stderr
    assert "refusing to restart training at round 0" in lines[0]
    assert not (state / "state.sqlite").exists()  # nothing was recreated
    assert completed_exact(cluster) == [0]


def test_junk_connections_do_not_flood_the_log(cluster: Cluster) -> None:
    pki = cluster.workdir / "pki"
    init_pki(pki, clients=3, server_names=["localhost", "127.0.0.1"], days=1)
    cluster.start_aggregator(base_config(insecure=False, pki_dir=str(pki), profile="active"))
    log = cluster.workdir / "aggregator.log"
    before = log.stat().st_size
    for i in range(400):
        with socket.create_connection(("127.0.0.1", cluster.port), timeout=5) as junk:
            junk.sendall(b"GET / HTTP/1.1\r\n\r\n" if i % 2 else b"\x16\x03\x01junk" * 10)
    with secure_channel(f"127.0.0.1:{cluster.port}", pki, 1) as channel:  # still serving
        pb_grpc.AggregatorStub(channel).Poll(pb.PollRequest(client=1), timeout=5)
    assert log.stat().st_size - before < 1000, log.read_text()[-2000:]


def test_a_model_download_that_stops_reading_is_cut(tmp_path: Path) -> None:
    from aggregator.server import AggregatorServer
    from aggregator.settings import AggregatorSettings

    settings = AggregatorSettings(
        listen="127.0.0.1:0",
        insecure=True,
        profile="semi-honest",
        state_dir=str(tmp_path / "state"),
        dim=2_000_000,  # an 8 MB model: far more than the client's flow-control window
        stream_idle_timeout_s=1.0,
        start_timeout_s=600.0,
    )
    server = AggregatorServer(settings, clients=3)
    server.start()
    try:
        # No BDP probing: the receive window stays at its default instead of growing until
        # the whole model fits in the client's buffers (then nothing would stall).
        options = [("grpc.http2.bdp_probe", 0)]
        with grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options) as channel:
            stub = pb_grpc.AggregatorStub(channel)
            stalled = stub.GetModel(pb.ModelRequest(client=1, round=0), timeout=30)
            first = next(stalled)  # then never read again
            assert first.total_length > 4 * (1 << 20)
            assert wait_for(lambda: server.servicer.watchdog.cut["idle"] == 1, timeout=10)
            with pytest.raises(grpc.RpcError) as cut:
                for _ in stalled:
                    pass
            assert cut.value.code() == grpc.StatusCode.CANCELLED
            full = b"".join(c.data for c in stub.GetModel(pb.ModelRequest(client=2), timeout=30))
            assert len(full) == first.total_length  # a reader that keeps reading is never cut
    finally:
        server.stop(0)
