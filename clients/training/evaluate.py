"""Face verification: embeddings, 10-fold accuracy, TAR@FAR, and backbone checkpoints.

Protocol (methods.md §10.1–10.2):

- :func:`embed`: L2-normalised embeddings, by default with the flip trick
  ``normalise(f(x) + f(hflip(x)))`` (insightface's "add" variant).
- :func:`verification`: a pair's score is the cosine similarity of its two
  embeddings (equivalent to insightface's squared distance, 2 − 2cos).

  *10-fold accuracy* (with chance at 0.5). When genuine and impostor pairs
  are unbalanced (e.g. every pair of a small set: ~10 impostors per genuine
  pair), accuracy would mostly measure the impostors, so by default it is
  computed on a balanced subset, as LFW is balanced by design: every pair of
  the rarer kind plus as many pairs of the other, drawn with
  ``default_rng([seed, 1])`` (``balance=False`` keeps all pairs). These
  pairs are split into ``folds`` stratified folds: the genuine and the
  impostor pairs are each shuffled with ``np.random.default_rng(seed)`` and
  dealt round-robin into the folds, so
  every fold gets ⌊n/folds⌋ or ⌈n/folds⌉ pairs and the same share of genuine
  pairs (LFW's own person-disjoint folds can be passed as ``fold_of``). For
  each fold the threshold is chosen on the *other* folds only: the cut that
  maximises their accuracy over all distinct training scores (exact, instead
  of insightface's 0.01 grid), placed halfway between the two training scores
  it separates; the middle one of several equally good cuts is taken. A pair
  is predicted "same" iff its score ≥ threshold. The held-out fold's
  accuracy is recorded; mean and (population, ddof = 0) std over folds are
  reported.

  *TAR@FAR*, over all pairs (no folds). For a target FAR with N impostor
  scores, k = ⌊FAR·N⌋ impostors may be accepted. The threshold is the
  (k+1)-th highest impostor score and a pair is accepted iff its score is
  **strictly greater**. So ties at the threshold are rejected: the achieved
  FAR (reported in ``far_achieved``) is ≤ the target, never above it, even
  with tied scores. TAR is the share of genuine scores strictly above the
  threshold. If N < 1/FAR the target is not resolvable (k = 0): the value
  reported is the TAR at FAR = 0 (threshold = the highest impostor score), a
  lower bound on the true TAR at that FAR; ``far_resolved`` marks such
  entries False. methods.md §10.2 asks for ≳ 10/FAR impostors for a stable
  estimate; :func:`clients.training.data.all_pairs` gives every impostor
  pair of a small set.

- :func:`save_checkpoint` / :func:`load_checkpoint`: a backbone with the
  metadata needed to rebuild it (the format ``secagg eval`` reads).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import nn

from clients.training.models import build_backbone

#: Target FARs reported by default and their JSON keys.
DEFAULT_FARS: tuple[float, ...] = (1e-2, 1e-3)

#: Keys a checkpoint must hold besides ``state_dict``.
CHECKPOINT_KEYS: tuple[str, ...] = ("backbone", "embedding_dim", "in_channels", "image_size")

#: FPRs at which the downsampled ROC is sampled (a log grid plus a linear one).
_ROC_GRID = np.unique(np.concatenate([[0.0], np.logspace(-5, 0, 51), np.linspace(0, 1, 21)]))


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else CPU; anything else as given."""
    if isinstance(spec, torch.device):
        return spec
    if spec is None or spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


# --------------------------------------------------------------------------- embedding


def embed(
    model: nn.Module,
    images: np.ndarray,
    *,
    device: str | torch.device | None = None,
    batch_size: int = 256,
    flip: bool = True,
) -> np.ndarray:
    """L2-normalised embeddings (N, d) float32 of ``images`` (N, C, H, W) float32.

    With ``flip`` each embedding is ``normalise(f(x) + f(hflip(x)))``: the raw
    (un-normalised) backbone outputs of the image and of its horizontal
    mirror are added, then normalised. Without it, ``normalise(f(x))``.

    Runs in eval mode under ``torch.inference_mode`` (and float16 autocast on
    CUDA), then restores the model's previous train/eval mode. ``device``:
    where to run; the model is moved there (``nn.Module.to``, in place). The
    default None keeps the model where it is; ``"auto"`` picks CUDA when
    available.
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), got shape {images.shape}")
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    dev = _model_device(model) if device is None else resolve_device(device)
    model.to(dev)
    was_training = model.training
    model.eval()
    cuda = dev.type == "cuda"
    out: list[np.ndarray] = []
    try:
        with torch.inference_mode(), torch.autocast("cuda", enabled=cuda):
            for start in range(0, len(images), batch_size):
                chunk = np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32)
                x = torch.from_numpy(chunk).to(dev, non_blocking=cuda)
                f = model(x).float()
                if flip:
                    f = f + model(torch.flip(x, dims=(3,))).float()
                out.append(F.normalize(f, dim=1).cpu().numpy())
    finally:
        model.train(was_training)
    if not out:
        raise ValueError("no images to embed")
    return np.concatenate(out).astype(np.float32, copy=False)


# ------------------------------------------------------------------------ verification


@dataclass(frozen=True)
class VerificationResult:
    """Outcome of :func:`verification` (see the module docstring for the definitions).

    ``thresholds`` and ``fold_accuracy`` are per fold (cosine thresholds);
    ``roc_fpr``/``roc_tpr`` are the ROC sampled at a fixed grid of FPRs (TPR
    at the largest FPR ≤ each grid value, same rule as TAR@FAR).
    """

    accuracy_mean: float
    accuracy_std: float
    tar_at_far: dict[str, float]
    pairs: int
    thresholds: list[float]
    roc_fpr: list[float]
    roc_tpr: list[float]
    fold_accuracy: list[float] = field(default_factory=list)
    genuine: int = 0
    impostor: int = 0
    far_achieved: dict[str, float] = field(default_factory=dict)
    far_resolved: dict[str, bool] = field(default_factory=dict)
    accuracy_pairs: int = 0

    def to_json(self) -> dict[str, Any]:
        """The summary ``secagg eval`` prints (ROC left out; it is in the dataclass)."""
        return {
            "accuracy_mean": self.accuracy_mean,
            "accuracy_std": self.accuracy_std,
            "tar_at_far": dict(self.tar_at_far),
            "pairs": self.pairs,
            "genuine": self.genuine,
            "impostor": self.impostor,
            "far_achieved": dict(self.far_achieved),
            "far_resolved": dict(self.far_resolved),
            "accuracy_pairs": self.accuracy_pairs,
            "folds": len(self.fold_accuracy),
            "thresholds": list(self.thresholds),
        }


def far_key(far: float) -> str:
    """JSON key of a FAR: 1e-2 -> ``"1e-2"``, 1e-3 -> ``"1e-3"``, 0.05 -> ``"5e-2"``."""
    mantissa, exponent = f"{far:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def pair_scores(emb: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of rows ``a[i]`` and ``b[i]`` (rows are re-normalised, float64)."""
    e = np.asarray(emb, dtype=np.float64)
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    e = e / np.maximum(norms, 1e-12)
    scores: np.ndarray = np.sum(e[np.asarray(a)] * e[np.asarray(b)], axis=1)
    return scores


def balanced_subset(same: np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Sorted indices: every pair of the rarer kind plus as many seeded random others."""
    same = np.asarray(same, dtype=bool)
    genuine, impostor = np.flatnonzero(same), np.flatnonzero(~same)
    rare, common = (genuine, impostor) if len(genuine) <= len(impostor) else (impostor, genuine)
    rng = np.random.default_rng([seed, 1])
    picked = rng.choice(common, size=len(rare), replace=False)
    return np.sort(np.concatenate([rare, picked]))


def stratified_folds(same: np.ndarray, folds: int, *, seed: int = 0) -> np.ndarray:
    """Fold id (0..folds-1) of each pair: genuine and impostor pairs shuffled, dealt in turn."""
    same = np.asarray(same, dtype=bool)
    if folds < 2:
        raise ValueError("need at least 2 folds")
    if len(same) < folds:
        raise ValueError(f"{len(same)} pairs cannot fill {folds} folds")
    rng = np.random.default_rng(seed)
    order = np.concatenate(
        [rng.permutation(np.flatnonzero(same)), rng.permutation(np.flatnonzero(~same))]
    )
    fold_of = np.empty(len(same), dtype=np.int64)
    fold_of[order] = np.arange(len(same)) % folds
    return fold_of


def best_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold (predict same iff score ≥ t) maximising accuracy on these pairs.

    Candidates are the midpoints between consecutive distinct scores plus one
    below the minimum and one above the maximum; among equally accurate cuts
    the middle one is chosen.
    """
    if len(scores) == 0:
        raise ValueError("no scores to choose a threshold from")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order]
    # Cut c (0..n) accepts the c highest scores; only cuts between distinct values are real.
    genuine_accepted = np.concatenate([[0], np.cumsum(y)])
    impostor_rejected = np.concatenate([[0], np.cumsum(~y)])
    impostor_rejected = impostor_rejected[-1] - impostor_rejected
    correct = genuine_accepted + impostor_rejected
    n = len(s)
    valid = np.ones(n + 1, dtype=bool)
    valid[1:n] = s[:-1] > s[1:]
    cuts = np.flatnonzero(valid & (correct == correct[valid].max()))
    c = int(cuts[(len(cuts) - 1) // 2])
    if c == 0:
        return float(s[0] + 1.0)
    if c == n:
        return float(s[-1] - 1.0)
    return float((s[c - 1] + s[c]) / 2)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float, float]:
    """(TAR, achieved FAR, threshold) with the rule of the module docstring.

    Accept iff score > t, t = the (⌊far·N⌋ + 1)-th highest impostor score
    (t = −inf, everything accepted, when ⌊far·N⌋ ≥ N). NaNs without genuine or
    impostor scores.
    """
    curve = _tar_curve(np.asarray(genuine), np.asarray(impostor), np.array([far]))
    return curve[0][0], curve[1][0], curve[2][0]


def _tar_curve(
    genuine: np.ndarray, impostor: np.ndarray, fars: np.ndarray
) -> tuple[list[float], list[float], list[float]]:
    """:func:`tar_at_far` for many FARs, sorting once."""
    if len(genuine) == 0 or len(impostor) == 0:
        nan = [math.nan] * len(fars)
        return nan, list(nan), list(nan)
    gen = np.sort(genuine.astype(np.float64))
    imp = np.sort(impostor.astype(np.float64))
    allowed = np.floor(fars * len(imp) + 1e-9).astype(np.int64)
    tars: list[float] = []
    achieved: list[float] = []
    thresholds: list[float] = []
    for k in allowed:
        if k >= len(imp):
            tars.append(1.0)
            achieved.append(1.0)
            thresholds.append(-math.inf)
            continue
        t = float(imp[len(imp) - 1 - k])  # the (k+1)-th highest impostor score
        tars.append(float(len(gen) - np.searchsorted(gen, t, side="right")) / len(gen))
        achieved.append(float(len(imp) - np.searchsorted(imp, t, side="right")) / len(imp))
        thresholds.append(t)
    return tars, achieved, thresholds


def verification_from_scores(
    scores: np.ndarray,
    same: np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    fold_of: np.ndarray | None = None,
    fars: Sequence[float] = DEFAULT_FARS,
    balance: bool = True,
) -> VerificationResult:
    """:func:`verification` on precomputed pair scores (higher = more alike)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if scores.shape != same.shape or scores.ndim != 1:
        raise ValueError("scores and same must be 1-D arrays of equal length")
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores must be finite")
    if not same.any() or same.all():
        raise ValueError("need at least one genuine and one impostor pair")
    if fold_of is not None:
        fold_of = np.asarray(fold_of, dtype=np.int64)
        if fold_of.shape != same.shape:
            raise ValueError("fold_of must give one fold per pair")
    keep = balanced_subset(same, seed=seed) if balance else np.arange(len(same))
    acc_scores, acc_same = scores[keep], same[keep]
    if fold_of is None:
        acc_folds = stratified_folds(acc_same, folds, seed=seed)
    else:
        acc_folds = fold_of[keep]
    fold_ids = np.unique(acc_folds)
    if len(fold_ids) < 2:
        raise ValueError("need at least 2 non-empty folds")
    thresholds: list[float] = []
    accuracy: list[float] = []
    for k in fold_ids:
        test = acc_folds == k
        t = best_threshold(acc_scores[~test], acc_same[~test])
        thresholds.append(t)
        accuracy.append(float(np.mean((acc_scores[test] >= t) == acc_same[test])))

    genuine, impostor = scores[same], scores[~same]
    far_values = np.asarray(list(fars), dtype=np.float64)
    tar_values, achieved_values, _ = _tar_curve(genuine, impostor, far_values)
    keys = [far_key(f) for f in far_values]
    tars = dict(zip(keys, tar_values, strict=True))
    achieved = dict(zip(keys, achieved_values, strict=True))
    resolved = {
        k: bool(f * len(impostor) >= 1.0 - 1e-9) for k, f in zip(keys, far_values, strict=True)
    }
    roc_tpr = _tar_curve(genuine, impostor, _ROC_GRID)[0]
    return VerificationResult(
        accuracy_mean=float(np.mean(accuracy)),
        accuracy_std=float(np.std(accuracy)),
        tar_at_far=tars,
        pairs=len(scores),
        thresholds=thresholds,
        roc_fpr=[float(f) for f in _ROC_GRID],
        roc_tpr=roc_tpr,
        fold_accuracy=accuracy,
        genuine=len(genuine),
        impostor=len(impostor),
        far_achieved=achieved,
        far_resolved=resolved,
        accuracy_pairs=len(keep),
    )


def verification(
    emb: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    same: np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    fold_of: np.ndarray | None = None,
    fars: Sequence[float] = DEFAULT_FARS,
    balance: bool = True,
) -> VerificationResult:
    """10-fold verification accuracy and TAR@FAR of pairs (``a[i]``, ``b[i]``) of ``emb``.

    ``same[i]`` says whether pair i is genuine. ``fold_of`` (optional) fixes
    the fold of each pair, e.g. LFW's ``Pair.fold``; otherwise seeded
    stratified folds. With ``balance`` (the default) the accuracy uses every
    pair of the rarer kind and as many seeded random pairs of the other (a
    no-op on LFW-style balanced pairs); TAR@FAR always uses every pair. See
    the module docstring for the exact rules.
    """
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.shape != np.shape(same):
        raise ValueError("a, b and same must have the same length")
    return verification_from_scores(
        pair_scores(emb, a, b),
        same,
        folds=folds,
        seed=seed,
        fold_of=fold_of,
        fars=fars,
        balance=balance,
    )


# ------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | Path, model: nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``{**meta, "state_dict": CPU tensors}`` with ``torch.save``.

    ``meta`` must hold ``backbone``, ``embedding_dim``, ``in_channels`` and
    ``image_size`` (an int side or [H, W]; see :func:`load_checkpoint`);
    ``data_size`` ([H, W] the images were loaded at) defaults to the image size. Other entries
    are kept if they are plain Python values (``torch.load(weights_only=True)``
    must be able to read them back).
    """
    missing = [k for k in CHECKPOINT_KEYS if k not in meta]
    if missing:
        raise ValueError(f"checkpoint metadata lacks {', '.join(missing)}")
    payload: dict[str, Any] = dict(meta)
    if not isinstance(payload["image_size"], int):
        payload["image_size"] = [int(v) for v in payload["image_size"]]
    payload["data_size"] = list(_size_pair(payload.get("data_size") or payload["image_size"]))
    payload["state_dict"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    torch.save(payload, Path(path))


def load_checkpoint(
    path: str | Path, device: str | torch.device | None = "auto"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the backbone of a checkpoint: ``(model in eval mode on device, meta)``.

    The file is a ``torch.save``'d dict ``{"backbone": name, "embedding_dim":
    int, "in_channels": int, "image_size": int (or [H, W]), "state_dict": ...,
    "data_size": [H, W]}``, read with ``weights_only=True`` (no code runs on load). ``meta``
    is the dict without ``state_dict``; ``data_size`` is filled in from
    ``image_size`` when absent.
    """
    dev = resolve_device(device)
    raw = torch.load(Path(path), map_location=dev, weights_only=True)
    if not isinstance(raw, dict) or "state_dict" not in raw:
        raise ValueError(f"{path}: not a backbone checkpoint (no state_dict)")
    missing = [k for k in CHECKPOINT_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}")
    meta = {k: v for k, v in raw.items() if k != "state_dict"}
    meta["data_size"] = list(_size_pair(meta.get("data_size") or meta["image_size"]))
    model = build_backbone(
        str(meta["backbone"]),
        embedding_dim=int(meta["embedding_dim"]),
        in_channels=int(meta["in_channels"]),
        image_size=_size_pair(meta["image_size"]),
    )
    if meta.get("norm") == "groupnorm":  # trained with DP-SGD: BatchNorm was swapped by Opacus
        from clients.training.dpsgd import dp_backbone

        model = dp_backbone(model)
    model.load_state_dict(raw["state_dict"])
    model.to(dev).eval()
    return model, meta


def _size_pair(size: Any) -> tuple[int, int]:
    """An ``image_size``/``data_size`` entry (int side or [H, W]) as (H, W)."""
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def _match_input(images: np.ndarray, channels: int, size: tuple[int, int]) -> np.ndarray:
    """Grey↔RGB (channel mean / repeat) and bilinear resize to ``size`` (H, W) if needed."""
    if images.shape[1] != channels:
        if channels == 1:
            images = images.mean(axis=1, keepdims=True, dtype=np.float32)
        elif images.shape[1] == 1:
            images = np.repeat(images, channels, axis=1)
        else:
            raise ValueError(f"cannot turn {images.shape[1]}-channel images into {channels}")
    if images.shape[2:] != size:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        images = F.interpolate(x, size=size, mode="bilinear", align_corners=False).numpy()
    return np.ascontiguousarray(images, dtype=np.float32)


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    data: str | None = None,
    pairs: str | Path | None = None,
    images: str | Path | None = None,
    device: str | torch.device | None = "auto",
    folds: int = 10,
    seed: int = 0,
    max_impostor: int | None = None,
    batch_size: int = 256,
    flip: bool = True,
) -> VerificationResult:
    """Verification of a saved backbone on a data set (what ``secagg eval`` runs).

    Either ``data``, a :func:`clients.training.data.load_dataset` spec whose
    every genuine and impostor pair is scored (``all_pairs``; at most
    ``max_impostor`` seeded impostors), with seeded stratified folds; or
    ``pairs`` (an LFW ``pairs.txt``) with ``images`` (its identity folder),
    scored on the file's own folds. Images are loaded at the checkpoint's
    ``data_size``, grey when the model has one input channel, and resized to
    ``image_size`` if the two differ.
    """
    from clients.training import data as face_data

    model, meta = load_checkpoint(checkpoint, device)
    dev = _model_device(model)
    in_channels, image_size = int(meta["in_channels"]), _size_pair(meta["image_size"])
    height, width = _size_pair(meta["data_size"])
    fold_of: np.ndarray | None = None
    if data is not None:
        if pairs is not None or images is not None:
            raise ValueError("give either data or pairs + images, not both")
        ds = face_data.load_dataset(data, size=(height, width), grayscale=in_channels == 1)
        a, b, same = face_data.all_pairs(ds, max_impostor=max_impostor, seed=seed)
    elif pairs is not None and images is not None:
        listed = face_data.read_pairs(pairs)
        ds = face_data.load_identity_folder(
            images, size=(height, width), grayscale=in_channels == 1
        )
        a, b, same = face_data.pair_indices(listed, ds)
        fold_of = np.array([p.fold for p in listed], dtype=np.int64)
        if len(np.unique(fold_of)) < 2:
            fold_of = None  # a single-fold pairs file: fall back to seeded folds
    else:
        raise ValueError("give data, or pairs together with images")
    used = np.unique(np.concatenate([a, b]))
    remap = np.full(len(ds), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    pixels = _match_input(ds.images[used], in_channels, image_size)
    emb = embed(model, pixels, device=dev, batch_size=batch_size, flip=flip)
    return verification(emb, remap[a], remap[b], same, folds=folds, seed=seed, fold_of=fold_of)
