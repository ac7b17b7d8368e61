"""Round configs with sensible defaults, one builder per config type.

Every host that writes a config (the aggregator, the lab, the benchmarks)
builds it here, so the defaults (safe threshold, minimal modulus, SecAgg+
degree, the hybrid's threshold) have one home. :func:`build_config` picks
the builder through the mode registry (:mod:`protocol.modes`).
"""

from __future__ import annotations

import hashlib

from protocol.config import Profile, RoundConfig, default_colluders, minimum_threshold
from protocol.he_messages import HEConfig, HEMaskedConfig, HEScheme
from protocol.policy import sparse_threshold
from secagg.errors import ParameterError
from secagg.quantization import required_modulus_bits

#: The key holder the lab names in its HE rounds.
KEY_HOLDER = 1


def make_config(
    *,
    clients: int,
    dim: int,
    threshold: int | None = None,
    degree: int | None = None,
    profile: Profile = "active",
    levels: int = 1 << 16,
    clip: float = 1.0,
    max_weight: int = 1,
    modulus_bits: int | None = None,
    round_: int = 0,
    seed: bytes = b"",
) -> RoundConfig:
    """A valid SecAgg / SecAgg+ / plain config with sensible defaults (safe threshold,
    minimal modulus)."""
    if clients < 1:
        raise ParameterError("need at least one client")
    complete = degree is None or degree >= clients - 1
    if threshold is None and complete:
        # ⌊2n/3⌋+1, raised to the lab policy's safe minimum (capped at n below).
        safe = minimum_threshold(clients, profile=profile, colluders=default_colluders(clients))
        threshold = min(clients, max(2 * clients // 3 + 1, safe))
    elif threshold is None:
        assert degree is not None
        # A majority of each neighbourhood, raised to the policy's statistical minimum.
        colluders = default_colluders(clients, sparse=True)
        safe = sparse_threshold(clients, degree, profile=profile, colluders=colluders)
        threshold = min(degree + 1, max((degree + 1) // 2 + 1, safe))
    bits = modulus_bits or required_modulus_bits(clients, levels, max_weight)
    tag = hashlib.sha256(b"simulation" + seed).digest()
    return RoundConfig(
        round=round_,
        clients=tuple(range(1, clients + 1)),
        threshold=threshold,
        dim=dim,
        modulus_bits=bits,
        clip=clip,
        levels=levels,
        max_weight=max_weight,
        profile=profile,
        degree=degree,
        nonce=tag,
        model_hash=hashlib.sha256(b"model" + seed).digest(),
    )


def he_config(
    *,
    clients: int,
    dim: int,
    scheme: HEScheme,
    clip: float = 1.0,
    levels: int = 1 << 16,
    max_weight: int = 1,
    round_: int = 0,
    seed: bytes = b"",
    key_holder: int = KEY_HOLDER,
    nonce: bytes | None = None,
    model_hash: bytes | None = None,
) -> HEConfig:
    """An HE round over clients 1..n (``nonce``/``model_hash`` default to digests of ``seed``)."""
    return HEConfig(
        round=round_,
        clients=tuple(range(1, clients + 1)),
        dim=dim,
        scheme=scheme,
        key_holder=key_holder,
        clip=clip,
        max_weight=max_weight,
        levels=levels,
        nonce=nonce or hashlib.sha256(b"he/nonce" + seed).digest(),
        model_hash=model_hash or hashlib.sha256(b"model" + seed).digest(),
    )


def he_masked_config(
    *,
    clients: int,
    dim: int,
    threshold: int | None = None,
    clip: float = 1.0,
    levels: int = 1 << 16,
    max_weight: int = 1,
    round_: int = 0,
    seed: bytes = b"",
    key_holder: int = KEY_HOLDER,
    nonce: bytes | None = None,
    model_hash: bytes | None = None,
) -> HEMaskedConfig:
    """A hybrid round over clients 1..n with SecAgg's default safe threshold for the cohort."""
    if clients < 3:
        raise ParameterError("the hybrid mode needs at least 3 clients")
    return HEMaskedConfig(
        round=round_,
        clients=tuple(range(1, clients + 1)),
        threshold=threshold or make_config(clients=clients, dim=1).threshold,
        dim=dim,
        key_holder=key_holder,
        clip=clip,
        levels=levels,
        max_weight=max_weight,
        nonce=nonce or hashlib.sha256(b"he-masked/nonce" + seed).digest(),
        model_hash=model_hash or hashlib.sha256(b"model" + seed).digest(),
    )
