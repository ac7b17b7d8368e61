"""PrivacyFace: zCDP arithmetic and DPLC noise against closed forms, the consensus-aware loss
on hand-built cases, and a tiny experiment that releases and accounts clusters."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clients.lab.experiment import ExperimentConfig, run_experiment
from clients.training.heads import CosFaceHead
from clients.training.privacyface import (
    DplcConfig,
    consensus_loss,
    dplc,
    dplc_release,
    gaussian_zcdp,
    public_hyperplanes,
    sigma_for_budget,
    simhash_buckets,
    zcdp_budget,
    zcdp_epsilon,
)
from secagg.errors import ParameterError

LN_1E5 = 11.512925464970229  # ln(1/δ) at δ = 1e-5


def test_gaussian_zcdp_is_sensitivity_squared_over_two_sigma_squared() -> None:
    assert gaussian_zcdp(2.0) == pytest.approx(1 / 8)
    assert gaussian_zcdp(0.5, sensitivity=3.0) == pytest.approx(18.0)
    with pytest.raises(ParameterError):
        gaussian_zcdp(0.0)


def test_zcdp_to_epsilon_closed_form() -> None:
    # ρ = 0.5, δ = 1e-5: 0.5 + 2·√(0.5 · 11.5129) = 0.5 + 2 · 2.39926 = 5.29853.
    assert zcdp_epsilon(0.5, 1e-5) == pytest.approx(5.298526, rel=1e-6)
    assert zcdp_epsilon(0.0, 1e-5) == 0.0
    # Inverse: ε = 8 → ρ = (√(11.5129 + 8) − √11.5129)² = (4.41734 − 3.39307)² = 1.04914.
    assert zcdp_budget(8.0, 1e-5) == pytest.approx(1.049136, rel=1e-5)
    for eps in (0.5, 1.0, 8.0, 50.0):
        assert zcdp_epsilon(zcdp_budget(eps, 1e-5), 1e-5) == pytest.approx(eps, rel=1e-9)


def test_sigma_spends_exactly_the_budget_over_all_releases() -> None:
    rounds = 10
    sigma = sigma_for_budget(8.0, 1e-5, releases=rounds)
    # 2 mechanisms per release, each 1/(2σ²): 20/(2σ²) = ρ_total = 1.049136 → σ = 3.0874.
    assert sigma == pytest.approx(math.sqrt(20 / (2 * 1.049136)), rel=1e-5)
    cfg = DplcConfig(sigma_count=sigma, sigma_sum=sigma)
    assert zcdp_epsilon(rounds * cfg.rho, 1e-5) == pytest.approx(8.0, rel=1e-9)
    assert zcdp_epsilon((rounds + 1) * cfg.rho, 1e-5) > 8.0


def test_dplc_noise_has_the_calibrated_scale() -> None:
    """Empirical noise of the histogram and of the sums vs σ_n and σ_s (2,000 releases)."""
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((30, 8))
    planes = public_hyperplanes(2, 8, seed=1)
    cfg = DplcConfig(sigma_count=1.5, sigma_sum=0.7, bits=2, clusters=4, min_size=-1e9)
    unit = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    buckets = simhash_buckets(unit, planes)
    exact_counts = np.bincount(buckets, minlength=4)
    noise = np.random.default_rng(2)
    count_err, sum_err = [], []
    for _ in range(2000):
        release = dplc_release(rows, cfg, planes, noise)
        count_err.append(release.noisy_counts - exact_counts)
        for b, noisy in zip(release.buckets, release.noisy_sums, strict=True):
            sum_err.append(noisy - unit[buckets == b].sum(axis=0))
    assert np.std(count_err) == pytest.approx(1.5, rel=0.05)
    assert np.std(sum_err) == pytest.approx(0.7, rel=0.05)
    assert abs(float(np.mean(count_err))) < 0.05


def test_dplc_finds_dense_regions_with_little_noise_and_not_with_much() -> None:
    """Two tight groups of 200 class centres: small σ recovers them, σ as in toy runs does not."""
    rng = np.random.default_rng(3)
    dim = 32
    truth = np.linalg.qr(rng.standard_normal((dim, 2)))[0].T  # two orthogonal unit centres
    rows = np.concatenate([t + 0.05 * rng.standard_normal((200, dim)) for t in truth])
    planes = public_hyperplanes(4, dim, seed=4)

    def best_match(sigma: float) -> float:
        cfg = DplcConfig(sigma_count=sigma, sigma_sum=sigma, bits=4, clusters=2, min_size=20)
        found = dplc(rows, cfg, planes, np.random.default_rng(5))
        if not len(found):
            return 0.0
        return float(np.max(found.centers @ truth.T))

    assert best_match(1.0) > 0.99
    assert best_match(400.0) < 0.6  # noise norm ≈ σ√d ≫ 200: noise-dominated


def test_consensus_loss_hand_built_cases() -> None:
    f = torch.tensor([[1.0, 0.0]])
    y = torch.tensor([0])
    w = torch.tensor([[1.0, 0.0]])
    none = torch.zeros(0, 2)
    cluster = torch.tensor([[0.0, 1.0]])

    def loss(centers: torch.Tensor, radius: float, size: float, beta: float = 0.0) -> float:
        n = centers.shape[0]
        radii, sizes = torch.full((n,), radius), torch.full((n,), size)
        return float(consensus_loss(f, y, w, centers, radii, sizes, s=1.0, m=0.0, beta=beta))

    # One class, no cluster: a softmax over one logit.
    assert loss(none, 0.0, 1.0) == pytest.approx(0.0, abs=1e-7)
    # Cluster at 90°, point cap: ℓ = cos 90° = 0 → log(1 + e^{0−1}) = 0.313262.
    assert loss(cluster, 0.0, 1.0) == pytest.approx(0.313262, abs=1e-5)
    # Cap of radius 90° reaches f: ℓ = s·cos 0 = 1, as strong as the target → log 2.
    assert loss(cluster, math.pi / 2, 1.0) == pytest.approx(math.log(2), abs=1e-5)
    # β = 1, ñ = 3: the cluster counts as 3 negatives → log(1 + 3e^{−1}) = 0.743668.
    assert loss(cluster, 0.0, 3.0, beta=1.0) == pytest.approx(0.743668, abs=1e-5)
    # Margin: s = 2, m = 0.5, a second class at 90° → target 2·0.5 = 1, other 0 → 0.313262.
    two = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    margin = consensus_loss(f, y, two, none, torch.zeros(0), torch.zeros(0), s=2.0, m=0.5)
    assert float(margin) == pytest.approx(0.313262, abs=1e-5)


def test_consensus_loss_without_clusters_is_cosface() -> None:
    torch.manual_seed(0)
    head = CosFaceHead(8, 5)
    emb, labels = torch.randn(6, 8), torch.randint(0, 5, (6,))
    expected = torch.nn.functional.cross_entropy(head(emb, labels), labels)
    empty = torch.zeros(0)
    got = consensus_loss(
        emb, labels, head.weight, torch.zeros(0, 8), empty, empty, s=head.s, m=head.m
    )
    assert float(got.detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_privacyface_experiment_releases_and_accounts_clusters(tmp_path: Path) -> None:
    cfg = ExperimentConfig(
        algorithm="privacyface",
        mode="secagg",
        data="synthetic:40:4",
        clients=2,
        rounds=2,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        dplc_epsilon=2000.0,  # little noise, so clusters exist on tiny data
        dplc_bits=1,
        out=str(tmp_path),
    )
    report = run_experiment(cfg, progress=lambda _: None)
    assert "DP clusters" in str(report["trust"])
    rounds = report["rounds"]
    assert isinstance(rounds, list)
    sigma = sigma_for_budget(2000.0, 1e-5, releases=2)
    for r, row in enumerate(rounds, 1):
        extra = row["extra"]
        assert row["parity_max_abs_error"] <= row["parity_bound"]
        assert extra["dplc_sigma"] == pytest.approx(sigma)
        # Cumulative ε per client after r releases, from the closed forms.
        expected = zcdp_epsilon(r * 2 * gaussian_zcdp(sigma), 1e-5)
        assert extra["dplc_epsilon"] == {"1": pytest.approx(expected), "2": pytest.approx(expected)}
        assert sum(extra["clusters_released"].values()) > 0
        assert extra["bytes_clear_per_client"] > 0
    assert rounds[-1]["extra"]["dplc_epsilon"]["1"] == pytest.approx(2000.0)


def test_clusters_reach_the_others_only_after_the_round() -> None:
    """Clients train in parallel: a release of round r is seen from round r + 1 on."""
    from clients.lab.method_hooks import MethodSettings, PrivacyFace

    method = PrivacyFace(
        MethodSettings(embedding_dim=4, rounds=2, seed=0, lr=0.1, dplc_epsilon=1e4, dplc_bits=1)
    )
    head = CosFaceHead(4, 12)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.1, 0.0, 0.0]]).repeat(12, 1))
    method.release(1, head, 0)
    assert method.others(2, torch.device("cpu"))[0].shape[0] == 0
    method.after_round(np.zeros(0), {1: head}, 0)
    centers = method.others(2, torch.device("cpu"))[0]
    assert centers.shape[0] == 1
    assert float(torch.nn.functional.cosine_similarity(centers, head.weight[:1].detach())) > 0.9
    assert method.others(1, torch.device("cpu"))[0].shape[0] == 0  # never its own clusters


def test_centre_fidelity_tells_signal_from_noise() -> None:
    from clients.lab.method_hooks import centre_fidelity

    rng = np.random.default_rng(6)
    rows = np.tile(rng.standard_normal(16), (40, 1)) + 0.1 * rng.standard_normal((40, 16))
    planes = public_hyperplanes(2, 16, seed=7)

    def fidelity(sigma: float) -> float | None:
        cfg = DplcConfig(sigma_count=sigma, sigma_sum=sigma, bits=2, clusters=1, min_size=-1e9)
        return centre_fidelity(rows, planes, dplc_release(rows, cfg, planes, rng))

    assert (fidelity(0.01) or 0.0) > 0.999
    assert abs(float(np.mean([fidelity(1e4) or 0.0 for _ in range(50)]))) < 0.2
