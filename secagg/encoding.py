"""Canonical, unambiguous byte encodings for everything we hash or sign.

Every item is length-prefixed (8-byte big-endian length), so no two different
tuples of fields encode to the same bytes. We never sign re-serialised
protobufs: protobuf keeps unknown fields, so its bytes are not canonical.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

Field = bytes | str | int


def _as_bytes(item: Field) -> bytes:
    if isinstance(item, bool):  # bool is an int; refuse the ambiguity
        raise TypeError("booleans are not canonical fields; encode them as int")
    if isinstance(item, bytes):
        return b"b" + item
    if isinstance(item, str):
        return b"s" + item.encode("utf-8")
    if isinstance(item, int):
        if item < 0:
            raise ValueError("canonical ints are non-negative")
        return b"i" + item.to_bytes(max(1, (item.bit_length() + 7) // 8), "big")
    raise TypeError(f"cannot encode {type(item).__name__}")


def encode(*items: Field) -> bytes:
    """Length-prefixed, type-tagged concatenation of ``items``."""
    out = bytearray()
    for item in items:
        raw = _as_bytes(item)
        out += struct.pack(">Q", len(raw))
        out += raw
    return bytes(out)


def encode_list(items: Iterable[Field]) -> bytes:
    """Encode a variable-length list as one field (its count, then its items)."""
    items = list(items)
    return encode(len(items), *items)


def digest(*items: Field) -> bytes:
    """SHA-256 of the canonical encoding of ``items``."""
    return hashlib.sha256(encode(*items)).digest()
