"""Mask cancellation on random graphs (T03): exact mod 2^k, with and without dropouts."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg.masking import add_into, mask_input, remove_masks
from secagg.primitives.prg import prg_words, reduce_mod, word_dtype
from secagg.rng import DeterministicRandomSource


@dataclass(frozen=True)
class Round:
    """A random masking instance: clients, symmetric neighbour graph, seeds, inputs."""

    bits: int
    dim: int
    clients: list[int]
    edges: frozenset[tuple[int, int]]  # (u, v) with u < v
    pair_seeds: dict[tuple[int, int], bytes]  # keyed by (min, max)
    self_seeds: dict[int, bytes]
    inputs: dict[int, list[int]]

    def neighbours(self, u: int) -> dict[int, bytes]:
        """u's peers and the pairwise seeds it shares with them."""
        out = {}
        for v in self.clients:
            key = (min(u, v), max(u, v))
            if v != u and key in self.edges:
                out[v] = self.pair_seeds[key]
        return out

    def masked(self, u: int, values: list[int] | None = None) -> np.ndarray:
        x = self.inputs[u] if values is None else values
        return mask_input(np.array(x, dtype=np.uint64), bits=self.bits, me=u,
                          self_seed=self.self_seeds[u], pair_seeds=self.neighbours(u))  # fmt: skip


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    n = draw(st.integers(1, 12), label="n")
    bits = draw(st.integers(1, 64), label="bits")
    dim = draw(st.integers(1, 300), label="dim")
    # Arbitrary distinct client ids, so signs come from the ids, not from positions.
    clients = sorted(draw(st.sets(st.integers(0, 10**6), min_size=n, max_size=n), label="ids"))
    pairs = list(itertools.combinations(clients, 2))
    adjacency = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)))
    edges = frozenset(p for p, on in zip(pairs, adjacency, strict=True) if on)
    tag = draw(st.integers(0, 2**32), label="seed_tag")
    pair_seeds = {p: hashlib.sha256(f"{tag}/pair/{p}".encode()).digest() for p in edges}
    self_seeds = {u: hashlib.sha256(f"{tag}/self/{u}".encode()).digest() for u in clients}
    # Inputs from a seeded stream (hypothesis would be slow drawing 12 × 300 ints),
    # or all at the largest residue, to exercise wrap-around.
    largest = draw(st.booleans(), label="largest_inputs")
    stream = DeterministicRandomSource(f"{tag}/inputs")
    inputs = {}
    for u in clients:
        if largest:
            inputs[u] = [(1 << bits) - 1] * dim
        else:
            raw = stream.random_bytes(8 * dim)
            inputs[u] = [int.from_bytes(raw[8 * i : 8 * i + 8], "little") % (1 << bits)
                         for i in range(dim)]  # fmt: skip
    return Round(bits, dim, clients, edges, pair_seeds, self_seeds, inputs)


def mod_sum(vectors: list[list[int]], bits: int, dim: int) -> list[int]:
    """Σ vectors mod 2^bits with python integers (the reference)."""
    return [sum(v[i] for v in vectors) % (1 << bits) for i in range(dim)]


def as_ints(array: np.ndarray) -> list[int]:
    return [int(v) for v in array]


@given(r=rounds())
def test_pairwise_masks_cancel(r: Round) -> None:
    """Σ_u (mask_input(0) − PRG(self_u)) ≡ 0 mod 2^k: opposite signs cancel exactly.

    Also checks that the pairwise masks are really there: any client with a
    neighbour gets a non-trivial pairwise part (for k ≥ 8, where a zero
    vector of that length would be a 2^-8·dim event).
    """
    modulus = 1 << r.bits
    zeros = [0] * r.dim
    total = [0] * r.dim
    for u in r.clients:
        y = as_ints(r.masked(u, zeros))
        b = as_ints(prg_words(r.self_seeds[u], r.dim, r.bits))
        pairwise = [(yi - bi) % modulus for yi, bi in zip(y, b, strict=True)]
        if r.neighbours(u) and r.bits >= 8 and r.dim >= 8:
            assert any(pairwise)
        total = [(ti + pi) % modulus for ti, pi in zip(total, pairwise, strict=True)]
    assert total == zeros


@given(r=rounds())
def test_unmasked_sum_is_exact(r: Round) -> None:
    """Σ_u y_u, minus every client's self mask, is Σ_u x_u mod 2^k, bit for bit."""
    total = np.zeros(r.dim, dtype=word_dtype(r.bits))
    for u in r.clients:
        y = r.masked(u)
        assert int(y.max()) < (1 << r.bits)
        add_into(total, y, r.bits)
    remove_masks(
        total, bits=r.bits, self_seeds=[r.self_seeds[u] for u in r.clients], orphaned_pairs=[]
    )
    expected = mod_sum([r.inputs[u] for u in r.clients], r.bits, r.dim)
    assert as_ints(total) == expected


@given(r=rounds(), data=st.data())
def test_dropouts_are_repaired_exactly(r: Round, data: st.DataObject) -> None:
    """Some clients never send y; removing survivors' self masks and every mask a
    survivor shared with a dropped client gives exactly the survivors' sum."""
    dropped = data.draw(st.sets(st.sampled_from(r.clients), max_size=len(r.clients)), "dropped")
    survivors = [u for u in r.clients if u not in dropped]
    total = np.zeros(r.dim, dtype=word_dtype(r.bits))
    for u in survivors:
        add_into(total, r.masked(u), r.bits)
    orphaned = [
        (u, v, seed) for u in survivors for v, seed in r.neighbours(u).items() if v in dropped
    ]
    remove_masks(
        total, bits=r.bits, self_seeds=[r.self_seeds[u] for u in survivors], orphaned_pairs=orphaned
    )
    assert as_ints(total) == mod_sum([r.inputs[u] for u in survivors], r.bits, r.dim)


@given(r=rounds(), data=st.data())
def test_missing_repair_leaves_a_masked_sum(r: Round, data: st.DataObject) -> None:
    """Omitting one survivor's self seed leaves the sum masked (the masks do hide it)."""
    if r.bits < 8 or r.dim < 8:
        return  # a short or narrow residue vector can coincide by chance
    total = np.zeros(r.dim, dtype=word_dtype(r.bits))
    for u in r.clients:
        add_into(total, r.masked(u), r.bits)
    skip = data.draw(st.sampled_from(r.clients), label="skip")
    remove_masks(
        total,
        bits=r.bits,
        self_seeds=[r.self_seeds[u] for u in r.clients if u != skip],
        orphaned_pairs=[],
    )
    assert as_ints(reduce_mod(total, r.bits)) != mod_sum(
        [r.inputs[u] for u in r.clients], r.bits, r.dim
    )
