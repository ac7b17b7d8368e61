"""Gradient-inversion attacks on one observed upload (methods.md §9.1).

Every attack gets an :class:`InversionProblem`: the upload the aggregator
observed (one client's update, a masked upload read as an update, or the
unmasked sum), the model θ^t, and what the attacker knows. They return
reconstructed images in [0, 1]:

- :func:`inverting_gradients` (Geiping et al. 2020): Adam on the dummy images
  with *signed* gradients, cosine distance between predicted and observed
  upload plus a total-variation prior, step decay ×0.1 at 3/8, 5/8 and 7/8,
  pixels boxed to [0, 1];
- :func:`dlg` (Zhu et al. 2019; iDLG, Zhao et al. 2020, when the labels are
  inferred): L-BFGS on the squared Euclidean distance;
- :func:`gan_prior` (Liu et al. 2021 / GIAS / GGL family): the same cosine
  matching over the latent z of a generator trained on other people, then a
  short pixel refinement;
- :func:`template_attack` (analytic, methods.md §9.1): the input of the
  backbone's last linear layer from its weight and bias update
  (:func:`linear_leak`, exact for one sample), the face templates from the
  rows of a shared cosine head (:func:`cosine_head_leak`, exact for one
  sample), each turned into an image by feature inversion.

Re-implemented from the papers' descriptions; no code copied.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import nn

from clients.lab.audit.generator import Generator
from clients.lab.audit.scenario import FaceModel, Params, private_classes


@dataclass(eq=False)
class InversionProblem:
    """One observed upload and the attacker's knowledge.

    ``groups`` clients of ``batch`` images each contributed to ``target``.
    ``labels`` (groups, batch) are the labels the attacker uses with the
    shared head (mode ``known``); None means the head is private and the
    attacker optimises one dummy head per client instead. ``projectors``
    holds the attacker's projector for each client (None: it runs the model
    without one). The optimisation attacks match only the first ``matched``
    coordinates (the backbone's): a shared head's rows would otherwise
    dominate the distance, and the attacker uses them for the labels and
    the template leak instead.
    """

    model: FaceModel
    params: Params
    target: torch.Tensor
    groups: int
    batch: int
    shape: tuple[int, int, int]
    labels: torch.Tensor | None
    projectors: list[torch.Tensor | None]
    matched: int | None = None

    @property
    def images(self) -> int:
        """How many images the attacker reconstructs (N·B)."""
        return self.groups * self.batch

    def dummy_heads(self, generator: torch.Generator) -> torch.Tensor | None:
        """Trainable dummy heads (groups, classes, d) for a private head, else None.

        The attacker knows the head's size (the architecture) but not its rows;
        the batch's labels are taken as rows 0..B−1, which loses nothing since
        the rows are free.
        """
        if self.labels is not None:
            return None
        dim = self.model.margin.embedding_dim
        rows = private_classes(self.batch)
        return (torch.randn(self.groups, rows, dim, generator=generator) * 0.01).requires_grad_()

    @property
    def observed(self) -> torch.Tensor:
        """The matched part of the observed upload."""
        return self.target[: self.matched]

    def predict(self, x: torch.Tensor, heads: torch.Tensor | None) -> torch.Tensor:
        """The matched part of the upload these dummy images (and heads) would produce."""
        total: torch.Tensor | None = None
        for g in range(self.groups):
            xg = x[g * self.batch : (g + 1) * self.batch]
            if self.labels is not None:
                assert self.model.shared_head is not None
                head, y = self.model.shared_head, self.labels[g]
            else:
                assert heads is not None
                head, y = heads[g], torch.arange(self.batch)
            upload = self.model.update(
                self.params, head, xg, y, self.projectors[g], create_graph=True
            )
            total = upload if total is None else total + upload
        assert total is not None
        return total[: self.matched]


# ------------------------------------------------------------------------- helpers


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 − cos(a, b) of two flat vectors."""
    return 1.0 - F.cosine_similarity(a.reshape(1, -1), b.reshape(1, -1), eps=1e-12)[0]


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of neighbouring pixels (anisotropic TV)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def _milestones(iterations: int) -> list[int]:
    """Step decay at 3/8, 5/8 and 7/8 of the run (Inverting Gradients' schedule)."""
    return [max(1, iterations * k // 8) for k in (3, 5, 7)]


def infer_labels(head_update: torch.Tensor, count: int) -> torch.Tensor:
    """The ``count`` classes whose head rows moved most (iDLG-style label inference).

    With a margin-softmax head the true class's row gets a (1 − p_y) share
    of the gradient, every other row only p_j, so at a fresh or diffuse
    head the true rows have the largest norms. Sorted ascending.
    """
    if not 1 <= count <= head_update.shape[0]:
        raise ValueError(f"cannot infer {count} labels from {head_update.shape[0]} head rows")
    norms = head_update.norm(dim=1)
    return torch.sort(torch.topk(norms, count).indices).values


# -------------------------------------------------------------------- optimisation


def inverting_gradients(
    problem: InversionProblem,
    *,
    iterations: int,
    tv: float,
    seed: int,
    restarts: int = 1,
    init: torch.Tensor | None = None,
    lr: float = 0.1,
) -> tuple[torch.Tensor, float]:
    """Geiping et al.'s attack: the restart with the lowest final loss, and that loss."""
    best: tuple[float, torch.Tensor] | None = None
    for restart in range(restarts):
        generator = torch.Generator().manual_seed(seed + restart)
        start = torch.rand((problem.images, *problem.shape), generator=generator)
        x = (start if init is None else init.detach().clone()).requires_grad_()
        heads = problem.dummy_heads(generator)
        groups: list[dict[str, object]] = [{"params": [x], "lr": lr}]
        if heads is not None:
            groups.append({"params": [heads], "lr": 0.01})
        optimiser = torch.optim.Adam(groups)
        schedule = torch.optim.lr_scheduler.MultiStepLR(
            optimiser, _milestones(iterations), gamma=0.1
        )
        loss = torch.tensor(float("inf"))
        for _ in range(iterations):
            optimiser.zero_grad(set_to_none=True)
            loss = cosine_distance(problem.predict(x, heads), problem.observed) + tv * (
                total_variation(x)
            )
            loss.backward()  # type: ignore[no-untyped-call]
            assert x.grad is not None
            x.grad.sign_()
            optimiser.step()
            schedule.step()
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
        final = float(loss.detach())
        if best is None or final < best[0]:
            best = (final, x.detach().clone())
    assert best is not None
    return best[1], best[0]


def dlg(problem: InversionProblem, *, iterations: int, seed: int) -> torch.Tensor:
    """DLG / iDLG: L-BFGS on ‖predicted − observed‖² (scaled by ‖observed‖²).

    With a shared head the labels are the inferred ones (iDLG); with a
    private head the dummy head rows are optimised jointly, which plays the
    role of DLG's soft labels. Unconstrained, as published; clipped to
    [0, 1] at the end.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((problem.images, *problem.shape), generator=generator).requires_grad_()
    heads = problem.dummy_heads(generator)
    variables = [x] if heads is None else [x, heads]
    scale = problem.observed.pow(2).sum().clamp_min(1e-30)
    optimiser = torch.optim.LBFGS(
        variables,
        lr=1.0,
        max_iter=iterations,
        history_size=50,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimiser.zero_grad(set_to_none=True)
        loss = (problem.predict(x, heads) - problem.observed).pow(2).sum() / scale
        loss.backward()  # type: ignore[no-untyped-call]
        return loss

    optimiser.step(closure)  # type: ignore[no-untyped-call]
    return x.detach().clamp(0.0, 1.0)


def gan_prior(
    problem: InversionProblem,
    generator_net: Generator,
    *,
    iterations: int,
    tv: float,
    seed: int,
    refine: int | None = None,
) -> torch.Tensor:
    """Latent search: z minimising the cosine distance of ∇(G(z)), then pixel refinement.

    A weak Gaussian prior (1e-3·mean z²) keeps z where the generator was
    trained. ``refine`` (default a quarter of ``iterations``) signed-Adam
    steps at a small step size then polish G(z*) as in GGL / GIAS.
    """
    for p in generator_net.parameters():
        p.requires_grad_(False)
    generator_net.eval()
    generator = torch.Generator().manual_seed(seed)
    z = torch.randn(problem.images, generator_net.z_dim, generator=generator).requires_grad_()
    heads = problem.dummy_heads(generator)
    groups: list[dict[str, object]] = [{"params": [z], "lr": 0.05}]
    if heads is not None:
        groups.append({"params": [heads], "lr": 0.01})
    optimiser = torch.optim.Adam(groups)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, _milestones(iterations), gamma=0.1)
    for _ in range(iterations):
        optimiser.zero_grad(set_to_none=True)
        x = generator_net(z)
        if x.shape[1:] != problem.shape:
            raise ValueError(
                f"generator makes {tuple(x.shape[1:])}, the model needs {problem.shape}"
            )
        loss = cosine_distance(problem.predict(x, heads), problem.observed) + 1e-3 * z.pow(2).mean()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        start: torch.Tensor = generator_net(z)
    steps = iterations // 4 if refine is None else refine
    if steps == 0:
        return start
    refined, _ = inverting_gradients(
        problem, iterations=steps, tv=tv, seed=seed, init=start, lr=0.01
    )
    return refined


# --------------------------------------------------------------------- analytic leak


def linear_leak(weight_update: torch.Tensor, bias_update: torch.Tensor) -> torch.Tensor:
    """The input of a linear layer from its weight and bias gradients (or updates).

    For one sample, ∂ℓ/∂W = δ·hᵀ and ∂ℓ/∂b = δ, so every row j with δ_j ≠ 0
    gives h = (∂ℓ/∂W)_j / δ_j; the least-squares combination of all rows is
    returned. For a batch it is a δ-weighted mixture of the inputs.
    """
    if weight_update.dim() != 2 or bias_update.shape != (weight_update.shape[0],):
        raise ValueError("need a (out, in) weight update and an (out,) bias update")
    energy = bias_update.pow(2).sum()
    if float(energy) == 0.0:
        raise ValueError("the bias update is zero: nothing to divide by")
    return (bias_update[:, None] * weight_update).sum(dim=0) / energy


def cosine_head_leak(
    row_updates: torch.Tensor, rows: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Unit face templates f̂ from the update of a cosine (CosFace / ArcFace) head's rows.

    Row j's gradient is s(p_j − [j = y])(f̂ − cos θ_j ŵ_j)/‖w_j‖: orthogonal
    to ŵ_j, and for the true class y pointing away from f̂. So f̂ = c·ŵ_y +
    √(1 − c²)·u with u = −g_y/‖g_y‖. The unknown c is fixed by the other
    rows: f̂ must lie in span(ŵ_k, g_k) for every k ≠ y, a 2×2 eigenproblem.
    Exact for one sample; for batches the other rows mix several samples and
    the result is an approximation. Returns (len(labels), d).
    """
    if row_updates.shape != rows.shape or row_updates.dim() != 2:
        raise ValueError("row updates and rows must both be (classes, d)")
    w_hat = F.normalize(rows.double(), dim=1)
    g = row_updates.double()
    others_mask = torch.ones(rows.shape[0], dtype=torch.bool)
    others_mask[labels] = False
    others = torch.nonzero(others_mask & (g.norm(dim=1) > 0)).flatten()
    templates = []
    for y in labels.tolist():
        u = -F.normalize(g[y], dim=0)
        a_vec, b_vec = w_hat[y], u
        gram = torch.zeros(2, 2, dtype=torch.float64)
        for k in others.tolist():
            basis, _ = torch.linalg.qr(torch.stack([w_hat[k], g[k]], dim=1))
            ra = a_vec - basis @ (basis.T @ a_vec)
            rb = b_vec - basis @ (basis.T @ b_vec)
            stacked = torch.stack([ra, rb], dim=1)
            gram += stacked.T @ stacked
        if len(others) == 0:
            c, s = 0.0, 1.0
        else:
            _, vectors = torch.linalg.eigh(gram)
            c, s = float(vectors[0, 0]), float(vectors[1, 0])
            if s < 0:
                c, s = -c, -s
        templates.append(F.normalize(c * a_vec + s * b_vec, dim=0))
    return torch.stack(templates).float()


def last_linear(backbone: nn.Module) -> tuple[str, nn.Linear]:
    """The backbone's last linear layer and its name (the embedding layer of small-cnn)."""
    found = [(n, m) for n, m in backbone.named_modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError("the backbone has no linear layer")
    return found[-1]


def features(
    model: FaceModel, params: Params, x: torch.Tensor, projector: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the last linear layer, unit template after the projector), train-mode BN."""
    _, layer = last_linear(model.backbone)
    captured: list[torch.Tensor] = []

    def hook(_: nn.Module, inputs: tuple[torch.Tensor, ...], __: torch.Tensor) -> None:
        captured.append(inputs[0])

    handle = layer.register_forward_hook(hook)
    try:
        embedding = model.embed(params, x, projector)
    finally:
        handle.remove()
    return captured[0], F.normalize(embedding, dim=1)


def invert_features(
    encode: Callable[[torch.Tensor], torch.Tensor],
    targets: torch.Tensor,
    shape: tuple[int, int, int],
    *,
    iterations: int,
    tv: float,
    seed: int,
) -> torch.Tensor:
    """Images whose ``encode`` (one image at a time) has the highest cosine with ``targets``."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((len(targets), *shape), generator=generator).requires_grad_()
    optimiser = torch.optim.Adam([x], lr=0.1)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimiser, _milestones(iterations), gamma=0.1)
    for _ in range(iterations):
        optimiser.zero_grad(set_to_none=True)
        codes = torch.cat([encode(x[i : i + 1]) for i in range(len(targets))])
        loss = (1.0 - F.cosine_similarity(codes, targets, dim=1)).mean() + tv * total_variation(x)
        loss.backward()  # type: ignore[no-untyped-call]
        assert x.grad is not None
        x.grad.sign_()
        optimiser.step()
        schedule.step()
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
    return x.detach()


@dataclass(frozen=True, eq=False)
class TemplateLeak:
    """What the analytic attack recovered, and its images (pooled first, then templates)."""

    images: torch.Tensor
    pooled: torch.Tensor  # (1, k): the input of the last linear layer
    templates: torch.Tensor  # (L, d) unit templates from the head rows; L = 0 without a shared head
    labels: torch.Tensor  # (L,) their classes


def template_attack(
    problem: InversionProblem, *, iterations: int, tv: float, seed: int
) -> TemplateLeak:
    """The analytic leaks of the upload, each inverted to an image through θ^t."""
    model = problem.model
    upload = model.split_upload(problem.target)
    name, _ = last_linear(model.backbone)
    pooled = linear_leak(upload[f"{name}.weight"], upload[f"{name}.bias"])[None]
    projector = problem.projectors[0]

    def encode_pooled(x: torch.Tensor) -> torch.Tensor:
        return features(model, problem.params, x, projector)[0]

    images = [
        invert_features(
            encode_pooled, pooled, problem.shape, iterations=iterations, tv=tv, seed=seed
        )
    ]
    templates = torch.zeros(0, model.margin.embedding_dim)
    labels = torch.zeros(0, dtype=torch.long)
    if problem.labels is not None and model.shared_head is not None:
        labels = problem.labels.reshape(-1)
        # The upload is −lr·(gradient) summed over steps: flip it back to a gradient.
        templates = cosine_head_leak(-upload["head"], model.shared_head, labels)
        for g in range(problem.groups):
            # The attacker's projector for this client's labels (its guess when unknown).
            chosen = templates[g * problem.batch : (g + 1) * problem.batch]
            guess = problem.projectors[g]

            def encode_template(
                x: torch.Tensor, guess: torch.Tensor | None = guess
            ) -> torch.Tensor:
                return features(model, problem.params, x, guess)[1]

            images.append(
                invert_features(
                    encode_template,
                    chosen,
                    problem.shape,
                    iterations=iterations,
                    tv=tv,
                    seed=seed + 1 + g,
                )
            )
    return TemplateLeak(torch.cat(images), pooled.detach(), templates, labels)
