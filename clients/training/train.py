"""Local training: a shared backbone and a private margin head, on one client's faces.

Device-agnostic: CUDA when present (mixed precision, pinned memory,
non-blocking copies), CPU otherwise. Seeded, so a run is repeatable on the
same device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from clients.training.data import FaceDataset


@dataclass(frozen=True)
class TrainConfig:
    """Local optimisation settings (methods.md §11 gives the papers' values)."""

    epochs: int = 1
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0


@dataclass(frozen=True)
class LocalResult:
    """What one client's local training reports."""

    samples: int
    loss: float
    steps: int


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(spec)


def train_local(
    backbone: torch.nn.Module,
    head: torch.nn.Module,
    data: FaceDataset,
    cfg: TrainConfig,
    *,
    device: torch.device,
    progress: Callable[[int, float], None] | None = None,
    objective: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> LocalResult:
    """Train backbone and head in place for ``cfg.epochs`` epochs; returns the mean loss.

    The default objective is cross-entropy over the margin head's logits;
    ``objective(embeddings, labels)`` replaces it (FedFace's positive-only loss).
    """
    torch.manual_seed(cfg.seed)
    cuda = device.type == "cuda"
    backbone.to(device).train()
    head.to(device).train()
    dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    generator = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=True, generator=generator, pin_memory=cuda
    )
    params = list(backbone.parameters()) + list(head.parameters())
    optimizer = torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            flip = torch.rand(images.shape[0], device=device) < 0.5  # horizontal flips
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                embeddings = backbone(images)
                if objective is not None:
                    loss = objective(embeddings.float(), labels)
                else:
                    logits = head(embeddings, labels)
                    loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
        if progress is not None:
            progress(epoch, float(np.mean(losses)) if losses else float("nan"))
    return LocalResult(len(data), float(np.mean(losses)) if losses else float("nan"), len(losses))


def mean_features(
    backbone: torch.nn.Module, data: FaceDataset, *, device: torch.device, batch_size: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of every local image under the current backbone (for head initialisation)."""
    backbone.to(device).eval()
    feats = []
    with torch.inference_mode():
        for start in range(0, len(data), batch_size):
            batch = torch.from_numpy(data.images[start : start + batch_size]).to(device)
            feats.append(backbone(batch).float().cpu())
    backbone.train()
    return torch.cat(feats), torch.from_numpy(data.labels)
