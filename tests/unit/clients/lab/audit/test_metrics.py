"""Leakage metrics on hand-built cases: SSIM, PSNR, rank-1, chance baselines."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from clients.lab.audit.metrics import (
    PSNR_CAP,
    Evaluator,
    chance_band,
    leakage,
    psnr,
    rank1,
    ssim,
    templates_of,
)
from clients.lab.audit.views import chi2_uniform_p
from clients.training.data import FaceDataset


def _image(seed: int, size: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).random((1, size, size)).astype(np.float32)


def test_ssim_of_identical_images_is_one_and_of_different_images_is_less() -> None:
    a, b = _image(0), _image(1)
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, b) < 0.5


def test_ssim_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        ssim(_image(0, 16), _image(0, 8))


def test_psnr_follows_its_formula() -> None:
    a = np.zeros((1, 8, 8))
    b = np.full((1, 8, 8), 0.1)  # MSE 0.01 → 10·log10(1 / 0.01) = 20 dB
    assert psnr(a, b) == pytest.approx(20.0)
    assert psnr(a, np.full((1, 8, 8), 0.5)) == pytest.approx(10 * np.log10(1 / 0.25))
    assert psnr(a, a) == PSNR_CAP


def test_rank1_on_constructed_embeddings() -> None:
    templates = np.eye(3)
    embeddings = np.array([[0.9, 0.1, 0.0], [0.2, 0.1, 0.95], [0.0, 0.6, 0.5]])
    hits = rank1(embeddings, templates, np.array([0, 2, 2]))
    assert hits.tolist() == [True, True, False]


def test_templates_are_unit_class_means() -> None:
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    out = templates_of(emb, np.array([0, 0, 1]), 3)
    assert np.allclose(out[0], [np.sqrt(0.5), np.sqrt(0.5)])
    assert np.allclose(out[1], [0.0, 1.0])
    assert np.allclose(out[2], 0.0)  # no image: stays zero


def test_chance_band_narrows_with_more_draws() -> None:
    values = np.random.default_rng(0).random(200)
    wide, narrow = chance_band(values, 2), chance_band(values, 50)
    assert wide[0] < narrow[0] < values.mean() < narrow[1] < wide[1]


def test_chi2_separates_uniform_from_concentrated_words() -> None:
    rng = np.random.default_rng(0)
    assert chi2_uniform_p(rng.integers(0, 1 << 20, 50_000), 20) > 1e-3
    assert chi2_uniform_p(rng.integers(0, 1 << 12, 50_000), 20) < 1e-9


def _toy_evaluator(images: np.ndarray, labels: np.ndarray, identities: int) -> Evaluator:
    """A fixed random linear 'face model' whose templates are the class means."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(images[0].size, 16))
    ev = Evaluator(model, np.zeros(16), np.zeros((identities, 16)))
    ev.templates = templates_of(ev.embed(images), labels, identities)
    return ev


def test_leakage_of_a_perfect_reconstruction_beats_chance_and_noise_does_not() -> None:
    rng = np.random.default_rng(1)
    identities = 6
    # Each identity: a base pattern plus small per-image noise.
    bases = rng.random((identities, 1, 12, 12))
    labels = np.repeat(np.arange(identities), 4)
    images = np.clip(bases[labels] + 0.05 * rng.standard_normal((24, 1, 12, 12)), 0, 1)
    ds = FaceDataset(images.astype(np.float32), labels.astype(np.int64), tuple("abcdef"))
    ev = _toy_evaluator(ds.images, ds.labels, identities)
    targets, target_labels = ds.images[[0, 4]], ds.labels[[0, 4]]

    perfect = leakage(targets.copy(), targets, target_labels, ds, ev, seed=0)
    assert perfect["ssim"] == pytest.approx(1.0)
    assert perfect["identity_cosine"] == pytest.approx(1.0, abs=1e-5)
    assert perfect["rank1"] == 1.0
    assert perfect["ssim"] > perfect["ssim_chance_band"][1]
    assert perfect["identity_cosine"] > perfect["identity_cosine_chance_band"][1]

    noise = rng.random(targets.shape).astype(np.float32)
    blind = leakage(noise, targets, target_labels, ds, ev, seed=0)
    assert blind["ssim"] < 0.2
    assert blind["psnr"] < perfect["psnr"]
    assert set(blind["noise"]) == {"rank1", "identity_cosine", "ssim", "psnr"}
