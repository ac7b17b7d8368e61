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


#: Values quantised per step: the float temporaries of one chunk stay in L2.
QUANTIZE_CHUNK = 1 << 15


def quantize(
    x: np.ndarray,
    q: Quantizer,
    *,
    rng: RandomSource | None,
    rounding: Rounding = "stochastic",
    dtype: np.dtype[np.unsignedinteger] | type[np.unsignedinteger] = np.uint64,
) -> np.ndarray:
    """Float vector → levels in [0, Q−1] as ``dtype``; stochastic rounding needs ``rng``.

    Stochastic rounding rounds up with probability equal to the fractional
    part (to within 2^-32), drawing one 32-bit word per value in order, so a
    seeded source gives the same levels however the work is chunked.
    """
    x = np.asarray(x, dtype=np.float64)
    if not np.isfinite(np.sum(x)) and not np.isfinite(x).all():  # one cheap pass when finite
        raise ParameterError("input contains NaN or infinity")
    if q.levels - 1 > np.iinfo(dtype).max:
        raise ParameterError(f"{q.levels} levels do not fit {np.dtype(dtype)}")
    if rounding not in ("nearest", "stochastic"):
        raise ParameterError(f"unknown rounding {rounding!r}")
    if rounding == "stochastic" and rng is None:
        raise ParameterError("stochastic rounding needs an rng")
    flat = x.reshape(-1)
    out = np.empty(flat.size, dtype=dtype)
    size = min(QUANTIZE_CHUNK, flat.size)
    scaled, levels = np.empty(size), np.empty(size)
    up = np.empty(size, dtype=bool)
    scale = (q.levels - 1) / (2.0 * q.clip)
    for start in range(0, flat.size, QUANTIZE_CHUNK):
        stop = min(start + QUANTIZE_CHUNK, flat.size)
        s, lv = scaled[: stop - start], levels[: stop - start]
        np.clip(flat[start:stop], -q.clip, q.clip, out=s)
        s += q.clip  # ≥ 0 exactly, so floor() below is never negative
        s *= scale
        if rounding == "nearest":
            s += 0.5
            np.floor(s, out=lv)
        else:
            assert rng is not None
            np.floor(s, out=lv)
            s -= lv  # the fractional part, in [0, 1)
            s *= 4294967296.0
            coin = np.frombuffer(rng.random_bytes(4 * s.size), dtype="<u4")
            np.less(coin, s, out=up[: s.size])
            lv += up[: s.size]
        np.minimum(lv, q.levels - 1, out=lv)  # the float rounding at the top edge
        out[start:stop] = lv
    return out.reshape(x.shape)


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
