"""Fixtures shared by the unit tests: HE contexts (key generation takes 10–30 ms each)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from secagg import he


@dataclass(frozen=True)
class Keys:
    """A key holder's context and the aggregator's public context for the same key."""

    params: he.HEParams
    secret: he.HEContext
    public: he.HEContext


def make_keys(params: he.HEParams) -> Keys:
    secret = he.make_context(params)
    return Keys(params, secret, he.load_public(he.public_bytes(secret), params))


@pytest.fixture(scope="session")
def ckks() -> Keys:
    return make_keys(he.CKKS_8192)


@pytest.fixture(scope="session")
def ckks_compact() -> Keys:
    return make_keys(he.CKKS_8192_COMPACT)


@pytest.fixture(scope="session")
def ckks_nvflare() -> Keys:
    return make_keys(he.CKKS_8192_NVFLARE)


@pytest.fixture(scope="session")
def bfv() -> Keys:
    return make_keys(he.BFV_8192)
