"""What a masked input is: the part of SecAgg a variant swaps out (FCP's style: plugged in).

SecAgg's client and server machines (:mod:`protocol.client`,
:mod:`protocol.server`) run the same keys, shares, graph, consistency check,
never-both-shares rule and dropout recovery for every variant. Three steps
differ, and only those go through a payload object the machines call:

* the client builds its upload from the weighted levels and its mask seeds
  (:meth:`ClientPayload.seal`);
* the server checks one upload and adds it to its sum, all or nothing
  (:meth:`ServerPayload.add`);
* once the seeds are rebuilt, the server takes the masks off
  (:meth:`ServerPayload.unmask`).

:class:`RingClientPayload` / :class:`RingServerPayload` are plain SecAgg
(masks mod 2^k, bit-packed); the machines use them unless told otherwise.
The hybrid HE mode (:mod:`protocol.he_masked`) plugs in masks mod the BFV
plain modulus inside BFV ciphertexts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from protocol.config import RoundConfig
from protocol.errors import InvalidMessage
from secagg.errors import InvalidShare, ParameterError
from secagg.masking import add_into, mask_input, remove_masks
from secagg.packing import pack, packed_size, unpack
from secagg.primitives.prg import reduce_mod, word_dtype
from secagg.primitives.signing import SigningKey
from secagg.quantization import Quantizer, dequantize_sum

#: Masked inputs are unpacked and summed this many 64-value groups at a time
#: (131,072 values: a few MiB of temporaries, whatever the model size).
SLICE_GROUPS = 2048

#: ``verify(signature, *fields)``: checks a signature by the sending client, raising
#: AuthenticationFailed (active profile) or InvalidMessage (a signature where none belongs).
Verifier = Callable[..., None]


class PayloadSource(Protocol):
    """A masked payload the host holds outside memory (an upload spooled to disk)."""

    @property
    def length(self) -> int:
        """Bytes in the payload."""
        ...

    @property
    def sha256(self) -> bytes:
        """SHA-256 of the whole payload (the host computed it while receiving)."""
        ...

    def read(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (fewer only past the end)."""
        ...


@dataclass(frozen=True)
class InMemory:
    """A payload already in memory, read through the same slices."""

    data: bytes

    @property
    def length(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.data).digest()

    def read(self, offset: int, size: int) -> bytes:
        return self.data[offset : offset + size]


@dataclass(frozen=True, slots=True)
class Seeds:
    """One client's mask seeds for this session: its self mask and one per SHARED peer."""

    me: int
    session: bytes
    self_seed: bytes
    pair_seeds: Mapping[int, bytes]


@dataclass(frozen=True, slots=True)
class AggregateResult:
    """The unmasked sum: Σ w_k·q(x_k) per coordinate and Σ w_k, over ``survivors``."""

    total: np.ndarray
    weight_sum: int
    survivors: tuple[int, ...]
    quantizer: Quantizer

    def weighted_sum(self) -> np.ndarray:
        """Σ_k w_k·x_k, dequantised."""
        return dequantize_sum(self.total, self.quantizer, weight_sum=self.weight_sum)

    def weighted_mean(self) -> np.ndarray:
        """Σ_k w_k·x_k / Σ_k w_k (the FedAvg update)."""
        if self.weight_sum == 0:
            raise ParameterError("all weights are zero")
        out: np.ndarray = self.weighted_sum() / self.weight_sum
        return out


class ClientPayload(Protocol):
    """The client's half of a variant: how the masked upload is built."""

    #: The policy judges the round as this variant (True: the bfv-masked hybrid).
    hybrid: bool

    def dtype(self, config: RoundConfig) -> np.dtype[np.unsignedinteger]:
        """The word the weighted levels are built in (no wrap: the config bounds them)."""
        ...

    def ready(self) -> bool:
        """Whether the upload can be built now (the hybrid waits for its HE key)."""
        ...

    def seal(
        self,
        values: np.ndarray,
        *,
        config: RoundConfig,
        seeds: Seeds,
        signing_key: SigningKey | None,
    ) -> bytes:
        """MaskedInput.payload for ``values`` = w·q(x) ‖ w (``values`` may be overwritten)."""
        ...

    def clear(self) -> None:
        """Drop whatever secret the payload holds (the round ended)."""
        ...


class ServerPayload(Protocol):
    """The server's half of a variant: the running sum and how the masks come off."""

    #: Whether uploads may be read in slices (:meth:`ServerMachine.receive_masked`).
    streams: bool

    def add(self, client: int, payload: PayloadSource, *, session: bytes, verify: Verifier) -> None:
        """Check one upload and add it to the sum; a refusal raises and leaves the sum as is."""
        ...

    def unmask(
        self,
        *,
        survivors: tuple[int, ...],
        self_seeds: Sequence[bytes],
        orphaned_pairs: Sequence[tuple[int, int, bytes]],
    ) -> AggregateResult | None:
        """Take every remaining mask off the sum (None: the result stays encrypted here).

        Raises InvalidShare when the unmasked sum cannot be right.
        """
        ...


class RingClientPayload:
    """Plain SecAgg: masks mod 2^k, the masked vector bit-packed to k bits a value."""

    hybrid = False

    def dtype(self, config: RoundConfig) -> np.dtype[np.unsignedinteger]:
        return word_dtype(config.modulus_bits)

    def ready(self) -> bool:
        return True

    def seal(
        self,
        values: np.ndarray,
        *,
        config: RoundConfig,
        seeds: Seeds,
        signing_key: SigningKey | None,
    ) -> bytes:
        masked = mask_input(
            values,
            bits=config.modulus_bits,
            me=seeds.me,
            self_seed=seeds.self_seed,
            pair_seeds=seeds.pair_seeds,
        )
        return pack(masked, config.modulus_bits)

    def clear(self) -> None:
        return None


class RingServerPayload:
    """Plain SecAgg's server half: one mod-2^k accumulator, summed slice by slice."""

    streams = True

    def __init__(self, config: RoundConfig) -> None:
        self.config = config
        #: Σ y over the uploads accepted so far, mod the word width (reduced mod 2^k at the end).
        self.sum = np.zeros(config.vector_length, dtype=word_dtype(config.modulus_bits))

    def add(self, client: int, payload: PayloadSource, *, session: bytes, verify: Verifier) -> None:
        """Check the packed length and padding, then sum the payload slice by slice.

        Every check that can fail runs before the first slice is added, so a
        rejected payload never leaves part of itself in the sum.
        """
        length, bits = self.config.vector_length, self.config.modulus_bits
        expected = packed_size(length, bits)
        if payload.length != expected:
            raise InvalidMessage(f"masked input has {payload.length} bytes, expected {expected}")
        used = length * bits % 8
        if used and payload.read(expected - 1, 1)[0] >> used:
            raise InvalidMessage("non-zero padding bits in packed vector")
        step = SLICE_GROUPS * 64  # whole 64-value groups: every slice starts on a byte
        for start in range(0, length, step):
            count = min(step, length - start)
            data = payload.read(start * bits // 8, packed_size(count, bits))
            try:
                values = unpack(data, count, bits)
            except ParameterError as exc:  # only a short read by the host can get here
                raise InvalidMessage(str(exc)) from None
            add_into(self.sum[start : start + count], values.astype(self.sum.dtype), bits)

    def unmask(
        self,
        *,
        survivors: tuple[int, ...],
        self_seeds: Sequence[bytes],
        orphaned_pairs: Sequence[tuple[int, int, bytes]],
    ) -> AggregateResult:
        config = self.config
        total = remove_masks(
            self.sum,
            bits=config.modulus_bits,
            self_seeds=self_seeds,
            orphaned_pairs=orphaned_pairs,
        )
        reduce_mod(total, config.modulus_bits)
        weight_sum = int(total[config.dim])
        values = total[: config.dim].astype(np.uint64)
        if weight_sum > len(survivors) * config.max_weight:
            raise InvalidShare("weight sum exceeds what the survivors can contribute")
        if values.size and int(values.max()) > (config.levels - 1) * weight_sum:
            raise InvalidShare("aggregate out of range: a client sent an inconsistent weight")
        return AggregateResult(values, weight_sum, survivors, config.quantizer)
