"""Double masking: seeds, signs, a fixed vector and a full X25519 pipeline (T03)."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest

from secagg.errors import ParameterError
from secagg.masking import (
    add_into,
    mask_input,
    pairwise_seed,
    pairwise_sign,
    remove_masks,
    self_mask_seed,
)
from secagg.primitives.prg import prg_words, reduce_mod, word_dtype
from secagg.primitives.x25519 import x25519_keypair, x25519_shared
from secagg.rng import DeterministicRandomSource
from tests.vectors.loader import Vector, params

SECRET = bytes(range(32))


@pytest.mark.parametrize("vector", params("masking"))
def test_mask_input_known_answer(vector: Vector) -> None:
    pair_seeds = {int(k): bytes.fromhex(v) for k, v in vector.raw_of("pair_seeds").items()}
    y = mask_input(
        np.array(vector.ints_of("values"), dtype=np.uint64),
        bits=vector.int_of("bits"),
        me=vector.int_of("me"),
        self_seed=vector.bytes_of("self_seed"),
        pair_seeds=pair_seeds,
    )
    assert [int(v) for v in y] == vector.ints_of("masked")


@pytest.mark.parametrize("vector", params("derive_key", "pairwise_seed"))
def test_pairwise_seed_known_answer(vector: Vector) -> None:
    secret, session = vector.bytes_of("secret"), vector.bytes_of("session_id")
    u, v = vector.int_of("u"), vector.int_of("v")
    assert pairwise_seed(secret, session_id=session, u=u, v=v) == vector.bytes_of("seed")
    assert pairwise_seed(secret, session_id=session, u=v, v=u) == vector.bytes_of("seed")


@pytest.mark.parametrize("vector", params("derive_key", "self_mask_seed"))
def test_self_mask_seed_known_answer(vector: Vector) -> None:
    seed = self_mask_seed(
        vector.bytes_of("secret"),
        session_id=vector.bytes_of("session_id"),
        owner=vector.int_of("owner"),
    )
    assert seed == vector.bytes_of("seed")


def test_mask_input_definition(session_id: bytes) -> None:
    """y = x + PRG(b) + Σ_{v > me} PRG(s) − Σ_{v < me} PRG(s) mod 2^k, in python ints."""
    bits, me, d = 20, 5, 40
    x = [(i * 7919) % (1 << bits) for i in range(d)]
    self_seed = self_mask_seed(SECRET, session_id=session_id, owner=me)
    peers = {2: hashlib.sha256(b"2").digest(), 9: hashlib.sha256(b"9").digest()}
    y = mask_input(np.array(x, dtype=np.uint64), bits=bits, me=me, self_seed=self_seed,
                   pair_seeds=peers)  # fmt: skip
    assert y.dtype == word_dtype(bits)
    b = prg_words(self_seed, d, bits)
    low, high = prg_words(peers[2], d, bits), prg_words(peers[9], d, bits)
    expected = [(x[i] + int(b[i]) + int(high[i]) - int(low[i])) % (1 << bits) for i in range(d)]
    assert [int(v) for v in y] == expected


def test_pairwise_seed_binds_pair_and_session(session_id: bytes) -> None:
    other_session = hashlib.sha256(b"other").digest()
    seen = set()
    for u, v in itertools.combinations(range(1, 6), 2):
        for session in (session_id, other_session):
            seed = pairwise_seed(SECRET, session_id=session, u=u, v=v)
            assert seed == pairwise_seed(SECRET, session_id=session, u=v, v=u)
            assert len(seed) == 32
            seen.add(seed)
    assert len(seen) == 20
    assert pairwise_seed(bytes(32), session_id=session_id, u=1, v=2) != pairwise_seed(
        SECRET, session_id=session_id, u=1, v=2
    )


def test_pairwise_and_self_seeds_are_domain_separated(session_id: bytes) -> None:
    """Same secret and numbers: the 'pairwise-mask' and 'self-mask' labels differ."""
    pair = pairwise_seed(SECRET, session_id=session_id, u=1, v=2)
    assert pair != self_mask_seed(SECRET, session_id=session_id, owner=1)
    assert pair != self_mask_seed(SECRET, session_id=session_id, owner=2)
    assert self_mask_seed(SECRET, session_id=session_id, owner=1) != self_mask_seed(
        SECRET, session_id=session_id, owner=2
    )


def test_pairwise_sign() -> None:
    assert pairwise_sign(1, 2) == 1
    assert pairwise_sign(2, 1) == -1
    with pytest.raises(ParameterError):
        pairwise_sign(3, 3)
    with pytest.raises(ParameterError):
        pairwise_seed(SECRET, session_id=bytes(32), u=3, v=3)


@pytest.mark.parametrize("bits", [1, 8, 31, 64])
def test_mask_input_refuses_out_of_range_values(bits: int) -> None:
    seed = bytes(32)
    with pytest.raises(ParameterError):
        mask_input(np.array([0, -1], dtype=np.int64), bits=bits, me=1, self_seed=seed,
                   pair_seeds={})  # fmt: skip
    if bits < 64:
        with pytest.raises(ParameterError):
            mask_input(np.array([1 << bits], dtype=np.uint64), bits=bits, me=1, self_seed=seed,
                       pair_seeds={})  # fmt: skip
    with pytest.raises(ParameterError):
        mask_input(np.zeros((2, 2), dtype=np.uint64), bits=bits, me=1, self_seed=seed,
                   pair_seeds={})  # fmt: skip


def test_mask_input_refuses_self_as_peer() -> None:
    with pytest.raises(ParameterError):
        mask_input(np.zeros(3, dtype=np.uint64), bits=16, me=1, self_seed=bytes(32),
                   pair_seeds={1: bytes(32)})  # fmt: skip


def test_remove_masks_and_add_into_check_dtypes() -> None:
    with pytest.raises(ParameterError):
        remove_masks(np.zeros(3, dtype=np.uint64), bits=16, self_seeds=[], orphaned_pairs=[])
    with pytest.raises(ParameterError):
        add_into(np.zeros(3, dtype=np.uint16), np.zeros(4, dtype=np.uint16), 16)
    with pytest.raises(ParameterError):
        add_into(np.zeros(3, dtype=np.uint16), np.zeros(3, dtype=np.uint32), 16)


def test_x25519_to_masks_end_to_end(session_id: bytes) -> None:
    """Five clients agree pairwise keys, mask, two drop; the server recovers the survivors' sum."""
    bits, d, clients = 32, 257, [1, 2, 3, 4, 5]
    rng = DeterministicRandomSource("end-to-end")
    keys = {u: x25519_keypair(rng.fork(f"client-{u}")) for u in clients}
    seeds: dict[tuple[int, int], bytes] = {}
    for u, v in itertools.permutations(clients, 2):
        shared = x25519_shared(keys[u].private, keys[v].public)
        seeds[u, v] = pairwise_seed(shared, session_id=session_id, u=u, v=v)
    for u, v in itertools.combinations(clients, 2):
        assert seeds[u, v] == seeds[v, u]  # both ends derive the same seed
    b = {u: rng.random_bytes(32) for u in clients}
    self_seeds = {u: self_mask_seed(b[u], session_id=session_id, owner=u) for u in clients}
    inputs = {u: np.frombuffer(rng.random_bytes(4 * d), dtype="<u4").copy() for u in clients}
    dropped = {2, 5}
    survivors = [u for u in clients if u not in dropped]
    total = np.zeros(d, dtype=word_dtype(bits))
    for u in survivors:
        y = mask_input(inputs[u], bits=bits, me=u, self_seed=self_seeds[u],
                       pair_seeds={v: seeds[u, v] for v in clients if v != u})  # fmt: skip
        assert not np.array_equal(y, inputs[u])
        add_into(total, y, bits)
    remove_masks(
        total,
        bits=bits,
        self_seeds=[self_seeds[u] for u in survivors],
        orphaned_pairs=[(u, v, seeds[u, v]) for u in survivors for v in dropped],
    )
    expected = np.stack([inputs[u].astype(np.uint64) for u in survivors]).sum(axis=0) % (1 << bits)
    assert np.array_equal(reduce_mod(total, bits), expected.astype(np.uint32))
