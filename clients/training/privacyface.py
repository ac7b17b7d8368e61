"""PrivacyFace (methods.md §4): DP local clusters (DPLC-LSH) and the consensus-aware loss.

Each client summarises its own class embeddings as a few differentially
private clusters and releases them in the clear; the others use them as extra
negatives, so identities of different clients stop overlapping although no
template leaves its client. DP survives post-processing, so forwarding the
clusters to everyone costs nothing beyond the accounted budget.

DPLC-LSH (§4.4, our DP-correct variant of the paper's DPLC): a public
per-round SimHash splits the sphere into 2^b buckets; the client releases a
Gaussian-noised count for *every* bucket (sensitivity 1 per row), keeps
the Q noisy-largest (post-processing) and releases their Gaussian-noised sums
of unit rows (joint L2 sensitivity 1: a row lies in one bucket). Both are
Gaussian mechanisms, so one release costs ρ = 1/(2σ_n²) + 1/(2σ_s²) in zCDP;
releases compose additively and ε = ρ + 2·√(ρ·ln(1/δ)) (Bun & Steinke 2016).
The DP unit is one row of the client's head (adding or removing one class
embedding) in the released counts and centres: row-level DP on the
releases, not a per-person guarantee (a person with rows at several
clients is covered only by group privacy), and nothing about the backbone
update, which secure aggregation protects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)

from secagg.errors import ParameterError

#: cos ψ is clamped to [−1 + ε, 1 − ε] before arccos, whose derivative is infinite at ±1.
_COS_EPS = 1e-6


# ---------------------------------------------------------------- zCDP arithmetic


def gaussian_zcdp(sigma: float, sensitivity: float = 1.0) -> float:
    """ρ of the Gaussian mechanism N(0, σ²) at L2 sensitivity Δ: Δ²/(2σ²)."""
    if sigma <= 0 or sensitivity < 0:
        raise ParameterError("sigma must be positive and sensitivity non-negative")
    return sensitivity**2 / (2.0 * sigma**2)


def zcdp_epsilon(rho: float, delta: float) -> float:
    """(ε, δ)-DP implied by ρ-zCDP: ε = ρ + 2·√(ρ·ln(1/δ))."""
    if rho < 0 or not 0 < delta < 1:
        raise ParameterError("rho must be ≥ 0 and delta in (0, 1)")
    return rho + 2.0 * math.sqrt(rho * math.log(1.0 / delta))


def zcdp_budget(epsilon: float, delta: float) -> float:
    """The largest ρ with zcdp_epsilon(ρ, δ) ≤ ε: ρ = (√(ln(1/δ) + ε) − √ln(1/δ))²."""
    if epsilon <= 0 or not 0 < delta < 1:
        raise ParameterError("epsilon must be positive and delta in (0, 1)")
    log_term = math.log(1.0 / delta)
    return (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2


def sigma_for_budget(epsilon: float, delta: float, *, releases: int, mechanisms: int = 2) -> float:
    """σ (sensitivity 1) so ``releases`` × ``mechanisms`` Gaussian releases spend (ε, δ) in all."""
    if releases < 1 or mechanisms < 1:
        raise ParameterError("need at least one release of one mechanism")
    rho_each = zcdp_budget(epsilon, delta) / (releases * mechanisms)
    return 1.0 / math.sqrt(2.0 * rho_each)


# ---------------------------------------------------------------- DPLC-LSH


@dataclass(frozen=True)
class DplcConfig:
    """One DPLC-LSH release: public bucketing, noise scales and what is kept."""

    sigma_count: float
    sigma_sum: float
    bits: int = 3  # 2^bits public SimHash buckets
    clusters: int = 4  # Q: noisy-largest buckets whose sums are released
    min_size: float = 5.0  # n_min: buckets with a smaller noisy count are dropped
    radius: float = 0.1  # α: public angular radius of every cluster (radians)

    def __post_init__(self) -> None:
        if self.sigma_count <= 0 or self.sigma_sum <= 0:
            raise ParameterError("DPLC noise scales must be positive")
        if not 1 <= self.bits <= 12 or self.clusters < 1:
            raise ParameterError("bits must be in [1, 12] and clusters ≥ 1")
        if not 0.0 <= self.radius < math.pi:
            raise ParameterError("radius must be an angle in [0, π)")

    @property
    def rho(self) -> float:
        """zCDP cost of one release (noisy histogram + noisy sums)."""
        return gaussian_zcdp(self.sigma_count) + gaussian_zcdp(self.sigma_sum)


@dataclass(frozen=True)
class Clusters:
    """Released DP clusters: unit centres (Q, d), noisy sizes (Q,), angular radii (Q,)."""

    centers: np.ndarray
    sizes: np.ndarray
    radii: np.ndarray

    @staticmethod
    def empty(dim: int) -> Clusters:
        """No clusters (e.g. round 0, before anyone released)."""
        return Clusters(np.zeros((0, dim)), np.zeros(0), np.zeros(0))

    def __len__(self) -> int:
        return int(self.sizes.shape[0])

    @staticmethod
    def union(parts: list[Clusters], dim: int) -> Clusters:
        """All clusters of ``parts`` together (what a client receives from the others)."""
        if not parts:
            return Clusters.empty(dim)
        return Clusters(
            np.concatenate([p.centers for p in parts]).reshape(-1, dim),
            np.concatenate([p.sizes for p in parts]),
            np.concatenate([p.radii for p in parts]),
        )


def public_hyperplanes(bits: int, dim: int, *, seed: int) -> np.ndarray:
    """SimHash hyperplanes (bits, d) from a public per-round seed: the bucket domain is public."""
    return np.random.default_rng(seed).standard_normal((bits, dim))


def simhash_buckets(unit_rows: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """The bucket of each row: its sign pattern against the hyperplanes, as an integer."""
    signs = (unit_rows @ planes.T) >= 0.0
    buckets: np.ndarray = (signs.astype(np.int64) << np.arange(planes.shape[0])).sum(axis=1)
    return buckets


@dataclass(frozen=True)
class DplcRelease:
    """Exactly what one DPLC-LSH release publishes (everything else is post-processing)."""

    noisy_counts: np.ndarray  # (2^bits,): every bucket, noised
    buckets: np.ndarray  # (≤ Q,): the noisy-largest buckets kept
    noisy_sums: np.ndarray  # (≤ Q, d): their noised sums of unit rows


def dplc_release(
    rows: np.ndarray, cfg: DplcConfig, planes: np.ndarray, noise: np.random.Generator
) -> DplcRelease:
    """The two Gaussian mechanisms of one release, on this client's class embeddings.

    ``noise`` must be the client's private randomness (never a seed the server
    knows); the experiment seeds it per client only to be repeatable.
    """
    if rows.ndim != 2 or rows.shape[1] != planes.shape[1]:
        raise ParameterError(f"rows must be (n, {planes.shape[1]}), got {rows.shape}")
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    buckets = simhash_buckets(unit, planes)
    domain = 1 << planes.shape[0]
    counts = np.bincount(buckets, minlength=domain).astype(np.float64)
    noisy_counts = counts + noise.normal(0.0, cfg.sigma_count, size=domain)  # every bucket
    order = np.argsort(-noisy_counts, kind="stable")[: cfg.clusters]
    chosen = np.array([b for b in order if noisy_counts[b] >= cfg.min_size], dtype=np.int64)
    sums = np.zeros((chosen.size, unit.shape[1]))
    for i, b in enumerate(chosen):
        sums[i] = unit[buckets == b].sum(axis=0)
    sums += noise.normal(0.0, cfg.sigma_sum, size=sums.shape)
    return DplcRelease(noisy_counts, chosen, sums)


def dplc(
    rows: np.ndarray, cfg: DplcConfig, planes: np.ndarray, noise: np.random.Generator
) -> Clusters:
    """One DPLC-LSH release as clusters: centre = normalised noisy sum, size = noisy count."""
    return clusters_of(dplc_release(rows, cfg, planes, noise), cfg)


def clusters_of(release: DplcRelease, cfg: DplcConfig) -> Clusters:
    """Post-processing of a release into clusters (no further privacy cost)."""
    norms = np.linalg.norm(release.noisy_sums, axis=1, keepdims=True)
    keep = norms[:, 0] > 0
    return Clusters(
        centers=release.noisy_sums[keep] / norms[keep],
        sizes=release.noisy_counts[release.buckets][keep],
        radii=np.full(int(keep.sum()), cfg.radius),
    )


# ---------------------------------------------------------------- consensus-aware loss


def cluster_logits(
    embeddings: torch.Tensor,
    centers: torch.Tensor,
    radii: torch.Tensor,
    sizes: torch.Tensor,
    *,
    s: float,
    beta: float = 0.0,
) -> torch.Tensor:
    """ℓ_c + β·log ñ_c per embedding and cluster (B, Q), ℓ_c = s·cos(max(ψ_c − α_c, 0)).

    ψ_c is the angle to the cluster centre, so ℓ_c is the logit of the cap's
    nearest point: inside the cap the cluster counts as a perfect match.
    """
    f = F.normalize(embeddings.float(), dim=1)
    p = F.normalize(centers.float(), dim=1)
    psi = torch.arccos((f @ p.T).clamp(-1.0 + _COS_EPS, 1.0 - _COS_EPS))
    gap = torch.clamp(psi - radii.float(), min=0.0)
    return s * torch.cos(gap) + beta * torch.log(sizes.float().clamp_min(1.0))


def consensus_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    class_rows: torch.Tensor,
    centers: torch.Tensor,
    radii: torch.Tensor,
    sizes: torch.Tensor,
    *,
    s: float,
    m: float,
    beta: float = 0.0,
) -> torch.Tensor:
    """CosFace over the local classes with the received clusters as extra negatives (§4.3).

    L = −log(e^{s(cos θ_y − m)} / (e^{s(cos θ_y − m)} + Σ_{j≠y} e^{s cos θ_j}
    + Σ_c e^{ℓ_c + β log ñ_c})), averaged over the batch. With no clusters it
    is exactly the CosFace loss.
    """
    f = F.normalize(embeddings.float(), dim=1)
    w = F.normalize(class_rows.float(), dim=1)
    cos = f @ w.T
    target = F.one_hot(labels.long(), w.shape[0]).to(dtype=torch.bool)
    local = s * torch.where(target, cos - m, cos)
    if centers.shape[0]:
        extra = cluster_logits(embeddings, centers, radii, sizes, s=s, beta=beta)
        local = torch.cat([local, extra], dim=1)
    return F.cross_entropy(local, labels.long())
