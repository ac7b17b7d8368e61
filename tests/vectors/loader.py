"""The one loader for known-answer vectors stored as JSON in ``tests/vectors/``.

Every vector file is a JSON object with a ``source`` (where the values come
from: an RFC, a paper, or ``make_prg_vectors.py`` for our own regression
vectors), a ``description``, and one or more lists of cases. Each case is an
object with an ``id`` and named fields: byte strings are lowercase hex
(``""`` is the empty string), integers are JSON numbers (Python's ``json``
reads them exactly, however large).

Published vectors are typed in by hand from their source and never change.
Our own vectors are written once by ``make_prg_vectors.py``; a change that
alters one of them must be deliberate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VECTOR_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True, slots=True)
class Vector:
    """One case of a vector file, with typed accessors for its fields."""

    id: str
    fields: Mapping[str, Any]

    def bytes_of(self, key: str) -> bytes:
        """Field ``key`` (a hex string) as bytes."""
        value = self.fields[key]
        if not isinstance(value, str):
            raise TypeError(f"{self.id}: field {key!r} is not a hex string")
        return bytes.fromhex(value)

    def int_of(self, key: str) -> int:
        """Field ``key`` as an int (bools are refused)."""
        value = self.fields[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{self.id}: field {key!r} is not an integer")
        return value

    def ints_of(self, key: str) -> list[int]:
        """Field ``key`` as a list of ints."""
        value = self.fields[key]
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise TypeError(f"{self.id}: field {key!r} is not a list of integers")
        return list(value)

    def floats_of(self, key: str) -> list[float]:
        """Field ``key`` as a list of floats (ints are widened)."""
        value = self.fields[key]
        if not isinstance(value, list) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in value
        ):
            raise TypeError(f"{self.id}: field {key!r} is not a list of numbers")
        return [float(v) for v in value]

    def str_of(self, key: str) -> str:
        """Field ``key`` as a plain string."""
        value = self.fields[key]
        if not isinstance(value, str):
            raise TypeError(f"{self.id}: field {key!r} is not a string")
        return value

    def raw_of(self, key: str) -> Any:
        """Field ``key`` as stored (for nested or mixed values)."""
        return self.fields[key]


def load_file(name: str) -> dict[str, Any]:
    """The parsed JSON object of ``tests/vectors/<name>.json``."""
    with (VECTOR_DIR / f"{name}.json").open(encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "source" not in data:
        raise ValueError(f"{name}.json: a vector file is an object with a 'source'")
    return data


def load(name: str, group: str = "cases") -> list[Vector]:
    """The cases in list ``group`` of ``tests/vectors/<name>.json``."""
    raw = load_file(name)[group]
    if not isinstance(raw, list) or not raw:
        raise ValueError(f"{name}.json: {group!r} must be a non-empty list")
    vectors = [Vector(id=str(case["id"]), fields=case) for case in raw]
    ids = [v.id for v in vectors]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{name}.json: duplicate case ids in {group!r}")
    return vectors


def params(name: str, group: str = "cases") -> list[Any]:
    """The cases of :func:`load` as ``pytest.param`` objects, with their ids."""
    return [pytest.param(v, id=v.id) for v in load(name, group)]
