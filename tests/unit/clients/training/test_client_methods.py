"""The client side of the methods in the daemon's face trainer (clients/training/methods.py).

Tiny synthetic faces, one trainer per method: what each method appends to the
masked vector, releases in the clear and charges to its ledger, and how the
trainer takes the state a RoundStart carries (only its own method's, once
per round, for the right round).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from clients.training import face_trainer as face_trainer_module
from clients.training.face_trainer import FaceTrainer, FaceTrainingSettings, initial_model
from clients.training.fedface import second_moment
from clients.training.methods import DplcLedger, dplc_config, rows_of
from clients.training.privacyface import sigma_for_budget, zcdp_epsilon
from protocol.method_messages import ClusterRelease, MethodState
from secagg.errors import ParameterError

BASE = FaceTrainingSettings(
    data="synthetic:12:4",
    shards=3,
    image_size=16,
    embedding_dim=8,
    batch_size=16,
    seed=1,
    device="cpu",
    threads=1,
    dplc_epsilon=500.0,
    dplc_bits=1,
    dplc_releases=2,
)


def trainer(method: str, client: int = 1, **overrides: Any) -> tuple[FaceTrainer, np.ndarray]:
    settings = dataclasses.replace(BASE, method=method, **overrides)
    return FaceTrainer(client, settings), initial_model(settings)


def test_the_ledger_charges_each_release_and_refuses_past_its_budget() -> None:
    config = dplc_config(4.0, 1e-5, releases=3, bits=1, clusters=2)
    ledger = DplcLedger(config, 1e-5, budget=3, noise=np.random.default_rng(0))
    rows = np.random.default_rng(1).standard_normal((20, 6))
    planes = np.random.default_rng(2).standard_normal((1, 6))
    assert ledger.epsilon == 0.0
    for k in range(1, 4):
        ledger.release(rows, planes)
        assert ledger.epsilon == pytest.approx(zcdp_epsilon(k * config.rho, 1e-5))
    assert ledger.epsilon == pytest.approx(4.0)  # the whole budget, not more
    with pytest.raises(ParameterError, match="budget covers 3 releases"):
        ledger.release(rows, planes)
    assert ledger.releases == 3


def test_fedface_appends_its_noisy_second_moment_divided_by_its_weight() -> None:
    t, theta = trainer("fedface", fedface_epsilon=16.0)  # σ ≈ 1.2: nothing reaches the clip
    update = t(theta, 0)
    assert update.vector is not None and update.release is None
    assert update.vector.size == theta.size + 64
    head, ledger = t._head, t._moments
    assert head is not None and ledger is not None
    extra = update.vector[theta.size :]
    assert np.max(np.abs(extra)) <= 1.0  # inside the clip
    s_k = second_moment(rows_of(head)).numpy().reshape(-1)
    residual = extra * update.weight - s_k
    assert ledger.sigma == pytest.approx(sigma_for_budget(16.0, 1e-5, releases=10, mechanisms=1))
    # 64 Gaussian samples: (63·s²/σ²) ~ χ²₆₃, so s/σ lies in [0.6, 1.45] but with
    # probability < 1e-6 (±20% failed about one run in thirty: the noise is fresh).
    assert 0.6 * ledger.sigma < np.std(residual) < 1.45 * ledger.sigma
    assert ledger.spent.releases == 1 and t.last["fedface_epsilon"] > 0


def test_the_default_s_noise_is_epsilon_one_over_ten_releases() -> None:
    t, _ = trainer("fedface")
    assert t._moments is not None
    assert t._moments.sigma == pytest.approx(15.5, abs=0.05)


def test_fedface_extra_carries_s_k_when_the_noise_is_negligible() -> None:
    t, theta = trainer("fedface", fedface_epsilon=1e9)
    update = t(theta, 0)
    assert update.vector is not None and t._head is not None
    s_k = second_moment(rows_of(t._head)).numpy().reshape(-1)
    assert np.allclose(update.vector[theta.size :] * update.weight, s_k, atol=1e-3)


def test_fedface_refuses_an_s_release_past_its_budget() -> None:
    t, theta = trainer("fedface", fedface_releases=1)
    t(theta, 0)
    with pytest.raises(ParameterError, match="FedFace S budget covers 1 releases"):
        t(theta, 1)


def test_fedface_spreads_its_rows_out_against_the_received_moment() -> None:
    t, theta = trainer("fedface")
    t(theta, 0)
    head = t._head
    assert head is not None
    before = rows_of(head).detach().clone()
    # A moment concentrated on the rows' own directions: spreadout must move them.
    moment = (10 * second_moment(before)).numpy().astype("<f4").tobytes()
    t.receive(MethodState("fedface", 1, moment=moment))
    t.settings = dataclasses.replace(t.settings, lr=1e-9)  # training alone barely moves rows
    t(theta, 1)
    after = rows_of(head).detach()
    assert not torch.allclose(before, after, atol=1e-3)


def test_releasing_methods_release_once_a_round_within_the_budget() -> None:
    t, theta = trainer("fedgc")
    first = t(theta, 0)
    assert isinstance(first.release, ClusterRelease)
    assert first.release.client == 1 and first.release.round == 0 and first.release.dim == 8
    assert first.vector is not None and first.vector.size == theta.size  # backbone only
    assert t.last["dplc_releases"] == 1
    second = t(theta, 1)
    assert second.release is not None and t.last["dplc_releases"] == 2
    assert t.last["dplc_epsilon"] == pytest.approx(500.0)
    with pytest.raises(ParameterError, match="budget"):
        t(theta, 2)


def test_the_state_must_be_of_this_method_and_this_round() -> None:
    t, theta = trainer("privacyface")
    with pytest.raises(ParameterError, match="runs method 'fedgc'"):
        t.receive(MethodState("fedgc", 0))
    t.receive(MethodState("privacyface", 3))
    with pytest.raises(ParameterError, match="round 3 in round 0"):
        t(theta, 0)


def test_fedgc_corrects_once_per_round_against_the_others_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def counting(head: torch.nn.Module, others: Any, *, step: float) -> None:
        calls.append(len(others))

    monkeypatch.setattr(face_trainer_module, "fedgc_correct", counting)
    t, theta = trainer("fedgc", client=2, dplc_releases=5)
    t(theta, 0)
    own = ClusterRelease.of(2, 0, np.eye(8)[:1], [6.0], [0.1])
    other = ClusterRelease.of(3, 0, np.eye(8)[1:3], [6.0, 7.0], [0.1, 0.1])
    t.receive(MethodState("fedgc", 1, releases=(own, other)))
    t(theta, 1)
    t(theta, 1)  # a retried attempt of the same round: no second correction
    assert calls == [2]  # the other client's two clusters, never its own


def test_projector_uploads_the_backbone_and_keeps_its_map() -> None:
    t, theta = trainer("projector", projector_seed=4)
    update = t(theta, 0)
    assert update.vector is not None and update.vector.shape == theta.shape
    assert update.release is None
    projector = t._projector
    assert projector is not None
    assert torch.allclose(projector @ projector.T, torch.eye(8), atol=1e-5)
    other, _ = trainer("projector", projector_seed=-1)
    other(theta, 0)
    assert other._projector is not None and not torch.allclose(other._projector, projector)


def test_fedgc_reference_is_refused_with_the_reason() -> None:
    with pytest.raises(ParameterError, match="trusted aggregator"):
        dataclasses.replace(BASE, method="fedgc-reference")
