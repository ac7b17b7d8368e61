"""Encryption, the aggregator's sum, decryption: precision (T49), BFV exactness (T51), size."""

from __future__ import annotations

import numpy as np
import pytest

from secagg import he
from secagg.errors import HEParameterError, OverflowRisk, ParameterError
from tests.unit.conftest import Keys, make_keys

DIM = 4096


@pytest.mark.parametrize("profile", ["ckks", "ckks_compact", "ckks_nvflare"])
@pytest.mark.parametrize("n", [2, 32, 128])
def test_t49_ckks_precision(profile: str, n: int, request: pytest.FixtureRequest) -> None:
    keys: Keys = request.getfixturevalue(profile)
    assert isinstance(keys.params, he.CkksParams)
    he.check_ckks(keys.params, clients=n, max_abs=1.0)
    xs = np.random.default_rng(n).uniform(-1, 1, size=(n, DIM))
    total = he.add_all(keys.public, [he.encrypt(keys.secret, x) for x in xs], length=DIM)
    got = he.decrypt(keys.secret, total, DIM)
    he.check_aggregate(got, clients=n, max_abs=1.0)
    exact = xs.sum(axis=0)
    assert np.abs(got - exact).max() <= 1e-6  # N2 (measured ≤ 4e-8, see the issue report)
    assert np.abs(got / n - exact / n).max() <= 1e-6


@pytest.mark.parametrize("length", [1, 4095, 4096, 4097, 8192, 8193, 3 * 8192 + 5])
def test_ckks_round_trip_any_length(ckks: Keys, length: int) -> None:
    x = np.sin(np.arange(length, dtype=np.float64))
    blobs = he.encrypt(ckks.secret, x)
    assert len(blobs) == he.chunk_count(he.CKKS_8192, length) == -(-length // 8192)
    got = he.decrypt(ckks.secret, he.add_all(ckks.public, [blobs], length=length), length)
    assert got.shape == (length,)
    assert np.abs(got - x).max() < 1e-8


def test_ckks_multidimensional_input_is_flattened(ckks: Keys) -> None:
    x = np.arange(12.0).reshape(3, 4) / 12
    got = he.decrypt(
        ckks.secret, he.add_all(ckks.public, [he.encrypt(ckks.secret, x)], length=12), 12
    )
    assert np.abs(got - x.ravel()).max() < 1e-8


@pytest.mark.parametrize("profile,max_bytes", [("ckks", 8.1), ("ckks_compact", 7.3), ("bfv", 8.1)])
def test_upload_bytes_per_value(
    profile: str, max_bytes: float, request: pytest.FixtureRequest
) -> None:
    keys: Keys = request.getfixturevalue(profile)
    d = 4 * 8192
    x = np.linspace(-1, 1, d)
    blobs = (
        he.encrypt(keys.secret, x)
        if isinstance(keys.params, he.CkksParams)
        else he.encrypt_ints(keys.secret, (x * 1000).astype(np.int64))
    )
    per_value = sum(map(len, blobs)) / d
    assert per_value <= max_bytes  # seed-compressed, one prime, two values per slot (CKKS)
    low, high = he.blob_bounds(keys.params, fresh=True)
    assert all(low <= len(b) <= high for b in blobs)


def test_ckks_input_checks(ckks: Keys) -> None:
    with pytest.raises(ParameterError, match="NaN"):
        he.encrypt(ckks.secret, np.array([0.0, np.nan]))
    with pytest.raises(ParameterError, match="positive"):
        he.encrypt(ckks.secret, np.array([]))
    with pytest.raises(OverflowRisk):  # one client alone already beyond the sum limit
        he.encrypt(ckks.secret, np.array([2.0**19]))
    with pytest.raises(HEParameterError, match="BFV"):
        he.encrypt_ints(ckks.secret, np.array([1]))


def test_t51_bfv_exact_below_the_bound(bfv: Keys) -> None:
    t = he.BFV_8192.plain_modulus
    n, d = 16, 10_000
    bound = (t - 1) // 2 // n  # n·bound ≤ (t − 1)/2: the largest configuration allowed
    he.check_bfv(he.BFV_8192, clients=n, max_abs=bound)
    rng = np.random.default_rng(5)
    xs = rng.integers(-bound, bound + 1, size=(n, d))
    xs[:, 0] = bound  # the extremes are hit exactly
    xs[:, 1] = -bound
    total = he.add_all(bfv.public, [he.encrypt_ints(bfv.secret, x) for x in xs], length=d)
    got = he.decrypt_ints(bfv.secret, total, d)
    assert got.dtype == np.int64
    assert np.array_equal(got, xs.sum(axis=0))
    he.check_aggregate(got, clients=n, max_abs=bound, atol=0)


def test_t51_bfv_wrap_is_refused_and_happens_when_forced() -> None:
    small_t = he.BfvParams(8192, 1_032_193, (60, 60))  # M4's plain modulus
    with pytest.raises(OverflowRisk, match="wrap"):
        he.check_bfv(small_t, clients=32, max_abs=20_000)
    keys = make_keys(small_t)
    x = np.full(8, 20_000)
    total = he.add_all(keys.public, [he.encrypt_ints(keys.secret, x)] * 32, length=8)
    got = he.decrypt_ints(keys.secret, total, 8)
    assert (got == 640_000 - 1_032_193).all()  # -392,193, exactly as measured in M4
    # The wrapped sum even passes the aggregate check (|−392,193| < 32 × 20,000): only the
    # parameter validator above prevents this.
    he.check_aggregate(got, clients=32, max_abs=20_000, atol=0)


def test_bfv_input_range(bfv: Keys) -> None:
    half = he.BFV_8192.max_centred
    he.encrypt_ints(bfv.secret, np.array([half, -half]))
    with pytest.raises(OverflowRisk):
        he.encrypt_ints(bfv.secret, np.array([half + 1]))
    with pytest.raises(ParameterError, match="integer"):
        he.encrypt_ints(bfv.secret, np.array([0.5]))
    with pytest.raises(ParameterError, match=r"\[0, t\)"):
        he.encrypt_residues(bfv.secret, np.array([he.BFV_8192.plain_modulus]))


def test_bfv_pairwise_masks_inside_plaintexts_cancel(bfv: Keys) -> None:
    """Hybrid mode: masks mod t make each upload uniform, and still cancel in the sum."""
    t = he.BFV_8192.plain_modulus
    rng = np.random.default_rng(9)
    n, d = 4, 3000
    xs = rng.integers(-1000, 1001, size=(n, d))
    masks = rng.integers(0, t, size=(n, d))
    masks[-1] = (-masks[:-1].sum(axis=0)) % t  # zero-sum masks
    uploads = [he.encrypt_residues(bfv.secret, (x + m) % t) for x, m in zip(xs, masks, strict=True)]
    got = he.decrypt_ints(bfv.secret, he.add_all(bfv.public, uploads, length=d), d)
    assert np.array_equal(got, xs.sum(axis=0))


def test_bfv_noise_budget_left_after_128_additions(bfv: Keys) -> None:
    x = np.arange(8192) - 4096
    blob = he.encrypt_ints(bfv.secret, x)
    total = he.add_all(bfv.public, [blob] * 128, length=8192)
    engine = bfv.secret.engine
    assert engine.noise_budget(engine.load(total[0])) >= 10
    assert np.array_equal(he.decrypt_ints(bfv.secret, total, 8192), 128 * x)


def test_sum_is_atomic_per_upload(ckks: Keys) -> None:
    x = np.linspace(-1, 1, 9000)
    good = he.encrypt(ckks.secret, x)
    total = he.CiphertextSum(ckks.public, length=x.size)
    total.add(good)
    bad = [good[0], b""]
    with pytest.raises(he.InvalidCiphertext):
        total.add(bad)
    with pytest.raises(he.InvalidCiphertext, match="expected 2"):
        total.add(good[:1])
    total.add(good)
    assert total.count == 2
    got = he.decrypt(ckks.secret, total.result(), x.size)
    assert np.abs(got - 2 * x).max() < 1e-8
    with pytest.raises(ParameterError):
        he.CiphertextSum(ckks.public, length=1).result()


def test_add_all_names_the_bad_client(ckks: Keys) -> None:
    x = np.zeros(10)
    good = he.encrypt(ckks.secret, x)
    with pytest.raises(he.InvalidCiphertext) as info:
        he.add_all(ckks.public, [good, good, [b""]], length=10)
    assert info.value.client == 2
    with pytest.raises(ParameterError):
        he.add_all(ckks.public, [], length=10)
