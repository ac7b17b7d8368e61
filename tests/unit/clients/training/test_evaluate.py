"""Verification protocol (10-fold accuracy, TAR@FAR), embedding, checkpoints, `secagg eval`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clients.training.evaluate import (
    VerificationResult,
    best_threshold,
    embed,
    far_key,
    load_checkpoint,
    save_checkpoint,
    stratified_folds,
    tar_at_far,
    verification,
    verification_from_scores,
)
from clients.training.heads import CosFaceHead
from clients.training.models import build_backbone
from secagg.cli import main

torch.set_num_threads(2)


def _pairs_with_scores(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit 2-D embeddings whose pairs (0, i+1) have cosine exactly ``scores[i]``."""
    angles = np.arccos(np.clip(scores, -1.0, 1.0))
    emb = np.vstack([[1.0, 0.0], np.stack([np.cos(angles), np.sin(angles)], axis=1)])
    a = np.zeros(len(scores), dtype=np.int64)
    b = np.arange(1, len(scores) + 1, dtype=np.int64)
    return emb, a, b


# ------------------------------------------------------------------------ 10-fold accuracy


def test_separable_scores_give_perfect_accuracy() -> None:
    rng = np.random.default_rng(1)
    scores = np.concatenate([rng.uniform(0.6, 1.0, 300), rng.uniform(-0.5, 0.4, 300)])
    same = np.arange(600) < 300
    emb, a, b = _pairs_with_scores(scores)
    result = verification(emb, a, b, same)
    assert result.accuracy_mean == 1.0 and result.accuracy_std == 0.0
    assert result.pairs == 600 and result.genuine == 300 and result.impostor == 300
    assert len(result.thresholds) == 10
    assert all(0.4 < t < 0.6 for t in result.thresholds)
    assert result.tar_at_far == {"1e-2": 1.0, "1e-3": 1.0}


def test_random_embeddings_are_at_chance() -> None:
    rng = np.random.default_rng(2)
    emb = rng.normal(size=(400, 32))
    a, b = rng.integers(0, 400, 2000), rng.integers(0, 400, 2000)
    same = rng.random(2000) < 0.5
    result = verification(emb, a, b, same)
    assert 0.44 < result.accuracy_mean < 0.56
    assert result.tar_at_far["1e-2"] < 0.05


def test_unbalanced_pairs_are_balanced_for_accuracy() -> None:
    # 20 genuine vs 2000 impostor pairs with uninformative scores: "always different"
    # scores 99% on all pairs, so accuracy is taken on 20 + 20 pairs (chance 0.5).
    rng = np.random.default_rng(8)
    scores = rng.uniform(-1, 1, 2020)
    same = np.arange(2020) < 20
    unbalanced = verification_from_scores(scores, same, balance=False)
    assert unbalanced.accuracy_mean > 0.95 and unbalanced.accuracy_pairs == 2020
    balanced = verification_from_scores(scores, same)
    assert balanced.accuracy_pairs == 40 and balanced.pairs == 2020
    assert balanced.accuracy_mean < 0.75
    assert balanced.impostor == 2000  # TAR@FAR still uses every impostor
    assert balanced.far_resolved == {"1e-2": True, "1e-3": True}


def test_threshold_is_chosen_without_the_held_out_fold() -> None:
    # Folds 1..9: genuine 0.8, impostor 0.2 (best threshold 0.5). Fold 0: genuine 0.4,
    # impostor 0.1. Picked on all data the threshold would be 0.3 and fold 0 perfect;
    # picked on the other nine folds it is 0.5 and fold 0's genuine pairs are rejected.
    folds = np.repeat(np.arange(10), 4)
    same = np.tile([True, True, False, False], 10)
    scores = np.where(same, 0.8, 0.2)
    scores[(folds == 0) & same] = 0.4
    scores[(folds == 0) & ~same] = 0.1
    result = verification_from_scores(scores, same, fold_of=folds)
    assert result.thresholds[0] == pytest.approx(0.5)
    assert result.fold_accuracy[0] == 0.5
    assert result.fold_accuracy[1:] == [1.0] * 9
    assert result.accuracy_mean == pytest.approx(0.95)
    assert result.accuracy_std == pytest.approx(0.15)
    # With the held-out fold in the training data the threshold would have been 0.3.
    assert best_threshold(scores, same) == pytest.approx(0.3)


def test_stratified_folds() -> None:
    same = np.arange(103) < 31
    fold_of = stratified_folds(same, 10, seed=5)
    sizes = np.bincount(fold_of, minlength=10)
    genuine = np.bincount(fold_of[same], minlength=10)
    assert sizes.max() - sizes.min() <= 1 and genuine.max() - genuine.min() <= 1
    assert np.array_equal(fold_of, stratified_folds(same, 10, seed=5))
    assert not np.array_equal(fold_of, stratified_folds(same, 10, seed=6))
    with pytest.raises(ValueError):
        stratified_folds(same[:5], 10)


def test_best_threshold_rules() -> None:
    # Cuts after 0.9, 0.7 and 0.5 all give 4/6 correct: the middle one (after 0.7) wins.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.1])
    same = np.array([True, False, True, False, True, False])
    assert best_threshold(scores, same) == pytest.approx(0.65)
    # Tied scores cannot be split: cutting between the two 0.5s would be 3/3 correct,
    # but a threshold cannot separate them, so the best real cuts are "accept none"
    # (the first of the two tied best cuts: max + 1) or "accept both 0.5s".
    t = best_threshold(np.array([0.5, 0.5, 0.2]), np.array([True, False, False]))
    assert t == pytest.approx(1.5)


# ---------------------------------------------------------------------------- TAR@FAR


def test_tar_at_far_hand_computed() -> None:
    impostor = np.arange(100) / 100  # 0.00 .. 0.99
    genuine = np.array([0.995, 0.985, 0.98, 0.975, 0.5])
    # FAR 1e-2 with 100 impostors: one may pass; threshold = 2nd highest impostor = 0.98;
    # accept strictly above it: 0.995 and 0.985 (0.98 itself is a tie, rejected).
    assert tar_at_far(genuine, impostor, 1e-2) == (pytest.approx(0.4), 0.01, 0.98)
    # FAR 5e-2: five may pass; threshold = 6th highest = 0.94; 4 genuine above it.
    assert tar_at_far(genuine, impostor, 5e-2)[0] == pytest.approx(0.8)
    # FAR 1e-3 is below 1/100: not resolvable, reported at FAR 0 (above every impostor).
    assert tar_at_far(genuine, impostor, 1e-3) == (pytest.approx(0.2), 0.0, 0.99)

    scores = np.concatenate([genuine, impostor])
    same = np.arange(len(scores)) < len(genuine)
    result = verification_from_scores(scores, same, folds=5)
    assert result.tar_at_far == {"1e-2": pytest.approx(0.4), "1e-3": pytest.approx(0.2)}
    assert result.far_achieved == {"1e-2": 0.01, "1e-3": 0.0}
    assert result.far_resolved == {"1e-2": True, "1e-3": False}


def test_tar_at_far_never_exceeds_target_with_ties() -> None:
    impostor = np.array([0.9, 0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2])
    genuine = np.array([0.95, 0.9, 0.6])
    tar, achieved, threshold = tar_at_far(genuine, impostor, 0.1)  # one of ten may pass
    assert threshold == 0.9 and achieved == 0.0 and tar == pytest.approx(1 / 3)
    tar, achieved, _ = tar_at_far(genuine, impostor, 0.2)  # two may pass: both 0.9s
    assert achieved == pytest.approx(0.2) and tar == pytest.approx(1.0)


def test_far_keys_and_json() -> None:
    assert [far_key(f) for f in (1e-2, 1e-3, 5e-2, 1e-4)] == ["1e-2", "1e-3", "5e-2", "1e-4"]
    scores = np.array([0.9, 0.8, 0.7, 0.3, 0.2, 0.1, 0.0, 0.85, 0.15, 0.05])
    same = np.array([True] * 3 + [False] * 4 + [True] + [False] * 2)
    result = verification_from_scores(scores, same, folds=2)
    doc = json.loads(json.dumps(result.to_json()))
    assert {"accuracy_mean", "accuracy_std", "tar_at_far", "pairs"} <= doc.keys()
    assert set(doc["tar_at_far"]) == {"1e-2", "1e-3"} and doc["pairs"] == 10
    assert len(result.roc_fpr) == len(result.roc_tpr) > 10
    assert result.roc_fpr[0] == 0.0 and result.roc_tpr[-1] == 1.0
    assert all(np.diff(result.roc_tpr) >= 0)


def test_verification_input_checks() -> None:
    emb, a, b = _pairs_with_scores(np.linspace(0, 1, 20))
    with pytest.raises(ValueError, match="genuine and one impostor"):
        verification(emb, a, b, np.ones(20, bool))
    with pytest.raises(ValueError, match="same length"):
        verification(emb, a, b[:-1], np.arange(20) < 10)


# ------------------------------------------------------------------------------ embed


class _Linear(torch.nn.Module):
    """f(x) = W·vec(x) with a left/right-asymmetric W, plus BN so eval mode matters."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc = torch.nn.Linear(2 * 4 * 4, 8)
        self.bn = torch.nn.BatchNorm1d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn(self.fc(x.flatten(1)))
        return out


def test_embed_flip_is_normalised_sum() -> None:
    model = _Linear()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    model.train()
    images = np.random.default_rng(4).normal(size=(5, 2, 4, 4)).astype(np.float32)
    x = torch.from_numpy(images)
    with torch.no_grad():
        model.eval()
        f, g = model(x), model(x.flip(-1))
        model.train()
    got = embed(model, images, batch_size=2)
    np.testing.assert_allclose(got, F.normalize(f + g, dim=1).numpy(), atol=1e-6)
    plain = embed(model, images, flip=False)
    np.testing.assert_allclose(plain, F.normalize(f, dim=1).numpy(), atol=1e-6)
    assert not np.allclose(got, plain, atol=1e-3)
    assert got.dtype == np.float32 and np.allclose(np.linalg.norm(got, axis=1), 1.0)
    assert model.training  # the caller's mode is restored


# ------------------------------------------------------------------------- training


def _blobs(classes: int, per: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each class: three fixed Gaussian blobs; each image: ±1 px shift, gain, heavy noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    images, labels = [], []
    for c in range(classes):
        template = np.zeros((size, size))
        for cx, cy in rng.uniform(0.2, 0.8, (3, 2)):
            template += np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 0.08**2))
        for _ in range(per):
            shifted = np.roll(template, tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
            images.append(shifted * rng.uniform(0.8, 1.2) + rng.normal(0, 0.3, (size, size)))
            labels.append(c)
    return np.array(images, np.float32)[:, None], np.array(labels)


def _balanced_accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    i, j = np.triu_indices(len(labels), 1)
    same = labels[i] == labels[j]
    genuine = np.flatnonzero(same)
    keep = np.concatenate([genuine, np.flatnonzero(~same)[::4][: len(genuine)]])
    result = verification(embed(model, images), i[keep], j[keep], same[keep], folds=5)
    return result.accuracy_mean


def test_small_cnn_cosface_learns_separable_blobs() -> None:
    images, labels = _blobs(5, 20, 16, seed=1)
    train = np.arange(len(labels)) % 20 < 10
    torch.manual_seed(1)
    model = build_backbone("small-cnn", embedding_dim=32, image_size=16)
    head = CosFaceHead(32, 5, s=16.0, m=0.2)
    before = _balanced_accuracy(model, images[~train], labels[~train])
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=0.01)
    x, y = torch.from_numpy(images[train]), torch.from_numpy(labels[train])
    model.train()
    losses = []
    for _ in range(40):
        loss = F.cross_entropy(head(model(x), y), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    after = _balanced_accuracy(model, images[~train], labels[~train])
    assert losses[-1] < 0.5 * losses[0]
    assert after >= 0.8 and after > before + 0.05, (before, after)


# -------------------------------------------------------------------- checkpoints + CLI


def _tiny_checkpoint(path: Path) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_backbone("small-cnn", embedding_dim=16, in_channels=1, image_size=16)
    meta = {"backbone": "small-cnn", "embedding_dim": 16, "in_channels": 1, "image_size": 16}
    save_checkpoint(path, model, {**meta, "data_size": [16, 16]})
    return model


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _tiny_checkpoint(tmp_path / "ckpt.pt")
    loaded, meta = load_checkpoint(tmp_path / "ckpt.pt", "cpu")
    assert meta["backbone"] == "small-cnn" and meta["data_size"] == [16, 16]
    assert "state_dict" not in meta and not loaded.training
    x = np.random.default_rng(0).random((3, 1, 16, 16), dtype=np.float32)
    np.testing.assert_allclose(embed(loaded, x), embed(model, x), atol=1e-6)
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(tmp_path / "bad.pt", model, {"backbone": "small-cnn"})


def _write_identity_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(7)
    for who in ("alice", "bob", "carol", "dave"):
        base = rng.uniform(0, 255, (20, 20))
        (root / who).mkdir(parents=True)
        for k in range(1, 4):
            pixels = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / who / f"{who}_{k:04d}.png")


def _run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_secagg_eval_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("PIL")
    _tiny_checkpoint(tmp_path / "ckpt.pt")
    _write_identity_folder(tmp_path / "faces")
    ckpt, faces = str(tmp_path / "ckpt.pt"), str(tmp_path / "faces")
    code, out = _run_cli(
        ["eval", "--checkpoint", ckpt, "--data", faces, "--device", "cpu", "--json"], capsys
    )
    assert code == 0
    doc = json.loads(out)
    assert {"accuracy_mean", "accuracy_std", "tar_at_far", "pairs"} <= doc.keys()
    assert set(doc["tar_at_far"]) == {"1e-2", "1e-3"}
    assert doc["pairs"] == 4 * 3 + 6 * 9  # 4 identities × C(3,2) genuine, 54 impostor
    assert doc["accuracy_pairs"] == 2 * 12  # balanced: 12 genuine + 12 impostor
    assert 0.0 <= doc["accuracy_mean"] <= 1.0
    code, out = _run_cli(["eval", "--checkpoint", ckpt, "--data", faces], capsys)
    assert code == 0 and "accuracy" in out and "TAR@FAR=1e-2" in out


def test_secagg_eval_pairs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("PIL")
    _tiny_checkpoint(tmp_path / "ckpt.pt")
    _write_identity_folder(tmp_path / "faces")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "2 2\n"
        "alice 1 2\nbob 1 3\nalice 1 bob 2\ncarol 3 dave 1\n"
        "carol 1 2\ndave 2 3\nalice 3 dave 3\nbob 1 carol 2\n"
    )
    argv = ["eval", "--checkpoint", str(tmp_path / "ckpt.pt"), "--pairs", str(pairs)]
    code, out = _run_cli([*argv, "--images", str(tmp_path / "faces"), "--json"], capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["pairs"] == 8 and doc["folds"] == 2  # the file's own two folds
    assert main(argv) == 2  # --pairs without --images is refused


def test_result_is_frozen() -> None:
    result = verification_from_scores(
        np.array([0.9, 0.1, 0.8, 0.2]), np.array([1, 0, 1, 0]) > 0, folds=2
    )
    assert isinstance(result, VerificationResult)
    with pytest.raises(AttributeError):
        result.pairs = 3  # type: ignore[misc]
    assert math.isclose(result.accuracy_mean, 1.0)
