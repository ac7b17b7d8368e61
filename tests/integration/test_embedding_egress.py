"""T62 (FedAvg over gRPC): no class embedding leaves a client daemon.

In-process daemons run the face trainer against a real aggregator process;
their transport records every outbound byte (protocol messages and upload
payloads). After each round, every row of each client's private CosFace head
is searched for in what was sent, as float32 and float64. A leaky trainer that
appends its head to the update is caught by the same search in the plain
profile, so the check can fail. (The in-memory methods are checked in
tests/unit/clients/training.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.daemon import Daemon
from clients.training.face_trainer import FaceTrainer, FaceTrainingSettings, initial_model
from clients.training.synthetic import LocalUpdate
from clients.transport import Transport, open_channel
from protocol.messages import ClientMessage, MaskedInput
from protocol.policy import ClientPolicy
from secagg_pb import codec
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

CLIENTS = (1, 2, 3)
SETTINGS = FaceTrainingSettings(
    data="synthetic:12:4", shards=3, embedding_dim=32, batch_size=16, seed=3, device="cpu"
)


class RecordingTransport(Transport):
    """Keeps a copy of every byte string the client puts on the wire."""

    sent: list[bytes]

    def send(self, msg: ClientMessage, timeout: float = 60.0) -> None:
        if isinstance(msg, MaskedInput):
            self.sent.append(msg.payload)
        self.sent.append(codec.client_to_proto(msg).SerializeToString())
        super().send(msg, timeout)


class WatchedTrainer:
    """The face trainer, remembering every head row it held; ``leak`` appends the head."""

    def __init__(self, client: int, *, leak: bool) -> None:
        self.inner = FaceTrainer(client, SETTINGS)
        self.leak = leak
        self.rows: list[np.ndarray] = []

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        if self.leak:  # the bug the test must catch: the head rides along after the model
            model = model[: model.size - self.head_size()]
        update = self.inner(model, round_)
        head = self.inner._head
        assert head is not None
        weight = head.weight.detach().cpu().numpy()
        self.rows.extend(weight.copy())
        if self.leak:
            assert update.vector is not None
            vector = np.concatenate([update.vector, weight.reshape(-1).astype(np.float64)])
            return LocalUpdate(vector, None, 1)  # weight 1: the plain payload is x itself
        return update

    def head_size(self) -> int:
        return 4 * SETTINGS.embedding_dim  # 12 identities over 3 shards: 4 rows each


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def run(cluster: Cluster, profile: str, *, leak: bool) -> tuple[list[bytes], list[np.ndarray]]:
    theta = initial_model(SETTINGS)
    extra = 4 * SETTINGS.embedding_dim if leak else 0
    np.save(cluster.workdir / "theta.npy", np.concatenate([theta, np.zeros(extra, np.float32)]))
    cluster.start_aggregator(
        {
            "listen": "127.0.0.1:0",
            "state_dir": "state",
            "insecure": True,
            "profile": profile,
            "dim": theta.size + extra,
            "initial_model": "theta.npy",
            "max_weight": 64,
            "rounds": 2,
            "phase_timeout_s": 8.0,
            "train_timeout_s": 120.0,
            "start_timeout_s": 30.0,  # a round starts as soon as every client is present
            "poll_wait_s": 1.0,
        },
        extra=["--clients", str(len(CLIENTS))],
    )
    trainers = {c: WatchedTrainer(c, leak=leak) for c in CLIENTS}
    sent: list[bytes] = []
    threads = []
    for c in CLIENTS:
        transport = RecordingTransport(open_channel(f"127.0.0.1:{cluster.port}", None), c)
        transport.sent = sent
        daemon = Daemon(
            c,
            transport,
            trainers[c],
            signing_key=None,
            roster={},
            policy=ClientPolicy(colluders=0).with_opt_in(profile),
            poll_timeout=5.0,
        )
        threads.append(threading.Thread(target=daemon.run, daemon=True))
    for thread in threads:
        thread.start()
    assert cluster.wait(timeout=300) == 0
    for thread in threads:
        thread.join(timeout=10)
    assert [r["round"] for r in cluster.rounds() if r["completed"]] == [0, 1]
    return sent, [row for t in trainers.values() for row in t.rows]


def leaked_rows(sent: list[bytes], rows: list[np.ndarray]) -> int:
    """How many head rows appear in the outbound bytes (first 8 values, f32 or f64)."""
    count = 0
    for row in rows:
        patterns = [row[:8].astype("<f4").tobytes(), row[:8].astype("<f8").tobytes()]
        if any(p in blob for blob in sent for p in patterns):
            count += 1
    return count


def test_t62_no_head_row_leaves_a_secagg_client(cluster: Cluster) -> None:
    sent, rows = run(cluster, "semi-honest", leak=False)
    assert len(rows) == 2 * 12  # every row of every head, both rounds
    assert sum(len(b) for b in sent) > 100_000  # the masked uploads were recorded
    assert leaked_rows(sent, rows) == 0


def test_t62_the_search_catches_a_trainer_that_leaks_its_head(cluster: Cluster) -> None:
    """Positive control: plain profile, head appended to the update: every row is found."""
    sent, rows = run(cluster, "plain", leak=True)
    assert leaked_rows(sent, rows) == len(rows)
