"""HE contexts: the key holders' context (with the secret key) and the aggregator's (without).

One context per session, made by a key-holding client with symmetric
encryption: the secret key is the only key. So the public context the
aggregator gets holds no key at all (no public, relinearisation or Galois
keys; we only add). It can add ciphertexts but cannot decrypt, and cannot
encrypt chosen values either, so it can only form sums of what it received.
The secret context travels between clients in the key ceremony, encrypted
end to end by the caller (never in the clear, never to the aggregator).

Loading always pins the expected parameters: bytes whose scheme, degree,
primes, plain modulus or scale differ are refused, and so are public bytes
that carry a secret key.
"""

from __future__ import annotations

from dataclasses import dataclass

from secagg.errors import HEParameterError
from secagg.he import _native
from secagg.he.params import CkksParams, HEParams, coeff_primes

#: Public contexts are parameters only (≈ 100 bytes measured); anything far larger is refused
#: before TenSEAL parses it.
MAX_PUBLIC_CONTEXT_BYTES = 64 * 1024
#: A secret context is the parameters plus one key of N × primes words.
MAX_SECRET_CONTEXT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True, eq=False)
class HEContext:
    """A TenSEAL context pinned to ``params``; ``engine`` does the per-ciphertext work."""

    params: HEParams
    native: _native.Native
    engine: _native.Engine

    @property
    def has_secret_key(self) -> bool:
        """True for the key holders' context, False for the aggregator's."""
        return _native.has_secret_key(self.native)


def make_context(params: HEParams) -> HEContext:
    """A new context with a fresh secret key (SEAL draws it from its own PRNG)."""
    native = _native.new_context(params)
    return HEContext(params, native, _native.Engine(native, params))


def public_bytes(ctx: HEContext) -> bytes:
    """What the aggregator gets: the parameters, no key of any kind."""
    return _native.serialize_context(ctx.native, secret=False)


def secret_bytes(ctx: HEContext) -> bytes:
    """The context with its secret key, for the key ceremony between clients only."""
    if not ctx.has_secret_key:
        raise HEParameterError("this context holds no secret key")
    return _native.serialize_context(ctx.native, secret=True)


def load_public(data: bytes, params: HEParams) -> HEContext:
    """The aggregator's context; refuses bytes that carry a secret key or other parameters."""
    ctx = _load(data, params, MAX_PUBLIC_CONTEXT_BYTES)
    if ctx.has_secret_key:
        raise HEParameterError("public context bytes carry a secret key; refusing to hold it")
    return ctx


def load_secret(data: bytes, params: HEParams) -> HEContext:
    """A key holder's context; refuses bytes without a secret key or with other parameters."""
    ctx = _load(data, params, MAX_SECRET_CONTEXT_BYTES)
    if not ctx.has_secret_key:
        raise HEParameterError("context bytes hold no secret key")
    return ctx


def _load(data: bytes, params: HEParams, limit: int) -> HEContext:
    if not data or len(data) > limit:
        raise HEParameterError(f"context of {len(data)} bytes is outside (0, {limit}]")
    native = _native.load_context(bytes(data))
    scheme, degree, primes, plain, scale = _native.describe_context(native)
    primes_expected = coeff_primes(params.poly_degree, params.coeff_mod_bits)
    expected: tuple[str, int, tuple[int, ...], int, float | None]
    if isinstance(params, CkksParams):
        expected = ("ckks", params.poly_degree, primes_expected, 0, params.scale)
    else:
        expected = ("bfv", params.poly_degree, primes_expected, params.plain_modulus, None)
    if (scheme, degree, primes, plain, scale) != expected:
        raise HEParameterError("context parameters differ from the expected ones")
    return HEContext(params, native, _native.Engine(native, params))
