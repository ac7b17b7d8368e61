"""CKKS rounds over real gRPC: an aggregator process and four daemon processes.

The aggregator only sums ciphertexts; every client decrypts the weighted mean
and steps its own model. Client 4 is killed just before its upload in round
0, so round 0 completes over clients 1–3 (k_min = 3 contributors, hence four
daemons), and round 1 runs without it: it never got round 0's sum, so it no
longer holds the model.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from aggregator.pki import init_pki
from clients.training.synthetic import target
from protocol.he_messages import HEKeyDelivery, HEUpload
from secagg import he
from secagg_pb import codec
from tests.integration.harness import Cluster

pytestmark = pytest.mark.integration

DIM = 300
CLIENTS = (1, 2, 3, 4)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    yield c
    c.stop()


def start(cluster: Cluster, *, secure: bool) -> None:
    pki = cluster.workdir / "pki"
    init_pki(pki, clients=len(CLIENTS), server_names=["localhost", "127.0.0.1"], days=1)
    config: dict[str, object] = {
        "listen": "127.0.0.1:0",
        "state_dir": "state",
        "pki_dir": str(pki),
        "mode": "ckks",
        "dim": DIM,
        "rounds": 2,
        "max_weight": 4,
        "learning_rate": 0.5,
        "phase_timeout_s": 8.0,
        "start_timeout_s": 30.0,
        "poll_wait_s": 1.0,
    }
    if not secure:
        config["insecure"] = True
    cluster.start_aggregator(config)
    for c in CLIENTS:
        toml = cluster.workdir / f"client-{c}.toml"
        # Weights differ, so the mean is a weighted one; the dump folder is the client's own.
        toml.write_text(f'[client]\nweight = {c}\ndump_updates_dir = "dump-{c}"\n')
        args = ["--config", str(toml), "--pki-dir", str(pki)] + ([] if secure else ["--insecure"])
        fault = "before_send_HEUpload@0" if c == 4 else None
        cluster.start_client(c, args, fault=fault)


def check_rounds(cluster: Cluster) -> None:
    rounds = [r for r in cluster.rounds() if r["completed"]]
    assert [r["round"] for r in rounds] == [0, 1]
    assert rounds[0]["cohort"] == [1, 2, 3, 4] and rounds[0]["survivors"] == [1, 2, 3]
    assert rounds[1]["cohort"] == [1, 2, 3] and rounds[1]["survivors"] == [1, 2, 3]
    for record in rounds:
        assert record["weight_sum"] is None  # encrypted: the aggregator never learns it
        assert isinstance(record["total_sha256"], str) and len(record["total_sha256"]) == 64
        assert isinstance(record["bytes_received"], int) and record["bytes_received"] > 0
        assert isinstance(record["survivors"], list)
        survivors = [int(c) for c in record["survivors"]]
        round_ = int(str(record["round"]))
        updates = {
            c: np.load(cluster.workdir / f"dump-{c}" / f"update-{round_:06d}.npy")
            for c in survivors
        }
        weights = {
            c: int((cluster.workdir / f"dump-{c}" / f"weight-{round_:06d}.txt").read_text())
            for c in survivors
        }
        reference = sum(weights[c] * np.clip(updates[c], -1, 1) for c in survivors) / sum(
            weights.values()
        )
        for c in survivors:
            mean = np.load(cluster.workdir / f"dump-{c}" / f"he-mean-{round_:06d}.npy")
            assert float(np.max(np.abs(mean - reference))) <= 1e-6
    # Each client stepped its own copy, θ₁ = θ₀ + η·mean (θ₀ = 0, η = 0.5), and trained
    # round 1 on it: the synthetic trainer's update is 0.5·(target − θ).
    for c in (1, 2, 3):
        mean0 = np.load(cluster.workdir / f"dump-{c}" / "he-mean-000000.npy")
        theta1 = (np.zeros(DIM, np.float32) + 0.5 * mean0).astype(np.float32)
        update1 = np.load(cluster.workdir / f"dump-{c}" / "update-000001.npy")
        expected = np.clip(0.5 * (target(c, DIM) - theta1.astype(np.float64)), -1.0, 1.0)
        np.testing.assert_array_equal(update1, expected)
    assert not (cluster.workdir / "dump-4" / "he-mean-000000.npy").exists()  # it died first


def check_no_secret_in_state(cluster: Cluster) -> None:
    """What the aggregator stored cannot decrypt: its context has no key, the rest is sealed."""
    db = sqlite3.connect(cluster.workdir / "state" / "state.sqlite")
    bodies = [row[0] for row in db.execute("SELECT body FROM events WHERE kind = 'message'")]
    db.close()
    messages = [codec.parse_any_client_message(b) for b in bodies]
    deliveries = [m for m in messages if isinstance(m, HEKeyDelivery)]
    uploads = [m for m in messages if isinstance(m, HEUpload)]
    assert len(deliveries) == 2 and len(uploads) == 6
    for delivery in deliveries:
        public = he.load_public(delivery.public_context, he.CKKS_8192)  # refuses a secret key
        assert not public.has_secret_key
        with pytest.raises(Exception):  # noqa: B017 - TenSEAL raises its own error types
            he.decrypt(public, list(uploads[0].blobs), DIM + 1)
        # The secret context travels sealed (AES-GCM): its serialisation header (shared with
        # the public context's) appears nowhere in what the aggregator relayed.
        header = delivery.public_context[:10]
        for sealed in delivery.sealed:
            assert len(sealed.ciphertext) > 200_000 and header not in sealed.ciphertext
    state = json.loads((cluster.workdir / "state" / "he-state.json").read_text())
    assert state["round"] == 2 and state["in_sync"] == [1, 2, 3]


def test_ckks_rounds_insecure_with_a_dropout(cluster: Cluster) -> None:
    start(cluster, secure=False)
    assert cluster.wait(timeout=150) == 0
    check_rounds(cluster)
    check_no_secret_in_state(cluster)


@pytest.mark.slow
def test_ckks_rounds_over_mtls_with_a_dropout(cluster: Cluster) -> None:
    start(cluster, secure=True)
    assert cluster.wait(timeout=150) == 0
    check_rounds(cluster)
    check_no_secret_in_state(cluster)


@pytest.mark.slow
def test_bench_round_runs_ckks_over_grpc(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from secagg.cli import main

    argv = ["bench", "round", "--clients", "3", "--dim", "100", "--mode", "ckks"]
    assert main([*argv, "--rounds", "2", "--json", "--out", str(tmp_path)]) == 0
    (row,) = json.loads(capsys.readouterr().out)["modes"]
    assert row["mode"] == "ckks" and len(row["round_wall_s_all"]) == 2
    assert row["round_wall_s_median"] > 0
    # Every client uploads at least one ciphertext; the key holder also the sealed keys.
    assert row["bytes_up_per_client"] > he.blob_bounds(he.CKKS_8192, fresh=True)[0]
