"""T61: canaries planted by clients never land anywhere on the aggregator.

Each client puts a unique 128-bit canary into its update (a repeating block
of its 16 bytes, scaled into [0, 1]) and keeps another in a private "class embedding" buffer
that the protocol never sends. After three rounds against a real aggregator
process, every artefact the aggregator leaves (SQLite database and WAL,
checkpoints, round log, its log file, every /metrics and /status page seen
during the run, and the error texts of bad requests that carry a canary) is
scanned for every encoding of every canary. The same scan run on the plain
profile (updates in the clear) finds the update canaries, so it can fail.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest

from clients.daemon import Daemon
from clients.training.synthetic import LocalUpdate
from clients.transport import Transport, open_channel
from protocol.policy import ClientPolicy
from secagg.packing import pack
from secagg_pb.v1 import secagg_pb2 as pb
from secagg_pb.v1 import secagg_pb2_grpc as pb_grpc
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

DIM = 256
CLIENTS = (1, 2, 3)


def canary(label: str, client: int) -> bytes:
    """A unique 128-bit marker per client and buffer."""
    return hashlib.sha256(f"T61 {label} canary of client {client}".encode()).digest()[:16]


@dataclass
class CanaryTrainer:
    """Sends an update that repeats the update canary; keeps the embedding canary local."""

    client: int

    def __post_init__(self) -> None:
        block = np.frombuffer(canary("update", self.client), dtype=np.uint8)
        self.update = np.resize(block.astype(np.float32) / 255.0, DIM).astype(np.float64)
        raw = np.frombuffer(canary("embedding", self.client), dtype=np.uint8)
        self.class_embeddings = np.resize(raw.astype(np.float32) / 255.0, (4, 16))

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        return LocalUpdate(self.update.copy(), None, 1)


def encodings(marker: bytes) -> list[bytes]:
    """Every way the marker could be written: raw, text, and as the values it rides in."""
    values = np.frombuffer(marker, dtype=np.uint8).astype(np.int64)
    found = [
        marker,
        marker.hex().encode(),
        marker.hex().upper().encode(),
        base64.b64encode(marker),
        repr(list(values)).encode(),
        ", ".join(str(v) for v in values).encode(),
    ]
    for dtype in ("<f4", "<f8", "<i8", "<u8", "<i4"):
        found.append(values.astype(dtype).tobytes())
    for bits in range(8, 41):  # the packed form, whatever modulus the round chose
        found.append(pack(values.astype(np.uint64), bits))
    as_floats = values.astype(np.float32) / 255.0
    found += [as_floats.tobytes(), as_floats.astype("<f8").tobytes()]
    return found


def markers() -> dict[str, list[bytes]]:
    return {
        f"{label} canary of client {c}": encodings(canary(label, c))
        for label in ("update", "embedding")
        for c in CLIENTS
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def _error_texts(port: int) -> list[bytes]:
    """Bad requests that carry a canary; what comes back must not echo it."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = pb_grpc.AggregatorStub(channel)  # type: ignore[no-untyped-call]
    marker = canary("update", 1)
    texts = []
    calls = [
        lambda: stub.Submit(
            pb.ClientMessage(abort=pb.ClientAbort(client=99, round=0, reason=marker.hex())),
            timeout=5,
        ),
        lambda: stub.Upload(
            iter(
                [
                    pb.UploadChunk(
                        client=1,
                        round=0,
                        upload_id=marker.hex(),
                        offset=0,
                        total_length=3,
                        data=marker * 4,
                        sha256=marker * 2,
                    )
                ]
            ),
            timeout=5,
        ),
        lambda: stub.Submit(pb.ClientMessage(), timeout=5),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as exc:
            texts.append(f"{exc.code()} {exc.details()}".encode())
    channel.close()
    return texts


def run_rounds(cluster: Cluster, profile: str) -> list[bytes]:
    """Three rounds with in-process daemons; returns everything the aggregator exposed."""
    operator = f"127.0.0.1:{_free_port()}"
    cluster.start_aggregator(
        {
            "listen": "127.0.0.1:0",
            "state_dir": "state",
            "insecure": True,
            "profile": profile,
            "dim": DIM,
            "rounds": 3,
            "phase_timeout_s": 8.0,
            "start_timeout_s": 30.0,  # a round starts as soon as every client is present
            "poll_wait_s": 1.0,
            "operator_listen": operator,
        },
        extra=["--clients", str(len(CLIENTS))],
    )
    exposed = _error_texts(cluster.port)
    trainers = {c: CanaryTrainer(c) for c in CLIENTS}
    threads = []
    for c in CLIENTS:
        channel = open_channel(f"127.0.0.1:{cluster.port}", None)
        daemon = Daemon(
            c,
            Transport(channel, c),
            trainers[c],
            signing_key=None,
            roster={},
            policy=ClientPolicy(colluders=0).with_opt_in(profile),
            poll_timeout=5.0,
        )
        threads.append(threading.Thread(target=daemon.run, daemon=True))
    for thread in threads:
        thread.start()
    while cluster.aggregator is not None and cluster.aggregator.poll() is None:
        for page in ("metrics", "status"):
            try:
                with urllib.request.urlopen(f"http://{operator}/{page}", timeout=1) as reply:
                    exposed.append(reply.read())
            except OSError:
                pass
        time.sleep(0.3)
    assert cluster.wait(timeout=5) == 0
    for thread in threads:
        thread.join(timeout=10)
    completed = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in completed] == [0, 1, 2]
    for path in sorted(cluster.workdir.rglob("*")):
        if path.is_file():
            exposed.append(path.read_bytes())
    return exposed


def hits(exposed: list[bytes]) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, patterns in markers().items():
        count = sum(blob.count(p) for blob in exposed for p in patterns)
        if count:
            found[name] = count
    return found


def test_t61_no_canary_reaches_any_aggregator_artefact(cluster: Cluster) -> None:
    exposed = run_rounds(cluster, "semi-honest")
    files = [p.name for p in cluster.workdir.rglob("*") if p.is_file()]
    assert any(name.endswith(".npy") for name in files)  # checkpoints were scanned
    assert any("sqlite" in name or name.endswith(".db") for name in files)
    assert sum(len(b) for b in exposed) > 10_000
    assert hits(exposed) == {}


def test_t61_the_scan_finds_canaries_sent_in_the_clear(cluster: Cluster) -> None:
    """Positive control: the plain profile stores the updates, and the scan sees them."""
    found = hits(run_rounds(cluster, "plain"))
    assert set(found) == {f"update canary of client {c}" for c in CLIENTS}
