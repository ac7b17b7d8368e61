"""What the audit attacks: the data split, the federated model at round t, one client's update.

The client side follows methods.md §9.2: a small CNN on 32×32 grey faces, a
CosFace head, and E local steps of full-batch SGD on B images of B distinct
people (Inverting Gradients' "FedAvg" setting). The update is a pure
function of (θ, head, projector, images, labels), so the attacker can run
the very same function on dummy images and differentiate through it.

Attacker knowledge (methods.md §9.2) is set by two switches:

- head ``known``: the margin head is shared, so its rows are part of θ^t and
  its update is in the upload (the leaky shared-FC baseline, worst case);
  ``private``: each client keeps its own head (every method in this project),
  nothing of it is uploaded, and the attacker must optimise a dummy head;
- projector ``none``: no projector; ``known`` / ``unknown``: each client maps
  its embedding through its own private orthogonal projector (Ding et al.,
  methods.md §7) before the head, and the attacker knows it or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the usual PyTorch alias)
from torch import nn
from torch.func import functional_call

from clients.lab.method_hooks import private_projector
from clients.training.data import FaceDataset
from clients.training.heads import CosFaceHead
from clients.training.models import build_backbone

HEAD_MODES: tuple[str, ...] = ("known", "private")
PROJECTOR_MODES: tuple[str, ...] = ("none", "known", "unknown")

Params = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True, eq=False)
class AuditSplit:
    """Who is attacked and what every other party may use.

    ``private``: the victims' training images in the order clients take them
    (client k holds rows (k−1)·B … k·B−1), at most one per identity within a
    client. ``gallery``: every other image of every identity; it trains the
    evaluator and is the rank-1 gallery, and never holds a private image.
    ``public``: the identities that have no private image at all; the GAN
    prior is trained on them only. All three keep the source's labels.
    """

    private: FaceDataset
    gallery: FaceDataset
    public: FaceDataset
    victims: tuple[int, ...]


def split_for_audit(
    ds: FaceDataset, *, needed: int, seed: int, public_share: float = 0.25
) -> AuditSplit:
    """Pick ``needed`` private images of distinct victims (round-robin), the gallery and public set.

    ``public_share`` of the identities (at least one) become public. Victims
    give their images round-robin, so up to ``len(victims)`` consecutive
    private images belong to distinct people; every victim keeps at least two
    gallery images. Raises ``ValueError`` when the data set is too small.
    """
    if needed < 1:
        raise ValueError("need at least one private image")
    if not 0.0 < public_share < 1.0:
        raise ValueError("public_share must lie in (0, 1)")
    public_count = max(1, round(ds.identities * public_share))
    if ds.identities - public_count < 1:
        raise ValueError(f"{ds.identities} identities leave no victims after {public_count} public")
    rng = np.random.default_rng(seed)
    order = rng.permutation(ds.identities)
    public_ids = np.sort(order[:public_count])
    victims = np.sort(order[public_count:])
    per_identity = math.ceil(needed / len(victims))
    fewest = int(ds.counts[victims].min())
    if per_identity > fewest - 2:
        raise ValueError(
            f"{needed} private images need {per_identity} per victim ({len(victims)} victims) "
            f"plus 2 gallery images each, but one victim has only {fewest} images; "
            "use fewer clients, a smaller batch or a larger data set"
        )
    by_identity = {int(v): rng.permutation(np.flatnonzero(ds.labels == v)) for v in victims}
    rows = [by_identity[int(v)][r] for r in range(per_identity) for v in victims][:needed]
    private = np.asarray(rows, dtype=np.int64)
    taken = np.zeros(len(ds), dtype=bool)
    taken[private] = True
    return AuditSplit(
        private=ds.rows(private),
        gallery=ds.rows(np.flatnonzero(~taken)),
        public=ds.rows(np.flatnonzero(np.isin(ds.labels, public_ids))),
        victims=tuple(int(v) for v in victims),
    )


# ----------------------------------------------------------------------------- model


@dataclass(eq=False)
class FaceModel:
    """The federated model at round t and the client's local training, as pure functions.

    ``backbone`` holds θ^t (never modified here: BatchNorm buffers are copied
    on every call). ``margin`` is a CosFace head used only for its s and m;
    its rows are passed in. ``shared_head`` holds the global head rows when
    the head is shared (mode ``known``), else None.
    """

    backbone: nn.Module
    margin: CosFaceHead
    shared_head: torch.Tensor | None
    steps: int
    lr: float

    def params(self) -> Params:
        """θ^t as detached tensors."""
        return {name: p.detach() for name, p in self.backbone.named_parameters()}

    @property
    def shared_names(self) -> tuple[str, ...]:
        """The uploaded tensors, in upload order."""
        names = tuple(name for name, _ in self.backbone.named_parameters())
        return (*names, "head") if self.shared_head is not None else names

    def embed(
        self, params: Params, x: torch.Tensor, projector: torch.Tensor | None
    ) -> torch.Tensor:
        """Training-mode embeddings (BatchNorm on the batch), through the projector if any."""
        buffers = {name: b.clone() for name, b in self.backbone.named_buffers()}
        f: torch.Tensor = functional_call(self.backbone, (params, buffers), (x,))
        return f @ projector.T if projector is not None else f

    def loss(
        self,
        params: Params,
        head: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        projector: torch.Tensor | None,
    ) -> torch.Tensor:
        """CosFace cross-entropy of one batch (CosFaceHead's formula with rows ``head``)."""
        cos = F.normalize(self.embed(params, x, projector), dim=1) @ F.normalize(head, dim=1).T
        target = F.one_hot(y, head.shape[0]).to(cos.dtype)
        logits = self.margin.s * (cos - self.margin.m * target)
        return F.cross_entropy(logits, y)

    def update(
        self,
        params: Params,
        head: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        projector: torch.Tensor | None,
        *,
        create_graph: bool,
    ) -> torch.Tensor:
        """The upload: Δ of the shared tensors after ``steps`` full-batch SGD steps, flat.

        The client calls it with ``create_graph=False``; the attacker with
        True, to differentiate the predicted upload by its dummy images.
        """
        names = list(params)
        start = [
            params[n] if params[n].requires_grad else params[n].requires_grad_() for n in names
        ]
        start.append(head if head.requires_grad else head.detach().requires_grad_())
        current = start
        for _ in range(self.steps):
            loss = self.loss(
                dict(zip(names, current[:-1], strict=True)), current[-1], x, y, projector
            )
            grads = torch.autograd.grad(loss, current, create_graph=create_graph)
            current = [c - self.lr * g for c, g in zip(current, grads, strict=True)]
        deltas = [(c - s).reshape(-1) for c, s in zip(current, start, strict=True)]
        if self.shared_head is None:
            deltas = deltas[:-1]
        out = torch.cat(deltas)
        return out if create_graph else out.detach()

    def split_upload(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """A flat upload back into named tensors (shapes of θ^t and the shared head)."""
        shapes = [p.shape for _, p in self.backbone.named_parameters()]
        if self.shared_head is not None:
            shapes.append(self.shared_head.shape)
        sizes = [math.prod(s) for s in shapes]
        if flat.numel() != sum(sizes):
            raise ValueError(f"upload has {flat.numel()} entries, the model {sum(sizes)}")
        parts = torch.split(flat, sizes)
        return {
            name: part.reshape(shape)
            for name, part, shape in zip(self.shared_names, parts, shapes, strict=True)
        }


def build_model(
    *,
    identities: int,
    head: str,
    steps: int,
    lr: float,
    seed: int,
    image_size: int,
    channels: int,
    embedding_dim: int = 128,
) -> FaceModel:
    """θ^t: a freshly initialised small-cnn (round 0) and, for head ``known``, a shared head."""
    if head not in HEAD_MODES:
        raise ValueError(f"head must be one of {HEAD_MODES}, got {head!r}")
    if steps < 1 or lr <= 0:
        raise ValueError("need at least one local step and a positive learning rate")
    torch.manual_seed(seed)
    backbone = build_backbone(
        "small-cnn", embedding_dim=embedding_dim, in_channels=channels, image_size=image_size
    )
    backbone.train()
    margin = CosFaceHead(embedding_dim, 1)
    shared = client_head(identities, embedding_dim, seed=seed) if head == "known" else None
    return FaceModel(backbone, margin, shared, steps, lr)


#: Identities a client holds when its head is private: its batch holds B of them.
CLIENT_IDENTITIES = 10


def private_classes(batch: int) -> int:
    """Rows of a client's private head: all its identities, not only the batch's.

    (A head with one row would give a constant loss and a zero update.)
    """
    return max(batch, CLIENT_IDENTITIES)


def client_head(classes: int, dim: int, *, seed: int) -> torch.Tensor:
    """Head rows drawn like CosFaceHead's initialisation (normal, std 0.01), seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(classes, dim, generator=generator) * 0.01


def client_projector(mode: str, dim: int, *, seed: int, client: int) -> torch.Tensor | None:
    """Client ``client``'s private orthogonal projector, or None for mode ``none``."""
    if mode not in PROJECTOR_MODES:
        raise ValueError(f"projector must be one of {PROJECTOR_MODES}, got {mode!r}")
    if mode == "none":
        return None
    return private_projector(dim, seed=seed * 7919 + client)
