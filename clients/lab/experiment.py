"""`secagg experiment`: a whole federated face-recognition run in one process.

Clients train a shared backbone with private heads on disjoint identities:
FedAvg with private CosFace heads (methods.md §2), FedFace with the private
spreadout from a securely summed second moment (§5.3), the private projector
(§7), FedGC (§3: private FedGC-DPC by default, or the published server-side
correction as the labelled *trusted aggregator* reference) and PrivacyFace
(§4: DPLC-LSH clusters with zCDP accounting and the consensus-aware loss);
:mod:`clients.lab.method_hooks` holds what each adds to FedAvg. Local training can
be DP-SGD (Opacus, ε per client per round). The server step, written once,
is θ ← θ + Σ n_k Δ_k / Σ n_k; :func:`aggregate` is the one place that
computes the weighted mean for a mode: in the clear (``plain``), through the
in-memory SecAgg protocol (``secagg``: complete graph; ``secagg+``: a Harary
graph), which sees only masked vectors, through the in-memory CKKS round
(``ckks``), which sees only ciphertexts, or through the hybrid round
(``bfv-masked``: SecAgg masks inside BFV plaintexts). Every mode clips each update
coordinate to [−clip, clip], so the modes differ only by quantisation or
CKKS noise; in the secure modes each round also records the gap to the
plaintext weighted mean of the *same* updates against the documented bound.
Held-out identities are used for 10-fold verification after every round.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clients.lab.distributed_dp import Aggregate, DistributedDp, DpOptions
from clients.lab.method_hooks import HEAD_M, HEAD_S, METHODS, MethodSettings, private_projector
from clients.training.data import (
    FaceDataset,
    all_pairs,
    load_dataset,
    partition_identities,
    split_for_verification,
)
from clients.training.dpsgd import ClientAccountant, DpSgdConfig, dp_backbone, train_local_dp
from clients.training.evaluate import embed, save_checkpoint, verification
from clients.training.flatten import flatten, spec_of, unflatten_into
from clients.training.heads import init_head_from_features, margin_head
from clients.training.models import build_backbone
from clients.training.train import TrainConfig, mean_features, resolve_device, train_local
from protocol.build import he_config, he_masked_config
from protocol.config import RoundConfig
from protocol.method_messages import server_step
from protocol.modes import build_config, names
from protocol.policy import Mode
from protocol.runner import run_round
from secagg.errors import ParameterError

MODES: tuple[str, ...] = names("experiment")
ALGORITHMS = tuple(METHODS)
__all__ = ["ALGORITHMS", "MODES", "ExperimentConfig", "aggregate", "private_projector"]

#: CKKS parity bound on the weighted mean: T49's documented precision (security.md, N2).
CKKS_PARITY_BOUND = 1e-6


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
    # DP-SGD in local training (Opacus): off while dp_sgd_noise is 0.
    dp_sgd_noise: float = 0.0
    dp_sgd_clip: float = 1.0
    dp_sgd_delta: float = 1e-5
    # PrivacyFace / FedGC-DPC: the DPLC-LSH budget per client over the whole run.
    dplc_epsilon: float = 8.0
    # FedFace: the (ε, δ = 1e-5) of each client's noisy S_k over the whole run.
    fedface_epsilon: float = 1.0
    dplc_delta: float = 1e-5
    dplc_bits: int = 3
    dplc_clusters: int = 4
    fedgc_lambda: float = 1.0
    # Distributed DP (secagg.dp, clients.lab.distributed_dp): off while both are 0.
    dp_epsilon: float = 0.0
    dp_noise_multiplier: float = 0.0
    dp_clip: float = 1.0
    dp_delta: float = 1e-5
    dp_colluders: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ParameterError(f"mode must be one of {MODES}")
        if self.algorithm not in ALGORITHMS:
            raise ParameterError(
                f"algorithm {self.algorithm!r} is not built yet (available: {ALGORITHMS})"
            )
        if self.clients < 2 or self.rounds < 1:
            raise ParameterError("need at least 2 clients and 1 round")
        if self.dp_sgd_noise < 0:
            raise ParameterError("dp_sgd_noise must be ≥ 0 (0 turns DP-SGD off)")
        if self.dp_sgd_noise > 0 and self.algorithm in ("fedface", "projector"):
            raise ParameterError("DP-SGD runs with the margin-softmax methods only")
        self.dp.check(mode=self.mode, clients=self.clients)

    @property
    def dp(self) -> DpOptions:
        """The distributed-DP options (``dp.enabled`` says whether it is on)."""
        return DpOptions(
            epsilon=self.dp_epsilon,
            noise_multiplier=self.dp_noise_multiplier,
            clip=self.dp_clip,
            delta=self.dp_delta,
            colluders=self.dp_colluders,
        )

    @property
    def dp_sgd(self) -> DpSgdConfig | None:
        """The DP-SGD settings, or None when local training is not private."""
        if self.dp_sgd_noise == 0:
            return None
        return DpSgdConfig(self.dp_sgd_noise, self.dp_sgd_clip, self.dp_sgd_delta)


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


def aggregate(
    mode: str,
    updates: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    *,
    clip: float,
    levels: int,
    round_: int,
    seed: int,
) -> Aggregate:
    """Σ n_k Δ_k / Σ n_k for ``mode``: the single place where updates meet the aggregation.

    Every secure mode also returns the gap to the plaintext mean of the same
    updates and the bound it must stay under.
    """
    total = sum(weights[k] for k in updates)
    plain_mean = np.asarray(sum(weights[k] * updates[k] for k in updates) / total)
    if mode == "plain":
        return Aggregate(plain_mean, plain_mean, bytes_up_per_client=4.0 * plain_mean.size)
    start = time.perf_counter()
    if mode in ("secagg", "secagg+"):
        mean, up, bound = _masked_mean(mode, updates, weights, clip, levels, round_, seed)
    elif mode == "ckks":
        mean, up, bound = _ckks_mean(updates, weights, clip, levels, round_, seed)
    elif mode == "bfv-masked":
        mean, up, bound = _bfv_masked_mean(updates, weights, clip, levels, round_, seed)
    else:
        raise ParameterError(f"mode must be one of {MODES}")
    crypto_s = time.perf_counter() - start
    parity = float(np.max(np.abs(mean - plain_mean))) if mean.size else 0.0
    return Aggregate(mean, plain_mean, crypto_s, up, parity, bound)


def _masked_mean(
    mode: str,
    updates: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    clip: float,
    levels: int,
    round_: int,
    seed: int,
) -> tuple[np.ndarray, float, float]:
    """SecAgg (complete graph) or SecAgg+ (Harary graph) over the in-memory transport."""
    config = build_config(
        mode,  # secagg+: the lab's degree, the largest even k < n
        clients=len(updates),
        dim=next(iter(updates.values())).size,
        clip=clip,
        levels=levels,
        max_weight=max(weights.values()),
        round_=round_,
        seed=str(seed).encode(),
    )
    assert isinstance(config, RoundConfig)
    vectors = dict(enumerate((updates[k] for k in sorted(updates)), 1))
    by_slot = dict(enumerate((weights[k] for k in sorted(updates)), 1))
    report = run_round(mode, config, vectors=vectors, weights=by_slot, seed=seed * 1000 + round_)
    if report.mean is None:
        raise RuntimeError(f"round {round_} aborted: {report.abort_reason}")
    up = float(np.mean(list(report.bytes_up.values())))
    # Σ w·err / Σ w with |err| < one level per client.
    return report.mean, up, config.quantizer.step


def _ckks_mean(
    updates: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    clip: float,
    levels: int,
    round_: int,
    seed: int,
) -> tuple[np.ndarray, float, float]:
    """The in-memory CKKS round: the aggregator adds ciphertexts, clients decrypt the mean."""
    from secagg.rng import DeterministicRandomSource

    rng = DeterministicRandomSource(f"experiment/ckks/{seed}/{round_}")
    cohort = tuple(range(1, len(updates) + 1))
    vectors = dict(zip(cohort, (updates[k] for k in sorted(updates)), strict=True))
    slot_weights = dict(zip(cohort, (weights[k] for k in sorted(updates)), strict=True))
    config = he_config(
        clients=len(cohort),
        dim=next(iter(vectors.values())).size,
        scheme="ckks",
        clip=clip,
        max_weight=max(slot_weights.values()),
        levels=levels,
        round_=round_,
        nonce=rng.random_bytes(32),
        model_hash=hashlib.sha256(f"experiment/{seed}/{round_}".encode()).digest(),
    )
    # The runner draws the signing keys from rng, after the nonce.
    report = run_round("ckks", config, vectors=vectors, weights=slot_weights, rng=rng)
    if not report.completed or 1 not in report.results:
        raise RuntimeError(f"round {round_} aborted: {report.abort_reason}")
    return report.results[1], float(report.upload_bytes), CKKS_PARITY_BOUND


def _bfv_masked_mean(
    updates: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    clip: float,
    levels: int,
    round_: int,
    seed: int,
) -> tuple[np.ndarray, float, float]:
    """The in-memory hybrid round: SecAgg masks inside BFV plaintexts (protocol.he_masked).

    BFV's plain modulus t (about 2^20) must hold Σ w·q(x) without wrapping, so
    weights are divided by their gcd (the mean is unchanged) and the levels
    are cut to the most that fit (he.most_bfv_levels); the bound is one level.
    """
    from secagg import he
    from secagg.primitives.signing import signing_key
    from secagg.quantization import Quantizer, quantize
    from secagg.rng import DeterministicRandomSource

    cohort = tuple(range(1, len(updates) + 1))
    common = math.gcd(*(weights[k] for k in updates))
    slot_weights = dict(zip(cohort, (weights[k] // common for k in sorted(updates)), strict=True))
    widest = max(slot_weights.values())
    fit = he.most_bfv_levels(he.BFV_8192, clients=len(cohort), max_weight=widest, at_most=levels)
    rng = DeterministicRandomSource(f"experiment/bfv-masked/{seed}/{round_}")
    config = he_masked_config(
        clients=len(cohort),
        dim=next(iter(updates.values())).size,
        clip=clip,
        levels=fit,
        max_weight=widest,
        round_=round_,
        nonce=rng.random_bytes(32),
        model_hash=hashlib.sha256(f"experiment/{seed}/{round_}".encode()).digest(),
    )
    quantizer = Quantizer(clip, fit)
    vectors = dict(zip(cohort, (updates[k] for k in sorted(updates)), strict=True))
    ints = {c: quantize(vectors[c], quantizer, rng=rng) for c in cohort}
    keys = {c: signing_key(rng) for c in cohort}
    report = run_round(
        "bfv-masked", config, levels=ints, weights=slot_weights, roster_keys=keys, rng=rng
    )
    if not report.completed or 1 not in report.results:
        raise RuntimeError(f"round {round_} aborted: {report.abort_reason}")
    return report.results[1], float(report.upload_bytes), quantizer.step


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
    )
    dp_sgd = cfg.dp_sgd
    # Every party builds the same GroupNorm model (Opacus' fixer); under distributed DP
    # too, where noisy BatchNorm running variances could turn negative.
    if dp_sgd is not None or cfg.dp.enabled:
        backbone = dp_backbone(backbone)
    backbone = backbone.to(device)
    spec = spec_of(backbone)
    theta = flatten(backbone, spec)
    heads: dict[int, torch.nn.Module] = {}
    accountants: dict[int, ClientAccountant] = {}
    weights = {k: len(shard) for k, shard in enumerate(shards, 1)}
    method = METHODS[cfg.algorithm](
        MethodSettings(
            embedding_dim=cfg.embedding_dim,
            rounds=cfg.rounds,
            seed=cfg.seed,
            lr=cfg.lr,
            dplc_epsilon=cfg.dplc_epsilon,
            dplc_delta=cfg.dplc_delta,
            dplc_bits=cfg.dplc_bits,
            dplc_clusters=cfg.dplc_clusters,
            fedgc_lambda=cfg.fedgc_lambda,
            fedface_epsilon=cfg.fedface_epsilon,
        )
    )
    trusted = cfg.algorithm == "fedgc-reference"
    label = "[TRUSTED AGGREGATOR] " if trusted else ""
    progress(
        f"{label}{cfg.algorithm}/{cfg.mode}: {cfg.clients} clients, {train.identities} training "
        f"and {test.identities} held-out identities, {spec.size} shared parameters, "
        f"device {device}" + (f"; DP-SGD σ={dp_sgd.noise_multiplier}" if dp_sgd else "")
    )
    progress(f"{label}trust: {method.trust}")
    ddp = None
    if cfg.dp.enabled:  # clients clip and add discrete Gaussian shares before masking
        ddp = DistributedDp.start(
            cfg.dp, mode=cfg.mode, clients=cfg.clients, rounds=cfg.rounds, dim=spec.size
        )
        progress(f"distributed DP: {ddp.summary()}")
    reports: list[RoundReport] = []
    for r in range(cfg.rounds):
        updates: dict[int, np.ndarray] = {}
        losses = []
        start = time.perf_counter()
        for k, shard in enumerate(shards, 1):
            unflatten_into(backbone, spec, theta)
            if k not in heads:
                heads[k] = margin_head(
                    "cosface", cfg.embedding_dim, shard.identities, s=HEAD_S, m=HEAD_M
                ).to(device)
                if dp_sgd is None:  # first participation: rows = mean features (methods.md §2)
                    feats, labels = mean_features(backbone, shard, device=device)
                    feats = method.features(k, feats.to(device))
                    init_head_from_features(heads[k], feats, labels.to(device))
                # Under DP-SGD the rows start random: a data-dependent init would not be private.
            local = TrainConfig(
                epochs=cfg.local_epochs,
                batch_size=cfg.batch_size,
                lr=cfg.lr,
                seed=cfg.seed * 1000 + r * 100 + k,
            )
            if dp_sgd is not None:
                accountants.setdefault(k, ClientAccountant(dp_sgd.delta)).start_round()
                trained = train_local_dp(
                    backbone,
                    heads[k],
                    shard,
                    local,
                    dp_sgd,
                    accountants[k],
                    device=device,
                    extra_logits=method.extra_negatives(k, device),
                )
            else:
                objective = method.objective(k, heads[k])
                trained = train_local(
                    backbone, heads[k], shard, local, device=device, objective=objective
                )
            losses.append(trained.loss)
            delta = np.clip(flatten(backbone, spec) - theta, -cfg.clip, cfg.clip)
            updates[k] = np.concatenate([delta, method.upload_extra(k, heads[k], weights[k])])
            method.release(k, heads[k], r)
        train_s = time.perf_counter() - start
        if ddp is not None:  # unweighted noisy mean; plain_mean = the same without noise
            agg = ddp.aggregate(updates, round_=r, seed=cfg.seed)
        else:
            agg = aggregate(
                cfg.mode,
                updates,
                weights,
                clip=cfg.clip,
                levels=cfg.levels,
                round_=r,
                seed=cfg.seed,
            )
        shadow = None
        if cfg.mode != "plain" or ddp is not None:  # the same step in the clear (without DP)
            unflatten_into(backbone, spec, theta + agg.plain_mean[: spec.size])
            shadow = float(evaluate(backbone, test, pairs, device)["accuracy_mean"])
        # The server step, for every method and mode (the gRPC coordinator calls it too).
        step, extra_sum = server_step(agg.mean, spec.size, sum(weights.values()))
        theta = theta + step
        extra = method.after_round(extra_sum, heads, r)
        extra["bytes_clear_per_client"] = method.clear_bytes(heads)
        if ddp is not None:
            extra.update(ddp.last)
        if dp_sgd is not None:
            extra["dp_sgd_epsilon"] = {str(k): a.epsilon() for k, a in accountants.items()}
            extra["dp_sgd_epsilon_round"] = {
                str(k): a.round_epsilon() for k, a in accountants.items()
            }
            extra["dp_sgd_delta"] = dp_sgd.delta
        unflatten_into(backbone, spec, theta)
        metrics = evaluate(backbone, test, pairs, device)
        row = RoundReport(
            round=r,
            loss=float(np.mean(losses)),
            accuracy_mean=metrics["accuracy_mean"],
            accuracy_std=metrics["accuracy_std"],
            tar_at_far=metrics["tar_at_far"],
            train_s=train_s,
            crypto_s=agg.crypto_s,
            bytes_up_per_client=agg.bytes_up_per_client,
            parity_max_abs_error=agg.parity_max_abs_error,
            parity_bound=agg.parity_bound,
            plain_step_accuracy=shadow,
            extra=extra,
        )
        reports.append(row)
        parity, bound = agg.parity_max_abs_error, agg.parity_bound
        privacy = ""
        if "dplc_epsilon" in extra:
            privacy += f"  DPLC ε {max(extra['dplc_epsilon'].values()):.2f}"
        if "fedface_epsilon" in extra:
            privacy += f"  S ε {extra['fedface_epsilon']:.2f}"
        if "dp_sgd_epsilon" in extra:
            privacy += f"  DP-SGD ε {max(extra['dp_sgd_epsilon'].values()):.2f}"
        if "dp_epsilon" in extra:
            privacy += f"  DDP ε {extra['dp_epsilon']:.2f} (round {extra['dp_epsilon_round']:.2f})"
        progress(
            f"{label}round {r}: loss {row.loss:.3f}  verification {row.accuracy_mean:.3f}±"
            f"{row.accuracy_std:.3f}  TAR@FAR=1e-2 {row.tar_at_far.get('1e-2', float('nan')):.3f}  "
            f"train {train_s:.1f}s crypto {agg.crypto_s:.1f}s"
            + (f"  parity {parity:.1e} ≤ {bound:.1e}" if parity is not None else "")
            + privacy
        )
    meta = {
        "backbone": cfg.backbone,
        "embedding_dim": cfg.embedding_dim,
        "in_channels": channels,
        "image_size": cfg.image_size[0],
        "data_size": list(cfg.image_size),
    }
    if dp_sgd is not None or cfg.dp.enabled:
        meta["norm"] = "groupnorm"  # Opacus' fixer swapped BatchNorm; `secagg eval` does too
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
        "trust": method.trust,
        "distributed_dp": ddp.summary() if ddp is not None else None,
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
