"""Canonical encoding: injective on tricky inputs, strict about types (design invariant 3)."""

from __future__ import annotations

import hashlib
import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from secagg.encoding import Field, digest, encode, encode_list

fields = st.one_of(
    st.binary(max_size=20),
    st.text(max_size=10),
    st.integers(min_value=0, max_value=2**130),
)


def decode(data: bytes) -> tuple[Field, ...]:
    """Parse an encoding back into fields; a working decoder proves injectivity."""
    out: list[Field] = []
    pos = 0
    while pos < len(data):
        (length,) = struct.unpack(">Q", data[pos : pos + 8])
        raw = data[pos + 8 : pos + 8 + length]
        assert len(raw) == length and length >= 1
        pos += 8 + length
        tag, body = raw[:1], raw[1:]
        if tag == b"b":
            out.append(body)
        elif tag == b"s":
            out.append(body.decode("utf-8"))
        elif tag == b"i":
            assert body and (len(body) == 1 or body[0] != 0), "ints are minimal big-endian"
            out.append(int.from_bytes(body, "big"))
        else:
            raise AssertionError(f"unknown tag {tag!r}")
    return tuple(out)


def typed(items: tuple[Field, ...]) -> tuple[tuple[str, Field], ...]:
    """Fields with their type, so that equality does not conflate b'a' and 'a'."""
    return tuple((type(item).__name__, item) for item in items)


TRICKY: list[tuple[Field, ...]] = [
    (),
    ("",),
    (b"",),
    ("", ""),
    ("ab", "c"),
    ("a", "bc"),
    ("abc",),
    (b"abc",),
    ("ab", b"c"),
    (b"ab", "c"),
    (0,),
    (b"\x00",),
    ("\x00",),
    (1,),
    (b"\x01",),
    (256,),
    (b"\x01\x00",),
    (1, 0),
    (16,),
    ("16",),
    (0, 0),
    (b"\x00\x00",),
    (b"i\x00",),
    ("i\x00",),
    (b"b",),
    ("s",),
]


def test_tricky_examples_encode_distinctly() -> None:
    encodings = {encode(*items): items for items in TRICKY}
    assert len(encodings) == len(TRICKY)
    for a, b in itertools.combinations(TRICKY, 2):
        assert encode(*a) != encode(*b), (a, b)
    for items in TRICKY:
        assert typed(decode(encode(*items))) == typed(items)


def test_no_encoding_is_a_prefix_of_another_tuple_boundary() -> None:
    """Concatenating encodings is itself an encoding (fields never bleed across)."""
    assert encode("ab") + encode("c") == encode("ab", "c")
    assert encode("ab", "c") != encode("a", "bc")


@given(items=st.lists(fields, max_size=6))
def test_decode_inverts_encode(items: list[Field]) -> None:
    assert typed(decode(encode(*items))) == typed(tuple(items))


@given(a=st.lists(fields, max_size=4), b=st.lists(fields, max_size=4))
def test_encode_is_injective(a: list[Field], b: list[Field]) -> None:
    if typed(tuple(a)) != typed(tuple(b)):
        assert encode(*a) != encode(*b)
        assert digest(*a) != digest(*b)
    else:
        assert encode(*a) == encode(*b)


def test_format_is_pinned() -> None:
    """The exact bytes: 8-byte big-endian length, then a type tag and the body."""
    assert encode("a", 1, b"") == (
        bytes.fromhex("0000000000000002") + b"sa"
        + bytes.fromhex("0000000000000002") + b"i\x01"
        + bytes.fromhex("0000000000000001") + b"b"
    )  # fmt: skip
    assert encode(0) == bytes.fromhex("0000000000000002") + b"i\x00"
    assert encode(256) == bytes.fromhex("0000000000000003") + b"i\x01\x00"
    assert encode() == b""


@pytest.mark.parametrize("value", [True, False])
def test_booleans_are_refused(value: bool) -> None:
    with pytest.raises(TypeError):
        encode(value)
    with pytest.raises(TypeError):
        encode("x", value)


@pytest.mark.parametrize("value", [-1, -(2**70)])
def test_negative_ints_are_refused(value: int) -> None:
    with pytest.raises(ValueError):
        encode(value)


@pytest.mark.parametrize("value", [1.0, None, bytearray(b"x"), ["a"], ("a",)])
def test_other_types_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        encode(value)  # type: ignore[arg-type]


def test_encode_list_prefixes_the_count() -> None:
    assert encode_list([]) == encode(0)
    assert encode_list(["a", b"b", 3]) == encode(3, "a", b"b", 3)
    assert encode_list(iter(["x"])) == encode(1, "x")
    assert encode("p", encode_list(["a", "b"])) != encode("p", encode_list(["ab"]))


def test_digest_is_sha256_of_encoding() -> None:
    assert digest("a", 1, b"") == hashlib.sha256(encode("a", 1, b"")).digest()
