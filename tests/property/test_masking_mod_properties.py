"""Masks modulo m (the hybrid HE mode): exact cancellation and repair, on random graphs."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from secagg.masking import mask_input, remove_masks
from secagg.primitives.prg import MAX_MODULUS, prg_residues
from secagg.rng import DeterministicRandomSource

#: The BFV plain modulus, small primes, a composite and the largest allowed modulus.
MODULI = (1_073_692_673, 2, 3, 65537, 3 << 30, (1 << 61) - 1, MAX_MODULUS)


@dataclass(frozen=True)
class Round:
    """Clients, a symmetric neighbour graph, seeds and inputs mod ``modulus``."""

    modulus: int
    dim: int
    clients: list[int]
    edges: frozenset[tuple[int, int]]
    pair_seeds: dict[tuple[int, int], bytes]
    self_seeds: dict[int, bytes]
    inputs: dict[int, list[int]]

    def neighbours(self, u: int) -> dict[int, bytes]:
        return {
            v: self.pair_seeds[(min(u, v), max(u, v))]
            for v in self.clients
            if v != u and (min(u, v), max(u, v)) in self.edges
        }

    def masked(self, u: int) -> np.ndarray:
        return mask_input(
            np.array(self.inputs[u], dtype=np.uint64),
            modulus=self.modulus,
            me=u,
            self_seed=self.self_seeds[u],
            pair_seeds=self.neighbours(u),
        )


@st.composite
def rounds(draw: st.DrawFn) -> Round:
    n = draw(st.integers(1, 10), label="n")
    modulus = draw(st.one_of(st.sampled_from(MODULI), st.integers(2, MAX_MODULUS)), "modulus")
    dim = draw(st.integers(1, 200), label="dim")
    clients = sorted(draw(st.sets(st.integers(0, 10**6), min_size=n, max_size=n), label="ids"))
    pairs = list(itertools.combinations(clients, 2))
    on = draw(st.lists(st.booleans(), min_size=len(pairs), max_size=len(pairs)), "edges")
    edges = frozenset(p for p, keep in zip(pairs, on, strict=True) if keep)
    tag = draw(st.integers(0, 2**32), label="seed_tag")
    pair_seeds = {p: hashlib.sha256(f"{tag}/pair/{p}".encode()).digest() for p in edges}
    self_seeds = {u: hashlib.sha256(f"{tag}/self/{u}".encode()).digest() for u in clients}
    largest = draw(st.booleans(), label="largest_inputs")  # every input m − 1: wrap-around
    stream = DeterministicRandomSource(f"{tag}/inputs")
    inputs = {}
    for u in clients:
        if largest:
            inputs[u] = [modulus - 1] * dim
        else:
            raw = stream.random_bytes(8 * dim)
            inputs[u] = [
                int.from_bytes(raw[8 * i : 8 * i + 8], "little") % modulus for i in range(dim)
            ]
    return Round(modulus, dim, clients, edges, pair_seeds, self_seeds, inputs)


def reference_sum(r: Round, members: list[int]) -> list[int]:
    return [sum(r.inputs[u][i] for u in members) % r.modulus for i in range(r.dim)]


def masked_sum(r: Round, members: list[int]) -> list[int]:
    """Σ y_u mod m in python integers (no overflow question in the reference)."""
    vectors = [[int(v) for v in r.masked(u)] for u in members]
    for vector in vectors:
        assert max(vector) < r.modulus
    return [sum(v[i] for v in vectors) % r.modulus for i in range(r.dim)]


@given(r=rounds())
def test_pairwise_masks_cancel_and_self_masks_come_off(r: Round) -> None:
    """Σ y_u + correction(all self seeds) ≡ Σ x_u (mod m), exactly."""
    c = remove_masks(
        np.zeros(r.dim, dtype=np.uint64),
        modulus=r.modulus,
        self_seeds=[r.self_seeds[u] for u in r.clients],
        orphaned_pairs=[],
    )
    total = masked_sum(r, r.clients)
    got = [(t + int(ci)) % r.modulus for t, ci in zip(total, c, strict=True)]
    assert got == reference_sum(r, r.clients)


@given(r=rounds(), data=st.data())
def test_dropouts_are_repaired_exactly(r: Round, data: st.DataObject) -> None:
    """Survivors' sum + correction (their self masks, their masks with dropped peers) is exact."""
    dropped = data.draw(st.sets(st.sampled_from(r.clients), max_size=len(r.clients)), "dropped")
    survivors = [u for u in r.clients if u not in dropped]
    orphaned = [
        (u, v, seed) for u in survivors for v, seed in r.neighbours(u).items() if v in dropped
    ]
    c = remove_masks(
        np.zeros(r.dim, dtype=np.uint64),
        modulus=r.modulus,
        self_seeds=[r.self_seeds[u] for u in survivors],
        orphaned_pairs=orphaned,
    )
    total = masked_sum(r, survivors)
    got = [(t + int(ci)) % r.modulus for t, ci in zip(total, c, strict=True)]
    assert got == reference_sum(r, survivors)


@given(r=rounds(), data=st.data())
def test_one_upload_alone_is_masked(r: Round, data: st.DataObject) -> None:
    """What a key holder decrypting one upload sees: y_u − x_u is u's full mask, not zero.

    It equals PRG(b_u) + Σ ±PRG(s_uv), so it is zero in every coordinate only
    with probability m^-dim (excluded here for m^dim < 2^40).
    """
    if r.modulus**r.dim < 1 << 40:
        return
    u = data.draw(st.sampled_from(r.clients), label="u")
    y = [int(v) for v in r.masked(u)]
    mask = [(yi - xi) % r.modulus for yi, xi in zip(y, r.inputs[u], strict=True)]
    assert any(mask)
    if not r.neighbours(u):  # then the mask is exactly the self mask
        assert mask == [int(v) for v in prg_residues(r.self_seeds[u], r.dim, r.modulus)]
