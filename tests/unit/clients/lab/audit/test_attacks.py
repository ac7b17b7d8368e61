"""Analytic leaks are exact for one sample; labels are inferred; the optimisers descend."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clients.lab.audit.attacks import (
    InversionProblem,
    cosine_head_leak,
    infer_labels,
    inverting_gradients,
    linear_leak,
)
from clients.lab.audit.scenario import build_model, private_classes


def test_linear_leak_recovers_the_input_of_a_single_sample_linear_layer() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(20, 7)
    x = torch.randn(1, 20)
    loss = F.cross_entropy(layer(x), torch.tensor([3]))
    grad_w, grad_b = torch.autograd.grad(loss, [layer.weight, layer.bias])
    assert torch.allclose(linear_leak(grad_w, grad_b), x[0], atol=1e-5)
    # An SGD update (−lr·gradient) leaks the same input.
    assert torch.allclose(linear_leak(-0.1 * grad_w, -0.1 * grad_b), x[0], atol=1e-5)


def test_linear_leak_of_a_batch_is_a_mixture_not_one_input() -> None:
    torch.manual_seed(1)
    layer = nn.Linear(20, 7)
    x = torch.randn(2, 20)
    loss = F.cross_entropy(layer(x), torch.tensor([1, 4]))
    leaked = linear_leak(*torch.autograd.grad(loss, [layer.weight, layer.bias]))
    assert not torch.allclose(leaked, x[0], atol=1e-2)
    assert not torch.allclose(leaked, x[1], atol=1e-2)


def test_linear_leak_refuses_a_zero_bias_update() -> None:
    with pytest.raises(ValueError, match="bias update is zero"):
        linear_leak(torch.ones(3, 4), torch.zeros(3))


def _cosface_grad(f: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    w = w.clone().requires_grad_()
    cos = F.normalize(f, dim=1) @ F.normalize(w, dim=1).T
    logits = 30.0 * (cos - 0.35 * F.one_hot(y, w.shape[0]))
    (grad,) = torch.autograd.grad(F.cross_entropy(logits, y), [w])
    return grad


def test_cosine_head_leak_recovers_the_template_of_one_sample() -> None:
    torch.manual_seed(2)
    f, w = torch.randn(1, 32), torch.randn(6, 32)
    y = torch.tensor([4])
    template = cosine_head_leak(_cosface_grad(f, w, y), w, y)
    assert F.cosine_similarity(template, F.normalize(f, dim=1)).item() > 0.9999


def test_cosine_head_leak_works_for_a_trained_looking_head() -> None:
    torch.manual_seed(3)
    f = torch.randn(1, 32)
    w = torch.randn(6, 32)
    w[2] = f[0] + 0.3 * torch.randn(32)  # the true row already close to the face
    y = torch.tensor([2])
    template = cosine_head_leak(_cosface_grad(f, w, y), w, y)
    assert F.cosine_similarity(template, F.normalize(f, dim=1)).item() > 0.9999


def test_infer_labels_finds_the_batch_classes_of_a_cosine_head() -> None:
    torch.manual_seed(4)
    f, w = torch.randn(3, 32), 0.01 * torch.randn(12, 32)
    y = torch.tensor([7, 1, 10])
    assert infer_labels(_cosface_grad(f, w, y), 3).tolist() == [1, 7, 10]
    with pytest.raises(ValueError, match="cannot infer"):
        infer_labels(torch.zeros(2, 4), 3)


def _problem(head: str) -> tuple[InversionProblem, torch.Tensor]:
    model = build_model(identities=5, head=head, steps=1, lr=0.1, seed=0, image_size=8, channels=1)
    x = torch.rand(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([2])
    if head == "known":
        assert model.shared_head is not None
        target = model.update(model.params(), model.shared_head, x, y, None, create_graph=False)
        labels: torch.Tensor | None = y[None]
    else:
        private = 0.01 * torch.randn(private_classes(1), 128)
        target = model.update(
            model.params(), private, x, torch.tensor([0]), None, create_graph=False
        )
        labels = None
    problem = InversionProblem(
        model=model,
        params=model.params(),
        target=target,
        groups=1,
        batch=1,
        shape=(1, 8, 8),
        labels=labels,
        projectors=[None],
        matched=sum(p.numel() for p in model.backbone.parameters()),
    )
    return problem, x


def test_update_is_minus_lr_times_the_gradient_for_one_step() -> None:
    problem, x = _problem("known")
    model = problem.model
    assert model.shared_head is not None
    params = {k: v.clone().requires_grad_() for k, v in model.params().items()}
    head = model.shared_head.clone().requires_grad_()
    loss = model.loss(params, head, x, torch.tensor([2]), None)
    grads = torch.autograd.grad(loss, [*params.values(), head])
    expected = torch.cat([-0.1 * g.reshape(-1) for g in grads])
    assert torch.allclose(problem.target, expected, atol=1e-7)
    parts = model.split_upload(problem.target)
    assert list(parts) == list(model.shared_names)
    assert parts["head"].shape == model.shared_head.shape


@pytest.mark.parametrize("head", ["known", "private"])
def test_inverting_gradients_reduces_the_matching_loss(head: str) -> None:
    problem, _ = _problem(head)
    _, first = inverting_gradients(problem, iterations=1, tv=0.0, seed=5)
    x, last = inverting_gradients(problem, iterations=20, tv=0.0, seed=5)
    assert x.shape == (1, 1, 8, 8) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert last < first
