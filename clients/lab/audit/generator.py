"""A small DCGAN face generator: the image prior of the GAN-based inversion.

Liu et al. 2021 (and GIAS / GGL in the same family) search the latent space
of a face generator trained on *other* people. No pre-trained face GAN is
available offline, so the audit trains this one in about a minute on the
public identities (disjoint from every victim). DCGAN layout (Radford et al.
2016): transposed convolutions with BatchNorm and ReLU in the generator,
strided convolutions with LeakyReLU in the discriminator, Adam(2e-4, β1=0.5).
Re-implemented from the paper's description; nothing copied or downloaded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import nn

#: Latent size: small, so a latent search over a handful of images stays cheap.
Z_DIM = 32


def _doublings(size: int) -> int:
    """How many ×2 upsamplings take a 4×4 map to ``size`` (a power of two ≥ 8)."""
    steps = (size // 4).bit_length() - 1
    if size < 8 or 4 << steps != size:
        raise ValueError(f"the generator needs a square power-of-two size ≥ 8, got {size}")
    return steps


class Generator(nn.Module):
    """z (B, Z_DIM) → images (B, C, size, size) in [0, 1]."""

    def __init__(self, *, channels: int, size: int, z_dim: int = Z_DIM, width: int = 64) -> None:
        super().__init__()
        steps = _doublings(size)
        self.z_dim = z_dim
        self.width = width
        self.project = nn.Sequential(
            nn.Linear(z_dim, width * 16, bias=False), nn.BatchNorm1d(width * 16), nn.ReLU()
        )
        layers: list[nn.Module] = []
        cin = width
        for i in range(steps):
            last = i == steps - 1
            cout = channels if last else max(cin // 2, 16)
            layers.append(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=last))
            if not last:
                layers += [nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.body = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(-1, self.width, 4, 4)
        return torch.sigmoid(self.body(x))


class Discriminator(nn.Module):
    """images → one real/fake logit each."""

    def __init__(self, *, channels: int, size: int, width: int = 32) -> None:
        super().__init__()
        steps = _doublings(size)
        layers: list[nn.Module] = []
        cin = channels
        for i in range(steps):
            cout = width << i
            layers.append(nn.Conv2d(cin, cout, 4, 2, 1, bias=i == 0))
            if i:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2))
            cin = cout
        self.body = nn.Sequential(*layers)
        self.logit = nn.Linear(cin * 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.logit(torch.flatten(self.body(x), 1)).squeeze(1)
        return out


def train_generator(
    images: np.ndarray,
    *,
    steps: int,
    seed: int,
    batch_size: int = 32,
    progress: Callable[[int, float, float], None] | None = None,
) -> Generator:
    """Train a DCGAN on ``images`` (N, C, S, S) in [0, 1]; returns the generator in eval mode.

    Random horizontal flips double the tiny training set. ``progress(step,
    d_loss, g_loss)`` is called every 100 steps.
    """
    if images.ndim != 4 or images.shape[2] != images.shape[3]:
        raise ValueError(f"need square images (N, C, S, S), got {images.shape}")
    if len(images) < 2 or steps < 1:
        raise ValueError("need at least two images and one step")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    channels, size = images.shape[1], images.shape[2]
    g_net = Generator(channels=channels, size=size)
    d_net = Discriminator(channels=channels, size=size)
    for net in (g_net, d_net):
        for m in net.modules():
            if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
    g_opt = torch.optim.Adam(g_net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    d_opt = torch.optim.Adam(d_net.parameters(), lr=2e-4, betas=(0.5, 0.999))
    data = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    batch = min(batch_size, len(data))
    ones, zeros = torch.ones(batch), torch.zeros(batch)
    for step in range(steps):
        pick = torch.randint(len(data), (batch,), generator=generator)
        real = data[pick]
        flip = torch.rand(batch, generator=generator) < 0.5
        real = torch.where(flip[:, None, None, None], real.flip(-1), real)
        fake = g_net(torch.randn(batch, g_net.z_dim, generator=generator))
        d_loss = F.binary_cross_entropy_with_logits(
            d_net(real), ones
        ) + F.binary_cross_entropy_with_logits(d_net(fake.detach()), zeros)
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()  # type: ignore[no-untyped-call]
        d_opt.step()
        g_loss = F.binary_cross_entropy_with_logits(d_net(fake), ones)
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()  # type: ignore[no-untyped-call]
        g_opt.step()
        if progress is not None and (step % 100 == 0 or step == steps - 1):
            progress(step, float(d_loss.detach()), float(g_loss.detach()))
    return g_net.eval()
