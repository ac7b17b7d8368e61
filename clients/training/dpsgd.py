"""Sample-level DP-SGD for local training, with Opacus (security.md §8, design decision 6).

Each client clips every per-sample gradient of backbone *and* head to
``max_grad_norm``, adds N(0, (σ·max_grad_norm)²) per step and samples its
batches by Poisson sampling; its own Opacus RDP accountant composes every
step it ever takes, so ε is per client and cumulative over rounds. The head
is trained by DP-SGD too and is initialised without looking at the data:
otherwise the backbone steps would depend on the private images through it.

BatchNorm mixes samples of a batch, so :func:`dp_backbone` swaps it for
GroupNorm with Opacus' ``ModuleValidator.fix``; every party builds the model
the same way, so the shared vector has one layout. In-place activations are
turned off (Opacus' backward hooks cannot see through them). The head goes
through Opacus' functorch per-sample gradients, so it must take embeddings
only: the CosFace margin is applied to the logits outside it (the same
loss). Mixed precision is off under DP-SGD. The noise here comes from a
seeded torch generator so that runs repeat; a deployment would use Opacus'
``secure_mode``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from opacus import GradSampleModule
from opacus.accountants import RDPAccountant
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from clients.training.data import FaceDataset
from clients.training.train import LocalResult, TrainConfig
from secagg.errors import ParameterError


@dataclass(frozen=True)
class DpSgdConfig:
    """Noise multiplier σ, per-sample clip norm C and the δ at which ε is reported."""

    noise_multiplier: float
    max_grad_norm: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.noise_multiplier <= 0 or self.max_grad_norm <= 0:
            raise ParameterError("DP-SGD needs a positive noise multiplier and clip norm")
        if not 0 < self.delta < 1:
            raise ParameterError("DP-SGD delta must lie in (0, 1)")


def dp_backbone(backbone: nn.Module) -> nn.Module:
    """The backbone with BatchNorm replaced by GroupNorm (Opacus' fixer), ready for DP-SGD."""
    fixed: nn.Module = ModuleValidator.fix(backbone)
    for module in fixed.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # type: ignore[assignment]
    errors = ModuleValidator.validate(fixed, strict=False)
    if errors:
        raise ParameterError(f"backbone cannot be trained with DP-SGD: {errors[0]}")
    return fixed


class _CosineLogits(nn.Module):
    """s·cos θ_j against the head's rows (shares the head's weight Parameter)."""

    def __init__(self, weight: nn.Parameter, s: float) -> None:
        super().__init__()
        self.weight = weight
        self.s = s

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.s * F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T


ExtraLogits = Callable[[torch.Tensor], torch.Tensor]


class _Classifier(nn.Module):
    """Backbone → margin-free class logits, then any parameter-free extra negatives."""

    def __init__(self, backbone: nn.Module, head: nn.Module, extra: ExtraLogits | None) -> None:
        super().__init__()
        weight = head.weight
        if not isinstance(weight, nn.Parameter):
            raise ParameterError("DP-SGD needs a margin head with a weight Parameter")
        self.backbone = backbone
        self.logits = _CosineLogits(weight, float(getattr(head, "s", 30.0)))
        self.negatives = extra

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        embeddings = self.backbone(images)
        out: torch.Tensor = self.logits(embeddings)
        if self.negatives is not None:
            out = torch.cat([out, self.negatives(embeddings)], dim=1)
        return out


class ClientAccountant:
    """One client's privacy ledger over every round (Opacus' RDP accountant)."""

    def __init__(self, delta: float) -> None:
        self.delta = delta
        self._total = RDPAccountant()
        self._round = RDPAccountant()

    def start_round(self) -> None:
        """Begin a fresh per-round ledger (the cumulative one keeps going)."""
        self._round = RDPAccountant()

    def step(self, noise_multiplier: float, sample_rate: float) -> None:
        """Record one noisy step."""
        for ledger in (self._total, self._round):
            ledger.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)

    def epsilon(self) -> float:
        """ε spent over every round so far, at ``delta``."""
        return float(self._total.get_epsilon(self.delta)) if self._total.history else 0.0

    def round_epsilon(self) -> float:
        """ε of this round's steps alone."""
        return float(self._round.get_epsilon(self.delta)) if self._round.history else 0.0


def train_local_dp(
    backbone: nn.Module,
    head: nn.Module,
    data: FaceDataset,
    cfg: TrainConfig,
    dp: DpSgdConfig,
    accountant: ClientAccountant,
    *,
    device: torch.device,
    extra_logits: ExtraLogits | None = None,
) -> LocalResult:
    """DP-SGD over backbone and head (CosFace margin); records every step in ``accountant``.

    ``extra_logits(embeddings)`` adds parameter-free negative logits after the
    class logits (PrivacyFace's received clusters): the consensus-aware loss.
    """
    if len(data) == 0:
        raise ParameterError("no local images to train on")
    torch.manual_seed(cfg.seed)
    model = _Classifier(backbone, head, extra_logits).to(device).train()
    margin = float(getattr(head, "s", 30.0)) * float(getattr(head, "m", 0.0))
    dataset = TensorDataset(torch.from_numpy(data.images), torch.from_numpy(data.labels))
    loader = DPDataLoader.from_data_loader(
        DataLoader(dataset, batch_size=min(cfg.batch_size, len(data))),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    wrapped = GradSampleModule(model)
    optimizer = DPOptimizer(
        torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        ),
        noise_multiplier=dp.noise_multiplier,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=min(cfg.batch_size, len(data)),
        generator=torch.Generator(device=device).manual_seed(cfg.seed + 1),
    )
    losses: list[float] = []
    try:
        for _ in range(cfg.epochs):
            for images, labels in loader:
                images, labels = images.to(device), labels.to(device)
                flip = torch.rand(images.shape[0], device=device) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
                with warnings.catch_warnings():  # the images need no gradient: expected
                    warnings.filterwarnings("ignore", "Full backward hook is firing")
                    logits = wrapped(images)
                logits = logits - margin * F.one_hot(labels.long(), logits.shape[1])
                # An empty Poisson batch still takes a (pure-noise) step, as the accountant assumes.
                loss = F.cross_entropy(logits, labels.long(), reduction="sum") / max(
                    1, images.shape[0]
                )
                optimizer.zero_grad(set_to_none=True)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "Full backward hook is firing")
                    loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                accountant.step(dp.noise_multiplier, loader.sample_rate)
                if images.shape[0]:
                    losses.append(float(loss.detach()))
    finally:
        wrapped._close()  # removes Opacus' hooks: the backbone object is reused by every client
    return LocalResult(len(data), float(np.mean(losses)) if losses else float("nan"), len(losses))
