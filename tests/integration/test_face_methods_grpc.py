"""Face-FL methods over the real service: an aggregator and three daemon processes.

Each test runs a real `secagg aggregator serve` and three `secagg client run`
daemons (LocalCluster: PKI, mutual TLS, signed requests, active SecAgg) for
a few rounds of one method on tiny synthetic faces, then checks what the
method must do from the daemons' own dumps (`dump_updates_dir`: the plaintext
update, the method state each round started from, the release sent) and
metrics files:

- fedface: the S every daemon received equals Σ_k S_k of the last round,
  rebuilt from the dumped updates (noisy S_k/n_k · n_k), within the
  quantisation, and each daemon charged its S ledger once a round;
- fedgc, privacyface: the releases broadcast are byte for byte those the
  daemons sent the round before, and each ledger grows by one release a round;
- projector: the uploads are the backbone alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from clients.lab.cluster import LocalCluster
from clients.training.face_trainer import FaceTrainingSettings, initial_model
from clients.training.privacyface import sigma_for_budget, zcdp_epsilon
from protocol.method_messages import ClusterRelease, MethodState
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 3
ROUNDS = 2
LEVELS = 1 << 16
CLIP = 1.0


def training(method: str) -> FaceTrainingSettings:
    return FaceTrainingSettings(
        data="synthetic:48:4",  # 16 identities of 4 images per daemon
        shards=CLIENTS,
        image_size=16,
        embedding_dim=16,
        batch_size=16,
        seed=5,
        device="cpu",
        threads=1,
        method=method,
        dplc_epsilon=2000.0,  # clusters with signal on 16 rows (the DP is still accounted)
        dplc_bits=1,
        dplc_releases=ROUNDS,
        fedface_epsilon=2000.0,  # S with signal on 48 rows (the noise is still drawn, charged)
        fedface_releases=ROUNDS,
    )


def trace_tolerance(settings: FaceTrainingSettings) -> float:
    """|trace S − 48| allows six standard deviations of the CLIENTS·d noisy diagonal entries."""
    sigma = sigma_for_budget(
        settings.fedface_epsilon, settings.fedface_delta, releases=ROUNDS, mechanisms=1
    )
    return 6 * sigma * float(np.sqrt(CLIENTS * settings.embedding_dim)) + 0.01


def run(tmp_path: Path, method: str, **overrides: Any) -> tuple[Path, int, list[dict[str, Any]]]:
    """Train ROUNDS rounds of ``method``; returns the run folder, θ's size and the records.

    ``overrides`` replace aggregator settings (the ckks test sets ``mode``).
    """
    settings = training(method)
    theta = initial_model(settings)
    tmp_path.mkdir(parents=True, exist_ok=True)
    np.save(tmp_path / "initial_model.npy", theta)
    aggregator = {
        "rounds": ROUNDS,
        "dim": int(theta.size),
        "initial_model": "initial_model.npy",
        "method": method,
        "embedding_dim": settings.embedding_dim,
        "max_weight": 64,
        "clip": CLIP,
        "levels": LEVELS,
        "phase_timeout_s": 20.0,
        "train_timeout_s": 120.0,
        "poll_wait_s": 1.0,
        **overrides,
    }
    client = {
        "trainer": "face",
        "training": asdict(settings),
        "metrics_file": "metrics-{id}.jsonl",
        "dump_updates_dir": "dump-{id}",
        "poll_timeout_s": 5.0,
    }
    if overrides.get("mode") in ("ckks", "bfv"):  # every member holds the key: an opt-in
        client["policy"] = {"modes": ["secagg", "secagg+", overrides["mode"]]}
    with LocalCluster(tmp_path, CLIENTS) as cluster:
        cluster.start(aggregator, client)
        cluster.wait(timeout=600)
    records = [
        json.loads(line)
        for line in (tmp_path / "state" / "rounds.jsonl").read_text().split("\n")
        if line
    ]
    return tmp_path, int(theta.size), records


def completed_exactly(records: list[dict[str, Any]]) -> None:
    assert [(r["round"], r["completed"]) for r in records] == [(r, True) for r in range(ROUNDS)]
    assert all(r["survivors"] == [1, 2, 3] for r in records)


def state(run_dir: Path, client: int, round_: int) -> MethodState:
    raw = (run_dir / f"dump-{client}" / f"state-{round_:06d}.bin").read_bytes()
    return codec.method_state_from_proto(pb.MethodState.FromString(raw))


def release(run_dir: Path, client: int, round_: int) -> ClusterRelease:
    raw = (run_dir / f"dump-{client}" / f"release-{round_:06d}.bin").read_bytes()
    msg = codec.parse_any_client_message(raw)
    assert isinstance(msg, ClusterRelease)
    return msg


def metrics(run_dir: Path, client: int) -> list[dict[str, Any]]:
    text = (run_dir / f"metrics-{client}.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def test_fedface_daemons_receive_the_secure_sum_of_their_second_moments(tmp_path: Path) -> None:
    run_dir, theta_dim, records = run(tmp_path, "fedface")
    completed_exactly(records)
    d = training("fedface").embedding_dim
    for r in range(1, ROUNDS):
        expected = np.zeros(d * d)
        total_weight = 0
        for c in range(1, CLIENTS + 1):
            folder = run_dir / f"dump-{c}"
            update = np.load(folder / f"update-{r - 1:06d}.npy")
            weight = int((folder / f"weight-{r - 1:06d}.txt").read_text())
            assert update.size == theta_dim + d * d  # [Δθ, S_k/n_k]
            expected += weight * update[theta_dim:]
            total_weight += weight
        received = [state(run_dir, c, r) for c in range(1, CLIENTS + 1)]
        assert all(s == received[0] for s in received)  # one S for everyone (hash-bound)
        moment = received[0].moment_matrix()
        assert moment is not None
        # Each client's S_k/n_k is rounded to one level: Σ n_k·level/2 at most, plus float32.
        bound = total_weight * (2 * CLIP / (LEVELS - 1)) + 1e-5 * np.abs(expected).max()
        assert np.max(np.abs(moment.reshape(-1) - expected)) <= bound
        # trace = number of unit rows, plus each client's noise on its diagonal
        assert np.abs(np.diag(moment).sum() - 48) < trace_tolerance(training("fedface"))
    assert state(run_dir, 1, 0).moment == b""  # nothing to spread out against in round 0
    for c in range(1, CLIENTS + 1):  # one S release charged a round, in the client's metrics
        assert [row["fedface_releases"] for row in metrics(run_dir, c)] == [1, 2]
    assert len(list(run_dir.rglob("fedface-ledger.json"))) == CLIENTS  # each in its state_dir


@pytest.mark.parametrize("method", ["fedgc", "privacyface"])
def test_releases_are_broadcast_as_sent_and_charged_once_a_round(
    tmp_path: Path, method: str
) -> None:
    run_dir, _, records = run(tmp_path, method)
    completed_exactly(records)
    assert [r["method_releases"] for r in records] == [CLIENTS] * ROUNDS
    for r in range(1, ROUNDS):
        sent = tuple(release(run_dir, c, r - 1) for c in range(1, CLIENTS + 1))
        assert any(len(s) for s in sent)  # the check below compares real clusters
        for c in range(1, CLIENTS + 1):
            received = state(run_dir, c, r)
            assert received.method == method
            assert received.releases == sent  # byte for byte, every daemon's, in client order
    assert_one_release_per_round(run_dir, method)


def assert_one_release_per_round(run_dir: Path, method: str) -> None:
    """Each daemon's ledger: one release a round, ε as zCDP composes, within the budget."""
    s = training(method)
    config = s.dplc()
    for c in range(1, CLIENTS + 1):
        rows = metrics(run_dir, c)
        assert [row["round"] for row in rows] == list(range(ROUNDS))
        assert [row["dplc_releases"] for row in rows] == list(range(1, ROUNDS + 1))
        for row in rows:
            spent = zcdp_epsilon(row["dplc_releases"] * config.rho, s.dplc_delta)
            assert row["dplc_epsilon"] == pytest.approx(spent)
        assert rows[-1]["dplc_epsilon"] <= s.dplc_epsilon * (1 + 1e-9)  # within the budget


def test_projector_uploads_only_the_backbone(tmp_path: Path) -> None:
    run_dir, theta_dim, records = run(tmp_path, "projector")
    completed_exactly(records)
    for c in range(1, CLIENTS + 1):
        for r in range(ROUNDS):
            assert np.load(run_dir / f"dump-{c}" / f"update-{r:06d}.npy").shape == (theta_dim,)
            assert state(run_dir, c, r) == MethodState("projector", r)
            assert not (run_dir / f"dump-{c}" / f"release-{r:06d}.bin").exists()
