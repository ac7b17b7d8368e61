"""bfv-masked rounds over real gRPC: an aggregator process and daemon processes.

SecAgg's masks ride inside BFV plaintexts: the aggregator sums ciphertexts,
strips the masks under encryption after Shamir recovery, and sends the
encrypted sum to the clients that unmasked; each decrypts Σ w·levels and
steps its own model. Every client uses the synthetic exact-levels trainer,
so each decrypted sum is checked for equality against the plain weighted
sum of the survivors' integer inputs, computed here.

The dropout test kills client 4 just before its masked input leaves in
round 0: its pairwise masks are rebuilt from the others' Shamir shares and
round 0 completes over clients 1–3 (threshold 3), which alone hold the model
for round 1.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aggregator.pki import init_pki
from clients.training.synthetic import exact_levels
from protocol.he_masked import parse_upload
from protocol.he_messages import HEKeyDelivery
from protocol.messages import MaskedInput
from secagg import he
from secagg_pb import codec
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

DIM = 40
LEVELS = 1 << 16


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def start(
    cluster: Cluster, clients: tuple[int, ...], *, kill: int | None = None, secure: bool = False
) -> None:
    pki = cluster.workdir / "pki"
    init_pki(pki, clients=len(clients), server_names=["localhost", "127.0.0.1"], days=1)
    cluster.start_aggregator(
        {
            "listen": "127.0.0.1:0",
            "state_dir": "state",
            "pki_dir": str(pki),
            # insecure: loopback without TLS; requests and the protocol stay signed
            **({} if secure else {"insecure": True}),
            "mode": "bfv-masked",
            "dim": DIM,
            "rounds": 2,
            "threshold": 3,  # one of four may drop
            "max_weight": 4,
            "learning_rate": 0.5,
            "phase_timeout_s": 6.0,
            "start_timeout_s": 30.0,
            "poll_wait_s": 1.0,
        }
    )
    for c in clients:
        toml = cluster.workdir / f"client-{c}.toml"
        toml.write_text(
            f'[client]\nweight = {c}\nexact_levels = true\ndump_updates_dir = "dump-{c}"\n'
            f'state_dir = "ledger-{c}"\n'
        )
        args = ["--config", str(toml), "--pki-dir", str(pki)] + ([] if secure else ["--insecure"])
        fault = "before_send_MaskedInput@0" if c == kill else None
        cluster.start_client(c, args, fault=fault)


def check_exact(cluster: Cluster, rounds: list[dict[str, object]]) -> None:
    """Every client that got a round's sum decrypted exactly Σ w·levels over the survivors."""
    for record in rounds:
        round_ = int(str(record["round"]))
        assert isinstance(record["survivors"], list)
        survivors = [int(c) for c in record["survivors"]]
        assert record["weight_sum"] is None  # encrypted: the aggregator never learns it
        assert isinstance(record["total_sha256"], str) and len(record["total_sha256"]) == 64
        levels = {c: exact_levels(c, round_, DIM, LEVELS).astype(np.uint64) for c in survivors}
        expected = sum(c * levels[c] for c in survivors)  # weight = client id
        for c in survivors:
            dump = cluster.workdir / f"dump-{c}"
            total = np.load(dump / f"he-total-{round_:06d}.npy")
            np.testing.assert_array_equal(total, expected)
            weight = int((dump / f"he-weight-{round_:06d}.txt").read_text())
            assert weight == sum(survivors)  # weight = client id
    # Each client's model took θ₁ = θ₀ + η·mean₀ from the same decrypted mean.
    means = [np.load(cluster.workdir / f"dump-{c}" / "he-mean-000000.npy") for c in (1, 2, 3)]
    assert all(np.array_equal(m, means[0]) for m in means)


def check_aggregator_saw_only_ciphertexts(cluster: Cluster, uploads: int) -> None:
    """What the aggregator logged: a keyless context, and masked uploads of ciphertexts only."""
    db = sqlite3.connect(cluster.workdir / "state" / "state.sqlite")
    bodies = []
    for seq, body in db.execute("SELECT seq, body FROM events WHERE kind = 'message'"):
        if body is None:  # a streamed upload, logged in parts
            parts = "SELECT data FROM event_parts WHERE seq = ? ORDER BY part"
            body = b"".join(row[0] for row in db.execute(parts, (seq,)))
        bodies.append(body)
    db.close()
    messages = [codec.parse_any_client_message(b) for b in bodies]
    deliveries = [m for m in messages if isinstance(m, HEKeyDelivery)]
    masked = [m for m in messages if isinstance(m, MaskedInput)]
    assert len(deliveries) == 2 and len(masked) == uploads
    for delivery in deliveries:
        assert not he.load_public(delivery.public_context, he.BFV_8192).has_secret_key
    fresh = he.blob_bounds(he.BFV_8192, fresh=True)
    for upload in masked:  # one length-prefixed ciphertext (DIM + 1 values fit one) + signature
        blobs, signature = parse_upload(upload.payload, 1)
        assert len(signature) == 64 and fresh[0] <= len(blobs[0]) <= fresh[1]


def check_ledgers(cluster: Cluster, clients: tuple[int, ...]) -> None:
    """Each client recorded, durably, one contribution per model lineage it uploaded on."""
    for c in clients:
        doc = json.loads((cluster.workdir / f"ledger-{c}" / "contributions.json").read_text())
        contributed = [k for k, v in doc["models"].items() if v["contributed"]]
        assert len(contributed) == 2, (c, doc)


@pytest.mark.parametrize(
    "secure",
    [pytest.param(False, id="insecure"), pytest.param(True, marks=pytest.mark.slow, id="mtls")],
)
def test_bfv_masked_rounds_are_exact(cluster: Cluster, secure: bool) -> None:
    start(cluster, (1, 2, 3), secure=secure)
    assert cluster.wait(timeout=150) == 0
    rounds = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in rounds] == [0, 1]
    assert all(r["cohort"] == r["survivors"] == [1, 2, 3] for r in rounds)
    check_exact(cluster, rounds)
    check_aggregator_saw_only_ciphertexts(cluster, uploads=6)
    check_ledgers(cluster, (1, 2, 3))
    state = json.loads((cluster.workdir / "state" / "he-state.json").read_text())
    assert state["round"] == 2 and state["in_sync"] == [1, 2, 3]


@pytest.mark.slow  # ≈ 20 s: round 0 waits out the masked phase's deadline for client 4
def test_bfv_masked_recovers_a_daemon_killed_mid_round(cluster: Cluster) -> None:
    start(cluster, (1, 2, 3, 4), kill=4)
    assert cluster.wait(timeout=150) == 0
    rounds = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["cohort"] == [1, 2, 3, 4] and rounds[0]["survivors"] == [1, 2, 3]
    assert rounds[1]["cohort"] == [1, 2, 3] and rounds[1]["survivors"] == [1, 2, 3]
    check_exact(cluster, rounds)
    check_aggregator_saw_only_ciphertexts(cluster, uploads=6)
    assert cluster.clients[4].wait(timeout=10) != 0  # it died at its fault point
    assert not (cluster.workdir / "dump-4" / "he-total-000000.npy").exists()
