"""Randomness as a parameter.

Nothing in ``secagg/`` or ``protocol/`` draws ambient randomness: every
function that samples takes a :class:`RandomSource`. Production code passes
:class:`SystemRandomSource` (the OS CSPRNG); tests and simulations pass
:class:`DeterministicRandomSource`, an AES-256-CTR stream keyed by a seed, so
runs are reproducible bit for bit.
"""

from __future__ import annotations

import hashlib
from typing import Protocol, runtime_checkable

import numpy as np
from Crypto.Random import get_random_bytes

from secagg.errors import ParameterError
from secagg.primitives.prg import SEED_BYTES, Keystream

#: Draws up to this size come straight from the OS; longer ones from a keystream.
OS_DRAW_LIMIT = 4096


@runtime_checkable
class RandomSource(Protocol):
    """Anything that returns uniformly random bytes."""

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        ...


class SystemRandomSource:
    """The operating system's CSPRNG (``os.urandom`` via pycryptodome).

    A long draw (stochastic-rounding coins: 4 bytes per parameter) is the
    AES-256-CTR keystream of 32 fresh OS bytes, the construction the masks
    already rest on, because the kernel's getrandom gives ~200 MB/s here and
    a 10^6-parameter round would spend 20 ms per client in it. Keys and seeds
    (at most a few hundred bytes) still come from the OS directly.
    """

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` uniformly random bytes."""
        if n <= 0:
            return b""
        if n <= OS_DRAW_LIMIT:
            return get_random_bytes(n)
        out = np.empty(n, dtype=np.uint8)
        Keystream(get_random_bytes(SEED_BYTES)).read_into(out)
        return out.tobytes()


class DeterministicRandomSource:
    """A reproducible stream for tests and simulations: AES-256-CTR of a seed.

    Never use it for real keys: anyone who knows the seed knows every output.
    """

    def __init__(self, seed: bytes | int | str) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "little", signed=True)
        elif isinstance(seed, str):
            seed = seed.encode()
        key = hashlib.sha256(b"secagg/v1/deterministic-rng\x00" + seed).digest()
        self._stream = Keystream(key)

    def random_bytes(self, n: int) -> bytes:
        """Return the next ``n`` bytes of the keystream."""
        if n <= 0:
            return b""
        out = np.empty(n, dtype=np.uint8)
        self._stream.read_into(out)
        return out.tobytes()

    def fork(self, label: str) -> DeterministicRandomSource:
        """Return an independent stream (for one simulated party)."""
        return DeterministicRandomSource(self.random_bytes(32) + label.encode())


def uniform_floats(rng: RandomSource, n: int) -> np.ndarray:
    """``n`` floats uniform on [0, 1) with 53 random bits each (vectorised)."""
    if n < 0:
        raise ParameterError("n must be non-negative")
    words = np.frombuffer(rng.random_bytes(8 * n), dtype="<u8")
    return (words >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def uniform_below(rng: RandomSource, bound: int, n: int) -> np.ndarray:
    """``n`` integers uniform on [0, bound), exactly (rejection sampling on 32-bit words).

    Returns ``uint32``; ``bound`` must be in [1, 2**32].
    """
    if not 1 <= bound <= 1 << 32:
        raise ParameterError("bound must be in [1, 2**32]")
    limit = ((1 << 32) // bound) * bound  # accept words below the largest multiple of bound
    out = np.empty(n, dtype=np.uint32)
    filled = 0
    while filled < n:
        want = n - filled
        draw = want + want // 8 + 16
        words = np.frombuffer(rng.random_bytes(4 * draw), dtype="<u4").astype(np.uint64)
        ok = words[words < limit][:want]
        out[filled : filled + ok.size] = (ok % bound).astype(np.uint32)
        filled += ok.size
    return out
