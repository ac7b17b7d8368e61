"""`secagg bench mask`: one round of masking in memory, timed per party.

Clients get float updates (so quantisation is part of their work, as in a
real round); ``dropout`` of them go silent after sharing their keys, the
costly case for the server (their mask keys are rebuilt and the orphaned
pairwise masks removed).
"""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np

from protocol.build import make_config
from protocol.config import Profile
from protocol.runner import run_round
from protocol.simulation import SimulationReport
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource


def measure(
    *,
    clients: int,
    dim: int,
    degree: int | None = None,
    dropout: float = 0.0,
    repeat: int = 1,
    profile: Profile = "active",
    levels: int = 1 << 16,
    threshold: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``repeat`` rounds; :func:`run`'s dict plus the server's time over every phase.

    ``server_total_s`` adds the summing of masked inputs as they arrive, the
    routing of keys and shares and the unmasking: the whole server cost of a
    round, which `secagg bench suite` reports.
    """
    if not 0.0 <= dropout < 1.0:
        raise ParameterError("dropout must be in [0, 1)")
    n_drop = round(dropout * clients)
    rng = DeterministicRandomSource(seed)
    update = (np.frombuffer(rng.random_bytes(8 * dim), dtype="<u8") / 2.0**64) * 2 - 1
    vectors = {c: update for c in range(1, clients + 1)}  # content does not change the cost
    client_s: list[float] = []
    unmask_s: list[float] = []
    server_s: list[float] = []
    total_s: list[float] = []
    up: list[float] = []
    down: list[float] = []
    config = None
    for r in range(repeat):
        config = make_config(
            clients=clients,
            dim=dim,
            degree=degree,
            profile=profile,
            levels=levels,
            threshold=threshold,
            round_=r,
            seed=seed.to_bytes(8, "little"),
        )
        start = time.perf_counter()
        report: SimulationReport = run_round(
            "secagg+" if degree is not None and degree < clients - 1 else "secagg",
            config,
            vectors=vectors,
            drops={"masked": n_drop} if n_drop else None,
            seed=seed * 1000 + r,
            clock=time.perf_counter,
        ).detail
        total_s.append(time.perf_counter() - start)
        if not report.completed:
            raise ParameterError(f"round aborted: {report.abort_reason}")
        dropped = {c for ids in report.dropped.values() for c in ids}
        finishers = [c for c in config.clients if c not in dropped]
        client_s += [report.client_seconds[c] for c in finishers]
        unmask_s.append(report.timings["unmask"]["server_s"])
        server_s.append(sum(t.get("server_s", 0.0) for t in report.timings.values()))
        up += [report.bytes_up[c] for c in finishers]
        down += [report.bytes_down[c] for c in finishers]
    assert config is not None
    bytes_up = statistics.mean(up)
    return {
        "clients": clients,
        "dim": dim,
        "degree": config.degree if config.degree is not None else clients - 1,
        "graph": "complete" if config.degree is None or config.degree >= clients - 1 else "harary",
        "threshold": config.threshold,
        "profile": profile,
        "dropout": n_drop / clients,
        "modulus_bits": config.modulus_bits,
        "quantization_levels": levels,
        "repeat": repeat,
        "client_mask_s": statistics.median(client_s),
        "server_unmask_s": statistics.median(unmask_s),
        "round_in_memory_s": statistics.median(total_s),
        "bytes_up_per_client": bytes_up,
        "bytes_down_per_client": statistics.mean(down),
        "expansion_vs_fp32": bytes_up / (4 * dim),
        "server_total_s": statistics.median(server_s),
    }


#: Keys :func:`measure` adds to :func:`run`'s output.
EXTRA_KEYS = ("server_total_s",)


def run(
    *,
    clients: int,
    dim: int,
    degree: int | None = None,
    dropout: float = 0.0,
    repeat: int = 1,
    profile: Profile = "active",
    levels: int = 1 << 16,
    threshold: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Run ``repeat`` rounds; returns one JSON-ready dict of medians."""
    result = measure(
        clients=clients,
        dim=dim,
        degree=degree,
        dropout=dropout,
        repeat=repeat,
        profile=profile,
        levels=levels,
        threshold=threshold,
        seed=seed,
    )
    return {k: v for k, v in result.items() if k not in EXTRA_KEYS}
