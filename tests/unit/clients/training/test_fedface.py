"""FedFace's private spreadout: the closed-form gradient against autograd, and its effect."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from clients.lab.experiment import ExperimentConfig, run_experiment
from clients.training.fedface import (
    denoise_moment,
    frame_potential,
    second_moment,
    spreadout_gradient,
    spreadout_steps,
)


def test_gradient_from_the_secure_sum_matches_autograd() -> None:
    torch.manual_seed(0)
    everyone = torch.nn.functional.normalize(torch.randn(12, 8, dtype=torch.float64), dim=1)
    mine = slice(3, 6)  # this client's rows
    moment = (
        second_moment(everyone[:3]) + second_moment(everyone[3:6]) + second_moment(everyone[6:])
    )
    w = everyone.clone().requires_grad_(True)
    frame_potential(w).backward()
    assert w.grad is not None
    # Autograd goes through the normalisation: on the sphere only the tangent part counts.
    rows = everyone[mine].float()
    closed = spreadout_gradient(rows, moment.float())
    tangent = closed - (closed * rows).sum(1, keepdim=True) * rows
    auto = w.grad[mine].float()
    assert torch.allclose(tangent, auto, atol=1e-4)


def test_gradient_without_the_self_term_would_be_wrong() -> None:
    """Guard: dropping −ŵ_iŵ_iᵀ changes the gradient (the test above can fail)."""
    rows = torch.nn.functional.normalize(torch.randn(4, 6), dim=1)
    moment = second_moment(rows)
    wrong = 4.0 * rows @ moment.T
    assert not torch.allclose(spreadout_gradient(rows, moment), wrong)


def test_spreadout_steps_lower_the_frame_potential_and_stay_on_the_sphere() -> None:
    torch.manual_seed(1)
    base = torch.randn(1, 16)
    clients = [
        torch.nn.functional.normalize(base + 0.3 * torch.randn(5, 16), dim=1) for _ in range(4)
    ]
    before = frame_potential(torch.cat(clients))
    moment = sum(second_moment(c) for c in clients)
    assert isinstance(moment, torch.Tensor)
    moved = [spreadout_steps(c, moment, lr=0.05, steps=20) for c in clients]
    after = frame_potential(torch.cat(moved))
    assert after < 0.7 * before
    assert torch.allclose(torch.cat(moved).norm(dim=1), torch.ones(20), atol=1e-5)


def test_fedface_runs_through_secure_aggregation(tmp_path: Path) -> None:
    cfg = ExperimentConfig(
        algorithm="fedface",
        mode="secagg",
        data="synthetic:16:4",
        clients=2,
        rounds=2,
        test_identities=4,
        image_size=(16, 16),
        embedding_dim=16,
        out=str(tmp_path),
    )
    report = run_experiment(cfg, progress=lambda _: None)
    rounds = report["rounds"]
    assert isinstance(rounds, list)
    for row in rounds:
        assert row["parity_max_abs_error"] <= row["parity_bound"]
    assert report["shared_parameters"] > 0


def test_denoising_keeps_a_noise_free_moment_and_drops_pure_noise() -> None:
    rng = np.random.default_rng(0)
    rows = rng.standard_normal((40, 16))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    exact = rows.T @ rows
    assert np.allclose(denoise_moment(exact), exact, atol=1e-9)  # s = 0: unchanged
    noise = rng.normal(0.0, 15.5, size=(16, 16))  # one client's default S noise
    assert np.abs(denoise_moment(noise)).max() == 0.0


def test_denoising_recovers_a_collapse_that_stands_above_the_noise() -> None:
    rng = np.random.default_rng(1)
    d, sigma, clients = 32, 15.5, 10
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    rows = direction + 0.05 * rng.standard_normal((3000, d))  # 3,000 collapsed identities
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    exact = rows.T @ rows
    noisy = exact + rng.normal(0.0, sigma * np.sqrt(clients), size=(d, d))
    top = np.linalg.eigh(denoise_moment(noisy))[1][:, -1]
    assert abs(top @ direction) > 0.99  # the collapse direction, not the noise's
    assert np.linalg.norm(denoise_moment(noisy) - exact) < 0.2 * np.linalg.norm(exact)
