"""T62 over the gRPC daemons for the face-FL methods: no class-embedding row leaves.

The FedAvg case is tests/integration/test_embedding_egress.py; this extends
it to the methods that add something to a round. In-process daemons run the
face trainer with fedgc, privacyface or fedface against a real aggregator
process; their transport records every outbound message and byte (protocol
messages, upload payloads, cluster releases). Every row of every private
head, as held when the round's upload and release were made, is searched for
in what was sent, raw and normalised, as float32 and float64, and every
released centre is compared with every row by cosine (a copy rounded to
float32 differs in its last bits, so bytes alone would miss it): none may
appear. Every release that left must be on the sender's own zCDP ledger,
one per round. The cosine search finds unit rows planted in a release, so
it can fail.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients.daemon import Daemon
from clients.training.face_trainer import FaceTrainer, FaceTrainingSettings, initial_model
from clients.training.privacyface import zcdp_epsilon
from clients.training.synthetic import LocalUpdate
from clients.transport import Transport, open_channel
from protocol.he_messages import AnyClientMessage
from protocol.messages import MaskedInput
from protocol.method_messages import ClusterRelease, MethodState
from protocol.policy import ClientPolicy
from secagg_pb import codec
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

CLIENTS = (1, 2, 3)
ROUNDS = 2


def settings(method: str) -> FaceTrainingSettings:
    return FaceTrainingSettings(
        data="synthetic:48:4",
        shards=3,
        image_size=16,
        embedding_dim=16,
        batch_size=16,
        seed=3,
        device="cpu",
        threads=1,
        method=method,
        dplc_epsilon=8.0,  # a real budget: (8, 1e-5) over both releases
        dplc_bits=1,
        dplc_releases=ROUNDS,
    )


class RecordingTransport(Transport):
    """Keeps every message and every byte string the client puts on the wire."""

    messages: list[AnyClientMessage]
    sent: list[bytes]

    def send(self, msg: AnyClientMessage, timeout: float = 60.0) -> None:
        self.messages.append(msg)
        if isinstance(msg, MaskedInput):
            self.sent.append(msg.payload)
        self.sent.append(codec.client_to_proto(msg).SerializeToString())
        super().send(msg, timeout)


class Watched:
    """The face trainer, remembering every head row it held when it uploaded and released."""

    def __init__(self, client: int, method: str) -> None:
        self.inner = FaceTrainer(client, settings(method))
        self.rows: list[np.ndarray] = []

    @property
    def method(self) -> str:
        return self.inner.method

    @property
    def last(self) -> object:
        return self.inner.last

    def receive(self, state: MethodState) -> None:
        self.inner.receive(state)

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        update = self.inner(model, round_)
        head = self.inner._head
        assert head is not None
        self.rows.extend(head.weight.detach().cpu().numpy().astype(np.float64).copy())
        return update


def leaked_rows(sent: list[bytes], rows: list[np.ndarray]) -> int:
    """Rows whose first 8 values, raw or normalised, appear as float32 or float64."""
    count = 0
    for row in rows:
        unit = row / np.linalg.norm(row)
        patterns = [r[:8].astype(t).tobytes() for r in (row, unit) for t in ("<f4", "<f8")]
        if any(p in blob for blob in sent for p in patterns):
            count += 1
    return count


def near_copies(releases: list[ClusterRelease], rows: list[np.ndarray]) -> int:
    """Rows that some released centre points at (cosine within 1e-5 of 1)."""
    if not rows:
        return 0
    centers = [r.arrays()[0] for r in releases if len(r)]
    if not centers:
        return 0
    unit = np.stack([row / np.linalg.norm(row) for row in rows])
    cosines = unit @ np.concatenate(centers).T  # (rows, centres), centres are unit
    return int(np.sum(cosines.max(axis=1) >= 1 - 1e-5))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


@pytest.mark.parametrize("method", ["fedgc", "privacyface", "fedface"])
def test_t62_no_head_row_leaves_a_method_daemon_only_accounted_releases(
    cluster: Cluster, method: str
) -> None:
    theta = initial_model(settings(method))
    np.save(cluster.workdir / "theta.npy", theta)
    cluster.start_aggregator(
        {
            "listen": "127.0.0.1:0",
            "state_dir": "state",
            "insecure": True,
            "profile": "semi-honest",
            "dim": theta.size,
            "initial_model": "theta.npy",
            "method": method,
            "embedding_dim": 16,
            "max_weight": 64,
            "rounds": ROUNDS,
            "phase_timeout_s": 8.0,
            "train_timeout_s": 120.0,
            "start_timeout_s": 30.0,
            "poll_wait_s": 1.0,
        },
        extra=["--clients", str(len(CLIENTS))],
    )
    trainers = {c: Watched(c, method) for c in CLIENTS}
    transports: dict[int, RecordingTransport] = {}
    threads = []
    for c in CLIENTS:
        transport = RecordingTransport(open_channel(f"127.0.0.1:{cluster.port}", None), c)
        transport.messages, transport.sent = [], []
        transports[c] = transport
        daemon = Daemon(
            c,
            transport,
            trainers[c],
            signing_key=None,
            roster={},
            policy=ClientPolicy(colluders=0).with_opt_in("semi-honest"),
            poll_timeout=5.0,
            method=method,
        )
        threads.append(threading.Thread(target=daemon.run, daemon=True))
    for thread in threads:
        thread.start()
    assert cluster.wait(timeout=300) == 0
    for thread in threads:
        thread.join(timeout=10)
    assert [r["round"] for r in cluster.rounds() if r["completed"]] == list(range(ROUNDS))
    sent = [b for t in transports.values() for b in t.sent]
    rows = [row for t in trainers.values() for row in t.rows]
    assert len(rows) == ROUNDS * 48  # every row of every head, every round
    assert sum(len(b) for b in sent) > 100_000  # the masked uploads were recorded
    assert leaked_rows(sent, rows) == 0
    released = [m for t in transports.values() for m in t.messages if isinstance(m, ClusterRelease)]
    assert near_copies(released, rows) == 0
    for c in CLIENTS:
        releases = [m for m in transports[c].messages if isinstance(m, ClusterRelease)]
        ledger = trainers[c].inner._ledger
        if method == "fedface":  # S_k rides inside the masked vector; nothing in the clear
            assert releases == [] and ledger is None
            continue
        assert [r.round for r in releases] == list(range(ROUNDS))  # one a round, each charged
        assert ledger is not None and ledger.releases == ROUNDS
        assert ledger.epsilon == pytest.approx(zcdp_epsilon(ROUNDS * ledger.config.rho, 1e-5))
        assert ledger.epsilon <= 8.0 + 1e-9


def test_t62_the_search_finds_rows_planted_in_a_release() -> None:
    rng = np.random.default_rng(0)
    rows = [rng.standard_normal(16) * 3 for _ in range(4)]
    planted = ClusterRelease.of(1, 0, np.stack(rows[1:3]), [5.0, 5.0], [0.1, 0.1])
    wire = codec.parse_any_client_message(codec.client_to_proto(planted).SerializeToString())
    assert isinstance(wire, ClusterRelease)
    assert near_copies([wire], rows) == 2
    noisy = ClusterRelease.of(1, 0, np.stack(rows[1:3]) + 0.3, [5.0, 5.0], [0.1, 0.1])
    assert near_copies([noisy], rows) == 0
