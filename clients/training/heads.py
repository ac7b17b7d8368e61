"""Private margin heads (CosFace, ArcFace), their FedFace-style init, and FedFace's loss.

Notation as in methods.md §1: embedding f, f̂ = f/‖f‖; head rows w_j,
ŵ_j = w_j/‖w_j‖; cos θ_j = ŵ_j·f̂; scale s, margin m. A head's rows are the
client's class embeddings (face templates): they stay on the client.

Both heads return *logits* (B, classes) for ``F.cross_entropy``:

- CosFace (LMCL): target logit s·(cos θ_y − m), the others s·cos θ_j.
- ArcFace: target logit s·cos(θ_y + m), the others s·cos θ_j.

``head.logits(f)`` gives s·cos θ_j for every class with no margin, for
prediction.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import nn

#: cos θ is clamped to [−1 + ε, 1 − ε] before sin θ = √(1 − cos²θ) (ArcFace).
_COS_EPS = 1e-6


class _MarginHead(nn.Module):
    """Shared parts: the (classes, d) weight and the margin-free cosine logits."""

    def __init__(self, embedding_dim: int, classes: int, *, s: float, m: float) -> None:
        super().__init__()
        if embedding_dim < 1 or classes < 1:
            raise ValueError("embedding_dim and classes must be positive")
        self.embedding_dim = embedding_dim
        self.classes = classes
        self.s = float(s)
        self.m = float(m)
        self.weight = nn.Parameter(torch.empty(classes, embedding_dim))
        nn.init.normal_(self.weight, std=0.01)

    def cosine(self, embeddings: torch.Tensor) -> torch.Tensor:
        """cos θ_j between every embedding and every class row: (B, classes), float32."""
        f = F.normalize(embeddings.float(), dim=1)
        w = F.normalize(self.weight.float(), dim=1)
        return f @ w.t()

    def logits(self, embeddings: torch.Tensor) -> torch.Tensor:
        """s·cos θ_j, no margin (for prediction and evaluation)."""
        return self.s * self.cosine(embeddings)

    def _target_mask(self, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return F.one_hot(labels.long(), self.classes).to(dtype=torch.bool, device=like.device)

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}, classes={self.classes}, s={self.s}, m={self.m}"


class CosFaceHead(_MarginHead):
    """CosFace / AM-softmax head: target s·(cos θ_y − m), others s·cos θ_j."""

    def __init__(
        self, embedding_dim: int, classes: int, *, s: float = 30.0, m: float = 0.35
    ) -> None:
        super().__init__(embedding_dim, classes, s=s, m=m)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(embeddings)
        target = self._target_mask(labels, cos)
        return self.s * torch.where(target, cos - self.m, cos)


class ArcFaceHead(_MarginHead):
    """ArcFace head: target s·cos(θ_y + m), others s·cos θ_j.

    cos(θ + m) = cos θ·cos m − sin θ·sin m with sin θ = √(1 − cos²θ), cos θ
    clamped to [−1 + 1e-6, 1 − 1e-6] so the square root's gradient stays
    finite at cos θ = ±1.

    θ + m > π would make the target logit *grow* with θ. As in the ArcFace
    paper's code, the target then falls back to the CosFace-like
    cos θ − m·sin m for θ > π − m (i.e. cos θ ≤ cos(π − m)), which is
    continuous at θ = π − m and monotone. With ``easy_margin=True`` the
    margin is applied only where cos θ > 0 (θ < π/2) and the raw cos θ is kept
    elsewhere.
    """

    def __init__(
        self,
        embedding_dim: int,
        classes: int,
        *,
        s: float = 30.0,
        m: float = 0.5,
        easy_margin: bool = False,
    ) -> None:
        super().__init__(embedding_dim, classes, s=s, m=m)
        if not 0.0 <= m < math.pi / 2:
            raise ValueError("ArcFace margin must be in [0, π/2)")
        self.easy_margin = easy_margin
        self._cos_m = math.cos(m)
        self._sin_m = math.sin(m)
        self._threshold = math.cos(math.pi - m)  # θ > π − m  <=>  cos θ < this
        self._fallback = math.sin(math.pi - m) * m  # = m·sin m

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self.cosine(embeddings)
        target = self._target_mask(labels, cos)
        c = cos.clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS)
        sin = torch.sqrt((1.0 - c * c).clamp_min(_COS_EPS))
        phi = c * self._cos_m - sin * self._sin_m  # cos(θ + m)
        if self.easy_margin:
            phi = torch.where(c > 0, phi, c)
        else:
            phi = torch.where(c > self._threshold, phi, c - self._fallback)
        return self.s * torch.where(target, phi, cos)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", easy_margin={self.easy_margin}"


HEADS: tuple[str, ...] = ("cosface", "arcface")


def margin_head(name: str, embedding_dim: int, classes: int, **kw: Any) -> nn.Module:
    """``"cosface"`` (s = 30, m = 0.35) or ``"arcface"`` (s = 30, m = 0.5); ``kw`` overrides."""
    if name == "cosface":
        return CosFaceHead(embedding_dim, classes, **kw)
    if name == "arcface":
        return ArcFaceHead(embedding_dim, classes, **kw)
    raise ValueError(f"unknown head {name!r}; choose one of {', '.join(HEADS)}")


@torch.no_grad()
def init_head_from_features(
    head: nn.Module,
    features: torch.Tensor,
    labels: torch.Tensor,
    *,
    normalize_features: bool = True,
) -> None:
    """FedFace-style init (methods.md §2, §5.2): row c = normalised mean feature of class c.

    ``features`` (N, d) are the backbone's embeddings of the client's images
    under the current global model, ``labels`` (N,) their local class ids in
    [0, classes). With ``normalize_features`` (the default) each feature is
    L2-normalised before averaging, so row c = normalise(mean_i f̂_i) over the
    images of class c, the direction the cosine losses act on; otherwise the
    raw features are averaged: normalise(mean_i f_i). Rows of classes with no
    image keep their current value. Modifies ``head.weight`` in place.
    """
    weight = head.weight
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise TypeError("head must have a (classes, d) weight")
    classes, dim = weight.shape
    if features.dim() != 2 or features.shape[1] != dim:
        raise ValueError(f"features must be (N, {dim}), got {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError("labels must be (N,) matching features")
    labels = labels.to(device=weight.device, dtype=torch.long)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"labels must lie in [0, {classes})")
    f = features.detach().to(device=weight.device, dtype=torch.float32)
    if normalize_features:
        f = F.normalize(f, dim=1)
    sums = torch.zeros(classes, dim, device=weight.device, dtype=torch.float32)
    sums.index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=classes)
    present = counts > 0
    means = sums[present] / counts[present, None].to(torch.float32)
    weight[present] = F.normalize(means, dim=1).to(weight.dtype)


def fedface_positive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    class_embeddings: torch.Tensor,
    *,
    margin: float = 0.9,
) -> torch.Tensor:
    """FedFace / FedAwS positive-only loss (methods.md §5.1).

    Exactly: L = mean_i max(0, margin − cos(f_i, w_{y_i}))², a squared hinge
    on the cosine (equivalently on the cosine distance 1 − cos with the
    threshold 1 − margin), as in FedFace's code with margin = 0.9. An
    embedding already within the margin of its class (cos ≥ margin) costs
    nothing; there is no negative term (the client sees only its own
    class(es)).

    ``class_embeddings`` (C, d) need not be normalised; ``labels`` index its
    rows. Gradients flow into it as well; FedFace keeps it fixed during
    local training, so pass ``w.detach()`` for that behaviour (FedAwS trains
    it). Returns a scalar (0 for an empty batch).
    """
    if embeddings.shape[0] == 0:
        return embeddings.sum() * 0.0
    f = F.normalize(embeddings.float(), dim=1)
    w = F.normalize(class_embeddings.float(), dim=1)[labels.long()]
    cos = (f * w).sum(dim=1)
    return torch.clamp(margin - cos, min=0.0).pow(2).mean()
