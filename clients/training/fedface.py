"""FedFace's spreadout, made private (methods.md §5.3): computed on each client from S.

FedFace spreads all class embeddings apart on the *server*, which needs every
face template. We use the quadratic frame potential instead,
R(W) = Σ_{i≠j} (ŵ_i·ŵ_j)², whose gradient for row i needs only the second
moment S = Σ_j ŵ_j ŵ_jᵀ: ∂R/∂ŵ_i = 4 (S − ŵ_i ŵ_iᵀ) ŵ_i. S is a *secure sum*
of each client's S_k, so templates never leave their client; each client
steps its own rows along the sphere's tangent space.

S alone lets any client test whether a face is enrolled elsewhere (ŵᵀSŵ
rises by 1 when ŵ is in the sum), so each client adds Gaussian noise to its
S_k before it leaves (:class:`clients.training.methods.MomentLedger`) and the
receivers denoise the sum (:func:`denoise_moment`).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch alias


def second_moment(rows: torch.Tensor) -> torch.Tensor:
    """S_k = Σ ŵ ŵᵀ over this client's (normalised) class embeddings, (d, d)."""
    w = F.normalize(rows.detach().float(), dim=1)
    return w.T @ w


def frame_potential(all_rows: torch.Tensor) -> torch.Tensor:
    """R(W) = Σ_{i≠j} (ŵ_i·ŵ_j)² over every class embedding (the slow reference)."""
    w = F.normalize(all_rows, dim=1)
    gram = w @ w.T
    return gram.pow(2).sum() - gram.diagonal().pow(2).sum()


def spreadout_gradient(rows: torch.Tensor, moment: torch.Tensor) -> torch.Tensor:
    """∂R/∂ŵ_i = 4 (S − ŵ_i ŵ_iᵀ) ŵ_i for each of this client's rows (S includes them)."""
    w = F.normalize(rows.float(), dim=1)
    sw = w @ moment.T  # row i: S ŵ_i (S is symmetric)
    self_term = (w * w).sum(dim=1, keepdim=True) * w  # (ŵ_i ŵ_iᵀ) ŵ_i
    grad: torch.Tensor = 4.0 * (sw - self_term)
    return grad


def spreadout_steps(
    rows: torch.Tensor, moment: torch.Tensor, *, lr: float = 0.05, steps: int = 10
) -> torch.Tensor:
    """Move this client's rows to lower R, keeping S current with their own changes.

    Each step projects the gradient onto the tangent space at ŵ_i and
    renormalises, so rows stay on the unit sphere. Returns the new rows.
    """
    w = F.normalize(rows.detach().float(), dim=1)
    others = moment - w.T @ w  # the rest of the federation's second moment, fixed this round
    for _ in range(steps):
        grad = spreadout_gradient(w, others + w.T @ w)
        tangent = grad - (grad * w).sum(dim=1, keepdim=True) * w
        w = F.normalize(w - lr * tangent, dim=1)
    return w


def denoise_moment(noisy: np.ndarray, *, margin: float = 1.1) -> np.ndarray:
    """An estimate of a second moment S from S + N, N with i.i.d. Gaussian entries.

    S is symmetric, so the antisymmetric part of S + N is pure noise: it gives
    the noise scale s without trusting anyone's announced σ. The symmetric
    part's noise is then a Wigner matrix whose eigenvalues stay below 2s√d;
    eigen-directions above that edge (× ``margin``) are kept, their values
    de-biased (a spike θ shows at θ + s²d/θ), and the rest dropped. With
    noise-free input (s = 0) this returns the PSD part of S unchanged.
    """
    d = noisy.shape[0]
    sym = (noisy + noisy.T) / 2
    anti = (noisy - noisy.T) / 2
    off = ~np.eye(d, dtype=bool)
    s2 = float(np.mean(anti[off] ** 2)) if d > 1 else 0.0
    edge = 2.0 * math.sqrt(s2 * d)
    values, vectors = np.linalg.eigh(sym)
    keep = values > max(margin * edge, 1e-9)
    lam = values[keep]
    theta = (lam + np.sqrt(np.maximum(lam**2 - 4.0 * s2 * d, 0.0))) / 2
    estimate: np.ndarray = (vectors[:, keep] * theta) @ vectors[:, keep].T
    return estimate
