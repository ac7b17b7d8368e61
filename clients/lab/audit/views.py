"""The aggregator's three views of a round, produced by the real protocol machines.

- ``individual``: client 1's float update, what plain FedAvg sends;
- ``masked``: the payload client 1's :class:`~protocol.client.ClientMachine`
  actually sends in a SecAgg round, unpacked and dequantised as if it were an
  unmasked upload (what an attacker would try);
- ``total``: the sum the :class:`~protocol.server.ServerMachine` unmasks at
  the end of that round, dequantised.

The round runs in memory with the lab's client policy (active profile,
signed keys, the threshold make_config plans), through the lab's round runner
(:func:`protocol.runner.run_round`), like ``secagg simulate``. Updates are
quantised to the nearest level before masking, so the unmasked total can be
checked for exact equality with the sum of the clients' levels.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from protocol.config import RoundConfig
from protocol.messages import MaskedInput
from protocol.modes import build_config
from protocol.runner import run_round
from protocol.server import AggregateResult
from secagg.packing import unpack
from secagg.quantization import Quantizer, dequantize, quantize

#: Fixed-point levels: fine enough that quantisation does not help the defence.
DEFAULT_LEVELS = 1 << 24


@dataclass(frozen=True, eq=False)
class SecureRound:
    """One completed in-memory SecAgg round: every masked payload as sent, and the result."""

    uploads: dict[int, bytes]
    result: AggregateResult
    quantizer: Quantizer
    modulus_bits: int
    exact: bool  # the unmasked total equals Σ of the clients' levels


@dataclass(frozen=True, eq=False)
class Views:
    """What the aggregator sees of client 1 and of the whole cohort."""

    clients: int
    individual: np.ndarray
    masked: np.ndarray
    total: np.ndarray
    exact: bool
    chi2_p_masked: float  # uniformity of the masked words (high = looks uniform)
    chi2_p_plain: float  # the same test on client 1's unmasked levels


def power_of_two_clip(updates: Sequence[np.ndarray]) -> float:
    """The smallest power of two ≥ every |coordinate|: a public clip that clips nothing."""
    peak = max(float(np.max(np.abs(u))) for u in updates)
    return float(2.0 ** math.ceil(math.log2(peak))) if peak > 0 else 1.0


def secure_round(levels: Sequence[np.ndarray], *, quantizer: Quantizer, seed: int) -> SecureRound:
    """Run SecAgg over clients 1..N holding ``levels`` (integer levels of ``quantizer``).

    Raises ``ValueError`` if a client refuses the round or the round aborts.
    """
    n = len(levels)
    dim = int(levels[0].shape[0])
    tag = seed.to_bytes(8, "little", signed=True)
    config = build_config(
        "secagg",
        clients=n,
        dim=dim,
        clip=quantizer.clip,
        levels=quantizer.levels,
        seed=b"audit" + tag,
    )
    assert isinstance(config, RoundConfig)
    uploads: dict[int, bytes] = {}

    def keep_upload(client: int, msg: object) -> None:
        if isinstance(msg, MaskedInput):
            uploads[client] = msg.payload

    report = run_round(
        "secagg",
        config,
        levels=dict(zip(config.clients, levels, strict=True)),
        seed=hashlib.sha256(b"audit-round" + tag).digest(),
        tap=keep_upload,
    )
    result = report.detail.result
    if not report.completed or result is None:
        raise ValueError(f"the SecAgg round aborted: {report.abort_reason} {report.rejections}")
    expected = np.sum(np.stack([lv.astype(np.uint64) for lv in levels]), axis=0)
    exact = bool(np.array_equal(result.total.astype(np.uint64), expected))
    return SecureRound(uploads, result, quantizer, config.modulus_bits, exact)


def chi2_uniform_p(words: np.ndarray, bits: int, bins: int = 256) -> float:
    """p-value of Pearson's χ² test that ``words`` are uniform on [0, 2^bits)."""
    index = (words.astype(np.float64) * bins / float(1 << bits)).astype(np.int64)
    counts = np.bincount(np.clip(index, 0, bins - 1), minlength=bins).astype(np.float64)
    expected = len(words) / bins
    stat = float(np.sum((counts - expected) ** 2) / expected)
    # P(χ²_k ≥ stat) = Q(k/2, stat/2), the regularised upper incomplete gamma function.
    half = torch.tensor((bins - 1) / 2.0, dtype=torch.float64)
    return float(torch.special.gammaincc(half, torch.tensor(stat / 2.0, dtype=torch.float64)))


def build_views(updates: Sequence[np.ndarray], *, seed: int, levels: int = DEFAULT_LEVELS) -> Views:
    """The three views of one round in which client k (1-based) holds ``updates[k-1]``."""
    if len(updates) < 2:
        raise ValueError(
            "a SecAgg round needs at least 2 clients (the client policy refuses smaller "
            "cohorts); N = 1 is the individual view"
        )
    quantizer = Quantizer(power_of_two_clip(updates), levels)
    q = [quantize(u, quantizer, rng=None, rounding="nearest") for u in updates]
    done = secure_round(q, quantizer=quantizer, seed=seed)
    dim = len(updates[0])
    words = unpack(done.uploads[1], dim + 1, done.modulus_bits)[:dim].astype(np.uint64)
    masked = dequantize(words % np.uint64(levels), quantizer)
    return Views(
        clients=len(updates),
        individual=np.asarray(updates[0], dtype=np.float64),
        masked=masked,
        total=done.result.weighted_sum(),
        exact=done.exact,
        chi2_p_masked=chi2_uniform_p(words, done.modulus_bits),
        chi2_p_plain=chi2_uniform_p(q[0], done.modulus_bits),
    )
