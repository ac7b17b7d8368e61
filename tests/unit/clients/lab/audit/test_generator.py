"""The GAN prior's generator: shapes, range, and refusal of sizes it cannot make."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clients.lab.audit.generator import Generator, train_generator


def test_generator_trains_and_makes_images_in_range() -> None:
    images = np.random.default_rng(0).random((6, 1, 16, 16)).astype(np.float32)
    losses: list[float] = []
    g = train_generator(images, steps=3, seed=0, progress=lambda _, d, __: losses.append(d))
    assert not g.training
    with torch.no_grad():
        out = g(torch.randn(4, g.z_dim))
    assert out.shape == (4, 1, 16, 16)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert losses and all(np.isfinite(losses))


def test_generator_refuses_sizes_that_are_not_powers_of_two() -> None:
    with pytest.raises(ValueError, match="power-of-two"):
        Generator(channels=1, size=24)
    with pytest.raises(ValueError, match="square"):
        train_generator(np.zeros((4, 1, 16, 8), np.float32), steps=1, seed=0)
