"""Bit packing of residues mod 2^k into exactly ceil(k·d/8) bytes, and back.

Layout: value i occupies bits [i·k, (i+1)·k) of a little-endian bit stream
(least significant bit first). Unused bits of the last byte must be zero, so
every vector has exactly one encoding and a parser can reject anything else.

Vectorised: values are processed in groups of G = 64 / gcd(k, 64), the
fewest that fill whole 64-bit words (G·k/64 of them: 16 values in 5 words
for k = 20); a loop over the G positions does whole-array shifts.
"""

from __future__ import annotations

import math

import numpy as np

from secagg.errors import ParameterError


def _group(bits: int) -> int:
    """Values per group: the fewest whose k-bit fields fill whole 64-bit words."""
    return 64 // math.gcd(bits, 64)


def packed_size(length: int, bits: int) -> int:
    """Bytes that :func:`pack` produces for ``length`` values of ``bits`` bits."""
    return (length * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 64:
        raise ParameterError("bits must be in [1, 64]")


def pack(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned values < 2^bits."""
    _check_bits(bits)
    v = np.asarray(values)
    if v.ndim != 1 or v.dtype.kind not in "ui":
        raise ParameterError("pack takes a 1-D integer array")
    if v.size == 0:
        return b""
    if v.dtype.kind == "i" and v.min() < 0:
        raise ParameterError("values must be non-negative")
    if bits < 64 and int(v.max()) >> bits:
        raise ParameterError(f"values must be below 2^{bits}")
    if v.dtype.kind == "i":
        v = v.astype(np.uint64)
    group = _group(bits)
    groups = -(-v.size // group)
    # Transpose in the input's own width (half the bytes for uint32), widen row by row.
    padded = np.zeros(groups * group, dtype=v.dtype)
    padded[: v.size] = v
    cols = np.ascontiguousarray(padded.reshape(groups, group).T)
    words = np.zeros((group * bits // 64, groups), dtype=np.uint64)
    col = np.empty(groups, dtype=np.uint64)
    shifted = np.empty(groups, dtype=np.uint64)
    for j in range(group):
        w, s = divmod(j * bits, 64)
        col[:] = cols[j]
        np.left_shift(col, np.uint64(s), out=shifted)
        words[w] |= shifted
        if s + bits > 64:
            np.right_shift(col, np.uint64(64 - s), out=shifted)
            words[w + 1] |= shifted
    raw = np.ascontiguousarray(words.T, dtype="<u8").view(np.uint8).reshape(-1)
    return raw[: packed_size(v.size, bits)].tobytes()


def unpack(data: bytes, length: int, bits: int) -> np.ndarray:
    """Inverse of :func:`pack`; returns uint64. Rejects wrong sizes and stray padding bits."""
    _check_bits(bits)
    if length < 0:
        raise ParameterError("length must be non-negative")
    if len(data) != packed_size(length, bits):
        raise ParameterError(
            f"packed vector has {len(data)} bytes, expected {packed_size(length, bits)}"
        )
    if length == 0:
        return np.zeros(0, dtype=np.uint64)
    used = length * bits % 8
    if used and data[-1] >> used:
        raise ParameterError("non-zero padding bits in packed vector")
    group = _group(bits)
    groups = -(-length // group)
    width = group * bits // 64
    buf = np.zeros(groups * width * 8, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    words = np.ascontiguousarray(buf.view("<u8").reshape(groups, width).T)
    cols = np.empty((group, groups), dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    high = np.empty(groups, dtype=np.uint64)
    for j in range(group):
        w, s = divmod(j * bits, 64)
        col = cols[j]
        np.right_shift(words[w], np.uint64(s), out=col)
        if s + bits > 64:
            np.left_shift(words[w + 1], np.uint64(64 - s), out=high)
            col |= high
        col &= mask
    return np.ascontiguousarray(cols.T).reshape(-1)[:length]
