"""Leakage metrics with chance baselines (methods.md §9.3).

- :func:`psnr` and :func:`ssim` (scikit-image) against the private image;
- identity cosine and rank-1 re-identification under an :class:`Evaluator`:
  a small-cnn of another seed and embedding size, trained centrally on the
  gallery (images that were never in a client batch), with one template per
  identity.

Each private image is matched with the reconstruction of highest SSIM (the
attacker's best case when it returns several). Chance baselines run the very
same procedure against images of *other* people, so they carry whatever
bias a reconstruction has (a blurry mean face scores some SSIM with anyone);
a uniform-noise "reconstruction" is reported beside them. Nothing is
hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skimage.metrics import structural_similarity

from clients.training.data import FaceDataset
from clients.training.evaluate import embed
from clients.training.heads import CosFaceHead
from clients.training.models import build_backbone
from clients.training.train import TrainConfig, train_local

METRICS: tuple[str, ...] = ("rank1", "identity_cosine", "ssim", "psnr")


#: PSNR of identical images, instead of infinity (which JSON cannot hold).
PSNR_CAP = 100.0


def psnr(a: np.ndarray, b: np.ndarray, *, data_range: float = 1.0) -> float:
    """10·log10(range² / MSE) in dB, capped at :data:`PSNR_CAP` for identical images."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    if mse == 0:
        return PSNR_CAP
    return min(PSNR_CAP, float(10.0 * np.log10(data_range**2 / mse)))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two (C, H, W) images in [0, 1] (1 = identical)."""
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"need two (C, H, W) images of one shape, got {a.shape} and {b.shape}")
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape[0] == 1:
        value = structural_similarity(x[0], y[0], data_range=1.0)  # type: ignore[no-untyped-call]
    else:
        value = structural_similarity(x, y, data_range=1.0, channel_axis=0)  # type: ignore[no-untyped-call]
    return float(value)


def rank1(embeddings: np.ndarray, templates: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per row: is the template of highest cosine the row's own identity? (bool)."""
    if embeddings.shape[1] != templates.shape[1] or len(embeddings) != len(labels):
        raise ValueError("embeddings, templates and labels do not match")
    out: np.ndarray = np.argmax(embeddings @ templates.T, axis=1) == labels
    return out


@dataclass(eq=False)
class Evaluator:
    """A face model the attacker did not train, and one unit template per gallery identity.

    Embeddings are centred on the gallery mean before normalising: a small
    model's raw embeddings share a large common component, which squeezes
    every cosine towards 1 and hides the identity signal.
    """

    model: torch.nn.Module
    centre: np.ndarray  # (d,) mean raw unit embedding of the gallery
    templates: np.ndarray  # (identities, d), unit rows in the centred space

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Centred unit embeddings (N, d) of (N, C, H, W) images (flipped image added)."""
        raw = embed(self.model, np.ascontiguousarray(images, dtype=np.float32)) - self.centre
        norms = np.linalg.norm(raw, axis=1, keepdims=True)
        out: np.ndarray = raw / np.where(norms > 0, norms, 1.0)
        return out

    def rank1(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per image: re-identified as ``labels``?"""
        return rank1(self.embed(images), self.templates, labels)


def templates_of(embeddings: np.ndarray, labels: np.ndarray, identities: int) -> np.ndarray:
    """Normalised mean embedding per identity (zeros for an identity with no image)."""
    out = np.zeros((identities, embeddings.shape[1]), dtype=np.float64)
    np.add.at(out, labels, embeddings)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.where(norms > 0, norms, 1.0)


def degraded_copies(ds: FaceDataset, *, seed: int) -> FaceDataset:
    """``ds`` plus a noisy and a blurred-and-noisy copy of every image.

    Reconstructions are noisy and blotchy; an evaluator that has only seen
    clean faces sends such images to one "sink" identity and under-reports
    leakage. Training on degraded copies makes rank-1 measure identity, not
    image quality.
    """
    rng = np.random.default_rng(seed)
    x = ds.images
    noisy = np.clip(x + rng.normal(0.0, 0.1, x.shape), 0, 1)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    h, w = x.shape[2], x.shape[3]
    blurred = sum(padded[:, :, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9.0
    blurred = np.clip(blurred + rng.normal(0.0, 0.05, x.shape), 0, 1)
    images = np.concatenate([x, noisy, blurred]).astype(np.float32)
    return FaceDataset(images, np.tile(ds.labels, 3), ds.names)


def train_evaluator(
    gallery: FaceDataset, *, seed: int, epochs: int, embedding_dim: int = 64
) -> Evaluator:
    """Train the evaluator centrally on the gallery and degraded copies; build its templates."""
    torch.manual_seed(seed)
    size = gallery.images.shape[2:]
    model = build_backbone(
        "small-cnn",
        embedding_dim=embedding_dim,
        in_channels=gallery.images.shape[1],
        image_size=(int(size[0]), int(size[1])),
    )
    head = CosFaceHead(embedding_dim, gallery.identities)
    config = TrainConfig(epochs=epochs, batch_size=32, lr=0.05, seed=seed)
    train_local(
        model, head, degraded_copies(gallery, seed=seed), config, device=torch.device("cpu")
    )
    model.eval()
    centre = embed(model, gallery.images).mean(axis=0)
    evaluator = Evaluator(model, centre, np.zeros((gallery.identities, len(centre))))
    evaluator.templates = templates_of(
        evaluator.embed(gallery.images), gallery.labels, gallery.identities
    )
    return evaluator


# ------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Scores:
    """Per target: the chosen reconstruction and its four metrics."""

    match: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray
    identity_cosine: np.ndarray
    rank1: np.ndarray

    def means(self) -> dict[str, float]:
        """Mean of each metric (rank-1 as a hit rate)."""
        return {m: float(np.mean(getattr(self, m))) for m in METRICS}


def score(
    recs: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray,
    evaluator: Evaluator,
    *,
    rec_embeddings: np.ndarray | None = None,
    target_embeddings: np.ndarray | None = None,
) -> Scores:
    """Match each target to its highest-SSIM reconstruction and score that pair."""
    if len(recs) == 0 or len(targets) == 0:
        raise ValueError("need at least one reconstruction and one target")
    r_emb = evaluator.embed(recs) if rec_embeddings is None else rec_embeddings
    t_emb = evaluator.embed(targets) if target_embeddings is None else target_embeddings
    table = np.array([[ssim(r, t) for r in recs] for t in targets])
    match = np.argmax(table, axis=1)
    chosen = r_emb[match]
    return Scores(
        match=match,
        psnr=np.array([psnr(recs[j], t) for j, t in zip(match, targets, strict=True)]),
        ssim=table[np.arange(len(targets)), match],
        identity_cosine=np.sum(chosen * t_emb, axis=1),
        rank1=rank1(chosen, evaluator.templates, labels),
    )


def chance_band(values: np.ndarray, n: int) -> list[float]:
    """95% band of a mean of ``n`` draws from ``values`` (normal approximation)."""
    centre = float(np.mean(values))
    half = 1.96 * float(np.std(values)) / np.sqrt(max(n, 1))
    return [centre - half, centre + half]


def leakage(
    recs: np.ndarray,
    targets: np.ndarray,
    labels: np.ndarray,
    others: FaceDataset,
    evaluator: Evaluator,
    *,
    seed: int,
    others_embeddings: np.ndarray | None = None,
) -> dict[str, Any]:
    """Metrics for ``recs`` against ``targets``, with chance and noise baselines.

    ``others`` are images of people who are not among the targets; chance is
    the same matching procedure run against them. ``{metric}_chance_band``
    is the 95% range of a mean over ``len(targets)`` such draws; for rank-1 it
    also covers a blind guess among the gallery's identities (``rank1_guess``).
    """
    keep = ~np.isin(others.labels, labels)
    null = others.rows(np.flatnonzero(keep))
    if len(null) == 0:
        raise ValueError("no images of other people for the chance baseline")
    r_emb = evaluator.embed(recs)
    o_emb = evaluator.embed(null.images) if others_embeddings is None else others_embeddings[keep]
    hit = score(recs, targets, labels, evaluator, rec_embeddings=r_emb)
    chance = score(
        recs, null.images, null.labels, evaluator, rec_embeddings=r_emb, target_embeddings=o_emb
    )
    noise = np.random.default_rng(seed).random(recs.shape).astype(np.float32)
    noisy = score(noise, targets, labels, evaluator)
    out: dict[str, Any] = {}
    for m in METRICS:
        out[m] = float(np.mean(getattr(hit, m)))
        out[f"{m}_chance"] = float(np.mean(getattr(chance, m)))
        out[f"{m}_chance_band"] = chance_band(getattr(chance, m), len(targets))
    # A good reconstruction of someone else never names the target, so rank-1 against
    # other people can be 0; a blind guess among the gallery's identities names the
    # right person 1/G of the time. The band covers both.
    guess = 1.0 / len(evaluator.templates)
    out["rank1_guess"] = guess
    guess_band = chance_band(np.array([1.0] + [0.0] * (len(evaluator.templates) - 1)), len(targets))
    low, high = out["rank1_chance_band"]
    out["rank1_chance_band"] = [max(0.0, min(low, guess_band[0])), max(high, guess_band[1])]
    out["noise"] = noisy.means()
    out["per_target"] = {m: [float(v) for v in getattr(hit, m)] for m in METRICS}
    out["match"] = [int(j) for j in hit.match]
    return out
