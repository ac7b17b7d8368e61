"""`secagg experiment`: a whole federated face-recognition run in one process.

Clients train a shared backbone with private heads on disjoint identities:
FedAvg with private CosFace heads (methods.md §2), FedFace with the private
spreadout from a securely summed second moment (§5.3), or the private
projector (§7). The server step, written once, is
θ ← θ + Σ n_k Δ_k / Σ n_k, computed either in the clear (``plain``) or through
the in-memory SecAgg protocol (``secagg``: complete graph; ``secagg+``: a
Harary graph), which sees only masked vectors. Every mode clips each update
coordinate to [−clip, clip], so the modes differ only by quantisation; in the
secure modes each round also records the gap to the plaintext weighted mean
of the *same* updates against the documented bound. Held-out identities are
used for 10-fold verification after every round.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from clients.training.data import FaceDataset, all_pairs, load_dataset, partition_identities
from clients.training.evaluate import embed, save_checkpoint, verification
from clients.training.fedface import second_moment, spreadout_steps
from clients.training.flatten import flatten, spec_of, unflatten_into
from clients.training.heads import fedface_positive_loss, init_head_from_features, margin_head
from clients.training.models import build_backbone
from clients.training.train import TrainConfig, mean_features, resolve_device, train_local
from protocol.simulation import make_config, simulate
from secagg.errors import ParameterError

Mode = Literal["plain", "secagg", "secagg+"]
MODES: tuple[Mode, ...] = ("plain", "secagg", "secagg+")
ALGORITHMS = ("fedavg", "fedface", "projector")


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment; defaults run on CPU in about a minute on synthetic data."""

    algorithm: str = "fedavg"
    mode: Mode = "secagg"
    data: str = "synthetic"
    clients: int = 4
    rounds: int = 5
    local_epochs: int = 1
    backbone: str = "small-cnn"
    embedding_dim: int = 128
    image_size: tuple[int, int] = (32, 32)
    test_identities: int = 10
    heterogeneity: float = 0.0
    batch_size: int = 32
    lr: float = 0.02
    clip: float = 1.0
    levels: int = 1 << 16
    device: str = "auto"
    seed: int = 0
    out: str = "runs/experiment"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}")
        if self.algorithm not in ALGORITHMS:
            raise ParameterError(
                f"algorithm {self.algorithm!r} is not built yet (available: {ALGORITHMS})"
            )
        if self.clients < 2 or self.rounds < 1:
            raise ParameterError("need at least 2 clients and 1 round")


@dataclass
class RoundReport:
    """One round's figures."""

    round: int
    loss: float
    accuracy_mean: float
    accuracy_std: float
    tar_at_far: dict[str, float]
    train_s: float
    crypto_s: float
    bytes_up_per_client: float
    parity_max_abs_error: float | None = None
    parity_bound: float | None = None
    plain_step_accuracy: float | None = None  # θ + the plaintext mean of the same updates
    extra: dict[str, Any] = field(default_factory=dict)


def private_projector(dim: int, *, seed: int) -> torch.Tensor:
    """A client's private random orthogonal map (Ding et al.; methods.md §7).

    Never uploaded: the server sees only the shared backbone's update, so it
    cannot run the model forward as the client did. Orthogonal, so cosine
    geometry (what verification uses) is the same for every client.
    """
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    haar: torch.Tensor = q * torch.sign(torch.diagonal(r))  # Haar-distributed orthogonal
    return haar


Objective = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _objective(
    algorithm: str, head: torch.nn.Module, projector: torch.Tensor | None
) -> Objective | None:
    """The local loss when it is not the default (CE over the margin head)."""
    if algorithm == "fedface":  # positive-only, against the client's fixed class embeddings
        rows = _rows(head).detach()
        return lambda emb, y: fedface_positive_loss(emb, y, rows)
    if projector is not None:  # the private orthogonal map sits before the head
        return lambda emb, y: torch.nn.functional.cross_entropy(
            head(emb @ projector.T, y).float(), y
        )
    return None


def _rows(head: torch.nn.Module) -> torch.Tensor:
    """A margin head's class embeddings (classes, d)."""
    weight = head.weight
    assert isinstance(weight, torch.Tensor)
    return weight


def split_for_verification(
    ds: FaceDataset, test_identities: int, seed: int
) -> tuple[FaceDataset, FaceDataset]:
    """Hold out ``test_identities`` identities (seeded) for verification; train on the rest."""
    if not 0 < test_identities < ds.identities:
        raise ParameterError("test_identities must leave identities to train on")
    order = np.random.default_rng(seed).permutation(ds.identities)
    test = sorted(int(i) for i in order[:test_identities])
    train = sorted(int(i) for i in order[test_identities:])
    return ds.subset(train), ds.subset(test)


def evaluate(
    backbone: torch.nn.Module,
    test: FaceDataset,
    pairs: tuple[np.ndarray, ...],
    device: torch.device,
) -> dict[str, Any]:
    """10-fold verification on the held-out identities."""
    emb = embed(backbone, test.images, device=device)
    a, b, same = pairs
    return verification(emb, a, b, same).to_json()


def run_experiment(
    cfg: ExperimentConfig, *, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the experiment; writes report.json and checkpoint.pt under ``cfg.out``."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(cfg.data, size=cfg.image_size)
    train, test = split_for_verification(data, cfg.test_identities, cfg.seed)
    # Every genuine and impostor pair; verification() scores accuracy on a balanced,
    # seeded sample of them (chance 50%) and TAR@FAR on all, exactly as `secagg eval --data`.
    pairs = all_pairs(test, seed=cfg.seed)
    shards = partition_identities(
        train, cfg.clients, seed=cfg.seed, heterogeneity=cfg.heterogeneity
    )
    channels = data.images.shape[1]
    backbone = build_backbone(
        cfg.backbone,
        embedding_dim=cfg.embedding_dim,
        in_channels=channels,
        image_size=cfg.image_size[0],
    ).to(device)
    spec = spec_of(backbone)
    theta = flatten(backbone, spec)
    heads: dict[int, torch.nn.Module] = {}
    weights = {k: len(shard) for k, shard in enumerate(shards, 1)}
    progress(
        f"{cfg.algorithm}/{cfg.mode}: {cfg.clients} clients, {train.identities} training and "
        f"{test.identities} held-out identities, {spec.size} shared parameters, device {device}"
    )
    reports: list[RoundReport] = []
    fedface = cfg.algorithm == "fedface"
    projector = cfg.algorithm == "projector"
    projectors: dict[int, torch.Tensor] = {}
    dim_s = cfg.embedding_dim**2 if fedface else 0  # FedFace: S_k rides in the masked vector
    for r in range(cfg.rounds):
        updates: dict[int, np.ndarray] = {}
        losses = []
        start = time.perf_counter()
        for k, shard in enumerate(shards, 1):
            unflatten_into(backbone, spec, theta)
            if projector and k not in projectors:
                projectors[k] = private_projector(cfg.embedding_dim, seed=cfg.seed * 7919 + k).to(
                    device
                )
            if k not in heads:  # first participation: head rows = mean features (methods.md §2)
                heads[k] = margin_head("cosface", cfg.embedding_dim, shard.identities).to(device)
                feats, labels = mean_features(backbone, shard, device=device)
                if projector:
                    feats = feats.to(device) @ projectors[k].T
                init_head_from_features(heads[k], feats.to(device), labels.to(device))
            local = TrainConfig(
                epochs=cfg.local_epochs,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                seed=cfg.seed * 1000 + r * 100 + k,
            )
            objective = _objective(cfg.algorithm, heads[k], projectors.get(k))
            trained = train_local(
                backbone, heads[k], shard, local, device=device, objective=objective
            )
            losses.append(trained.loss)
            delta = np.clip(flatten(backbone, spec) - theta, -cfg.clip, cfg.clip)
            if fedface:  # S_k / n_k: |entries| ≤ |C_k| / n_k ≤ 1, and weight n_k restores S_k
                moment = second_moment(_rows(heads[k])).cpu().numpy().reshape(-1)
                delta = np.concatenate([delta, moment / weights[k]])
            updates[k] = delta
        train_s = time.perf_counter() - start
        total_w = sum(weights.values())
        plain_mean = np.asarray(sum(weights[k] * updates[k] for k in updates) / total_w)
        crypto_s, up, parity, bound = 0.0, 4.0 * spec.size, None, None
        if cfg.mode == "plain":
            mean = plain_mean
        else:
            config = make_config(
                clients=cfg.clients,
                dim=spec.size + dim_s,
                degree=None if cfg.mode == "secagg" else max(2, (cfg.clients - 1) // 2 * 2),
                clip=cfg.clip,
                levels=cfg.levels,
                max_weight=max(weights.values()),
                round_=r,
                seed=str(cfg.seed).encode(),
            )
            start = time.perf_counter()
            report = simulate(config, vectors=updates, weights=weights, seed=cfg.seed * 1000 + r)
            crypto_s = time.perf_counter() - start
            if report.result is None:
                raise RuntimeError(f"round {r} aborted: {report.abort_reason}")
            mean = report.result.weighted_mean()
            up = float(np.mean(list(report.bytes_up.values())))
            parity = float(np.max(np.abs(mean - plain_mean)))
            bound = config.quantizer.step  # Σ w·err / Σ w with |err| < one level per client
        shadow = None
        if cfg.mode != "plain":  # the same step in the clear: accuracy parity, round by round
            unflatten_into(backbone, spec, theta + plain_mean[: spec.size])
            shadow = float(evaluate(backbone, test, pairs, device)["accuracy_mean"])
        if fedface:  # S = Σ S_k goes back to the clients; each spreads its own rows out
            moment_sum = (
                torch.from_numpy(mean[spec.size :] * total_w)
                .float()
                .reshape(cfg.embedding_dim, cfg.embedding_dim)
            )
            for head in heads.values():
                rows = _rows(head)
                new_rows = spreadout_steps(rows.detach().cpu(), moment_sum)
                with torch.no_grad():
                    rows.copy_(new_rows.to(rows.device))
            mean, plain_mean = mean[: spec.size], plain_mean[: spec.size]
        theta = theta + mean
        unflatten_into(backbone, spec, theta)
        metrics = evaluate(backbone, test, pairs, device)
        row = RoundReport(
            round=r,
            loss=float(np.mean(losses)),
            accuracy_mean=metrics["accuracy_mean"],
            accuracy_std=metrics["accuracy_std"],
            tar_at_far=metrics["tar_at_far"],
            train_s=train_s,
            crypto_s=crypto_s,
            bytes_up_per_client=up,
            parity_max_abs_error=parity,
            parity_bound=bound,
            plain_step_accuracy=shadow,
        )
        reports.append(row)
        progress(
            f"round {r}: loss {row.loss:.3f}  verification {row.accuracy_mean:.3f}±"
            f"{row.accuracy_std:.3f}  TAR@FAR=1e-2 {row.tar_at_far.get('1e-2', float('nan')):.3f}  "
            f"train {train_s:.1f}s crypto {crypto_s:.1f}s"
            + (f"  parity {parity:.1e} ≤ {bound:.1e}" if parity is not None else "")
        )
    meta = {
        "backbone": cfg.backbone,
        "embedding_dim": cfg.embedding_dim,
        "in_channels": channels,
        "image_size": cfg.image_size[0],
        "data_size": list(cfg.image_size),
    }
    save_checkpoint(out / "checkpoint.pt", backbone, meta)
    # The held-out identities, so `secagg eval --data heldout.npz` re-scores exactly them.
    np.savez_compressed(
        out / "heldout.npz",
        images=np.transpose(test.images, (0, 2, 3, 1)),
        labels=test.labels,
        names=np.array(test.names),
    )
    result = {
        "config": asdict(cfg),
        "shared_parameters": spec.size,
        "held_out_identities": test.identities,
        "verification_pairs": int(pairs[2].size),
        "rounds": [asdict(row) for row in reports],
        "final": asdict(reports[-1]),
        "checkpoint": str(out / "checkpoint.pt"),
        "heldout": str(out / "heldout.npz"),
    }
    (out / "report.json").write_text(json.dumps(result, indent=2))
    return result
