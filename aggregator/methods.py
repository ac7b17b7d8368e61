"""What each face-FL method adds to FedAvg with private heads, as hooks of one round.

The experiment loop (``aggregator/experiment.py``) is the same for every
method: clients train, their clipped updates go through the aggregation of
the chosen mode, and the server takes θ ← θ + the weighted mean. A method
only changes the local objective, appends fixed-shape values to the masked
vector (FedFace's S_k), releases DP summaries in the clear (PrivacyFace and
FedGC-DPC clusters, each charged to the client's zCDP ledger) or, in the one
labelled reference mode, hands the class embeddings to a trusted server.

Hook order in a round: ``objective`` (per client, before local training) →
``upload_extra`` and ``release`` (per client, after it) → aggregation and
the server step → ``after_round`` (with the securely summed extras).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

#: Private head settings shared by every method (CosFace, methods.md §1.2 for few classes).
HEAD_S = 30.0
HEAD_M = 0.35


@dataclass(frozen=True)
class MethodSettings:
    """The knobs a method reads; the experiment fills them from its config."""

    embedding_dim: int
    rounds: int
    seed: int
    lr: float
    dplc_epsilon: float = 8.0
    dplc_delta: float = 1e-5
    dplc_bits: int = 3
    dplc_clusters: int = 4
    fedgc_lambda: float = 1.0


def rows_of(head: torch.nn.Module) -> torch.Tensor:
    """A margin head's class embeddings (classes, d)."""
    weight = head.weight
    assert isinstance(weight, torch.Tensor)
    return weight


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


class Method:
    """FedAvg with private CosFace heads (methods.md §2): no hook does anything."""

    name = "fedavg"
    #: What the server (or anyone) learns beyond the securely aggregated update.
    trust = "private: the server sees only the aggregate of the shared updates"

    def __init__(self, settings: MethodSettings) -> None:
        self.settings = settings

    def extra_dim(self) -> int:
        """Values appended to each client's masked vector (summed securely)."""
        return 0

    def features(self, client: int, feats: torch.Tensor) -> torch.Tensor:
        """Features the head is initialised from (the projector rotates them)."""
        return feats

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        """The local loss when it is not the head's margin softmax."""
        return None

    def extra_negatives(
        self, client: int, device: torch.device
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Parameter-free extra negative logits per embedding (the DP-SGD path's objective)."""
        return None

    def upload_extra(self, client: int, head: torch.nn.Module, weight: int) -> np.ndarray:
        """This client's extra masked values, divided by its weight (the sum restores them)."""
        return np.zeros(0)

    def release(self, client: int, head: torch.nn.Module, round_: int) -> None:
        """Anything released in the clear after local training (must be DP and accounted)."""

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        """Post-aggregation work; returns figures for the round's report."""
        return {}

    def clear_bytes(self, heads: dict[int, torch.nn.Module]) -> float:
        """Bytes per client per round sent outside the secure aggregation."""
        return 0.0


class Projector(Method):
    """A private orthogonal map before each client's head (Ding et al.; methods.md §7)."""

    name = "projector"

    def __init__(self, settings: MethodSettings) -> None:
        super().__init__(settings)
        self._maps: dict[int, torch.Tensor] = {}

    def _map(self, client: int, device: torch.device) -> torch.Tensor:
        if client not in self._maps:
            seed = self.settings.seed * 7919 + client
            self._maps[client] = private_projector(self.settings.embedding_dim, seed=seed)
        return self._maps[client].to(device)

    def features(self, client: int, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self._map(client, feats.device).T

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        device = rows_of(head).device
        projector = self._map(client, device)
        return lambda emb, y: torch.nn.functional.cross_entropy(
            head(emb @ projector.T, y).float(), y
        )


class FedFace(Method):
    """Positive-only loss and the private spreadout from the secure sum S (methods.md §5.3)."""

    name = "fedface"
    trust = "private: the server sees the aggregate update and S = Σ ŵŵᵀ (a secure sum)"

    def extra_dim(self) -> int:
        return self.settings.embedding_dim**2

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        rows = rows_of(head).detach()
        return lambda emb, y: fedface_positive_loss(emb, y, rows)

    def upload_extra(self, client: int, head: torch.nn.Module, weight: int) -> np.ndarray:
        # |entries of S_k / n_k| ≤ |C_k| / n_k ≤ 1, inside the clip; weight n_k restores S_k.
        moment: np.ndarray = second_moment(rows_of(head)).cpu().numpy().reshape(-1) / weight
        return moment

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        d = self.settings.embedding_dim
        moment = torch.from_numpy(extra_sum).float().reshape(d, d)
        for head in heads.values():  # each client spreads its own rows out against S
            rows = rows_of(head)
            new_rows = spreadout_steps(rows.detach().cpu(), moment)
            with torch.no_grad():
                rows.copy_(new_rows.to(rows.device))
        return {}


def centre_fidelity(rows: np.ndarray, planes: np.ndarray, release: DplcRelease) -> float | None:
    """Mean cosine between each released centre and its bucket's exact (noise-free) mean.

    Uses the private rows, so it exists only in this simulation's report; near 0
    means the released clusters are noise (methods.md §4.4, utility check).
    """
    if release.buckets.size == 0:
        return None
    unit = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    buckets = simhash_buckets(unit, planes)
    exact = np.stack([unit[buckets == b].sum(axis=0) for b in release.buckets])
    noisy = release.noisy_sums
    norms = np.linalg.norm(exact, axis=1) * np.linalg.norm(noisy, axis=1)
    return float(np.mean((exact * noisy).sum(axis=1) / np.maximum(norms, 1e-12)))


class _DplcReleases(Method):
    """Shared by PrivacyFace and FedGC-DPC: one DPLC-LSH release per client per round."""

    def __init__(self, settings: MethodSettings) -> None:
        super().__init__(settings)
        sigma = sigma_for_budget(
            settings.dplc_epsilon, settings.dplc_delta, releases=settings.rounds
        )
        self.dplc = DplcConfig(
            sigma_count=sigma,
            sigma_sum=sigma,
            bits=settings.dplc_bits,
            clusters=settings.dplc_clusters,
        )
        self.released: dict[int, Clusters] = {}  # forwarded by the server: what clients see
        self._pending: dict[int, Clusters] = {}  # released this round, forwarded after it
        self._rho: dict[int, float] = {}
        self._noise: dict[int, np.random.Generator] = {}
        self._fidelity: dict[int, float | None] = {}

    def release(self, client: int, head: torch.nn.Module, round_: int) -> None:
        if client not in self._noise:  # the client's private randomness (seeded to repeat runs)
            self._noise[client] = np.random.default_rng([self.settings.seed, client, 0xD71C])
        planes = public_hyperplanes(
            self.dplc.bits, self.settings.embedding_dim, seed=self.settings.seed * 1000 + round_
        )
        rows = rows_of(head).detach().cpu().double().numpy()
        release = dplc_release(rows, self.dplc, planes, self._noise[client])
        self._pending[client] = clusters_of(release, self.dplc)
        self._rho[client] = self._rho.get(client, 0.0) + self.dplc.rho
        self._fidelity[client] = centre_fidelity(rows, planes, release)

    def forward(self) -> None:
        """The server forwards this round's releases to everyone (clients train in parallel)."""
        self.released.update(self._pending)
        self._pending = {}

    def others(self, client: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Centres, radii and sizes released by every other client, as tensors."""
        union = Clusters.union(
            [c for k, c in sorted(self.released.items()) if k != client],
            self.settings.embedding_dim,
        )
        return tuple(
            torch.from_numpy(a).float().to(device)
            for a in (union.centers, union.radii, union.sizes)
        )

    def ledger(self) -> dict[str, Any]:
        """ε per client (cumulative over rounds) and of one release, at the DPLC δ."""
        delta = self.settings.dplc_delta
        return {
            "dplc_sigma": self.dplc.sigma_count,
            "dplc_epsilon_round": zcdp_epsilon(self.dplc.rho, delta),
            "dplc_epsilon": {str(k): zcdp_epsilon(rho, delta) for k, rho in self._rho.items()},
            "dplc_delta": delta,
            "clusters_released": {str(k): len(c) for k, c in self.released.items()},
            # Simulation-only diagnostic (never sent): cos(released centre, exact bucket mean).
            "dplc_centre_cosine": {str(k): f for k, f in self._fidelity.items()},
        }

    def clear_bytes(self, heads: dict[int, torch.nn.Module]) -> float:
        # The full noisy histogram plus Q (centre, size) pairs, float32.
        return 4.0 * (
            (1 << self.dplc.bits) + self.dplc.clusters * (self.settings.embedding_dim + 1)
        )


class PrivacyFace(_DplcReleases):
    """Consensus-aware loss against the others' DP clusters (methods.md §4)."""

    name = "privacyface"
    trust = (
        "private: the server sees the aggregate update; DP clusters (DPLC-LSH, zCDP-accounted) "
        "are broadcast in the clear"
    )

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        rows = rows_of(head)
        centers, radii, sizes = self.others(client, rows.device)
        return lambda emb, y: consensus_loss(
            emb, y, rows, centers, radii, sizes, s=HEAD_S, m=HEAD_M
        )

    def extra_negatives(
        self, client: int, device: torch.device
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        centers, radii, sizes = self.others(client, device)
        if centers.shape[0] == 0:
            return None
        return lambda emb: cluster_logits(emb, centers, radii, sizes, s=HEAD_S)

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        self.forward()  # the clusters are used in the next round's local training
        return self.ledger()


class FedGC(_DplcReleases):
    """FedGC-DPC (default): each client corrects its rows against the others' DP proxies."""

    name = "fedgc"
    trust = (
        "private: the server sees the aggregate update; DP cluster proxies (DPLC-LSH, "
        "zCDP-accounted) are broadcast in the clear and the correction runs on each client"
    )

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        self.forward()
        step = self.settings.fedgc_lambda * self.settings.lr
        for client, head in heads.items():
            rows = rows_of(head)
            centers, _, sizes = self.others(client, rows.device)
            moved = fedgc.client_correction(rows, centers, sizes, s_r=HEAD_S, step=step)
            with torch.no_grad():
                rows.copy_(moved.to(rows.device))
        return self.ledger()


class FedGCReference(Method):
    """The published FedGC server step: TRUSTED AGGREGATOR, it sees every class embedding.

    Only θ goes through the secure aggregation. In a deployment the rows would
    travel in padded anonymous slots (methods.md §1.4), which hides only which
    client a row came from; here the server simply gets them. Never a default.
    """

    name = "fedgc-reference"
    trust = fedgc.TRUST_LABEL

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        order = sorted(heads)
        rows = [rows_of(heads[k]) for k in order]
        step = self.settings.fedgc_lambda * self.settings.lr
        moved = fedgc.server_correction(rows, s_r=HEAD_S, step=step)
        for target, new in zip(rows, moved, strict=True):
            with torch.no_grad():
                target.copy_(new.to(target.device))
        return {"trust": self.trust, "class_embeddings_seen_by_server": sum(len(r) for r in rows)}

    def clear_bytes(self, heads: dict[int, torch.nn.Module]) -> float:
        # Rows go up in padded slots (|C_k| hidden) and come back corrected: count the upload.
        widest = max(rows_of(h).shape[0] for h in heads.values())
        return 4.0 * widest * self.settings.embedding_dim


METHODS: dict[str, type[Method]] = {
    m.name: m for m in (Method, FedFace, Projector, FedGC, FedGCReference, PrivacyFace)
}
