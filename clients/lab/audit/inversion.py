"""``secagg audit inversion``: attack each view of the aggregator and score the leakage.

The run: split the faces (victims' private images, a gallery, public
identities); train the evaluator on the gallery and the GAN prior on the
public identities; let clients 1..N_max compute their updates at θ^t; run one
real SecAgg round per N in the sweep; attack client 1's update, its masked
upload and each unmasked sum; score every reconstruction against chance.

What the numbers mean is in docs/audit.md. In one sentence: the attack on
one update is the positive control, the masked upload must sit at chance,
and the sum leaks less as N·B grows but **not zero** (with one local step
the sum of N gradients is the gradient of one batch of N·B images).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from clients.lab.audit import ATTACKS
from clients.lab.audit.attacks import (
    InversionProblem,
    dlg,
    features,
    gan_prior,
    infer_labels,
    inverting_gradients,
    template_attack,
)
from clients.lab.audit.generator import Generator, train_generator
from clients.lab.audit.metrics import Evaluator, leakage, templates_of, train_evaluator
from clients.lab.audit.scenario import (
    HEAD_MODES,
    PROJECTOR_MODES,
    AuditSplit,
    FaceModel,
    build_model,
    client_head,
    client_projector,
    private_classes,
    split_for_audit,
)
from clients.lab.audit.views import Views, build_views
from clients.training.data import FaceDataset, load_dataset

Progress = Callable[[str], None]

#: The honest statement the JSON and the docs carry about the sum.
SUM_STATEMENT = (
    "Leakage from the unmasked sum falls as N·B grows but is not zero: with one local step "
    "the sum of N client gradients is the gradient of one batch of N·B images, and "
    "inversions of batches of dozens of images are published. Enforce a minimum cohort, "
    "use several local steps, and add distributed DP for a formal bound."
)

#: At most this many gallery images of other people serve as the chance baseline.
MAX_NULL_IMAGES = 240


@dataclass(frozen=True)
class AuditConfig:
    """Every knob of one audit run (the CLI flags)."""

    data: str = "orl"
    image_size: int = 32
    batch_size: int = 2
    clients: tuple[int, ...] = (2, 4, 8)
    local_steps: int = 1
    lr: float = 0.05
    attacks: tuple[str, ...] = ATTACKS
    sum_attacks: tuple[str, ...] = ("ig", "template")
    head: str = "known"
    projector: str = "none"
    iterations: int = 300
    tv: float = 0.5
    restarts: int = 1
    evaluator_epochs: int = 25
    generator_steps: int = 800
    seed: int = 0

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if self.batch_size < 1:
            raise ValueError("batch size must be at least 1")
        if not self.clients or min(self.clients) < 2:
            raise ValueError(
                "every N in --clients must be at least 2 (N = 1 is the individual view)"
            )
        if self.local_steps < 1 or self.iterations < 1 or self.restarts < 1:
            raise ValueError("local steps, iterations and restarts must be at least 1")
        for name in (*self.attacks, *self.sum_attacks):
            if name not in ATTACKS:
                raise ValueError(f"unknown attack {name!r}; choose from {', '.join(ATTACKS)}")
        if not self.attacks:
            raise ValueError("name at least one attack")
        if self.head not in HEAD_MODES:
            raise ValueError(f"--head must be one of {HEAD_MODES}")
        if self.projector not in PROJECTOR_MODES:
            raise ValueError(f"--projector must be one of {PROJECTOR_MODES}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError("image size must be a power of two ≥ 8 (the GAN prior needs it)")


@dataclass(frozen=True, eq=False)
class ViewResult:
    """One attacked view: its targets, every attack's reconstructions and scores."""

    name: str
    targets: np.ndarray
    labels: np.ndarray
    recs: dict[str, np.ndarray]
    metrics: dict[str, dict[str, Any]]
    best: str
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The JSON of this view: the best attack's metrics on top, every attack below."""
        top = {k: v for k, v in self.metrics[self.best].items() if k not in ("per_target", "match")}
        return {"best_attack": self.best, **top, **self.extra, "attacks": self.metrics}


@dataclass(frozen=True, eq=False)
class AuditResult:
    """The JSON summary and the images behind the grid and the plot."""

    summary: dict[str, Any]
    individual: ViewResult
    masked: ViewResult
    sums: list[ViewResult]


@dataclass(eq=False)
class _Run:
    """Everything the attacks of one audit share."""

    config: AuditConfig
    split: AuditSplit
    model: FaceModel
    evaluator: Evaluator
    generator: Generator | None
    null: FaceDataset
    null_embeddings: np.ndarray
    progress: Progress
    _gallery: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.split.private.images.shape[1:]
        return int(c), int(h), int(w)

    def client_rows(self, clients: int) -> slice:
        return slice(0, clients * self.config.batch_size)

    def problem(self, target: np.ndarray, groups: int) -> tuple[InversionProblem, dict[str, Any]]:
        """The attacker's problem for an upload of ``groups`` clients, and label recovery."""
        cfg, model = self.config, self.model
        vector = torch.from_numpy(np.asarray(target, dtype=np.float32))
        extra: dict[str, Any] = {}
        labels = None
        if model.shared_head is not None:
            count = groups * cfg.batch_size
            inferred = infer_labels(model.split_upload(vector)["head"], count)
            truth = set(self.split.private.labels[self.client_rows(groups)].tolist())
            extra["label_accuracy"] = len(truth & set(inferred.tolist())) / count
            labels = inferred.reshape(groups, cfg.batch_size)
        dim = model.margin.embedding_dim
        projectors = [
            client_projector(cfg.projector, dim, seed=cfg.seed, client=g + 1)
            if cfg.projector == "known"
            else None
            for g in range(groups)
        ]
        problem = InversionProblem(
            model=model,
            params=model.params(),
            target=vector,
            groups=groups,
            batch=cfg.batch_size,
            shape=self.shape,
            labels=labels,
            projectors=projectors,
            matched=sum(p.numel() for p in model.backbone.parameters()),
        )
        return problem, extra

    def truth(self, groups: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The targets' true last-linear inputs and templates, each in its client's batch."""
        pooled, templates = [], []
        with torch.no_grad():
            for k in range(1, groups + 1):
                x = self._images(k)
                projector = client_projector(
                    self.config.projector,
                    self.model.margin.embedding_dim,
                    seed=self.config.seed,
                    client=k,
                )
                h, t = features(self.model, self.model.params(), x, projector)
                pooled.append(h)
                templates.append(t)
        return torch.cat(pooled), torch.cat(templates)

    def _images(self, client: int) -> torch.Tensor:
        b = self.config.batch_size
        return torch.from_numpy(self.split.private.images[(client - 1) * b : client * b])

    def attack(
        self, name: str, view: str, target: np.ndarray, groups: int, attacks: tuple[str, ...]
    ) -> ViewResult:
        """Run ``attacks`` on one view and score them."""
        cfg = self.config
        problem, label_info = self.problem(target, groups)
        rows = self.client_rows(groups)
        targets = self.split.private.images[rows]
        labels = self.split.private.labels[rows]
        recs: dict[str, np.ndarray] = {}
        metrics: dict[str, dict[str, Any]] = {}
        for attack in attacks:
            start = time.perf_counter()
            self.progress(f"{view}: {attack} on {problem.images} image(s)")
            seed = cfg.seed * 1000 + ATTACKS.index(attack)
            extra: dict[str, Any] = {}
            if attack == "ig":
                x, loss = inverting_gradients(
                    problem, iterations=cfg.iterations, tv=cfg.tv, seed=seed, restarts=cfg.restarts
                )
                extra["final_loss"] = loss
            elif attack == "dlg":
                x = dlg(problem, iterations=cfg.iterations, seed=seed)
            elif attack == "gan":
                assert self.generator is not None
                x = gan_prior(
                    problem, self.generator, iterations=cfg.iterations, tv=cfg.tv, seed=seed
                )
            else:
                leak = template_attack(problem, iterations=cfg.iterations, tv=cfg.tv, seed=seed)
                x = leak.images
                extra.update(
                    self._template_quality(leak.pooled, leak.templates, leak.labels, groups)
                )
            extra.update(label_info)
            recs[attack] = x.numpy()
            scored = leakage(
                recs[attack],
                targets,
                labels,
                self.null,
                self.evaluator,
                seed=seed,
                others_embeddings=self.null_embeddings,
            )
            metrics[attack] = {
                **scored,
                **extra,
                "reconstructions": len(x),
                "seconds": round(time.perf_counter() - start, 2),
            }
        best = max(
            metrics,
            key=lambda a: (
                metrics[a]["identity_cosine"] - metrics[a]["identity_cosine_chance"],
                metrics[a]["rank1"],
            ),
        )
        return ViewResult(name, targets, labels, recs, metrics, best)

    def gallery_features(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per gallery identity, the mean unit last-linear input and template under θ^t.

        The attacker holds θ^t and a gallery of faces, so it can match a leaked
        vector against people it knows, in the federated model's own feature
        space (each image alone through training-mode BatchNorm, as a
        one-image client batch would be).
        """
        if self._gallery is None:
            pooled, templates = [], []
            images = torch.from_numpy(self.split.gallery.images)
            with torch.no_grad():
                params = self.model.params()
                for i in range(len(images)):
                    h, t = features(self.model, params, images[i : i + 1], None)
                    pooled.append(torch.nn.functional.normalize(h, dim=1))
                    templates.append(t)
            labels = self.split.gallery.labels
            count = self.split.gallery.identities
            self._gallery = (
                torch.from_numpy(templates_of(torch.cat(pooled).numpy(), labels, count)).float(),
                torch.from_numpy(templates_of(torch.cat(templates).numpy(), labels, count)).float(),
            )
        return self._gallery

    def _template_quality(
        self, pooled: torch.Tensor, templates: torch.Tensor, labels: torch.Tensor, groups: int
    ) -> dict[str, float]:
        """How well the analytic leaks match the truth and re-identify in θ^t's feature space.

        ``pooled_cosine`` / ``template_cosine``: best cosine with a target's true
        vector. ``pooled_rank1``: the leaked last-linear input names one of the
        targets (it mixes the batch when B > 1), against ``pooled_rank1_chance``
        = share of gallery identities among the targets. ``template_rank1``:
        share of targets whose head row's template names them (a shared head's
        row index is the identity), against a blind guess, 1/G. With known
        projectors each template is rotated back by whichever client's
        projector fits the gallery best; without, it is used as is.
        """
        true_pooled, true_templates = self.truth(groups)
        targets = self.split.private.labels[self.client_rows(groups)].tolist()
        gallery_pooled, gallery_templates = self.gallery_features()
        identities = len(gallery_pooled)
        named = int(torch.argmax(torch.nn.functional.normalize(pooled, dim=1) @ gallery_pooled.T))
        out = {
            "pooled_cosine": float(
                torch.nn.functional.cosine_similarity(pooled, true_pooled, dim=1).max()
            ),
            "pooled_rank1": float(named in targets),
            "pooled_rank1_chance": len(set(targets)) / identities,
        }
        if len(templates):
            cos = templates @ true_templates.T
            out["template_cosine"] = float(cos.max(dim=0).values.mean())
            known: list[torch.Tensor] = []
            if self.config.projector == "known":
                dim = templates.shape[1]
                for k in range(1, groups + 1):
                    rotation = client_projector("known", dim, seed=self.config.seed, client=k)
                    assert rotation is not None
                    known.append(rotation)
            names: dict[int, int] = {}
            for t, label in zip(templates, labels.tolist(), strict=True):
                options = [t] if not known else [t @ p for p in known]
                scores = torch.stack([gallery_templates @ o for o in options])
                names[label] = int(torch.argmax(scores.max(dim=0).values))
            out["template_rank1"] = float(np.mean([names.get(y) == y for y in targets]))
            out["template_rank1_chance"] = 1.0 / identities
        return out


def _load(config: AuditConfig) -> FaceDataset:
    size = (config.image_size, config.image_size)
    try:
        return load_dataset(config.data, size=size)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot load --data {config.data!r}: {exc}") from exc


def client_updates(run: _Run, clients: int) -> list[np.ndarray]:
    """Each client's float upload at θ^t (clients 1..``clients``)."""
    cfg, model = run.config, run.model
    dim = model.margin.embedding_dim
    updates = []
    for k in range(1, clients + 1):
        x = run._images(k)
        rows = slice((k - 1) * cfg.batch_size, k * cfg.batch_size)
        if model.shared_head is not None:
            y = torch.from_numpy(run.split.private.labels[rows])
            head = model.shared_head
        else:
            y = torch.arange(cfg.batch_size)
            head = client_head(private_classes(cfg.batch_size), dim, seed=cfg.seed * 7919 + 100 + k)
        projector = client_projector(cfg.projector, dim, seed=cfg.seed, client=k)
        upload = model.update(model.params(), head, x, y, projector, create_graph=False)
        updates.append(upload.double().numpy())
    return updates


def run_audit(config: AuditConfig, *, progress: Progress | None = None) -> AuditResult:
    """The whole audit; ``progress`` gets one line per step (the CLI prints them to stderr)."""
    config.validate()
    say: Progress = progress or (lambda _: None)
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    ds = _load(config)
    n_max = max(config.clients)
    split = split_for_audit(ds, needed=n_max * config.batch_size, seed=config.seed)
    if config.batch_size > len(split.victims):
        raise ValueError(f"batch size {config.batch_size} exceeds the {len(split.victims)} victims")
    say(
        f"data {config.data}: {ds.identities} identities, {len(split.victims)} victims, "
        f"{len(split.private)} private images, {len(split.gallery)} gallery images"
    )
    say(f"training the evaluator ({config.evaluator_epochs} epochs on the gallery)")
    evaluator = train_evaluator(split.gallery, seed=config.seed + 1, epochs=config.evaluator_epochs)
    ceiling = float(np.mean(evaluator.rank1(split.private.images, split.private.labels)))
    say(f"evaluator rank-1 on the private images themselves: {ceiling:.2f}")
    generator = None
    if "gan" in config.attacks or "gan" in config.sum_attacks:
        public = len(split.public)
        say(f"training the GAN prior ({config.generator_steps} steps on {public} public images)")
        generator = train_generator(
            split.public.images, steps=config.generator_steps, seed=config.seed + 2
        )
    pick = np.random.default_rng(config.seed + 3).permutation(len(split.gallery))[:MAX_NULL_IMAGES]
    null = split.gallery.rows(np.sort(pick))
    channels = int(ds.images.shape[1])
    model = build_model(
        identities=ds.identities,
        head=config.head,
        steps=config.local_steps,
        lr=config.lr,
        seed=config.seed,
        image_size=config.image_size,
        channels=channels,
    )
    run = _Run(config, split, model, evaluator, generator, null, evaluator.embed(null.images), say)
    updates = client_updates(run, n_max)
    say(f"{n_max} client updates of {len(updates[0])} coordinates; running SecAgg rounds")
    views: dict[int, Views] = {
        n: build_views(updates[:n], seed=config.seed + n) for n in sorted(config.clients)
    }
    largest = views[n_max]

    individual = run.attack("individual", "individual", largest.individual, 1, config.attacks)
    masked = run.attack("masked", "masked", largest.masked, 1, config.attacks)
    masked.extra.update(
        {"chi2_p_masked": largest.chi2_p_masked, "chi2_p_unmasked": largest.chi2_p_plain}
    )
    sums = []
    for n in sorted(config.clients):
        view = run.attack(f"sum N={n}", f"sum of N={n}", views[n].total, n, config.sum_attacks)
        view.extra.update(
            {"clients": n, "n_times_b": n * config.batch_size, "protocol_sum_exact": views[n].exact}
        )
        sums.append(view)

    summary: dict[str, Any] = {
        "config": {**asdict(config), "clients": list(config.clients)},
        "data": {
            "source": config.data,
            "image_size": config.image_size,
            "identities": ds.identities,
            "victims": len(split.victims),
            "public_identities": ds.identities - len(split.victims),
            "private_images": len(split.private),
            "gallery_images": len(split.gallery),
            "chance_images": len(null),
        },
        "evaluator": {
            "backbone": "small-cnn",
            "embedding_dim": int(evaluator.templates.shape[1]),
            "epochs": config.evaluator_epochs,
            "rank1_on_private_images": ceiling,
        },
        "update_coordinates": len(updates[0]),
        "views": {
            "individual": individual.summary(),
            "masked": masked.summary(),
            "sum": {**sums[-1].summary(), "sweep": [s.summary() for s in sums]},
        },
        "statement": SUM_STATEMENT,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return AuditResult(summary, individual, masked, sums)
