"""Face-FL methods in CKKS rounds over the real service: an aggregator and three daemons.

As test_face_methods_grpc.py, but with ``mode = "ckks"``: the aggregator only
sums ciphertexts, so it never holds a model after θ₀ nor FedFace's S. What
the daemons dumped (their plaintext updates, the method state each round
started from, the releases sent, the decrypted means) must show:

- fedface: the S each daemon trained round r with, which it recovered from
  the sum it decrypted, equals Σ_k S_k of round r − 1 rebuilt from the
  dumped updates (S_k/n_k · n_k) within CKKS precision, the same on every
  daemon; the aggregator's saved state holds no S;
- fedgc: the releases broadcast with the next HEStart are byte for byte those
  the daemons sent, and each ledger grows by one release a round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from protocol.method_messages import MethodState
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.integration.test_face_methods_grpc import (
    CLIENTS,
    ROUNDS,
    assert_one_release_per_round,
    completed_exactly,
    release,
    state,
    trace_tolerance,
    training,
)
from tests.integration.test_face_methods_grpc import run as masked_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: CKKS decrypts the mean to ~1e-7 of max_weight·clip; S is that times Σ n_k, then float32.
PRECISION = 1e-5  # measured: 2.4e-7 (|S| ≤ 8.3, Σ n_k = 192)


def run(tmp_path: Path, method: str) -> tuple[Path, int, list[dict[str, Any]]]:
    """ROUNDS CKKS rounds of ``method`` (the masked test's cluster, ``mode = "ckks"``)."""
    return masked_run(tmp_path, method, mode="ckks")


def saved_state(run_dir: Path, round_: int) -> MethodState:
    raw = (run_dir / "state" / "method" / f"state-{round_:06d}.bin").read_bytes()
    return codec.method_state_from_proto(pb.MethodState.FromString(raw))


def test_fedface_daemons_recover_s_from_the_sum_they_decrypt(tmp_path: Path) -> None:
    run_dir, theta_dim, records = run(tmp_path, "fedface")
    completed_exactly(records)
    assert all(r["weight_sum"] is None for r in records)  # encrypted: only the clients know
    d = training("fedface").embedding_dim
    for r in range(1, ROUNDS):
        expected = np.zeros(d * d)
        for c in range(1, CLIENTS + 1):
            folder = run_dir / f"dump-{c}"
            update = np.load(folder / f"update-{r - 1:06d}.npy")
            weight = int((folder / f"weight-{r - 1:06d}.txt").read_text())
            assert update.size == theta_dim + d * d  # [Δθ, S_k/n_k]
            expected += weight * update[theta_dim:]
        received = [state(run_dir, c, r) for c in range(1, CLIENTS + 1)]
        assert all(s == received[0] for s in received)  # one decryption, one S
        moments = [s.moment_matrix() for s in received]
        for moment in moments:
            assert moment is not None
            assert np.max(np.abs(moment.reshape(-1) - expected)) <= PRECISION
            # trace = number of unit rows, plus each client's noise on its diagonal
            assert np.abs(np.trace(moment) - 48) < trace_tolerance(training("fedface"))
        assert saved_state(run_dir, r) == MethodState("fedface", r)  # the aggregator has no S
    assert state(run_dir, 1, 0).moment == b""  # nothing to spread out against in round 0
    means = [np.load(run_dir / f"dump-{c}" / "he-mean-000000.npy") for c in (1, 2, 3)]
    assert all(m.shape == (theta_dim + d * d,) for m in means)


def test_fedgc_releases_are_broadcast_as_sent_and_charged_once_a_round(tmp_path: Path) -> None:
    run_dir, _, records = run(tmp_path, "fedgc")
    completed_exactly(records)
    assert [r["method_releases"] for r in records] == [CLIENTS] * ROUNDS
    for r in range(1, ROUNDS):
        sent = tuple(release(run_dir, c, r - 1) for c in range(1, CLIENTS + 1))
        assert any(len(s) for s in sent)  # the check below compares real clusters
        for c in range(1, CLIENTS + 1):
            assert state(run_dir, c, r) == MethodState("fedgc", r, releases=sent)
    last = tuple(release(run_dir, c, ROUNDS - 1) for c in range(1, CLIENTS + 1))
    assert saved_state(run_dir, ROUNDS).releases == last  # kept for a next round
    assert_one_release_per_round(run_dir, "fedgc")
