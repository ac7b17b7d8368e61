"""The client side of every face-FL method, shared by the daemon and `secagg experiment`.

One function per thing a method does on a client (methods.md): the private
projector (§7), FedFace's positive-only objective, its noisy S_k upload (with
its zCDP ledger) and the spreadout step against the securely summed S
(§5.3), the DPLC-LSH release with its zCDP ledger (§4.4), PrivacyFace's
consensus-aware objective against the others' clusters (§4.3) and the
FedGC-DPC correction (§3.4 a). The daemon
(:mod:`clients.training.face_trainer`) and the experiment's hooks
(:mod:`clients.lab.method_hooks`) both call these, so each method is written once.
Nothing here talks to a server.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from clients.state_file import read_record, write_record
from clients.training import fedgc
from clients.training.fedface import denoise_moment, second_moment, spreadout_steps
from clients.training.heads import fedface_positive_loss
from clients.training.privacyface import (
    Clusters,
    DplcConfig,
    DplcRelease,
    cluster_logits,
    clusters_of,
    consensus_loss,
    dplc_release,
    gaussian_zcdp,
    public_hyperplanes,
    sigma_for_budget,
    simhash_buckets,
    zcdp_budget,
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

    Never uploaded. An accuracy experiment, not a privacy measure: the head
    is private anyway, and an orthogonal P before a private cosine head with
    rows W is the same function as the head WP alone, so the server learns
    exactly what it learns from FedAvg with private heads. Orthogonal, so
    cosine geometry (what verification uses) is the same for every client.
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


def fedface_extra(head: torch.nn.Module, weight: int, ledger: MomentLedger) -> np.ndarray:
    """The noisy S_k / n_k, flattened: appended to the masked vector; n_k restores S_k.

    The Gaussian noise is drawn and charged to ``ledger`` (durably) here,
    before the vector can leave. Entries are clipped to [−1, 1] (the masked
    round's clip, which must be ≥ 1) here, so the client knows exactly what
    it put into the sum.
    """
    moment = second_moment(rows_of(head)).cpu().double().numpy()
    clipped: np.ndarray = np.clip(ledger.release(moment) / weight, -1.0, 1.0)
    ledger.last = clipped * weight
    return clipped.reshape(-1)


def fedface_spreadout(head: torch.nn.Module, moment: np.ndarray, own: np.ndarray | None) -> None:
    """Spread this client's rows out against S = Σ_k S_k (in place; S includes them).

    ``own`` is the noisy S_k this client put into that sum (None after a
    restart: its noise-free S_k is subtracted instead, leaving its noise in).
    The others' part S − S_k is denoised (:func:`denoise_moment`) and this
    client's exact S_k added back, so with noise-dominated S the step spreads
    out this client's own rows and leaves the rest alone.
    """
    rows = rows_of(head)
    d = rows.shape[1]
    s = np.asarray(moment, dtype=np.float64).reshape(d, d)
    mine = second_moment(rows).double().cpu().numpy()
    others = denoise_moment(s - (mine if own is None else own.reshape(d, d)))
    total = torch.from_numpy(others + mine).float()
    new_rows = spreadout_steps(rows.detach().cpu(), total)
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


class ZcdpLedger:
    """The zCDP one kind of release has spent, durable when ``path`` is given.

    ρ composes by addition whatever σ each release used, so the record is ρ
    and a count; ε at any δ follows. :meth:`charge` writes the new total
    (atomically, fsynced) *before* the caller lets the release leave, and
    refuses a release that would take ρ past ``rho_budget``, also after a
    restart. An unreadable record stops the client (never a silent reset).
    """

    def __init__(
        self, rho_budget: float, delta: float, *, path: Path | None = None, what: str = "DP ledger"
    ) -> None:
        if not (math.isfinite(rho_budget) and rho_budget > 0) or not 0 < delta < 1:
            raise ParameterError("a DP ledger needs a positive finite ρ budget and 0 < δ < 1")
        self.rho_budget = rho_budget
        self.delta = delta
        self.path = path
        self.what = what
        self.rho = 0.0
        self.releases = 0
        doc = read_record(path, what) if path is not None else None
        if doc is not None:
            try:
                rho, releases = float(doc["rho"]), int(doc["releases"])
            except (KeyError, TypeError, ValueError) as exc:
                problem = f"{what} {path} is unreadable ({exc!r}); not starting"
                raise ParameterError(problem) from exc
            if not (math.isfinite(rho) and rho >= 0 and releases >= 0):
                raise ParameterError(f"{what} {path} holds an invalid ρ or count; not starting")
            self.rho, self.releases = rho, releases

    def allows(self, rho: float) -> bool:
        """Whether one more release costing ``rho`` fits the budget."""
        return self.rho + rho <= self.rho_budget * (1 + 1e-9)

    def charge(self, rho: float, refusal: str) -> None:
        """Record one release of cost ``rho`` (durably); ParameterError(refusal) past the budget."""
        if not self.allows(rho):
            raise ParameterError(refusal)
        self.rho += rho
        self.releases += 1
        if self.path is not None:
            write_record(
                self.path,
                {"version": 1, "rho": self.rho, "releases": self.releases, "delta": self.delta},
            )

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (0 before the first release)."""
        return zcdp_epsilon(self.rho, self.delta) if self.rho else 0.0


class DplcLedger:
    """One client's DPLC releases and their zCDP cost; refuses to overspend.

    ``noise`` must be the client's private randomness. ``budget`` is the
    number of releases the ε was split over (ρ budget = budget × one
    release's ρ); the one after it is refused. With ``path`` the spent ρ is
    kept on disk (:class:`ZcdpLedger`), so a restart cannot reset it.
    """

    def __init__(
        self,
        config: DplcConfig,
        delta: float,
        *,
        budget: int,
        noise: np.random.Generator,
        path: Path | None = None,
    ) -> None:
        self.config = config
        self.budget = budget
        self.noise = noise
        self.spent = ZcdpLedger(budget * config.rho, delta, path=path, what="DPLC ledger")
        self.last: DplcRelease | None = None

    @property
    def delta(self) -> float:
        return self.spent.delta

    @property
    def rho(self) -> float:
        return self.spent.rho

    @property
    def releases(self) -> int:
        return self.spent.releases

    def release(self, rows: np.ndarray, planes: np.ndarray) -> Clusters:
        """One DPLC-LSH release of ``rows``, charged (durably) before it is returned."""
        refusal = (
            f"the DPLC budget covers {self.budget} releases and is spent "
            f"(ε = {self.spent.epsilon:.3g}); raise dplc_releases and dplc_epsilon to train longer"
        )
        if not self.spent.allows(self.config.rho):
            raise ParameterError(refusal)
        release = dplc_release(rows, self.config, planes, self.noise)
        self.spent.charge(self.config.rho, refusal)
        self.last = release
        return clusters_of(release, self.config)

    @property
    def epsilon(self) -> float:
        """ε spent so far at ``delta`` (0 before the first release)."""
        return self.spent.epsilon

    @property
    def epsilon_per_release(self) -> float:
        """ε of one release alone."""
        return zcdp_epsilon(self.config.rho, self.delta)


class MomentLedger:
    """FedFace's S_k releases: the Gaussian mechanism on S_k and its zCDP ledger.

    Neighbouring S_k differ by one class embedding's ŵŵᵀ (add or remove one
    row; ‖ŵ‖ = 1), whose Frobenius norm is 1: sensitivity 1 (√2 for replacing
    a row, i.e. 2× the ρ). σ spreads the (ε, δ) budget over ``budget``
    releases (one per round). Each release adds N(0, σ²) to every one of the
    d² entries with this client's private ``noise`` and is charged before it
    is returned, so the client's guarantee does not rest on anyone else's
    noise. ``path``: durable (:class:`ZcdpLedger`).
    """

    def __init__(
        self,
        epsilon: float,
        delta: float,
        *,
        budget: int,
        noise: np.random.Generator,
        path: Path | None = None,
    ) -> None:
        self.sigma = sigma_for_budget(epsilon, delta, releases=budget, mechanisms=1)
        self.budget = budget
        self.noise = noise
        self.spent = ZcdpLedger(
            zcdp_budget(epsilon, delta), delta, path=path, what="FedFace S ledger"
        )
        #: The noisy S_k this client last put into the sum (what it subtracts from S).
        self.last: np.ndarray | None = None

    @property
    def rho_per_release(self) -> float:
        return gaussian_zcdp(self.sigma)

    def release(self, moment: np.ndarray) -> np.ndarray:
        """S_k + N(0, σ²)^{d×d}, charged (durably) before it is returned."""
        noisy: np.ndarray = moment + self.noise.normal(0.0, self.sigma, size=moment.shape)
        self.spent.charge(
            self.rho_per_release,
            f"the FedFace S budget covers {self.budget} releases and is spent "
            f"(ε = {self.spent.epsilon:.3g}); raise fedface_releases and fedface_epsilon "
            "to train longer",
        )
        return noisy

    @property
    def epsilon(self) -> float:
        """ε spent so far at the ledger's δ."""
        return self.spent.epsilon


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
