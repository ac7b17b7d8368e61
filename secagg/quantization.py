"""Fixed-point encoding of float updates, and the guard against wrap-around.

A value x is clipped to [−c, c] and mapped to an integer level in
[0, Q−1] (Q = ``levels``): level = (x + c)·(Q−1)/(2c), rounded. A client's
integer weight w multiplies its levels, so the masked sum over n clients is
Σ w_k·q_k ≤ n·(Q−1)·w_max. That must stay below the modulus 2^k or the sum
wraps silently; :func:`check_no_wrap` refuses every configuration where it
could.

Error bounds per coordinate of a dequantised (unweighted) sum of n clients,
for values inside [−c, c]: ``rounding="nearest"``: |err| ≤ n·c/(Q−1);
``rounding="stochastic"``: |err| < n·2c/(Q−1), and the rounding is unbiased.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from secagg.errors import OverflowRisk, ParameterError
from secagg.rng import RandomSource

Rounding = Literal["stochastic", "nearest"]


@dataclass(frozen=True, slots=True)
class Quantizer:
    """Clip range ``clip`` (c) and number of levels ``levels`` (Q)."""

    clip: float
    levels: int

    def __post_init__(self) -> None:
        if not (np.isfinite(self.clip) and self.clip > 0):
            raise ParameterError("clip must be a positive finite number")
        if not 2 <= self.levels <= 1 << 53:
            raise ParameterError("levels must be in [2, 2**53]")

    @property
    def step(self) -> float:
        """Width of one level in float units: 2c/(Q−1)."""
        return 2.0 * self.clip / (self.levels - 1)

    def error_bound(self, n_clients: int, rounding: Rounding) -> float:
        """Documented per-coordinate bound on the dequantised sum's error."""
        per_client = self.step / 2 if rounding == "nearest" else self.step
        return n_clients * per_client


def quantize(
    x: np.ndarray,
    q: Quantizer,
    *,
    rng: RandomSource | None,
    rounding: Rounding = "stochastic",
    dtype: np.dtype[np.unsignedinteger] | type[np.unsignedinteger] = np.uint64,
) -> np.ndarray:
    """Float vector → levels in [0, Q−1] as ``dtype``; stochastic rounding needs ``rng``."""
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(np.sum(x)) and not np.isfinite(x).all():  # one cheap pass when finite
        raise ParameterError("input contains NaN or infinity")
    if q.levels - 1 > np.iinfo(dtype).max:
        raise ParameterError(f"{q.levels} levels do not fit {np.dtype(dtype)}")
    scaled = np.clip(x, -q.clip, q.clip)
    scaled += q.clip  # ≥ 0 exactly, so floor() below is never negative
    scaled *= (q.levels - 1) / (2.0 * q.clip)
    if rounding == "nearest":
        scaled += 0.5
        levels = np.floor(scaled)
    elif rounding == "stochastic":
        if rng is None:
            raise ParameterError("stochastic rounding needs an rng")
        levels = np.floor(scaled)
        scaled -= levels  # the fractional part, in [0, 1)
        scaled *= 4294967296.0
        # Round up with probability frac (to within 2^-32): one 32-bit word per value.
        coin = np.frombuffer(rng.random_bytes(4 * scaled.size), dtype="<u4").reshape(scaled.shape)
        levels += coin < scaled
    else:
        raise ParameterError(f"unknown rounding {rounding!r}")
    np.minimum(levels, q.levels - 1, out=levels)  # the float rounding at the top edge
    result: np.ndarray = levels.astype(dtype)
    return result


def dequantize_sum(total: np.ndarray, q: Quantizer, *, weight_sum: int) -> np.ndarray:
    """Σ_k w_k·q_k (integers) → Σ_k w_k·x_k (floats), given Σ_k w_k."""
    out: np.ndarray = np.asarray(total, dtype=np.float64) * q.step - float(weight_sum) * q.clip
    return out


def dequantize(levels: np.ndarray, q: Quantizer) -> np.ndarray:
    """One client's levels back to floats (the n = 1, w = 1 case)."""
    return dequantize_sum(levels, q, weight_sum=1)


def required_modulus_bits(n_clients: int, levels: int, max_weight: int = 1) -> int:
    """Smallest k with n·(Q−1)·w_max < 2^k: the sum can then never wrap."""
    if n_clients < 1 or levels < 2 or max_weight < 1:
        raise ParameterError("need n_clients >= 1, levels >= 2, max_weight >= 1")
    return (n_clients * (levels - 1) * max_weight).bit_length()


def check_no_wrap(n_clients: int, levels: int, max_weight: int, modulus_bits: int) -> None:
    """Refuse (raise :class:`OverflowRisk`) iff some valid inputs could wrap mod 2^k."""
    if not 1 <= modulus_bits <= 64:
        raise ParameterError("modulus bits must be in [1, 64]")
    worst = n_clients * (levels - 1) * max_weight
    if worst >= 1 << modulus_bits:
        raise OverflowRisk(
            f"{n_clients} clients × {levels - 1} max level × weight {max_weight} = {worst} "
            f"≥ 2^{modulus_bits}: the sum could wrap; use ≥ "
            f"{required_modulus_bits(n_clients, levels, max_weight)} modulus bits"
        )
