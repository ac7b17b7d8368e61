"""Parameter validation: security bound (T54), scale floor (N2), BFV modulus rules, primes."""

from __future__ import annotations

import math

import pytest

from secagg import he
from secagg.errors import HEParameterError, OverflowRisk, ParameterError, SecAggError
from secagg.he import _native
from secagg.he.params import MAX_COEFF_MOD_BITS, coeff_primes, is_prime

# Moduli that sum to exactly the bound (N = 1024 cannot hold two primes ≡ 1 mod 2048 in 27 bits).
AT_BOUND = {
    2048: (32, 22),
    4096: (60, 49),
    8192: (60, 60, 60, 38),
    16384: (60, 60, 60, 60, 60, 60, 39, 39),
    32768: (60,) * 14 + (41,),
}


@pytest.mark.parametrize("degree", sorted(AT_BOUND))
def test_security_bound_is_the_standard_table(degree: int) -> None:
    bits = AT_BOUND[degree]
    assert sum(bits) == MAX_COEFF_MOD_BITS[degree]
    he.CkksParams(degree, bits, 30 if bits[0] < 60 else 40)  # exactly at the bound: accepted
    over = (bits[0] + 1, *bits[1:]) if bits[0] < 60 else (*bits[:-1], bits[-1] + 1)
    with pytest.raises(HEParameterError, match="security bound"):
        he.CkksParams(degree, over, 30)


def test_t54_240_bits_at_8192_refused_by_us_and_by_seal() -> None:
    with pytest.raises(HEParameterError, match="218"):
        he.CkksParams(8192, (60, 60, 60, 60), 40)
    with pytest.raises(HEParameterError, match="218"):
        he.BfvParams(8192, 1_032_193, (60, 60, 60, 60))
    forged = object.__new__(he.CkksParams)  # skip our checks to show SEAL's own refusal (M8)
    object.__setattr__(forged, "poly_degree", 8192)
    object.__setattr__(forged, "coeff_mod_bits", (60, 60, 60, 60))
    object.__setattr__(forged, "scale_bits", 40)
    with pytest.raises(HEParameterError, match="TenSEAL refused"):
        _native.new_context(forged)


def test_t49_scale_below_2_30_refused() -> None:
    with pytest.raises(HEParameterError, match="below 2\\^30"):
        he.CkksParams(8192, (60, 40, 60), 29)
    with pytest.raises(HEParameterError, match="below 2\\^30"):
        he.CkksParams(8192, (60, 21, 21, 21, 60), 21)  # M1's failing configuration
    he.CkksParams(8192, (60, 40, 60), 30)


def test_scale_needs_headroom_under_the_first_prime() -> None:
    with pytest.raises(HEParameterError, match="headroom"):
        he.CkksParams(8192, (40, 40), 39)
    he.CkksParams(8192, (40, 40), 38)


@pytest.mark.parametrize(
    "degree,bits",
    [(1000, (60, 60)), (8192, (60,)), (8192, (61, 60)), (8192, (1, 60)), (8192, [60, 60])],
)
def test_malformed_rings_refused(degree: int, bits: tuple[int, ...]) -> None:
    with pytest.raises(HEParameterError):
        he.CkksParams(degree, bits, 40)


@pytest.mark.parametrize(
    "degree,bits",
    [(8192, (60, 40, 40, 60)), (8192, (50, 50)), (4096, (40, 20, 40)), (16384, (60,) * 7)],
)
def test_primes_match_seal(degree: int, bits: tuple[int, ...]) -> None:
    ctx = _native.new_context(he.CkksParams(degree, bits, 30))
    assert _native.describe_context(ctx)[2] == coeff_primes(degree, bits)
    for p in coeff_primes(degree, bits):
        assert p % (2 * degree) == 1 and is_prime(p)


def test_is_prime_against_trial_division() -> None:
    def slow(n: int) -> bool:
        return n >= 2 and all(n % d for d in range(2, math.isqrt(n) + 1))

    assert [n for n in range(5000) if is_prime(n)] == [n for n in range(5000) if slow(n)]
    for composite in (561, 41041, 3215031751, 3825123056546413051, (2**31 - 1) * (2**61 - 1)):
        assert not is_prime(composite)
    for prime in (2**61 - 1, 1_073_692_673, 1_032_193):
        assert is_prime(prime)


def test_bfv_plain_modulus_must_be_a_batching_prime() -> None:
    with pytest.raises(HEParameterError, match="batching"):
        he.BfvParams(8192, 1_032_195, (60, 60))  # not prime
    with pytest.raises(HEParameterError, match="batching"):
        he.BfvParams(8192, 1_000_003, (60, 60))  # prime, but not 1 mod 16384
    with pytest.raises(HEParameterError):
        he.BfvParams(8192, 2, (60, 60))
    p = he.BFV_8192
    assert is_prime(p.plain_modulus) and p.plain_modulus % (2 * p.poly_degree) == 1


def test_bfv_noise_rule() -> None:
    t50 = coeff_primes(8192, (50,))[0]  # a 50-bit batching prime leaves too little of q0 = 2^60
    with pytest.raises(HEParameterError, match="noise"):
        he.BfvParams(8192, t50, (60, 60))
    with pytest.raises(HEParameterError, match="noise"):
        he.check_bfv(he.BFV_8192, clients=1 << 20, max_abs=1)
    he.check_bfv(he.BFV_8192, clients=128, max_abs=1)


def test_ckks_sum_limit_rule() -> None:
    # q0 of 60 bits at scale 2^40: the limit is q0 / (2·√2·2^40) ≈ 2^18.5, minus noise.
    q0 = coeff_primes(8192, (60, 40, 40, 60))[0]
    limit = he.ckks_sum_limit(he.CKKS_8192, clients=1)
    assert limit == pytest.approx(q0 / (2 * math.sqrt(2) * 2**40), rel=1e-12)
    assert 2**18.49 < limit < 2**18.5
    assert he.ckks_sum_limit(he.CKKS_8192_COMPACT, clients=128) > 128 * math.sqrt(2) * 4
    he.check_ckks(he.CKKS_8192, clients=128, max_abs=limit / 128 * 0.999)
    with pytest.raises(OverflowRisk):
        he.check_ckks(he.CKKS_8192, clients=128, max_abs=limit / 128)
    with pytest.raises(OverflowRisk):  # security.md T50's point of silent corruption
        he.check_ckks(he.CKKS_8192_NVFLARE, clients=1, max_abs=2.0**19)


def test_check_bfv_refuses_at_half_the_plain_modulus() -> None:
    t = he.BFV_8192.plain_modulus
    he.check_bfv(he.BFV_8192, clients=1, max_abs=(t - 1) // 2)
    with pytest.raises(OverflowRisk):
        he.check_bfv(he.BFV_8192, clients=1, max_abs=(t + 1) // 2)
    with pytest.raises(OverflowRisk):
        he.check_bfv(he.BFV_8192, clients=32, max_abs=t // 64 + 1)


@pytest.mark.parametrize(
    "clients,max_abs", [(0, 1.0), (-1, 1.0), (1, float("nan")), (1, float("inf")), (1, -1.0)]
)
def test_check_arguments(clients: int, max_abs: float) -> None:
    with pytest.raises(ParameterError):
        he.check_ckks(he.CKKS_8192, clients=clients, max_abs=max_abs)


def test_errors_are_value_errors() -> None:
    assert issubclass(HEParameterError, ValueError)
    assert issubclass(he.InvalidCiphertext, SecAggError)


def _old_lab_most_levels(clients: int, max_weight: int) -> int:
    """clients.lab.he_masked_sim.most_levels before issue 16 (power-of-two bits 30..1)."""
    for bits in range(30, 0, -1):
        try:
            he.check_bfv(he.BFV_8192, clients=clients, max_abs=((1 << bits) - 1) * max_weight)
        except OverflowRisk:
            continue
        return 1 << bits
    raise OverflowRisk("no quantisation fits this cohort under the plain modulus")


def _old_experiment_fit(clients: int, max_weight: int, levels: int) -> int:
    """clients.lab.experiment's loop before issue 16 (halve from the asked levels)."""
    fit = levels
    while fit > 2:
        try:
            he.check_bfv(he.BFV_8192, clients=clients, max_abs=(fit - 1) * max_weight)
            break
        except OverflowRisk:
            fit //= 2
    return fit


@pytest.mark.parametrize("clients", [3, 5, 10, 32, 64, 100])
@pytest.mark.parametrize("max_weight", [1, 7, 100])
def test_most_bfv_levels_gives_what_both_old_fittings_gave(clients: int, max_weight: int) -> None:
    """One rule replaces the lab's bit search and the experiment's halving: same levels."""
    fit = he.most_bfv_levels(he.BFV_8192, clients=clients, max_weight=max_weight)
    assert fit == _old_lab_most_levels(clients, max_weight)
    he.check_bfv(he.BFV_8192, clients=clients, max_abs=(fit - 1) * max_weight)
    with pytest.raises(OverflowRisk):  # the next power of two would not fit
        he.check_bfv(he.BFV_8192, clients=clients, max_abs=(2 * fit - 1) * max_weight)
    for asked in (16, 1 << 10, 1 << 16):
        assert he.most_bfv_levels(
            he.BFV_8192, clients=clients, max_weight=max_weight, at_most=asked
        ) == _old_experiment_fit(clients, max_weight, asked)


def test_most_bfv_levels_refuses_when_nothing_fits() -> None:
    t = he.BFV_8192.plain_modulus
    with pytest.raises(OverflowRisk, match="no quantisation fits"):
        he.most_bfv_levels(he.BFV_8192, clients=4, max_weight=t)
    with pytest.raises(ParameterError):
        he.most_bfv_levels(he.BFV_8192, clients=4, max_weight=1, at_most=1)
    with pytest.raises(ParameterError):
        he.most_bfv_levels(he.BFV_8192, clients=4, max_weight=0)
