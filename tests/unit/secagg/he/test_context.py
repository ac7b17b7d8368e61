"""Key separation (T52, M5): the aggregator's context holds no key; the key holders' does."""

from __future__ import annotations

import numpy as np
import pytest

from secagg import he
from secagg.errors import HEParameterError
from secagg.he import _native
from tests.unit.conftest import Keys

PROFILES = [he.CKKS_8192, he.CKKS_8192_COMPACT, he.BFV_8192]


def _encrypt(ctx: he.HEContext, n: int) -> list[bytes]:
    if isinstance(ctx.params, he.CkksParams):
        return he.encrypt(ctx, np.linspace(-1, 1, n))
    return he.encrypt_ints(ctx, np.arange(n) - n // 2)


@pytest.mark.parametrize("params", PROFILES, ids=repr)
def test_t52_public_bytes_hold_no_secret_key(params: he.HEParams) -> None:
    ctx = he.make_context(params)
    pub = he.public_bytes(ctx)
    secret = he.secret_bytes(ctx)
    # A secret key is N words per prime; the public bytes are the parameters only.
    assert len(pub) < 1024 < params.poly_degree * 4 < len(secret)
    server = he.load_public(pub, params)
    assert not server.has_secret_key
    # TenSEAL itself has no key to hand out (not just our guard).
    with pytest.raises(ValueError, match="Secret key"):
        _native.secret_key(server.native)
    blobs = he.add_all(server, [_encrypt(ctx, 100)], length=100)
    with pytest.raises(HEParameterError, match="secret"):
        if isinstance(params, he.CkksParams):
            he.decrypt(server, blobs, 100)
        else:
            he.decrypt_ints(server, blobs, 100)
    with pytest.raises(HEParameterError, match="secret key"):
        _encrypt(server, 10)  # symmetric: without the key the aggregator cannot forge inputs
    with pytest.raises(HEParameterError):
        he.secret_bytes(server)


def test_t52_secret_bytes_decrypt(ckks: Keys) -> None:
    x = np.linspace(-1, 1, 1000)
    total = he.add_all(ckks.public, [he.encrypt(ckks.secret, x)] * 3, length=x.size)
    other_client = he.load_secret(he.secret_bytes(ckks.secret), he.CKKS_8192)
    assert other_client.has_secret_key
    assert np.abs(he.decrypt(other_client, total, x.size) - 3 * x).max() < 1e-6
    # ... and what that client encrypts, the first one decrypts.
    back = he.add_all(ckks.public, [he.encrypt(other_client, x)], length=x.size)
    assert np.abs(he.decrypt(ckks.secret, back, x.size) - x).max() < 1e-6


def test_loading_refuses_the_wrong_kind_of_bytes(ckks: Keys) -> None:
    with pytest.raises(HEParameterError, match="outside"):  # too big to be a public context
        he.load_public(he.secret_bytes(ckks.secret), he.CKKS_8192)
    small = he.CkksParams(2048, (32, 22), 30)  # its secret context fits the public size cap
    with pytest.raises(HEParameterError, match="carry a secret key"):
        he.load_public(he.secret_bytes(he.make_context(small)), small)
    with pytest.raises(HEParameterError, match="no secret key"):
        he.load_secret(he.public_bytes(ckks.secret), he.CKKS_8192)


OTHERS = [
    he.CKKS_8192_COMPACT,
    he.CKKS_8192_NVFLARE,
    he.BFV_8192,
    he.CkksParams(8192, (60, 40, 40, 60), 41),
]


@pytest.mark.parametrize("other", OTHERS, ids=repr)
def test_loading_pins_the_parameters(ckks: Keys, other: he.HEParams) -> None:
    with pytest.raises(HEParameterError, match="differ"):
        he.load_public(he.public_bytes(ckks.secret), other)
    with pytest.raises(HEParameterError, match="differ"):
        he.load_secret(he.secret_bytes(ckks.secret), other)


@pytest.mark.parametrize("data", [b"", b"\x00" * 100, b"garbage" * 10, b"\xff" * (65 * 1024)])
def test_unreadable_or_oversized_context_refused(data: bytes) -> None:
    with pytest.raises(HEParameterError):
        he.load_public(data, he.CKKS_8192)


def test_public_context_is_parameters_only(ckks: Keys) -> None:
    # No relinearisation or Galois keys travel (we only add); the bytes stay tiny and stable.
    pub = he.public_bytes(ckks.secret)
    assert len(pub) < 256
    assert he.public_bytes(ckks.public) == pub
