"""Face training inside the client daemon: FedAvg with a private CosFace head.

The daemon hands the global model (a flat float32 vector) to
:class:`FaceTrainer`, which loads it into the backbone, trains on this
client's identities with its own margin head (initialised from mean features
on first participation, methods.md §2, and never uploaded), and returns the
clipped update Δ = θ_local − θ with weight n_k = number of local images. The
protocol then masks it; nothing else leaves the client.

Every party builds the same initial model from ``seed`` (:func:`initial_model`),
so the aggregator never needs torch: it is handed the flat vector.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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
from clients.training.models import build_backbone
from clients.training.synthetic import LocalUpdate
from clients.training.train import TrainConfig, mean_features, resolve_device, train_local
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

    def __post_init__(self) -> None:
        if self.shards < 0 or self.test_identities < 0:
            raise ParameterError("shards and test_identities must be ≥ 0")
        if self.local_epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.clip <= 0:
            raise ParameterError("local_epochs, batch_size, lr and clip must be positive")


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


@dataclass
class FaceTrainer:
    """The daemon's training hook: ``trainer(model, round) -> LocalUpdate``."""

    client: int
    settings: FaceTrainingSettings
    last: dict[str, Any] = field(default_factory=dict)
    _data: FaceDataset | None = None
    _backbone: torch.nn.Module | None = None
    _spec: ParamSpec | None = None
    _head: torch.nn.Module | None = None

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
            init_head_from_features(self._head, feats.to(device), labels.to(device))
        local = TrainConfig(
            epochs=s.local_epochs,
            batch_size=s.batch_size,
            lr=s.lr,
            seed=s.seed * 1000 + round_ * 100 + self.client,
        )
        result = train_local(backbone, self._head, data, local, device=device)
        delta = np.clip(flatten(backbone, spec) - theta, -s.clip, s.clip)
        self.last = {
            "round": round_,
            "loss": result.loss,
            "samples": result.samples,
            "train_s": time.perf_counter() - start,
        }
        return LocalUpdate(delta, None, len(data))
