"""`secagg bench he --masked`: the hybrid HE mode (bfv-masked), timed per party.

The round is :mod:`clients.lab.he_masked_sim`'s (the one `simulate --mode
bfv-masked` runs), on ``secagg_bench.he``'s data (updates ``base +
shift(client)``, weights in [10, 100]) so ``max_abs_error`` compares with the
other schemes and NVIDIA FLARE; levels are the most the cohort allows under t
(he.check_bfv).
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

from clients.lab.he_masked_sim import make_he_masked_config, max_error, timed_round
from secagg import he
from secagg.errors import ParameterError
from secagg_bench.he import MAX_WEIGHT, _client_update


def run(clients: int, dim: int, *, seed: int = 0) -> dict[str, Any]:
    """`bench he --scheme bfv --masked`: the real hybrid round, timed per party."""
    levels = he.most_bfv_levels(he.BFV_8192, clients=clients, max_weight=MAX_WEIGHT)
    config = make_he_masked_config(clients, dim, levels=levels, max_weight=MAX_WEIGHT, seed=seed)
    rs = np.random.default_rng(seed)
    base = (rs.standard_normal(dim) * 0.05).astype(np.float32)
    drawn = rs.integers(10, MAX_WEIGHT + 1, size=clients)
    weights = {c: int(w) for c, w in zip(config.clients, drawn, strict=True)}
    vectors = {c: _client_update(base, c - 1).astype(np.float64) for c in config.clients}
    report, seconds = timed_round(config, vectors, weights, {}, seed)
    if not report.completed:
        raise ParameterError(f"the hybrid round aborted: {report.abort_reason}")
    per_client = report.client_seconds
    return {
        "impl": "secagg.he_masked",
        "scheme": "bfv",
        "masked": True,
        "params": repr(config.params),
        "d": dim,
        "N": clients,
        "threshold": config.threshold,
        "levels": levels,
        "ciphertexts_per_client": he.chunk_count(config.params, config.vector_length),
        # Mask expansion (N masks of D + 1 residues mod t) + BFV encryption + signing.
        "encrypt_s": statistics.median(per_client["masked"].values()),
        "key_ceremony_s": per_client["share"].get(config.key_holder, 0.0),
        "upload_bytes_per_client": report.upload_bytes,
        "bytes_per_param": report.upload_bytes / dim,
        "expansion_vs_fp32": report.upload_bytes / (4 * dim),
        # Checking and adding all N uploads.
        "aggregate_s": report.server_receive_s["masked"],
        "aggregate_s_per_client": report.server_receive_s["masked"] / clients,
        # Shamir recovery, the correction vector mod t, the plaintext add, the sum's bytes.
        "unmask_s": report.server_advance_s["unmask"],
        "decrypt_s": statistics.median(per_client["result"].values()),
        "round_s": seconds,
        "exact_sum": report.exact,
        "max_abs_error": max_error(report, vectors, weights),
    }
