"""FedFace's spreadout, made private (methods.md §5.3): computed on each client from S.

FedFace spreads all class embeddings apart on the *server*, which needs every
face template. We use the quadratic frame potential instead,
R(W) = Σ_{i≠j} (ŵ_i·ŵ_j)², whose gradient for row i needs only the second
moment S = Σ_j ŵ_j ŵ_jᵀ: ∂R/∂ŵ_i = 4 (S − ŵ_i ŵ_iᵀ) ŵ_i. S is a *secure sum*
of each client's S_k, so templates never leave their client; each client
steps its own rows along the sphere's tangent space.
"""

from __future__ import annotations

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
