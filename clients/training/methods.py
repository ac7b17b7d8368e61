"""The client side of every face-FL method, shared by the daemon and `secagg experiment`.

One function per thing a method does on a client (methods.md): the private
projector (§7), FedFace's positive-only objective, its S_k upload and the
spreadout step against the securely summed S (§5.3), the DPLC-LSH release
with its zCDP ledger (§4.4), PrivacyFace's consensus-aware objective against
the others' clusters (§4.3) and the FedGC-DPC correction (§3.4 a). The
daemon (:mod:`clients.training.face_trainer`) and the experiment's hooks
(:mod:`aggregator.methods`) both call these, so each method is written once.
Nothing here talks to a server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from clients.training import fedgc
from clients.training.fedface import second_moment, spreadout_steps
from clients.training.heads import fedface_positive_loss
from clients.training.privacyface import (
    Clusters,
    DplcConfig,
    DplcRelease,
    cluster_logits,
    clusters_of,
    consensus_loss,
    dplc_release,
    public_hyperplanes,
    sigma_for_budget,
    simhash_buckets,
    zcdp_epsilon,
)
from secagg.errors import ParameterError

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Private head settings shared by every method (CosFace, methods.md §1.2 for few classes).
HEAD_S = 30.0
HEAD_M = 0.35


def rows_of(head: torch.nn.Module) -> torch.Tensor:
    """A margin head's class embeddings (classes, d)."""
    weight = head.weight
    assert isinstance(weight, torch.Tensor)
    return weight


# ---------------------------------------------------------------- projector (§7)


def private_projector(dim: int, *, seed: int) -> torch.Tensor:
    """A client's private random orthogonal map (Ding et al.; methods.md §7).

    Never uploaded: the server sees only the shared backbone's update, so it
    cannot run the model forward as the client did. Orthogonal, so cosine
    geometry (what verification uses) is the same for every client.
    """
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    haar: torch.Tensor = q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal
    return haar


def projected(feats: torch.Tensor, projector: torch.Tensor) -> torch.Tensor:
    """Features through the private map (what the head is initialised from)."""
    return feats @ projector.to(feats.device).T


def projector_objective(head: torch.nn.Module, projector: torch.Tensor) -> Objective:
    """The head's margin softmax on projected embeddings."""
    p = projector.to(rows_of(head).device)
    return lambda emb, y: torch.nn.functional.cross_entropy(head(emb @ p.T, y).float(), y)


# ---------------------------------------------------------------- FedFace (§5.3)


def fedface_objective(head: torch.nn.Module) -> Objective:
    """Positive-only squared hinge to this client's own (fixed) class embeddings."""
    rows = rows_of(head).detach()
    return lambda emb, y: fedface_positive_loss(emb, y, rows)


def fedface_extra(head: torch.nn.Module, weight: int) -> np.ndarray:
    """S_k / n_k, flattened: appended to the masked vector; the weight n_k restores S_k.

    |entries| ≤ |C_k| / n_k ≤ 1, inside a clip of 1.
    """
    moment: np.ndarray = second_moment(rows_of(head)).cpu().numpy().reshape(-1) / weight
    return moment


def fedface_spreadout(head: torch.nn.Module, moment: np.ndarray) -> None:
    """Spread this client's rows out against S = Σ_k S_k (in place; S includes them)."""
    rows = rows_of(head)
    d = rows.shape[1]
    s = torch.from_numpy(np.asarray(moment, dtype=np.float64)).float().reshape(d, d)
    new_rows = spreadout_steps(rows.detach().cpu(), s)
    with torch.no_grad():
        rows.copy_(new_rows.to(rows.device))


# ---------------------------------------------------------------- DPLC (§4.4)


def dplc_config(
    epsilon: float, delta: float, *, releases: int, bits: int, clusters: int
) -> DplcConfig:
    """Noise for ``releases`` DPLC-LSH releases spending (ε, δ) in all (zCDP)."""
    sigma = sigma_for_budget(epsilon, delta, releases=releases)
    return DplcConfig(sigma_count=sigma, sigma_sum=sigma, bits=bits, clusters=clusters)


def release_planes(seed: int, round_: int, bits: int, dim: int) -> np.ndarray:
    """The public SimHash hyperplanes of a round (every party can draw them)."""
    return public_hyperplanes(bits, dim, seed=seed * 1000 + round_)


@dataclass
class DplcLedger:
    """One client's DPLC releases and their zCDP cost; refuses to overspend.

    ``noise`` must be the client's private randomness. ``budget`` is the
    number of releases the ε was split over; the one after it is refused.
    """

    config: DplcConfig
    delta: float
    budget: int
    noise: np.random.Generator
    rho: float = 0.0
    releases: int = 0
    last: DplcRelease | None = field(default=None, repr=False)

    def release(self, rows: np.ndarray, planes: np.ndarray) -> Clusters:
        """One DPLC-LSH release of ``rows``, charged before it is returned."""
        if self.releases >= self.budget:
            raise ParameterError(
                f"the DPLC budget covers {self.budget} releases and all are spent; "
                "raise dplc_releases (and dplc_epsilon) to train longer"
            )
        release = dplc_release(rows, self.config, planes, self.noise)
        self.rho += self.config.rho
        self.releases += 1
        self.last = release
        return clusters_of(release, self.config)

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (0 before the first release)."""
        return zcdp_epsilon(self.rho, self.delta) if self.rho else 0.0

    @property
    def epsilon_per_release(self) -> float:
        """ε of one release alone."""
        return zcdp_epsilon(self.config.rho, self.delta)


def centre_fidelity(rows: np.ndarray, planes: np.ndarray, release: DplcRelease) -> float | None:
    """Mean cosine between each released centre and its bucket's exact (noise-free) mean.

    Uses the private rows, so it is a local diagnostic only; near 0 means the
    released clusters are noise (methods.md §4.4, utility check).
    """
    if release.buckets.size == 0:
        return None
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    buckets = simhash_buckets(unit, planes)
    exact = np.stack([unit[buckets == b].sum(axis=0) for b in release.buckets])
    noisy = release.noisy_sums
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(noisy, axis=1)
    return float(np.mean((exact * noisy).sum(axis=1) / np.maximum(norms, 1e-12)))


def cluster_tensors(
    clusters: Clusters, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(centres, radii, sizes) as float32 tensors on ``device``."""
    return (
        torch.from_numpy(clusters.centers).float().to(device),
        torch.from_numpy(clusters.radii).float().to(device),
        torch.from_numpy(clusters.sizes).float().to(device),
    )


# ---------------------------------------------------------------- PrivacyFace (§4.3)


def privacyface_objective(head: torch.nn.Module, others: Clusters) -> Objective:
    """CosFace over the local classes with the others' clusters as extra negatives."""
    rows = rows_of(head)
    centers, radii, sizes = cluster_tensors(others, rows.device)
    return lambda emb, y: consensus_loss(emb, y, rows, centers, radii, sizes, s=HEAD_S, m=HEAD_M)


def privacyface_negatives(
    others: Clusters, device: torch.device
) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The clusters' logits per embedding (the DP-SGD path's extra negatives), or None."""
    if len(others) == 0:
        return None
    centers, radii, sizes = cluster_tensors(others, device)
    return lambda emb: cluster_logits(emb, centers, radii, sizes, s=HEAD_S)


# ---------------------------------------------------------------- FedGC-DPC (§3.4 a)


def fedgc_correct(head: torch.nn.Module, others: Clusters, *, step: float) -> None:
    """One FedGC-DPC step of this client's rows against the others' DP proxies (in place)."""
    rows = rows_of(head)
    centers, _, sizes = cluster_tensors(others, rows.device)
    moved = fedgc.client_correction(rows, centers, sizes, s_r=HEAD_S, step=step)
    with torch.no_grad():
        rows.copy_(moved.to(rows.device))
