"""Bit packing: layout, sizes and refusals (round trips are in tests/property)."""

from __future__ import annotations

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.packing import pack, packed_size, unpack


def test_layout_is_lsb_first_little_endian() -> None:
    """Value i occupies bits [i·k, (i+1)·k) of a little-endian bit stream."""
    assert pack(np.array([1, 0, 1, 1, 0, 0, 0, 0, 1], dtype=np.uint8), 1) == b"\x0d\x01"
    assert pack(np.array([0x5, 0xA, 0x3], dtype=np.uint8), 4) == b"\xa5\x03"
    assert pack(np.array([0x7FF, 0x001], dtype=np.uint16), 11) == bytes([0xFF, 0x0F, 0x00])
    assert pack(np.array([2**64 - 1, 1], dtype=np.uint64), 64) == b"\xff" * 8 + b"\x01" + bytes(7)


@pytest.mark.parametrize(
    ("length", "bits", "size"),
    [(0, 1, 0), (1, 1, 1), (8, 1, 1), (9, 1, 2), (3, 3, 2), (64, 64, 512), (65, 7, 57), (1, 64, 8)],
)
def test_packed_size(length: int, bits: int, size: int) -> None:
    assert packed_size(length, bits) == size
    assert len(pack(np.zeros(length, dtype=np.uint64), bits)) == size


def test_empty() -> None:
    assert pack(np.zeros(0, dtype=np.uint32), 17) == b""
    assert unpack(b"", 0, 17).shape == (0,)
    with pytest.raises(ParameterError):
        unpack(b"\x00", 0, 17)


@pytest.mark.parametrize("bits", [0, -1, 65])
def test_bits_out_of_range(bits: int) -> None:
    with pytest.raises(ParameterError):
        pack(np.zeros(3, dtype=np.uint8), bits)
    with pytest.raises(ParameterError):
        unpack(b"", 0, bits)


def test_pack_refuses_non_integer_or_multidimensional_input() -> None:
    with pytest.raises(ParameterError):
        pack(np.zeros(4, dtype=np.float64), 8)
    with pytest.raises(ParameterError):
        pack(np.zeros((2, 2), dtype=np.uint8), 8)
    with pytest.raises(ParameterError):
        pack(np.zeros(4, dtype=bool), 8)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_pack_refuses_negative_values(dtype: type[np.signedinteger]) -> None:
    with pytest.raises(ParameterError):
        pack(np.array([0, 1, -1, 2], dtype=dtype), 8)
    with pytest.raises(ParameterError):
        pack(np.array([-1], dtype=dtype), 64)


@pytest.mark.parametrize("bits", [1, 7, 8, 31, 32, 33, 63])
def test_pack_refuses_values_too_large(bits: int) -> None:
    with pytest.raises(ParameterError):
        pack(np.array([0, 1 << bits, 0], dtype=np.uint64), bits)
    with pytest.raises(ParameterError):
        pack(np.array([2**64 - 1], dtype=np.uint64), bits)
    assert len(pack(np.array([(1 << bits) - 1], dtype=np.uint64), bits)) == packed_size(1, bits)


def test_pack_accepts_any_integer_dtype_identically() -> None:
    values = [0, 1, 100, 127]
    expected = pack(np.array(values, dtype=np.uint64), 7)
    for dtype in (np.uint8, np.int8, np.uint16, np.int32, np.int64):
        assert pack(np.array(values, dtype=dtype), 7) == expected


def test_unpack_refuses_negative_length() -> None:
    with pytest.raises(ParameterError):
        unpack(b"", -1, 8)


def test_unpack_refuses_padding_bits() -> None:
    """3 values of 3 bits use 9 bits: the top 7 bits of byte 2 must be zero."""
    good = pack(np.array([7, 0, 5], dtype=np.uint8), 3)
    assert good == bytes([0x47, 0x01])
    for bit in range(1, 8):
        bad = good[:-1] + bytes([good[-1] | (1 << bit)])
        with pytest.raises(ParameterError):
            unpack(bad, 3, 3)
    assert [int(v) for v in unpack(good, 3, 3)] == [7, 0, 5]
