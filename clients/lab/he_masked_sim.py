"""`secagg simulate --mode bfv-masked`: one real hybrid round in memory.

Runs :func:`protocol.he_masked.run_he_masked_round` for real: signed key
agreement, Shamir shares, masks mod t, BFV encryption, the server's checked
sum, Shamir recovery and mask removal under encryption, and every surviving
client's decryption. Nothing is reused between clients. Inputs are uniform in
[−1, 1], weights 1..10, drops optional; the summary reports the error against
the float64 weighted mean of the survivors' inputs and whether the decrypted
integer sum is exact. ``secagg bench he --masked`` times the same round.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from protocol.build import he_masked_config
from protocol.he_masked import PHASES, HEMaskedConfig, HEMaskedReport
from protocol.runner import run_round
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.quantization import Quantizer, quantize
from secagg.rng import DeterministicRandomSource, uniform_below


def make_he_masked_config(
    clients: int, dim: int, *, levels: int, max_weight: int, seed: int
) -> HEMaskedConfig:
    """A valid hybrid config with SecAgg's default safe threshold for the cohort."""
    return he_masked_config(
        clients=clients,
        dim=dim,
        levels=levels,
        max_weight=max_weight,
        nonce=hashlib.sha256(f"he-masked/nonce/{seed}".encode()).digest(),
        model_hash=hashlib.sha256(f"he-masked/model/{seed}".encode()).digest(),
    )


def pick_drops(
    config: HEMaskedConfig, counts: Mapping[str, int], seed: int
) -> dict[str, list[int]]:
    """Random distinct clients (never the key holder) for each phase's drop count."""
    rng = DeterministicRandomSource(f"he-masked/drops/{seed}")
    pool = [c for c in config.clients if c != config.key_holder]
    out: dict[str, list[int]] = {}
    for phase in PHASES:
        for _ in range(counts.get(phase, 0)):
            if not pool:
                raise ParameterError("more drops than clients (the key holder never drops here)")
            out.setdefault(phase, []).append(pool.pop(int(uniform_below(rng, len(pool), 1)[0])))
    return out


def timed_round(
    config: HEMaskedConfig,
    vectors: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    drops: Mapping[str, list[int]],
    seed: int,
) -> tuple[HEMaskedReport, float]:
    rng = DeterministicRandomSource(f"he-masked/round/{seed}")
    keys: dict[int, SigningKey] = {c: signing_key(rng) for c in config.clients}
    quantizer = Quantizer(config.clip, config.levels)
    levels = {c: quantize(vectors[c], quantizer, rng=rng) for c in config.clients}
    start = time.perf_counter()
    report = run_round(
        "bfv-masked",
        config,
        levels=levels,
        weights=weights,
        roster_keys=keys,
        rng=rng,
        drops=drops,
        clock=time.perf_counter,
    )
    detail: HEMaskedReport = report.detail
    return detail, time.perf_counter() - start


def max_error(
    report: HEMaskedReport, vectors: Mapping[int, np.ndarray], weights: Mapping[int, int]
) -> float | None:
    """Max |decrypted mean − float64 weighted mean of the survivors' inputs| over clients."""
    if not report.results:
        return None
    den = sum(weights[c] for c in report.survivors)
    expected = sum(weights[c] * vectors[c].astype(np.float64) for c in report.survivors) / den
    return max(float(np.max(np.abs(r - expected))) for r in report.results.values())


def simulate(
    clients: int, dim: int, *, drops: Mapping[str, int] | None = None, seed: int = 0
) -> dict[str, Any]:
    """One hybrid round with uniform inputs; a JSON-ready summary."""
    config = make_he_masked_config(clients, dim, levels=1 << 16, max_weight=10, seed=seed)
    rng = DeterministicRandomSource(f"he-masked/inputs/{seed}")
    vectors = {
        c: np.frombuffer(rng.random_bytes(8 * dim), "<u8") / 2.0**64 * 2 - 1 for c in config.clients
    }
    weights = {c: 1 + c % 10 for c in config.clients}
    plan = pick_drops(config, drops or {}, seed)
    report, seconds = timed_round(config, vectors, weights, plan, seed)
    bound = Quantizer(config.clip, config.levels).error_bound(1, "stochastic")
    return {
        "mode": "bfv-masked",
        "clients": clients,
        "dim": dim,
        "threshold": config.threshold,
        "key_holder": config.key_holder,
        "plain_modulus": config.params.plain_modulus,
        "levels": config.levels,
        "completed": report.completed,
        "abort_reason": report.abort_reason,
        "exact_sum": report.exact,
        "survivors": list(report.survivors),
        "clients_with_result": sorted(report.results),
        "dropped": {p: ids for p, ids in report.dropped.items() if ids},
        "rejections": [{"client": c, "error": e} for c, e in report.rejections],
        "max_abs_error_vs_weighted_mean": max_error(report, vectors, weights),
        "quantisation_bound": bound,
        "upload_bytes_per_client": report.upload_bytes,
        "bytes_per_param": report.upload_bytes / dim,
        "seconds": seconds,
    }
