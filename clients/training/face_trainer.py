"""Face training inside the client daemon: a private CosFace head, and a face-FL method.

The daemon hands the global model (a flat float32 vector) to
:class:`FaceTrainer`, which loads it into the backbone, trains on this
client's identities with its own margin head (initialised from mean features
on first participation, methods.md §2, and never uploaded), and returns the
clipped update Δ = θ_local − θ with weight n_k = number of local images. The
protocol then masks it.

``method`` adds what a face-FL method does on a client, with the functions
of :mod:`clients.training.methods` that `secagg experiment` runs too:

- ``projector``: a private orthogonal map before the head, never uploaded (an
  accuracy experiment: the server learns exactly what it learns from fedavg);
- ``fedface``: the positive-only loss, S_k/n_k with Gaussian noise (DP,
  charged to this client's S ledger) appended to the masked vector, and the
  spreadout step against the denoised S = Σ_k S_k from the RoundStart;
- ``fedgc`` (FedGC-DPC) and ``privacyface``: one DPLC-LSH release of the
  head's rows per round (DP, charged to this client's zCDP ledger), the only
  thing sent in the clear; the others' releases arrive with the next
  RoundStart and drive the correction (fedgc) or the consensus-aware loss
  (privacyface).

With ``state_dir`` the DP ledgers (DPLC, FedFace S) are files there,
written before each release leaves and read when the trainer is built: a
restart keeps the spent budget, an unreadable ledger stops the client.

Every party builds the same initial model from ``seed`` (:func:`initial_model`),
so the aggregator never needs torch: it is handed the flat vector.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clients.training.data import (
    FaceDataset,
    load_dataset,
    partition_identities,
    split_for_verification,
)
from clients.training.flatten import ParamSpec, flatten, spec_of, unflatten_into
from clients.training.heads import init_head_from_features, margin_head
from clients.training.methods import (
    DplcLedger,
    MomentLedger,
    Objective,
    dplc_config,
    fedface_extra,
    fedface_objective,
    fedface_spreadout,
    fedgc_correct,
    privacyface_objective,
    private_projector,
    projected,
    projector_objective,
    release_planes,
    rows_of,
)
from clients.training.models import build_backbone
from clients.training.privacyface import Clusters, DplcConfig
from clients.training.synthetic import LocalUpdate
from clients.training.train import TrainConfig, mean_features, resolve_device, train_local
from protocol.method_messages import RELEASING, ClusterRelease, MethodState, check_method
from secagg.errors import ParameterError


@dataclass(frozen=True)
class FaceTrainingSettings:
    """The ``[client.training]`` table of a client config (see examples/client.toml).

    ``data`` is any spec :func:`load_dataset` accepts. A real deployment points
    it at the organisation's own images and leaves ``shards`` at 0. The demo
    gives every daemon the same synthetic set with ``shards`` = K and
    ``test_identities`` > 0, and each daemon keeps shard ``client id`` of the
    identities left after the held-out ones (identity-disjoint).
    """

    data: str = "synthetic:48:8"
    shards: int = 0
    test_identities: int = 0
    image_size: int = 32
    backbone: str = "small-cnn"
    embedding_dim: int = 64
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 0.02
    clip: float = 1.0
    heterogeneity: float = 0.0
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # CPU threads for torch; 0 = torch's default (all cores)
    # The face-FL method (docs/client-daemon.md); must equal the aggregator's `method`.
    method: str = "fedavg"
    # fedgc, privacyface: the DPLC-LSH budget (ε, δ) is split over dplc_releases releases
    # (one per round); a release after the last is refused, so the budget is never exceeded.
    dplc_epsilon: float = 8.0
    dplc_delta: float = 1e-5
    dplc_releases: int = 10
    dplc_bits: int = 3
    dplc_clusters: int = 4
    fedgc_lambda: float = 1.0
    # fedface: Gaussian noise on each S_k (sensitivity 1: one class embedding's ŵŵᵀ), with
    # (ε, δ) split over fedface_releases releases (one per round); the next is refused.
    fedface_epsilon: float = 1.0
    fedface_delta: float = 1e-5
    fedface_releases: int = 10
    # projector: seed of the private map; -1 draws it from the OS when the daemon starts.
    projector_seed: int = -1

    def __post_init__(self) -> None:
        if self.shards < 0 or self.test_identities < 0:
            raise ParameterError("shards and test_identities must be ≥ 0")
        if self.local_epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.clip <= 0:
            raise ParameterError("local_epochs, batch_size, lr and clip must be positive")
        check_method(self.method)  # fedgc-reference: refused, saying why
        if self.dplc_epsilon <= 0 or not 0 < self.dplc_delta < 1 or self.dplc_releases < 1:
            raise ParameterError("dplc_epsilon > 0, 0 < dplc_delta < 1 and dplc_releases ≥ 1")
        if not (
            0 < self.fedface_epsilon < float("inf")
            and 0 < self.fedface_delta < 1
            and self.fedface_releases >= 1
        ):
            raise ParameterError(
                "fedface_epsilon must be positive and finite (S is never sent without noise), "
                "0 < fedface_delta < 1 and fedface_releases ≥ 1"
            )
        if self.dplc_clusters < 1 or self.fedgc_lambda < 0:
            raise ParameterError("dplc_clusters must be ≥ 1 and fedgc_lambda ≥ 0")

    def dplc(self) -> DplcConfig:
        """The DPLC-LSH release these settings describe (σ from the per-release budget)."""
        return dplc_config(
            self.dplc_epsilon,
            self.dplc_delta,
            releases=self.dplc_releases,
            bits=self.dplc_bits,
            clusters=self.dplc_clusters,
        )


def load_split(settings: FaceTrainingSettings) -> tuple[FaceDataset, FaceDataset | None]:
    """The training identities and, when ``test_identities`` > 0, the held-out ones."""
    size = (settings.image_size, settings.image_size)
    data = load_dataset(settings.data, size=size)
    if settings.test_identities == 0:
        return data, None
    return split_for_verification(data, settings.test_identities, settings.seed)


def build_model(settings: FaceTrainingSettings, channels: int) -> torch.nn.Module:
    """The backbone every party builds from ``settings`` (seeded)."""
    torch.manual_seed(settings.seed)
    return build_backbone(
        settings.backbone,
        embedding_dim=settings.embedding_dim,
        in_channels=channels,
        image_size=settings.image_size,
    )


def initial_model(settings: FaceTrainingSettings, channels: int = 1) -> np.ndarray:
    """θ₀ as the flat float32 vector the aggregator starts from."""
    backbone = build_model(settings, channels)
    return flatten(backbone, spec_of(backbone)).astype(np.float32)


DPLC_LEDGER_FILE = "dplc-ledger.json"
FEDFACE_LEDGER_FILE = "fedface-ledger.json"


@dataclass
class FaceTrainer:
    """The daemon's training hook: ``trainer(model, round) -> LocalUpdate``.

    ``state_dir``: where the DP ledgers live (None: in memory, tests only).
    """

    client: int
    settings: FaceTrainingSettings
    state_dir: Path | None = None
    last: dict[str, Any] = field(default_factory=dict)
    _data: FaceDataset | None = None
    _backbone: torch.nn.Module | None = None
    _spec: ParamSpec | None = None
    _head: torch.nn.Module | None = None
    _state: MethodState | None = None
    _applied: int = -1  # the round of the last method state applied to the head
    _ledger: DplcLedger | None = None
    _moments: MomentLedger | None = None
    _projector: torch.Tensor | None = None

    def __post_init__(self) -> None:
        """Read this client's DP ledgers now: a corrupt one stops the daemon at start."""
        s = self.settings
        folder = self.state_dir
        if s.method in RELEASING:  # private noise: OS entropy, never a seed anyone else knows
            self._ledger = DplcLedger(
                s.dplc(),
                s.dplc_delta,
                budget=s.dplc_releases,
                noise=np.random.default_rng(secrets.randbits(128)),
                path=None if folder is None else folder / DPLC_LEDGER_FILE,
            )
        elif s.method == "fedface":
            self._moments = MomentLedger(
                s.fedface_epsilon,
                s.fedface_delta,
                budget=s.fedface_releases,
                noise=np.random.default_rng(secrets.randbits(128)),
                path=None if folder is None else folder / FEDFACE_LEDGER_FILE,
            )

    @property
    def method(self) -> str:
        """The face-FL method this client runs (the daemon refuses rounds of another)."""
        return self.settings.method

    def receive(self, state: MethodState) -> None:
        """The method state of this round's RoundStart; call before training the round."""
        if state.method != self.method:
            raise ParameterError(
                f"the aggregator runs method {state.method!r}; this client runs {self.method!r}"
            )
        self._state = state

    def _setup(self) -> tuple[FaceDataset, torch.nn.Module, ParamSpec]:
        if self._data is None or self._backbone is None or self._spec is None:
            s = self.settings
            train, _ = load_split(s)
            if s.shards:
                if not 1 <= self.client <= s.shards:
                    raise ParameterError(f"client {self.client} has no shard among {s.shards}")
                shards = partition_identities(
                    train, s.shards, seed=s.seed, heterogeneity=s.heterogeneity
                )
                train = shards[self.client - 1]
            self._data = train
            self._backbone = build_model(s, train.images.shape[1])
            self._spec = spec_of(self._backbone)
        return self._data, self._backbone, self._spec

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        data, backbone, spec = self._setup()
        if model.shape != (spec.size,):
            raise ParameterError(
                f"the global model has {model.size} parameters; this client's "
                f"{self.settings.backbone} has {spec.size}"
            )
        s = self.settings
        if s.threads:  # e.g. several daemons sharing one machine (the demo)
            torch.set_num_threads(s.threads)
        device = resolve_device(s.device)
        start = time.perf_counter()
        theta = model.astype(np.float64)
        unflatten_into(backbone, spec, theta)
        backbone.to(device)
        if self._head is None:  # first participation: rows = mean features (methods.md §2)
            self._head = margin_head("cosface", s.embedding_dim, data.identities).to(device)
            feats, labels = mean_features(backbone, data, device=device)
            if s.method == "projector":
                feats = projected(feats, self._map())
            init_head_from_features(self._head, feats.to(device), labels.to(device))
        head = self._head
        self._apply_state(head, round_)
        local = TrainConfig(
            epochs=s.local_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=s.seed * 1000 + round_ * 100 + self.client,
        )
        result = train_local(
            backbone, head, data, local, device=device, objective=self._objective(head)
        )
        delta = np.clip(flatten(backbone, spec) - theta, -s.clip, s.clip)
        if s.method == "fedface":  # noisy S_k / n_k rides in the masked vector (charged first)
            assert self._moments is not None
            delta = np.concatenate([delta, fedface_extra(head, len(data), self._moments)])
        release = self._release(head, round_) if s.method in RELEASING else None
        self.last = {
            "round": round_,
            "method": s.method,
            "loss": result.loss,
            "samples": result.samples,
            "train_s": time.perf_counter() - start,
        }
        if self._ledger is not None:  # this client's own DP ledger (stays in its metrics)
            self.last |= {
                "dplc_releases": self._ledger.releases,
                "dplc_epsilon": self._ledger.epsilon,
                "dplc_epsilon_round": self._ledger.epsilon_per_release,
                "dplc_delta": self._ledger.delta,
            }
        if self._moments is not None:
            self.last |= {
                "fedface_releases": self._moments.spent.releases,
                "fedface_epsilon": self._moments.epsilon,
                "fedface_sigma": self._moments.sigma,
            }
        return LocalUpdate(delta, None, len(data), release=release)

    def _map(self) -> torch.Tensor:
        if self._projector is None:  # private: drawn here, never uploaded
            seed = self.settings.projector_seed
            seed = secrets.randbits(63) if seed < 0 else seed
            self._projector = private_projector(self.settings.embedding_dim, seed=seed)
        return self._projector

    def _others(self) -> Clusters:
        """Every other client's clusters from the RoundStart (none before the first)."""
        d = self.settings.embedding_dim
        parts = []
        for release in self._state.releases if self._state is not None else ():
            if release.dim != d:
                raise ParameterError(f"a release of dimension {release.dim}; this client's is {d}")
            if release.client != self.client:
                centers, sizes, radii = release.arrays()
                parts.append(Clusters(centers, sizes, radii))
        return Clusters.union(parts, d)

    def _apply_state(self, head: torch.nn.Module, round_: int) -> None:
        """Last round's result on the private rows, once per round (FedFace, FedGC-DPC)."""
        state = self._state
        if state is None or state.round <= self._applied:
            return  # nothing received, or a retried attempt of a round already applied
        if state.round != round_:
            raise ParameterError(f"method state for round {state.round} in round {round_}")
        self._applied = state.round
        s = self.settings
        moment = state.moment_matrix()
        if s.method == "fedface" and moment is not None:
            if moment.shape != (s.embedding_dim, s.embedding_dim):
                raise ParameterError(f"S is {moment.shape}; this client's d is {s.embedding_dim}")
            own = self._moments.last if self._moments is not None else None
            fedface_spreadout(head, moment, own)
        elif s.method == "fedgc":
            others = self._others()
            if len(others):
                fedgc_correct(head, others, step=s.fedgc_lambda * s.lr)

    def _objective(self, head: torch.nn.Module) -> Objective | None:
        match self.settings.method:
            case "projector":
                return projector_objective(head, self._map())
            case "fedface":
                return fedface_objective(head)
            case "privacyface":
                return privacyface_objective(head, self._others())
        return None

    def _release(self, head: torch.nn.Module, round_: int) -> ClusterRelease:
        """This round's DPLC-LSH release, charged to the ledger before it leaves."""
        s = self.settings
        assert self._ledger is not None  # built with the trainer (__post_init__)
        planes = release_planes(s.seed, round_, s.dplc_bits, s.embedding_dim)
        clusters = self._ledger.release(rows_of(head).detach().cpu().double().numpy(), planes)
        return ClusterRelease.of(
            self.client, round_, clusters.centers, clusters.sizes, clusters.radii
        )
