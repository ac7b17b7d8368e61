"""FedGC's cross-client correction (methods.md §3): published form and private variant.

With private heads a class embedding w_j only ever sees its own client's
samples as negatives; centralised softmax would also push it away from every
other client's features. FedGC supplies that missing term with the other
clients' class embeddings as stand-ins for their features, through the
regulariser (rows normalised, scale s_r, sg = stop-gradient)

    Reg(W) = Σ_k Σ_{i∈C_k} −log( e^{s_r ŵ_i·sg(ŵ_i)}
                     / (e^{s_r ŵ_i·sg(ŵ_i)} + Σ_{j∉C_k} e^{s_r sg(ŵ_i)·ŵ_j}) ),

whose gradient for a row j of client k(j) is

    ∂Reg/∂ŵ_j = s_r Σ_{i∉C_k(j)} p̂_ij ŵ_i   (+ a radial term for i = j),
    p̂_ij = e^{s_r ŵ_i·ŵ_j} / (e^{s_r} + Σ_{l∉C_k(i)} e^{s_r ŵ_i·ŵ_l}).

The published form runs on the server, which therefore sees every client's
class embeddings (face templates): here only as the labelled **trusted
aggregator** reference. The private default (FedGC-DPC, §3.4 a) runs on each
client against the other clients' DP cluster proxies (centre p̂_c, noisy size
ñ_c, from :mod:`clients.training.privacyface`):

    Reg_k(W_k) = Σ_c ñ_c·(−log( e^{s_r} / (e^{s_r} + Σ_{j∈C_k} e^{s_r p̂_c·ŵ_j}) )),
    ∂Reg_k/∂ŵ_j = s_r Σ_c ñ_c q_cj p̂_c,
    q_cj = e^{s_r p̂_c·ŵ_j} / (e^{s_r} + Σ_{l∈C_k} e^{s_r p̂_c·ŵ_l}).

Either way the step is taken on the sphere (tangent part, renormalise) and
keeps each row's norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)

TRUST_LABEL = "trusted aggregator (FedGC reference): the server sees every class embedding"


def _owners(sizes: Sequence[int], device: torch.device) -> torch.Tensor:
    return torch.repeat_interleave(
        torch.arange(len(sizes), device=device), torch.tensor(list(sizes), device=device)
    )


def regularizer(rows: torch.Tensor, owners: torch.Tensor, *, s_r: float) -> torch.Tensor:
    """The published Reg(W) over all clients' rows (the slow reference; differentiable)."""
    w = F.normalize(rows, dim=1)
    query = w.detach()
    positive = s_r * (w * query).sum(dim=1)  # ŵ_i·sg(ŵ_i): value s_r, gradient radial only
    negatives = s_r * query @ w.T  # sg(ŵ_i)·ŵ_j
    others = owners[:, None] != owners[None, :]
    negatives = negatives.masked_fill(~others, float("-inf"))
    logits = torch.cat([positive[:, None], negatives], dim=1)
    return -(positive - torch.logsumexp(logits, dim=1)).sum()


def correction_gradient(rows: torch.Tensor, owners: torch.Tensor, *, s_r: float) -> torch.Tensor:
    """Closed-form ∂Reg/∂ŵ_j (cross-client part) for every row: the server's computation."""
    w = F.normalize(rows.detach().float(), dim=1)
    others = owners[:, None] != owners[None, :]
    scores = (s_r * w @ w.T).masked_fill(~others, float("-inf"))  # row i: s_r ŵ_i·ŵ_l
    denominator = torch.logsumexp(
        torch.cat([torch.full_like(scores[:, :1], s_r), scores], dim=1), dim=1, keepdim=True
    )
    p = torch.exp(scores - denominator)  # p̂_il, zero on the query's own client
    grad: torch.Tensor = s_r * p.T @ w  # row j: s_r Σ_i p̂_ij ŵ_i
    return grad


def proxy_regularizer(
    rows: torch.Tensor, centers: torch.Tensor, sizes: torch.Tensor, *, s_r: float
) -> torch.Tensor:
    """Reg_k(W_k) against the other clients' DP cluster proxies (the slow reference)."""
    w = F.normalize(rows, dim=1)
    p = F.normalize(centers.to(w.dtype), dim=1)
    scores = s_r * p @ w.T  # (Q, |C_k|)
    logits = torch.cat([torch.full_like(scores[:, :1], s_r), scores], dim=1)
    return (sizes.to(w.dtype) * (torch.logsumexp(logits, dim=1) - s_r)).sum()


def proxy_correction_gradient(
    rows: torch.Tensor, centers: torch.Tensor, sizes: torch.Tensor, *, s_r: float
) -> torch.Tensor:
    """Closed-form ∂Reg_k/∂ŵ_j = s_r Σ_c ñ_c q_cj p̂_c for this client's rows."""
    w = F.normalize(rows.detach().float(), dim=1)
    p = F.normalize(centers.float(), dim=1)
    scores = s_r * p @ w.T
    denominator = torch.logsumexp(
        torch.cat([torch.full_like(scores[:, :1], s_r), scores], dim=1), dim=1, keepdim=True
    )
    q = torch.exp(scores - denominator) * sizes.float()[:, None]
    grad: torch.Tensor = s_r * q.T @ p
    return grad


def sphere_step(rows: torch.Tensor, grad: torch.Tensor, *, step: float) -> torch.Tensor:
    """Move ŵ against the tangent part of ``grad`` and renormalise; keeps each row's norm."""
    norms = rows.detach().float().norm(dim=1, keepdim=True)
    w = F.normalize(rows.detach().float(), dim=1)
    tangent = grad - (grad * w).sum(dim=1, keepdim=True) * w
    moved: torch.Tensor = F.normalize(w - step * tangent, dim=1) * norms
    return moved


def server_correction(
    per_client: Sequence[torch.Tensor], *, s_r: float, step: float
) -> list[torch.Tensor]:
    """The published server step (trusted aggregator only): stack, correct, hand rows back."""
    stacked = torch.cat([r.detach().float().cpu() for r in per_client])
    owners = _owners([r.shape[0] for r in per_client], stacked.device)
    moved = sphere_step(stacked, correction_gradient(stacked, owners, s_r=s_r), step=step)
    return list(torch.split(moved, [r.shape[0] for r in per_client]))


def client_correction(
    rows: torch.Tensor, centers: torch.Tensor, sizes: torch.Tensor, *, s_r: float, step: float
) -> torch.Tensor:
    """FedGC-DPC: this client's rows after one step against the received DP proxies."""
    if centers.shape[0] == 0:
        return rows.detach().float().clone()
    grad = proxy_correction_gradient(rows, centers, sizes, s_r=s_r)
    return sphere_step(rows, grad, step=step)
