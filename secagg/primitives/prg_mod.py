"""Mask PRG modulo any m (e.g. a BFV plain modulus): AES-256-CTR words, rejection sampled.

Definition (the known-answer vectors are computed from it, not from this
code): the AES-256-CTR keystream of the 32-byte seed (key = seed, counter
block starting at zero, as in :mod:`secagg.primitives.prg`) is read as
little-endian words of W = 32 bits when m ≤ 2^32, else 64 bits. A word w is
accepted iff w < L = ⌊2^W / m⌋·m and then yields w mod m; element i of the
output is the i-th accepted word. Each residue class has exactly ⌊2^W / m⌋
accepted preimages, so a uniform keystream gives exactly uniform residues (no
modulo bias). Rejection is rare for the moduli we use (t ≈ 2^30 with 32-bit
words: 4.6·10^-5) and below 1/2 for any m.

Same rule as the 2^k PRG: every seed masks exactly one vector.
"""

from __future__ import annotations

import numpy as np

from secagg.errors import ParameterError
from secagg.primitives.prg import SEED_BYTES, Keystream

#: Largest modulus: residues fit uint64 with room for one addition before reducing.
MAX_MODULUS = 1 << 62


def word_bits(modulus: int) -> int:
    """W: 32-bit keystream words for m ≤ 2^32, 64-bit words above."""
    _check_modulus(modulus)
    return 32 if modulus <= 1 << 32 else 64


def acceptance_limit(modulus: int) -> int:
    """L = ⌊2^W / m⌋·m: words at or above L are rejected."""
    width = word_bits(modulus)
    return ((1 << width) // modulus) * modulus


def prg_residues(seed: bytes, length: int, modulus: int) -> np.ndarray:
    """``length`` residues uniform in [0, m) from ``seed`` (uint64), by the definition above."""
    if len(seed) != SEED_BYTES:
        raise ParameterError("PRG seed must be 32 bytes")
    if not isinstance(length, int) or length < 0:
        raise ParameterError("length must be a non-negative integer")
    width = word_bits(modulus)
    limit = acceptance_limit(modulus)
    dtype = np.dtype("<u4") if width == 32 else np.dtype("<u8")
    everything = limit == 1 << width  # m divides 2^W: no word is rejected
    m = dtype.type(modulus) if modulus < 1 << width else None  # None: m = 2^W, w mod m = w
    accept = limit / float(1 << width)  # > 1/2
    stream = Keystream(seed)
    out = np.empty(length, dtype=np.uint64)
    filled = 0
    while filled < length:
        want = length - filled
        draw = int(want / accept * 1.001) + 64  # one pass almost always suffices
        words = np.empty(draw, dtype=dtype)
        stream.read_into(words)
        kept = words if everything else words[words < dtype.type(limit)]
        take = kept[:want]
        out[filled : filled + take.size] = take if m is None else np.remainder(take, m)
        filled += take.size
    return out


def prg_accumulate_mod(
    acc: np.ndarray, seed: bytes, modulus: int, *, subtract: bool = False
) -> None:
    """``acc ±= PRG_m(seed) mod m`` in place; ``acc`` is a uint64 vector of residues in [0, m)."""
    if acc.dtype != np.uint64 or acc.ndim != 1 or not acc.flags.c_contiguous:
        raise ParameterError("accumulator must be a contiguous 1-D uint64 array")
    mask = prg_residues(seed, acc.size, modulus)
    m = np.uint64(modulus)
    # Branch-free reduction on uint64 (values < m ≤ 2^62): a difference that wrapped below
    # zero is huge, so the smaller of "d" and "d ∓ m" is always the residue in [0, m).
    if subtract:
        np.subtract(acc, mask, out=acc)  # acc − r, or acc − r + 2^64 if it wrapped
        np.minimum(acc, acc + m, out=acc)  # + m wraps back exactly when acc − r < 0
    else:
        np.add(acc, mask, out=acc)  # < 2m: no overflow
        np.minimum(acc, acc - m, out=acc)  # − m wraps (huge) exactly when acc < m


def _check_modulus(modulus: int) -> None:
    if isinstance(modulus, bool) or not isinstance(modulus, int):
        raise ParameterError("modulus must be an integer")
    if not 2 <= modulus <= MAX_MODULUS:
        raise ParameterError(f"modulus must be in [2, 2^62], got {modulus}")
