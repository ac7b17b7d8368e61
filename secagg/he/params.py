"""HE parameter sets, named profiles, and the validators that refuse unsafe ones.

Pure Python: no TenSEAL import, so a configuration can be checked anywhere.
The coefficient-modulus primes are recomputed here exactly as SEAL's
``CoeffModulus::Create`` picks them (the largest primes below 2^bits that are
≡ 1 mod 2N), because the overflow rules depend on the actual prime, not its
nominal bit size; a test checks the two agree.

Rules (each refusal raises; nothing is clamped or wrapped silently):

- **Security** [HomomorphicEncryption.org standard, 128-bit, ternary secret]:
  the total coefficient modulus (special prime included) must not exceed
  ``MAX_COEFF_MOD_BITS[N]``. SEAL itself refuses 240 bits at N = 8192 (M8).
- **CKKS scale** ≥ 2^30: below it the error of a sum reaches 1e-2 (M1).
- **CKKS magnitude** (add-only, see :func:`ckks_sum_limit`): ciphertexts are
  encrypted at the lowest level, where only the first prime q0 is left, and
  two values share each slot (real and imaginary part). A coefficient of the
  encoded sum is at most √2·Σ|x|·Δ plus noise, and decoding is centred
  modulo q0, so the sum decodes correctly while
  √2·n·max|x|·Δ + n·32 < q0/2, i.e. n·max|x| < ≈2^(b0 − s − 1.5).
  For q0 of 60 bits at Δ = 2^40 that is ≈2^18.5 (security.md T50 quotes
  2^(b0 − s − 1) = 2^19 for real-only packing; √2 is the price of packing two
  values per slot). The 32 covers one client's encryption noise (≤ 6σ ≈ 19.2,
  SEAL's clipped Gaussian) plus encoding rounding.
- **BFV range**: centred decoding is exact iff |Σ| ≤ (t − 1)/2, so
  n·max|x| ≥ t/2 is refused (N3).
- **BFV noise**: a fresh symmetric ciphertext keeps ≈ log2(q/t) − 5 bits of
  noise budget at N = 8192 and each doubling of the client count costs ≤ 1
  bit (measured: 35 → 31 bits over 128 additions at t ≈ 2^20, q0 ≈ 2^60). We
  require log2(q_data) − log2(t) − log2(n) − log2(N) ≥ 4; at its edge for
  N = 8192, n = 128 (t ≈ 2^36) SEAL still reports 15 bits left (measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

from secagg.errors import HEParameterError, OverflowRisk, ParameterError

#: Largest total coefficient-modulus bit count per polynomial degree for 128-bit
#: security (HomomorphicEncryption.org standard, classical, ternary secret).
MAX_COEFF_MOD_BITS: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}

#: Smallest CKKS scale we accept, in bits (N2: 2^21 gave errors of 6e-2, M1).
MIN_SCALE_BITS = 30

#: Per-client bound on |encryption noise + encoding rounding| in a decoded
#: coefficient (SEAL clips its Gaussian at 6σ = 19.2; rounding adds 0.5).
_NOISE_PER_CLIENT = 32

#: Spare noise-budget bits the BFV rule keeps (see the module docstring).
_BFV_SPARE_BITS = 4

# SEAL's limits on one coefficient-modulus prime.
_MIN_PRIME_BITS = 2
_MAX_PRIME_BITS = 60


@dataclass(frozen=True, slots=True)
class CkksParams:
    """CKKS: degree N, coefficient-modulus bit sizes (last one = special prime), scale 2^s."""

    poly_degree: int
    coeff_mod_bits: tuple[int, ...]
    scale_bits: int

    def __post_init__(self) -> None:
        _check_ring(self.poly_degree, self.coeff_mod_bits)
        if not isinstance(self.scale_bits, int) or self.scale_bits < MIN_SCALE_BITS:
            raise HEParameterError(
                f"CKKS scale 2^{self.scale_bits} is below 2^{MIN_SCALE_BITS}: "
                "sums would lose precision (N2)"
            )
        if self.scale_bits + 2 > self.coeff_mod_bits[0]:
            raise HEParameterError(
                f"scale 2^{self.scale_bits} leaves no headroom under the first prime "
                f"({self.coeff_mod_bits[0]} bits); need scale bits ≤ first prime bits − 2"
            )

    @property
    def scale(self) -> float:
        """Δ = 2^scale_bits."""
        return float(2**self.scale_bits)

    @property
    def values_per_ciphertext(self) -> int:
        """N/2 complex slots, each carrying two reals: N values per ciphertext."""
        return self.poly_degree


@dataclass(frozen=True, slots=True)
class BfvParams:
    """BFV with batching: degree N, prime plain modulus t ≡ 1 mod 2N, coefficient bits."""

    poly_degree: int
    plain_modulus: int
    coeff_mod_bits: tuple[int, ...]

    def __post_init__(self) -> None:
        _check_ring(self.poly_degree, self.coeff_mod_bits)
        t = self.plain_modulus
        if not isinstance(t, int) or not 2 < t < 1 << _MAX_PRIME_BITS:
            raise HEParameterError("plain modulus must be an integer in (2, 2^60)")
        if t % (2 * self.poly_degree) != 1 or not is_prime(t):
            raise HEParameterError(
                f"plain modulus {t} must be a prime ≡ 1 mod 2N = {2 * self.poly_degree} "
                "for batching"
            )
        _check_bfv_noise(self, clients=1)

    @property
    def values_per_ciphertext(self) -> int:
        """N batching slots per ciphertext."""
        return self.poly_degree

    @property
    def max_centred(self) -> int:
        """Largest |value| centred decoding returns exactly: (t − 1)/2."""
        return (self.plain_modulus - 1) // 2


HEParams = CkksParams | BfvParams


def check_ckks(params: CkksParams, *, clients: int, max_abs: float) -> None:
    """Refuse (:class:`OverflowRisk`) if n sums of |x| ≤ ``max_abs`` could decode wrongly."""
    _check_population(clients)
    if not (math.isfinite(max_abs) and max_abs >= 0):
        raise ParameterError("max_abs must be a non-negative finite number")
    limit = ckks_sum_limit(params, clients=clients)
    if clients * max_abs >= limit:
        raise OverflowRisk(
            f"{clients} clients × |x| ≤ {max_abs} could reach {clients * max_abs:g}, but "
            f"sums must stay below {limit:.6g} with first prime {params.coeff_mod_bits[0]} "
            f"bits and scale 2^{params.scale_bits}: the sum would wrap silently"
        )


def check_bfv(params: BfvParams, *, clients: int, max_abs: int) -> None:
    """Refuse if n values with |x| ≤ ``max_abs`` could wrap mod t or exhaust the noise budget."""
    _check_population(clients)
    if not isinstance(max_abs, int) or max_abs < 0:
        raise ParameterError("max_abs must be a non-negative integer")
    if 2 * clients * max_abs >= params.plain_modulus:
        raise OverflowRisk(
            f"{clients} clients × |x| ≤ {max_abs} = {clients * max_abs} ≥ t/2 = "
            f"{params.plain_modulus / 2:g}: centred decoding would wrap (N3)"
        )
    _check_bfv_noise(params, clients=clients)


def most_bfv_levels(
    params: BfvParams, *, clients: int, max_weight: int, at_most: int = 1 << 30
) -> int:
    """The most quantisation levels Q whose weighted n-client sum BFV holds.

    Q levels weighted by at most ``max_weight`` sum to n·(Q − 1)·w_max, which
    :func:`check_bfv` must accept (no wrap mod t, noise budget). Tries Q =
    ``at_most``, ``at_most``/2, … down to 2 (a power of two stays one), the
    one fitting rule for every caller. Raises :class:`OverflowRisk` when not
    even Q = 2 fits this cohort.
    """
    if isinstance(at_most, bool) or not isinstance(at_most, int) or at_most < 2:
        raise ParameterError("at_most must be an int of at least 2 levels")
    if isinstance(max_weight, bool) or not isinstance(max_weight, int) or max_weight < 1:
        raise ParameterError("max_weight must be a positive int")
    levels = at_most
    while levels >= 2:
        try:
            check_bfv(params, clients=clients, max_abs=(levels - 1) * max_weight)
        except OverflowRisk:
            levels //= 2
            continue
        return levels
    raise OverflowRisk(
        f"no quantisation fits {clients} clients with weights ≤ {max_weight} under t = "
        f"{params.plain_modulus}"
    )


def ckks_sum_limit(params: CkksParams, *, clients: int) -> float:
    """Bound on Σ|x| per coordinate that decodes exactly: (q0/2 − n·32)/(√2·Δ)."""
    _check_population(clients)
    q0 = coeff_primes(params.poly_degree, params.coeff_mod_bits)[0]
    return (q0 / 2 - clients * _NOISE_PER_CLIENT) / (math.sqrt(2.0) * params.scale)


def data_primes(params: HEParams) -> tuple[int, ...]:
    """Primes a client's ciphertext lives on (CKKS: q0 only; BFV: all but the special prime)."""
    primes = coeff_primes(params.poly_degree, params.coeff_mod_bits)
    return primes[:1] if isinstance(params, CkksParams) else primes[:-1]


@cache
def coeff_primes(poly_degree: int, bits: tuple[int, ...]) -> tuple[int, ...]:
    """The primes SEAL's ``CoeffModulus::Create(N, bits)`` returns, in the same order.

    For each size, SEAL takes the largest primes p < 2^bits with p ≡ 1 mod 2N,
    walking down; repeated sizes are handed out smallest-first.
    """
    factor = 2 * poly_degree
    found: dict[int, list[int]] = {}
    for size in sorted(set(bits)):
        need = bits.count(size)
        value = ((1 << size) - 1) // factor * factor + 1
        lower = 1 << (size - 1)
        primes: list[int] = []
        while len(primes) < need and value > lower:
            if is_prime(value):
                primes.append(value)
            value -= factor
        if len(primes) < need:
            raise HEParameterError(f"no {need} primes of {size} bits are ≡ 1 mod {factor}")
        found[size] = primes
    return tuple(found[size].pop() for size in bits)


def is_prime(n: int) -> bool:
    """Deterministic Miller–Rabin for n < 3.3·10^24 (these bases suffice)."""
    if n < 2:
        return False
    small = (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41)
    for p in small:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for a in small:
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = x * x % n
            if x == n - 1:
                break
        else:
            return False
    return True


def _check_ring(poly_degree: int, bits: tuple[int, ...]) -> None:
    if poly_degree not in MAX_COEFF_MOD_BITS:
        raise HEParameterError(
            f"poly degree {poly_degree} unsupported; use one of {sorted(MAX_COEFF_MOD_BITS)}"
        )
    if not isinstance(bits, tuple) or len(bits) < 2:
        raise HEParameterError(
            "need at least two coefficient-modulus primes (TenSEAL requires a special prime)"
        )
    if any(not isinstance(b, int) or not _MIN_PRIME_BITS <= b <= _MAX_PRIME_BITS for b in bits):
        raise HEParameterError(f"each prime needs {_MIN_PRIME_BITS}..{_MAX_PRIME_BITS} bits")
    bound = MAX_COEFF_MOD_BITS[poly_degree]
    if sum(bits) > bound:
        raise HEParameterError(
            f"total coefficient modulus {sum(bits)} bits exceeds the 128-bit security bound "
            f"of {bound} bits at N = {poly_degree}"
        )
    coeff_primes(poly_degree, bits)  # raises if SEAL could not find the primes either


def _check_bfv_noise(params: BfvParams, *, clients: int) -> None:
    q_bits = sum(math.log2(p) for p in data_primes(params))
    spare = (
        q_bits
        - math.log2(params.plain_modulus)
        - math.log2(clients)
        - math.log2(params.poly_degree)
    )
    if spare < _BFV_SPARE_BITS:
        raise HEParameterError(
            f"BFV noise: log2(q/t) = {q_bits - math.log2(params.plain_modulus):.1f} bits cannot "
            f"absorb {clients} additions at N = {params.poly_degree}; use a smaller plain modulus "
            "or more data primes"
        )


def _check_population(clients: int) -> None:
    if not isinstance(clients, int) or clients < 1:
        raise ParameterError("clients must be a positive integer")


# Named profiles (built last: construction runs the checks above).
#: The documented CKKS profile (security.md T49, M1): 4 primes, scale 2^40.
CKKS_8192 = CkksParams(poly_degree=8192, coeff_mod_bits=(60, 40, 40, 60), scale_bits=40)
#: Smallest context and ciphertexts that still meet N2 for n ≤ 128, |x| ≤ 1:
#: one 50-bit data prime at scale 2^38 (sum limit ≈ 1,448; measured precision
#: in the tests and the issue report).
CKKS_8192_COMPACT = CkksParams(poly_degree=8192, coeff_mod_bits=(50, 50), scale_bits=38)
#: NVIDIA FLARE's provisioning defaults (HEBuilder), for comparisons and T50.
CKKS_8192_NVFLARE = CkksParams(poly_degree=8192, coeff_mod_bits=(60, 40, 40), scale_bits=40)
#: BFV for quantised integers: t = 1,073,692,673 (30-bit prime ≡ 1 mod 16384), so
#: |Σ| ≤ 536,846,336 is exact; one 60-bit data prime keeps ≥ 10 bits of noise
#: budget spare for n ≤ 128 by the rule above.
BFV_8192 = BfvParams(poly_degree=8192, plain_modulus=1_073_692_673, coeff_mod_bits=(60, 60))
