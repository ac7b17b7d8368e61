"""What each face-FL method adds to FedAvg with private heads, as hooks of one round.

The experiment loop (``clients/lab/experiment.py``) is the same for every
method: clients train, their clipped updates go through the aggregation of
the chosen mode, and the server takes θ ← θ + the weighted mean. A method
only changes the local objective, appends fixed-shape values to the masked
vector (FedFace's S_k), releases DP summaries in the clear (PrivacyFace and
FedGC-DPC clusters, each charged to the client's zCDP ledger) or, in the one
labelled reference mode, hands the class embeddings to a trusted server.

Hook order in a round: ``objective`` (per client, before local training) →
``upload_extra`` and ``release`` (per client, after it) → aggregation and
the server step → ``after_round`` (with the securely summed extras).

A thin layer: every client-side computation lives in
:mod:`clients.training.methods`, which the gRPC daemons run too
(docs/client-daemon.md); here it is only scheduled for K in-memory clients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from clients.training import fedgc
from clients.training.methods import (
    HEAD_M,
    HEAD_S,
    DplcLedger,
    MomentLedger,
    Objective,
    centre_fidelity,
    cluster_tensors,
    dplc_config,
    fedface_extra,
    fedface_objective,
    fedface_spreadout,
    fedgc_correct,
    privacyface_negatives,
    privacyface_objective,
    private_projector,
    projected,
    projector_objective,
    release_planes,
    rows_of,
)
from clients.training.privacyface import Clusters, zcdp_epsilon

__all__ = [
    "HEAD_M",
    "HEAD_S",
    "METHODS",
    "Method",
    "MethodSettings",
    "centre_fidelity",
    "private_projector",
    "rows_of",
]


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
    fedface_epsilon: float = 1.0
    fedface_delta: float = 1e-5


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
    trust = (
        "private, exactly as fedavg: an orthogonal map before a private cosine head is "
        "absorbed into the head (rows W·P), so it hides nothing more from the server"
    )

    def __init__(self, settings: MethodSettings) -> None:
        super().__init__(settings)
        self._maps: dict[int, torch.Tensor] = {}

    def _map(self, client: int) -> torch.Tensor:
        if client not in self._maps:
            seed = self.settings.seed * 7919 + client
            self._maps[client] = private_projector(self.settings.embedding_dim, seed=seed)
        return self._maps[client]

    def features(self, client: int, feats: torch.Tensor) -> torch.Tensor:
        return projected(feats, self._map(client))

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        return projector_objective(head, self._map(client))


class FedFace(Method):
    """Positive-only loss and the private spreadout from the secure sum S (methods.md §5.3)."""

    name = "fedface"
    trust = (
        "private: the server sees the aggregate update and S = Σ (ŵŵᵀ + Gaussian noise), "
        "each client's noise charged to its own (ε, δ) ledger"
    )

    def __init__(self, settings: MethodSettings) -> None:
        super().__init__(settings)
        self._ledgers: dict[int, MomentLedger] = {}

    def extra_dim(self) -> int:
        return self.settings.embedding_dim**2

    def objective(self, client: int, head: torch.nn.Module) -> Objective | None:
        return fedface_objective(head)

    def _ledger(self, client: int) -> MomentLedger:
        if client not in self._ledgers:  # the client's private randomness (seeded to repeat runs)
            self._ledgers[client] = MomentLedger(
                self.settings.fedface_epsilon,
                self.settings.fedface_delta,
                budget=self.settings.rounds,
                noise=np.random.default_rng([self.settings.seed, client, 0xFACE]),
            )
        return self._ledgers[client]

    def upload_extra(self, client: int, head: torch.nn.Module, weight: int) -> np.ndarray:
        return fedface_extra(head, weight, self._ledger(client))

    def after_round(
        self, extra_sum: np.ndarray, heads: dict[int, torch.nn.Module], round_: int
    ) -> dict[str, Any]:
        for client, head in heads.items():  # each client spreads its own rows out against S
            fedface_spreadout(head, extra_sum, self._ledger(client).last)
        ledgers = self._ledgers.values()
        return {
            "fedface_sigma": next(iter(ledgers)).sigma if ledgers else None,
            "fedface_epsilon": max((led.epsilon for led in ledgers), default=0.0),
            "fedface_delta": self.settings.fedface_delta,
        }


class _DplcReleases(Method):
    """Shared by PrivacyFace and FedGC-DPC: one DPLC-LSH release per client per round."""

    def __init__(self, settings: MethodSettings) -> None:
        super().__init__(settings)
        self.dplc = dplc_config(
            settings.dplc_epsilon,
            settings.dplc_delta,
            releases=settings.rounds,
            bits=settings.dplc_bits,
            clusters=settings.dplc_clusters,
        )
        self.released: dict[int, Clusters] = {}  # forwarded by the server: what clients see
        self._pending: dict[int, Clusters] = {}  # released this round, forwarded after it
        self._ledgers: dict[int, DplcLedger] = {}
        self._fidelity: dict[int, float | None] = {}

    def release(self, client: int, head: torch.nn.Module, round_: int) -> None:
        if client not in self._ledgers:  # the client's private randomness (seeded to repeat runs)
            self._ledgers[client] = DplcLedger(
                self.dplc,
                self.settings.dplc_delta,
                budget=self.settings.rounds,
                noise=np.random.default_rng([self.settings.seed, client, 0xD71C]),
            )
        ledger = self._ledgers[client]
        planes = release_planes(
            self.settings.seed, round_, self.dplc.bits, self.settings.embedding_dim
        )
        rows = rows_of(head).detach().cpu().double().numpy()
        self._pending[client] = ledger.release(rows, planes)
        assert ledger.last is not None
        self._fidelity[client] = centre_fidelity(rows, planes, ledger.last)

    def forward(self) -> None:
        """The server forwards this round's releases to everyone (clients train in parallel)."""
        self.released.update(self._pending)
        self._pending = {}

    def others_clusters(self, client: int) -> Clusters:
        """Every other client's released clusters, together."""
        return Clusters.union(
            [c for k, c in sorted(self.released.items()) if k != client],
            self.settings.embedding_dim,
        )

    def others(self, client: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        """Centres, radii and sizes released by every other client, as tensors."""
        return cluster_tensors(self.others_clusters(client), device)

    def ledger(self) -> dict[str, Any]:
        """ε per client (cumulative over rounds) and of one release, at the DPLC δ."""
        delta = self.settings.dplc_delta
        return {
            "dplc_sigma": self.dplc.sigma_count,
            "dplc_epsilon_round": zcdp_epsilon(self.dplc.rho, delta),
            "dplc_epsilon": {str(k): led.epsilon for k, led in self._ledgers.items()},
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
        return privacyface_objective(head, self.others_clusters(client))

    def extra_negatives(
        self, client: int, device: torch.device
    ) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return privacyface_negatives(self.others_clusters(client), device)

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
            fedgc_correct(head, self.others_clusters(client), step=step)
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
