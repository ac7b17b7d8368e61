"""Bit packing round trips for every k in 1..64, with exact sizes and strict parsing."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.packing import pack, packed_size, unpack
from secagg.rng import DeterministicRandomSource

# Lengths around the 64-value groups the packer works in.
EDGE_LENGTHS = (0, 1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 200)


def reference_pack(values: list[int], bits: int) -> bytes:
    """The documented layout with python integers: value i at bits [i·k, (i+1)·k)."""
    stream = 0
    for i, v in enumerate(values):
        stream |= v << (i * bits)
    return stream.to_bytes(packed_size(len(values), bits), "little")


def seeded_values(seed: int | str, length: int, bits: int) -> list[int]:
    raw = DeterministicRandomSource(seed).random_bytes(8 * length)
    top = (1 << bits) - 1
    return [int.from_bytes(raw[8 * i : 8 * i + 8], "little") & top for i in range(length)]


@st.composite
def vectors(draw: st.DrawFn, bits: int, min_size: int = 0) -> list[int]:
    """Short hypothesis-built lists (shrinkable, edge values), or long seeded ones."""
    top = (1 << bits) - 1
    if draw(st.booleans(), label="hypothesis_list"):
        value = st.one_of(st.integers(0, top), st.sampled_from([0, 1, top]))
        return draw(st.lists(value, min_size=min_size, max_size=70), label="values")
    length = draw(st.integers(max(min_size, 0), 200), label="length")
    return seeded_values(draw(st.integers(0, 2**32), label="seed"), length, bits)


def check_round_trip(values: list[int], bits: int) -> None:
    packed = pack(np.array(values, dtype=np.uint64), bits)
    assert len(packed) == (bits * len(values) + 7) // 8 == packed_size(len(values), bits)
    assert packed == reference_pack(values, bits)
    out = unpack(packed, len(values), bits)
    assert out.dtype == np.uint64
    assert [int(v) for v in out] == values


@pytest.mark.parametrize("bits", range(1, 65))
@settings(max_examples=6)  # × 64 values of k; the edge sweep below covers the lengths
@given(data=st.data())
def test_round_trip_and_exact_size(bits: int, data: st.DataObject) -> None:
    check_round_trip(data.draw(vectors(bits), label="values"), bits)


@pytest.mark.parametrize("bits", range(1, 65))
def test_round_trip_edge_lengths(bits: int) -> None:
    """Every k, lengths around the group size, random and all-ones values."""
    for length in EDGE_LENGTHS:
        check_round_trip(seeded_values(f"edge-{bits}-{length}", length, bits), bits)
        check_round_trip([(1 << bits) - 1] * length, bits)


@given(bits=st.integers(1, 64), data=st.data())
def test_unpack_rejects_wrong_length(bits: int, data: st.DataObject) -> None:
    values = data.draw(vectors(bits), label="values")
    packed = pack(np.array(values, dtype=np.uint64), bits)
    with pytest.raises(ParameterError):
        unpack(packed + b"\x00", len(values), bits)
    if packed:
        with pytest.raises(ParameterError):
            unpack(packed[:-1], len(values), bits)
    with pytest.raises(ParameterError):
        unpack(packed, len(values) + 8, bits)  # 8 more values always need k more bytes


@given(bits=st.integers(1, 63).filter(lambda b: b % 8 != 0), data=st.data())
def test_unpack_rejects_padding_bits(bits: int, data: st.DataObject) -> None:
    """Any set bit above the last value (in the final byte) is refused."""
    values = data.draw(vectors(bits, min_size=1).filter(lambda v: len(v) * bits % 8), "values")
    packed = pack(np.array(values, dtype=np.uint64), bits)
    used = len(values) * bits % 8
    bit = data.draw(st.integers(used, 7), label="padding_bit")
    tampered = packed[:-1] + bytes([packed[-1] | (1 << bit)])
    with pytest.raises(ParameterError):
        unpack(tampered, len(values), bits)


@given(bits=st.integers(1, 63), data=st.data())
def test_pack_rejects_values_too_large(bits: int, data: st.DataObject) -> None:
    values = data.draw(vectors(bits, min_size=1), label="values")
    position = data.draw(st.integers(0, len(values) - 1), label="position")
    values[position] = data.draw(st.integers(1 << bits, 2**64 - 1), label="too_large")
    with pytest.raises(ParameterError):
        pack(np.array(values, dtype=np.uint64), bits)


@given(bits=st.integers(1, 64), data=st.data())
def test_pack_rejects_negative_values(bits: int, data: st.DataObject) -> None:
    top = min((1 << bits) - 1, 2**63 - 1)
    values = data.draw(st.lists(st.integers(0, top), min_size=1, max_size=100), label="values")
    position = data.draw(st.integers(0, len(values) - 1), label="position")
    values[position] = data.draw(st.integers(-(2**63), -1), label="negative")
    with pytest.raises(ParameterError):
        pack(np.array(values, dtype=np.int64), bits)
