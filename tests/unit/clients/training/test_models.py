"""Backbones, margin heads, FedFace's loss and the mean-feature head init."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clients.training.heads import (
    ArcFaceHead,
    CosFaceHead,
    fedface_positive_loss,
    init_head_from_features,
    margin_head,
)
from clients.training.models import BACKBONES, build_backbone, parameter_count

torch.set_num_threads(2)


def _forward(
    model: torch.nn.Module, batch: int, channels: int, size: tuple[int, int]
) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(torch.randn(batch, channels, *size))


# --------------------------------------------------------------------------- backbones


def test_backbone_names() -> None:
    assert BACKBONES == ("small-cnn", "mobilefacenet", "iresnet18", "iresnet50")
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone("resnet1000")


@pytest.mark.parametrize(
    ("size", "channels", "dim"), [(32, 1, 128), (64, 1, 64), ((40, 24), 3, 32), (8, 1, 16)]
)
def test_small_cnn_shapes_and_size(size: int | tuple[int, int], channels: int, dim: int) -> None:
    model = build_backbone("small-cnn", embedding_dim=dim, in_channels=channels, image_size=size)
    hw = (size, size) if isinstance(size, int) else size
    out = _forward(model, 3, channels, hw)
    assert out.shape == (3, dim)
    assert torch.isfinite(out).all()
    # ~0.1-0.3M parameters at d = 128 (methods.md §11.1's CPU budget).
    if dim == 128:
        assert 100_000 <= parameter_count(model) <= 300_000


def test_small_cnn_trains_with_batch_of_one() -> None:
    # No BatchNorm on the embedding, so the gradient-inversion audit can use B = 1.
    model = build_backbone("small-cnn", image_size=32).train()
    model(torch.randn(1, 1, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_embeddings_are_not_normalised() -> None:
    model = build_backbone("small-cnn", image_size=16)
    norms = _forward(model, 4, 1, (16, 16)).norm(dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms), atol=1e-3)


def test_mobilefacenet_at_small_size() -> None:
    # The GDC kernel follows image_size: 32 -> a 2x2 final map.
    model = build_backbone("mobilefacenet", embedding_dim=64, in_channels=1, image_size=32)
    assert _forward(model, 2, 1, (32, 32)).shape == (2, 64)
    with pytest.raises((RuntimeError, ValueError)):  # built for 32x32: 64x64 must not fit
        _forward(model, 2, 1, (64, 64))


def test_mobilefacenet_112() -> None:
    model = build_backbone("mobilefacenet", embedding_dim=128, in_channels=3, image_size=112)
    # Chen et al. 2018: 0.99M parameters at 128-d.
    assert 0.9e6 <= parameter_count(model) <= 1.1e6
    assert model.gdc[0].kernel_size == (7, 7)
    assert _forward(model, 2, 3, (112, 112)).shape == (2, 128)


def test_mobilefacenet_non_square() -> None:
    model = build_backbone("mobilefacenet", embedding_dim=32, image_size=(112, 96))
    assert model.gdc[0].kernel_size == (7, 6)
    assert _forward(model, 2, 1, (112, 96)).shape == (2, 32)


def test_iresnet18_112() -> None:
    model = build_backbone("iresnet18", embedding_dim=512, in_channels=3, image_size=112)
    # insightface r18: ≈ 24.0M parameters at 512-d and 112x112.
    assert 23.5e6 <= parameter_count(model) <= 24.5e6
    assert model.fc.in_features == 512 * 7 * 7
    assert _forward(model, 2, 3, (112, 112)).shape == (2, 512)


@pytest.mark.slow
def test_iresnet50_112() -> None:
    model = build_backbone("iresnet50", embedding_dim=512, in_channels=3, image_size=112)
    # insightface r50: ≈ 43.6M parameters at 512-d and 112x112.
    assert 43e6 <= parameter_count(model) <= 44.2e6
    assert _forward(model, 2, 3, (112, 112)).shape == (2, 512)


def test_iresnet_block_layout() -> None:
    model = build_backbone("iresnet18", embedding_dim=16, image_size=16)
    first = model.stages[0]
    kinds = [type(m).__name__ for m in first.body]
    assert kinds == ["BatchNorm2d", "Conv2d", "BatchNorm2d", "PReLU", "Conv2d", "BatchNorm2d"]
    # The first block of each stage halves the resolution (stride in its second conv).
    strides = [block.body[4].stride for block in model.stages]
    assert strides == [(2, 2), (1, 1)] * 4
    # The flatten size follows image_size: 16 -> a 1x1 final map; other sizes must not fit.
    assert model.fc.in_features == 512
    assert _forward(model, 2, 1, (16, 16)).shape == (2, 16)
    with pytest.raises(RuntimeError):
        _forward(model, 2, 1, (32, 32))


# -------------------------------------------------------------------------------- heads


def _unit(deg: float) -> list[float]:
    return [math.cos(math.radians(deg)), math.sin(math.radians(deg))]


def _head_2d(head: torch.nn.Module) -> torch.nn.Module:
    # Rows at 0°, 90°, 180°, deliberately not unit length (the head must normalise).
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 0.5], [-3.0, 0.0]]))
    return head


def test_cosface_hand_built() -> None:
    head = _head_2d(CosFaceHead(2, 3, s=30.0, m=0.35))
    emb = 4.0 * torch.tensor([_unit(60.0)])  # cos to rows: 0.5, 0.866, -0.5
    cos = torch.tensor([[0.5, math.sqrt(3) / 2, -0.5]])
    logits = head(emb, torch.tensor([1]))
    expected = 30.0 * (cos - torch.tensor([[0.0, 0.35, 0.0]]))
    torch.testing.assert_close(logits, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(head.logits(emb), 30.0 * cos, atol=1e-5, rtol=0)


def test_arcface_hand_built() -> None:
    head = _head_2d(ArcFaceHead(2, 3, s=30.0, m=0.5))
    emb = torch.tensor([_unit(30.0)])  # θ to row 0 is 30°, to row 1 60°
    logits = head(emb, torch.tensor([0]))
    expected = 30.0 * torch.tensor(
        [[math.cos(math.radians(30.0) + 0.5), math.cos(math.radians(60.0)), -math.cos(0.5236)]]
    )
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=0)
    # Margin-free prediction logits.
    torch.testing.assert_close(
        head.logits(emb)[0, 0], torch.tensor(30.0 * math.cos(math.radians(30.0))), atol=1e-4, rtol=0
    )


def test_arcface_beyond_pi_minus_m_falls_back() -> None:
    # θ = 170° > π − m: cos(θ + m) would rise again; ArcFace uses cos θ − m·sin m instead.
    head = _head_2d(ArcFaceHead(2, 3, s=10.0, m=0.5))
    emb = torch.tensor([_unit(170.0)])
    target = head(emb, torch.tensor([0]))[0, 0].item()
    assert target == pytest.approx(
        10.0 * (math.cos(math.radians(170.0)) - 0.5 * math.sin(0.5)), abs=1e-4
    )
    # Below π − m the true angular margin applies.
    emb = torch.tensor([_unit(100.0)])
    target = head(emb, torch.tensor([0]))[0, 0].item()
    assert target == pytest.approx(10.0 * math.cos(math.radians(100.0) + 0.5), abs=1e-4)


def test_arcface_easy_margin() -> None:
    head = _head_2d(ArcFaceHead(2, 3, s=10.0, m=0.5, easy_margin=True))
    obtuse = head(torch.tensor([_unit(120.0)]), torch.tensor([0]))[0, 0].item()
    assert obtuse == pytest.approx(10.0 * math.cos(math.radians(120.0)), abs=1e-4)
    acute = head(torch.tensor([_unit(30.0)]), torch.tensor([0]))[0, 0].item()
    assert acute == pytest.approx(10.0 * math.cos(math.radians(30.0) + 0.5), abs=1e-4)


@pytest.mark.parametrize("name", ["cosface", "arcface"])
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_gradients_finite_at_cos_plus_minus_one(name: str, sign: float) -> None:
    head = margin_head(name, 4, 3)
    emb = (sign * head.weight[1].detach().clone() * 5.0)[None].requires_grad_(True)
    assert head.cosine(emb)[0, 1].item() == pytest.approx(sign, abs=1e-6)
    loss = F.cross_entropy(head(emb, torch.tensor([1])), torch.tensor([1]))
    loss.backward()
    assert torch.isfinite(loss)
    assert emb.grad is not None and torch.isfinite(emb.grad).all()
    assert head.weight.grad is not None and torch.isfinite(head.weight.grad).all()


def test_margin_head_factory() -> None:
    cos = margin_head("cosface", 8, 5)
    arc = margin_head("arcface", 8, 5, s=16.0)
    assert isinstance(cos, CosFaceHead) and (cos.s, cos.m) == (30.0, 0.35)
    assert isinstance(arc, ArcFaceHead) and (arc.s, arc.m) == (16.0, 0.5)
    assert cos.weight.shape == (5, 8) and isinstance(cos.weight, torch.nn.Parameter)
    with pytest.raises(ValueError, match="unknown head"):
        margin_head("sphereface", 8, 5)


def test_margin_lowers_target_logit_only() -> None:
    torch.manual_seed(0)
    emb, labels = torch.randn(6, 8), torch.tensor([0, 1, 2, 3, 4, 0])
    for head in (CosFaceHead(8, 5), ArcFaceHead(8, 5)):
        diff = head.logits(emb) - head(emb, labels)
        target = F.one_hot(labels, 5).bool()
        assert (diff[target] > 0).all()
        assert torch.equal(diff[~target], torch.zeros_like(diff[~target]))


# ------------------------------------------------------------------------ FedFace parts


def test_fedface_positive_loss_values() -> None:
    classes = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # not unit length on purpose
    emb = torch.tensor([_unit(90.0), _unit(60.0), _unit(0.0), [0.95, math.sqrt(1 - 0.95**2)]]) * 2.0
    labels = torch.tensor([0, 0, 0, 0])  # cos = 0, 0.5, 1, 0.95
    per = [(0.9 - 0.0) ** 2, (0.9 - 0.5) ** 2, 0.0, 0.0]
    loss = fedface_positive_loss(emb, labels, classes, margin=0.9)
    assert loss.item() == pytest.approx(sum(per) / 4, abs=1e-6)
    # A different margin and label: cos(emb0, class 1) = 1 -> no loss; cos(emb1, class 1) = 0.866.
    loss = fedface_positive_loss(emb[:2], torch.tensor([1, 1]), classes, margin=0.95)
    assert loss.item() == pytest.approx((0.95 - math.sqrt(3) / 2) ** 2 / 2, abs=1e-6)
    assert fedface_positive_loss(emb[:0], labels[:0], classes).item() == 0.0


def test_fedface_positive_loss_pulls_towards_class() -> None:
    classes = torch.tensor([[1.0, 0.0, 0.0]])
    emb = torch.tensor([[0.2, 1.0, 0.3]], requires_grad=True)
    fedface_positive_loss(emb, torch.tensor([0]), classes).backward()
    assert emb.grad is not None
    stepped = emb.detach() - 0.5 * emb.grad
    assert F.cosine_similarity(stepped, classes)[0] > F.cosine_similarity(emb.detach(), classes)[0]


@pytest.mark.parametrize("normalize_features", [True, False])
def test_init_head_from_features(normalize_features: bool) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(9, 4)) * rng.uniform(0.1, 10.0, size=(9, 1))  # varied norms
    labels = np.array([0, 0, 0, 2, 2, 0, 2, 2, 0])  # class 1 has no image
    head = CosFaceHead(4, 3)
    before = head.weight.detach().clone()
    init_head_from_features(head, torch.tensor(features, dtype=torch.float32), torch.tensor(labels))
    f = (
        features / np.linalg.norm(features, axis=1, keepdims=True)
        if normalize_features
        else features
    )
    for c in (0, 2):
        mean = f[labels == c].mean(axis=0)
        expected = mean / np.linalg.norm(mean)
        if normalize_features:
            np.testing.assert_allclose(head.weight[c].detach().numpy(), expected, atol=1e-6)
    torch.testing.assert_close(head.weight[1].detach(), before[1])  # untouched
    assert torch.allclose(head.weight[[0, 2]].norm(dim=1), torch.ones(2), atol=1e-6)
    assert head.weight.requires_grad


def test_init_head_raw_mean_differs_from_normalised_mean() -> None:
    features = torch.tensor([[10.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    a, b = CosFaceHead(2, 1), CosFaceHead(2, 1)
    init_head_from_features(a, features, labels)  # mean of unit vectors: 45°
    init_head_from_features(b, features, labels, normalize_features=False)  # raw mean: ~5.7°
    torch.testing.assert_close(a.weight[0], torch.tensor(_unit(45.0)), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        b.weight[0], F.normalize(torch.tensor([5.0, 0.5]), dim=0), atol=1e-6, rtol=0
    )
    with pytest.raises(ValueError, match="labels"):
        init_head_from_features(a, features, torch.tensor([0, 1]))
