"""T53: malformed ciphertexts are rejected before summing or caught after decrypting (M7)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest

from secagg import he
from secagg.he import _native
from tests.unit.conftest import Keys, make_keys

D = 8192
X = np.linspace(-1, 1, D)


def upload(keys: Keys, x: np.ndarray = X) -> list[bytes]:
    return he.encrypt(keys.secret, x)


def test_empty_blob_rejected(ckks: Keys) -> None:
    with pytest.raises(he.InvalidCiphertext, match="empty"):
        he.add_all(ckks.public, [upload(ckks), [b""]], length=D)
    with pytest.raises(he.InvalidCiphertext, match="expected 1"):
        he.add_all(ckks.public, [upload(ckks), []], length=D)


def _header(blob: bytes, **changes: int) -> bytes:
    fields = dict(
        zip(
            ["magic", "hsize", "major", "minor", "compr", "reserved", "size"],
            struct.unpack_from("<HBBBBHQ", blob),
            strict=True,
        )
    )
    fields.update(changes)
    return struct.pack("<HBBBBHQ", *fields.values()) + blob[16:]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:10],  # truncated header
        lambda b: b[:-1],  # declared size ≠ length
        lambda b: b + b"\x00",
        lambda b: _header(b, magic=0x1234),
        lambda b: _header(b, major=3),
        lambda b: _header(b, compr=1),  # zlib: not what clients send
        lambda b: _header(b, reserved=7),
        lambda b: _header(b[:1000], size=1000),  # consistent header, far too small
        lambda b: _header(b + b"\x00" * 70_000, size=len(b) + 70_000),  # far too large
    ],
    ids=["truncated", "short", "long", "magic", "version", "zlib", "reserved", "tiny", "huge"],
)
def test_header_and_size_checks_run_before_seal(
    ckks: Keys, mutate: Callable[[bytes], bytes]
) -> None:
    bad = mutate(upload(ckks)[0])
    with pytest.raises(he.InvalidCiphertext):
        he.check_blob(he.CKKS_8192, bad, fresh=True)
    with pytest.raises(he.InvalidCiphertext):
        he.add_all(ckks.public, [[bad]], length=D)


@pytest.mark.parametrize(
    "foreign",
    [
        he.CKKS_8192_COMPACT,  # smaller q0: size check
        he.CKKS_8192_NVFLARE,  # same size, other q0: SEAL's parms_id check
        he.BFV_8192,  # other scheme, same size: SEAL's parms_id check
        he.CkksParams(4096, (60, 40), 40),  # other slot count: size check
        he.CkksParams(16384, (60, 40, 60), 40),
    ],
    ids=repr,
)
def test_foreign_parameters_rejected_before_summing(ckks: Keys, foreign: he.HEParams) -> None:
    other = he.make_context(foreign)
    if isinstance(foreign, he.CkksParams):
        blobs = he.encrypt(other, X[: foreign.values_per_ciphertext])
    else:
        blobs = he.encrypt_ints(other, np.arange(D))
    with pytest.raises(he.InvalidCiphertext):
        he.add_all(ckks.public, [blobs[:1]], length=D)


def test_other_scale_or_level_rejected_after_loading(ckks: Keys) -> None:
    slots = np.zeros(D // 2, dtype=np.complex128)
    other_scale = ckks.secret.engine.encrypt_complex(slots, 2.0**41)
    with pytest.raises(he.InvalidCiphertext, match="scale"):
        he.add_all(ckks.public, [[other_scale]], length=D)
    # Encrypted at the top level (two data primes) instead of the lowest: twice the size.
    seal_ctx = ckks.secret.native.seal_context().data
    plain = _native.seal.Plaintext()
    _native.seal.CKKSEncoder(seal_ctx).encode(
        [0.0] * (D // 2), seal_ctx.first_parms_id(), 2.0**40, plain
    )
    encryptor = _native.seal.Encryptor(seal_ctx, _native.secret_key(ckks.secret.native))
    top_level = _native.save(encryptor.encrypt_symmetric(plain))
    with pytest.raises(he.InvalidCiphertext, match="outside"):
        he.add_all(ckks.public, [[top_level]], length=D)


def test_a_sum_cannot_be_uploaded_as_a_fresh_ciphertext(ckks: Keys) -> None:
    total = he.add_all(ckks.public, [upload(ckks)], length=D)
    with pytest.raises(he.InvalidCiphertext, match="outside"):
        he.add_all(ckks.public, [total], length=D)
    with pytest.raises(he.InvalidCiphertext, match="outside"):  # and fresh blobs are not sums
        he.decrypt(ckks.secret, upload(ckks), D)


def test_wrong_slot_count_rejected(ckks: Keys) -> None:
    with pytest.raises(he.InvalidCiphertext, match="expected 2"):
        he.add_all(ckks.public, [upload(ckks)], length=D + 1)
    with pytest.raises(he.InvalidCiphertext, match="expected 1"):
        he.decrypt(ckks.secret, he.add_all(ckks.public, [upload(ckks)], length=D) * 2, D)


def test_another_key_is_accepted_but_caught_after_decrypting(ckks: Keys) -> None:
    stranger = he.make_context(he.CKKS_8192)  # same parameters, another secret key
    total = he.add_all(ckks.public, [upload(ckks), he.encrypt(stranger, X), upload(ckks)], length=D)
    got = he.decrypt(ckks.secret, total, D)
    assert np.abs(got).max() > 1e6  # garbage of order q0/Δ·√N (M7 saw ≈1e31 with TenSEAL's path)
    with pytest.raises(he.InvalidCiphertext, match="another key"):
        he.check_aggregate(got, clients=3, max_abs=1.0)
    he.check_aggregate(
        he.decrypt(ckks.secret, he.add_all(ckks.public, [upload(ckks)] * 3, length=D), D),
        clients=3,
        max_abs=1.0,
    )


def test_bfv_another_key_caught_after_decrypting(bfv: Keys) -> None:
    x = np.arange(D) % 2001 - 1000
    stranger = make_keys(he.BFV_8192).secret
    blobs = [he.encrypt_ints(bfv.secret, x), he.encrypt_ints(stranger, x)]
    got = he.decrypt_ints(bfv.secret, he.add_all(bfv.public, blobs, length=D), D)
    with pytest.raises(he.InvalidCiphertext):
        he.check_aggregate(got, clients=2, max_abs=1000, atol=0)


def test_l2_bound(ckks: Keys) -> None:
    got = he.decrypt(ckks.secret, he.add_all(ckks.public, [upload(ckks)] * 2, length=D), D)
    norm = float(np.linalg.norm(2 * X))
    he.check_aggregate(got, clients=2, max_abs=1.0, l2_bound=norm * 1.0001)
    with pytest.raises(he.InvalidCiphertext, match="L2"):
        he.check_aggregate(got, clients=2, max_abs=1.0, l2_bound=norm * 0.99)
    with pytest.raises(he.InvalidCiphertext, match="finite"):
        he.check_aggregate(np.array([np.inf]), clients=2, max_abs=1.0)


def _flip_outcomes(
    keys: Keys,
    blob: bytes,
    others: list[list[bytes]],
    exact: np.ndarray,
    max_abs: float,
    atol: float,
) -> dict[str, int]:
    rng = np.random.default_rng(53)
    decrypt = he.decrypt if isinstance(keys.params, he.CkksParams) else he.decrypt_ints
    outcomes = {"rejected": 0, "caught": 0, "exact": 0, "silent": 0}
    for _ in range(200):
        bad = bytearray(blob)
        for _ in range(int(rng.integers(1, 9))):
            pos = int(rng.integers(0, len(bad) * 8))
            bad[pos // 8] ^= 1 << (pos % 8)
        try:
            total = he.add_all(keys.public, [*others, [bytes(bad)]], length=D)
        except he.InvalidCiphertext:
            outcomes["rejected"] += 1
            continue
        got = decrypt(keys.secret, total, D)
        try:
            he.check_aggregate(got, clients=len(others) + 1, max_abs=max_abs, atol=atol)
        except he.InvalidCiphertext:
            outcomes["caught"] += 1
            continue
        outcomes["exact" if np.abs(got - exact).max() <= atol else "silent"] += 1
    return outcomes


def test_ckks_bit_flips_are_rejected_or_caught(ckks: Keys) -> None:
    """M7: 122 of 300 flips passed TenSEAL silently. Here each flip is rejected before
    summing (header, size, SEAL's load, parameters) or caught after decrypting: the
    ciphertext is in NTT form, so any changed word scrambles every slot."""
    outcomes = _flip_outcomes(ckks, upload(ckks)[0], [upload(ckks)] * 2, 3 * X, 1.0, 1e-6)
    assert outcomes["silent"] == 0 and outcomes["exact"] == 0
    assert outcomes["rejected"] > 0 and outcomes["caught"] > 0


def test_bfv_bit_flips_are_rejected_caught_or_harmless(bfv: Keys) -> None:
    """BFV is in coefficient form: a flip under the noise margin is rounded away (exact
    sum); anything else is rejected, or scrambles every slot and is caught."""
    x = np.arange(D) % 2001 - 1000
    blobs = [he.encrypt_ints(bfv.secret, x) for _ in range(3)]
    outcomes = _flip_outcomes(bfv, blobs[0][0], blobs[1:], 3 * x, 1000, 0)
    assert outcomes["silent"] == 0
    assert outcomes["rejected"] > 0 and outcomes["caught"] > 0 and outcomes["exact"] > 0


@pytest.mark.parametrize("pos", range(16))
def test_every_header_byte_flip_is_rejected(ckks: Keys, pos: int) -> None:
    bad = bytearray(upload(ckks)[0])
    bad[pos] ^= 0x10
    with pytest.raises(he.InvalidCiphertext):
        he.add_all(ckks.public, [[bytes(bad)]], length=D)
