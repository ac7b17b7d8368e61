"""Mask PRG: fixed vectors, equality with the raw AES-256-CTR keystream, accumulation (T03)."""

from __future__ import annotations

import numpy as np
import pytest
from Crypto.Cipher import AES
from hypothesis import given
from hypothesis import strategies as st

from secagg.errors import ParameterError
from secagg.primitives.prg import (
    CHUNK_BYTES,
    Keystream,
    keystream,
    modulus_mask,
    prg_accumulate,
    prg_accumulate_many,
    prg_words,
    reduce_mod,
    word_dtype,
)
from tests.vectors.loader import Vector, params

seeds = st.binary(min_size=32, max_size=32)
bit_widths = st.integers(1, 64)


def reference_words(seed: bytes, length: int, bits: int) -> list[int]:
    """The PRG by definition: AES-256-CTR(key=seed, nonce=b'', counter 0) keystream,
    little-endian words of the narrowest of 8/16/32/64 bits, reduced mod 2^bits."""
    width = next(w for w in (8, 16, 32, 64) if bits <= w) // 8
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    stream = cipher.encrypt(bytes(length * width))
    return [
        int.from_bytes(stream[i * width : (i + 1) * width], "little") % (1 << bits)
        for i in range(length)
    ]


@pytest.mark.parametrize("vector", params("prg"))
def test_known_answers(vector: Vector) -> None:
    """First 16 words for fixed seeds and k in {1, 8, 16, 23, 32, 33, 64}."""
    words = vector.ints_of("words")
    bits = vector.int_of("bits")
    out = prg_words(vector.bytes_of("seed"), len(words), bits)
    assert out.dtype == word_dtype(bits)
    assert [int(w) for w in out] == words


@given(seed=seeds, length=st.integers(0, 300), bits=bit_widths)
def test_prg_words_is_the_aes_ctr_keystream(seed: bytes, length: int, bits: int) -> None:
    out = prg_words(seed, length, bits)
    assert out.shape == (length,)
    assert [int(w) for w in out] == reference_words(seed, length, bits)


@given(seed=seeds, nbytes=st.integers(0, 200))
def test_keystream_is_raw_aes_ctr(seed: bytes, nbytes: int) -> None:
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    assert keystream(seed, nbytes) == cipher.encrypt(bytes(nbytes))


@given(seed=seeds, pieces=st.lists(st.integers(0, 70), max_size=8))
def test_keystream_read_in_pieces_is_aes_ctr(seed: bytes, pieces: list[int]) -> None:
    """ECB over counter blocks, read in pieces that split blocks, equals MODE_CTR."""
    stream = Keystream(seed)
    got = b""
    for size in pieces:
        out = np.empty(size, dtype=np.uint8)
        stream.read_into(out)
        got += out.tobytes()
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    assert got == cipher.encrypt(bytes(sum(pieces)))


def test_keystream_across_many_counter_buffers() -> None:
    """Past the 2^14-block buffer and a 2^16 block boundary the counter still matches CTR."""
    seed = bytes(range(32))
    out = np.empty(16 * ((1 << 16) + 5) + 3, dtype=np.uint8)
    Keystream(seed).read_into(out)
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    assert out.tobytes() == cipher.encrypt(bytes(out.size))


def test_keystream_refuses_non_contiguous_output() -> None:
    with pytest.raises(ParameterError, match="contiguous"):
        Keystream(bytes(32)).read_into(np.empty((4, 4), dtype=np.uint32)[:, 0])


@given(seed=seeds, short=st.integers(0, 100), long=st.integers(0, 100), bits=bit_widths)
def test_prg_is_a_stream(seed: bytes, short: int, long: int, bits: int) -> None:
    """A shorter expansion is a prefix of a longer one (same seed, same stream)."""
    a = prg_words(seed, short, bits)
    b = prg_words(seed, short + long, bits)
    assert np.array_equal(a, b[:short])


@given(a=seeds, b=seeds, bits=st.integers(16, 64))
def test_distinct_seeds_give_distinct_streams(a: bytes, b: bytes, bits: int) -> None:
    if a != b:
        assert not np.array_equal(prg_words(a, 8, bits), prg_words(b, 8, bits))


@pytest.mark.parametrize("bits", range(1, 65))
def test_values_below_modulus(bits: int) -> None:
    """Every value < 2^k, and for k below the word width the top bits do occur unmasked."""
    seed = bytes(range(32))
    out = prg_words(seed, 4096, bits)
    assert int(out.max()) < (1 << bits)
    assert int(out.max()) >= (1 << bits) - 1 - ((1 << bits) >> 3)  # the range is used
    assert out.dtype == word_dtype(bits)


@pytest.mark.parametrize(
    ("bits", "dtype"),
    [
        (1, np.uint8),
        (8, np.uint8),
        (9, np.uint16),
        (16, np.uint16),
        (17, np.uint32),
        (32, np.uint32),
        (33, np.uint64),
        (64, np.uint64),
    ],
)
def test_word_dtype(bits: int, dtype: type[np.unsignedinteger]) -> None:
    assert word_dtype(bits) == np.dtype(dtype)
    assert int(modulus_mask(bits)) == (1 << bits) - 1


@pytest.mark.parametrize("bits", [0, -1, 65, 128])
def test_bits_out_of_range(bits: int) -> None:
    with pytest.raises(ParameterError):
        word_dtype(bits)
    with pytest.raises(ParameterError):
        prg_words(bytes(32), 4, bits)


@pytest.mark.parametrize("size", [0, 16, 24, 31, 33])
def test_seed_must_be_32_bytes(size: int) -> None:
    with pytest.raises(ParameterError):
        prg_words(bytes(size), 4, 32)
    with pytest.raises(ParameterError):
        prg_accumulate(np.zeros(4, dtype=np.uint32), bytes(size), 32)


def test_negative_length() -> None:
    with pytest.raises(ParameterError):
        prg_words(bytes(32), -1, 32)


@given(
    seed=seeds,
    bits=bit_widths,
    length=st.integers(0, 200),
    start=st.integers(0, 2**64 - 1),
)
def test_accumulate_adds_and_subtracts_the_stream(
    seed: bytes, bits: int, length: int, start: int
) -> None:
    """acc ± PRG, reduced mod 2^k, equals the python-int computation."""
    dtype = word_dtype(bits)
    modulus = 1 << bits
    initial = [(start * (i + 1)) % modulus for i in range(length)]
    stream = reference_words(seed, length, bits)
    for subtract in (False, True):
        acc = np.array(initial, dtype=dtype)
        prg_accumulate(acc, seed, bits, subtract=subtract)
        reduce_mod(acc, bits)
        sign = -1 if subtract else 1
        assert [int(v) for v in acc] == [
            (a + sign * s) % modulus for a, s in zip(initial, stream, strict=True)
        ]


@pytest.mark.parametrize("bits", [8, 23, 64])
def test_accumulate_across_chunks(bits: int) -> None:
    """Chunked accumulation equals the one-shot stream past the chunk boundary."""
    seed = bytes(range(1, 33))
    length = 2 * CHUNK_BYTES // word_dtype(bits).itemsize + 5
    acc = np.zeros(length, dtype=word_dtype(bits))
    prg_accumulate(acc, seed, bits)
    assert np.array_equal(reduce_mod(acc, bits), prg_words(seed, length, bits))
    prg_accumulate(acc, seed, bits, subtract=True)
    assert not reduce_mod(acc, bits).any()


@given(
    seeds_=st.lists(st.tuples(seeds, st.booleans()), max_size=5),
    length=st.integers(0, 300),
    bits=bit_widths,
)
def test_accumulate_many_equals_one_seed_at_a_time(
    seeds_: list[tuple[bytes, bool]], length: int, bits: int
) -> None:
    start = prg_words(bytes(range(32)), length, bits)
    together, apart = start.copy(), start.copy()
    prg_accumulate_many(together, seeds_, bits)
    for seed, subtract in seeds_:
        prg_accumulate(apart, seed, bits, subtract=subtract)
    assert np.array_equal(reduce_mod(together, bits), reduce_mod(apart, bits))
    expected = [int(v) for v in start]
    for seed, subtract in seeds_:
        stream = reference_words(seed, length, bits)
        sign = -1 if subtract else 1
        expected = [(e + sign * w) % (1 << bits) for e, w in zip(expected, stream, strict=True)]
    assert [int(v) for v in together] == expected


def test_accumulate_refuses_wrong_accumulators() -> None:
    seed = bytes(32)
    with pytest.raises(ParameterError):
        prg_accumulate(np.zeros(4, dtype=np.uint64), seed, 32)  # wrong dtype
    with pytest.raises(ParameterError):
        prg_accumulate(np.zeros((2, 2), dtype=np.uint32), seed, 32)  # not 1-D
    with pytest.raises(ParameterError):
        prg_accumulate(np.zeros(8, dtype=np.uint32)[::2], seed, 32)  # not contiguous


def test_reduce_mod() -> None:
    acc = np.array([0, 5, 2**23, 2**23 + 7, 2**32 - 1], dtype=np.uint32)
    assert [int(v) for v in reduce_mod(acc, 23)] == [0, 5, 0, 7, 2**23 - 1]
    full = np.array([2**64 - 1], dtype=np.uint64)
    assert int(reduce_mod(full, 64)[0]) == 2**64 - 1
