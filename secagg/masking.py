"""Double masking (Bonawitz et al. 2017): the arithmetic on integer vectors.

A client u sends y_u = x_u + PRG(b_u) + Σ_{v≠u} σ(u, v)·PRG(s_uv) mod 2^k,
with σ(u, v) = +1 if u < v and −1 otherwise, so every pairwise mask appears
once with each sign and cancels in the sum. The server later removes the
self masks of survivors and the pairwise masks survivors shared with
dropped clients. Seeds are derived with HKDF bound to the session id, so
masks from different sessions, rounds or pairs never coincide.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from secagg.errors import ParameterError
from secagg.primitives.kdf import derive_key
from secagg.primitives.prg import prg_accumulate_many, reduce_mod, word_dtype


def pairwise_seed(shared_secret: bytes, *, session_id: bytes, u: int, v: int) -> bytes:
    """PRG seed of the pairwise mask between clients u and v (symmetric in u, v)."""
    if u == v:
        raise ParameterError("a client has no pairwise mask with itself")
    lo, hi = min(u, v), max(u, v)
    return derive_key(shared_secret, label="pairwise-mask", session_id=session_id, context=(lo, hi))


def self_mask_seed(b: bytes, *, session_id: bytes, owner: int) -> bytes:
    """PRG seed of client ``owner``'s self mask, from its secret b_u."""
    return derive_key(b, label="self-mask", session_id=session_id, context=(owner,))


def pairwise_sign(u: int, v: int) -> int:
    """σ(u, v): +1 when u < v, −1 when u > v."""
    if u == v:
        raise ParameterError("a client has no pairwise mask with itself")
    return 1 if u < v else -1


def mask_input(
    values: np.ndarray,
    *,
    bits: int,
    me: int,
    self_seed: bytes,
    pair_seeds: Mapping[int, bytes],
) -> np.ndarray:
    """y = values + PRG(self) + Σ_v σ(me, v)·PRG(s_me,v) mod 2^bits (a new array)."""
    dtype = word_dtype(bits)
    v = np.asarray(values)
    if v.ndim != 1:
        raise ParameterError("mask_input takes a 1-D vector")
    if v.size and (v.min() < 0 or (bits < 64 and int(v.max()) >> bits)):
        raise ParameterError(f"inputs must lie in [0, 2^{bits})")
    return mask_in_place(
        v.astype(dtype, copy=True), bits=bits, me=me, self_seed=self_seed, pair_seeds=pair_seeds
    )


def mask_in_place(
    acc: np.ndarray,
    *,
    bits: int,
    me: int,
    self_seed: bytes,
    pair_seeds: Mapping[int, bytes],
) -> np.ndarray:
    """:func:`mask_input` on a word-dtype vector the caller owns (no copy); returns it."""
    streams = [(self_seed, False)]
    streams += [(seed, pairwise_sign(me, peer) < 0) for peer, seed in pair_seeds.items()]
    prg_accumulate_many(acc, streams, bits)
    return reduce_mod(acc, bits)


def remove_masks(
    total: np.ndarray,
    *,
    bits: int,
    self_seeds: Iterable[bytes],
    orphaned_pairs: Iterable[tuple[int, int, bytes]],
) -> np.ndarray:
    """Strip survivors' self masks and the masks they share with dropped clients.

    ``orphaned_pairs`` holds (survivor, dropped, seed) triples. Works in place
    on ``total`` (the mod-2^bits sum of survivors' y) and returns it.
    """
    if total.dtype != word_dtype(bits):
        raise ParameterError("sum has the wrong dtype for these modulus bits")
    streams = [(seed, True) for seed in self_seeds]
    # The survivor added σ(survivor, dropped)·PRG; undo exactly that.
    streams += [
        (seed, pairwise_sign(survivor, dropped) > 0) for survivor, dropped, seed in orphaned_pairs
    ]
    prg_accumulate_many(total, streams, bits)
    return reduce_mod(total, bits)


def add_into(total: np.ndarray, y: np.ndarray, bits: int) -> None:
    """total += y mod 2^(word width); call :func:`reduce_mod` before reading."""
    if total.dtype != y.dtype or total.shape != y.shape:
        raise ParameterError("masked vectors must have the same length and dtype")
    np.add(total, y, out=total)
