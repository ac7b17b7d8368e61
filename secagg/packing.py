"""Bit packing of residues mod 2^k into exactly ceil(k·d/8) bytes, and back.

Layout: value i occupies bits [i·k, (i+1)·k) of a little-endian bit stream
(least significant bit first). Unused bits of the last byte must be zero, so
every vector has exactly one encoding and a parser can reject anything else.

Vectorised: values are processed in groups of 64, which fill exactly k
64-bit words; a loop over the 64 positions does whole-array shifts.
"""

from __future__ import annotations

import numpy as np

from secagg.errors import ParameterError

_GROUP = 64


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
    groups = -(-v.size // _GROUP)
    # Transpose in the input's own width (half the bytes for uint32), widen row by row.
    padded = np.zeros(groups * _GROUP, dtype=v.dtype)
    padded[: v.size] = v
    cols = np.ascontiguousarray(padded.reshape(groups, _GROUP).T)
    words = np.zeros((bits, groups), dtype=np.uint64)
    for j in range(_GROUP):
        w, s = divmod(j * bits, 64)
        col = cols[j].astype(np.uint64)
        words[w] |= col << np.uint64(s)
        if s + bits > 64:
            words[w + 1] |= col >> np.uint64(64 - s)
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
    groups = -(-length // _GROUP)
    buf = np.zeros(groups * bits * 8, dtype=np.uint8)
    buf[: len(data)] = np.frombuffer(data, dtype=np.uint8)
    words = np.ascontiguousarray(buf.view("<u8").reshape(groups, bits).T)
    cols = np.empty((_GROUP, groups), dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    for j in range(_GROUP):
        w, s = divmod(j * bits, 64)
        col = words[w] >> np.uint64(s)
        if s + bits > 64:
            col |= words[w + 1] << np.uint64(64 - s)
        cols[j] = col & mask
    return np.ascontiguousarray(cols.T).reshape(-1)[:length]
