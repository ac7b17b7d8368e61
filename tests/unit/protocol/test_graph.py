"""T09: neighbour graphs (complete and random Harary).

Invariants for every n in 3..200: exactly k neighbours each, symmetric, no
self loops, holders = neighbours + self, the ring order is random (not the
identity) and reproducible from the seed, odd / out-of-range k refused.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.graph import (
    GRAPH_SEED_LABEL,
    NeighbourGraph,
    complete_graph,
    densest_harary_degree,
    graph_from_seed,
    harary_from_order,
    harary_graph,
    random_permutation,
)
from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource


def _degrees_to_try(n: int) -> list[int]:
    """Smallest, a middle and the largest even k allowed for n."""
    top = n - 1 if (n - 1) % 2 == 0 else n - 2
    middle = max(2, (n // 4) * 2)
    return sorted({2, middle, top})


def _adjacency(g: NeighbourGraph) -> np.ndarray:
    matrix = np.zeros((g.n, g.n), dtype=bool)
    for i, adjacent in enumerate(g.neighbours):
        assert all(0 <= j < g.n for j in adjacent)
        matrix[i, list(adjacent)] = True
    return matrix


def _assert_valid(g: NeighbourGraph, n: int, k: int) -> None:
    """Checks written independently of NeighbourGraph's own validation."""
    assert g.n == n
    assert len(g.neighbours) == n
    matrix = _adjacency(g)
    assert not matrix.diagonal().any()  # no self loops
    assert (matrix == matrix.T).all()  # symmetric
    assert (matrix.sum(axis=1) == k).all()  # exactly k neighbours each
    assert g.degree == k
    assert g.is_complete == (k == n - 1)
    for i in {0, n // 2, n - 1}:
        assert g.holders(i) == g.neighbours[i] | {i}
        assert len(g.holders(i)) == k + 1


def _assert_ring(g: NeighbourGraph, order: tuple[int, ...], k: int) -> None:
    """g joins exactly the clients at ring distance 1..k/2 in ``order``."""
    n = len(order)
    p = np.arange(n)
    gap = np.abs(p[:, None] - p[None, :])
    near = (np.minimum(gap, n - gap) <= k // 2) & (gap > 0)
    expected = np.zeros((n, n), dtype=bool)
    idx = np.array(order)
    expected[np.ix_(idx, idx)] = near
    assert (expected == _adjacency(g)).all()


# -- complete graph -----------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5, 10, 17, 50])
def test_complete_graph_invariants(n: int) -> None:
    g = complete_graph(n)
    _assert_valid(g, n, n - 1)
    assert g.is_complete
    for i in range(n):
        assert g.holders(i) == frozenset(range(n))


@pytest.mark.parametrize("n", [-1, 0, 1])
def test_complete_graph_needs_two_clients(n: int) -> None:
    with pytest.raises(ParameterError):
        complete_graph(n)


# -- Harary graph: T09 sweep ----------------------------------------------------


@pytest.mark.parametrize("n", range(3, 201))
def test_harary_invariants_for_every_n(n: int) -> None:
    seed = f"t09-{n}".encode()
    order = random_permutation(n, DeterministicRandomSource(GRAPH_SEED_LABEL + seed))
    for k in _degrees_to_try(n):
        g = graph_from_seed(n, k, seed)
        _assert_valid(g, n, k)
        _assert_ring(g, order, k)  # the ring over the order drawn from the seed
    if n % 20 == 0:
        assert graph_from_seed(n, 2, seed) == graph_from_seed(n, 2, seed)


@given(
    n=st.integers(min_value=3, max_value=200),
    k_half=st.integers(min_value=1, max_value=100),
    seed=st.binary(max_size=32),
)
@settings(max_examples=50, deadline=None)
def test_harary_invariants_property(n: int, k_half: int, seed: bytes) -> None:
    k = min(2 * k_half, n - 1 if (n - 1) % 2 == 0 else n - 2)
    g = harary_graph(n, k, DeterministicRandomSource(seed))
    _assert_valid(g, n, k)


def test_harary_graph_is_ring_over_random_permutation() -> None:
    rng_a, rng_b = DeterministicRandomSource(b"same"), DeterministicRandomSource(b"same")
    assert harary_graph(40, 6, rng_a) == harary_from_order(random_permutation(40, rng_b), 6)


@pytest.mark.parametrize("n", [10, 25, 100, 200])
def test_ring_order_is_not_the_identity(n: int) -> None:
    identity = tuple(range(n))
    unpermuted = harary_from_order(identity, 4)
    for s in range(20):
        seed = f"perm-{s}".encode()
        order = random_permutation(n, DeterministicRandomSource(GRAPH_SEED_LABEL + seed))
        assert order != identity
        assert sorted(order) == list(identity)
        # P[same graph as the plain ring] is about 2n/n!: never, for these n.
        assert graph_from_seed(n, 4, seed) != unpermuted


def test_different_seeds_give_different_graphs() -> None:
    graphs = {graph_from_seed(50, 4, s.to_bytes(4, "big")) for s in range(50)}
    assert len(graphs) == 50


def test_seed_is_domain_separated() -> None:
    plain = harary_graph(50, 4, DeterministicRandomSource(b"seed"))
    labelled = harary_graph(50, 4, DeterministicRandomSource(GRAPH_SEED_LABEL + b"seed"))
    assert graph_from_seed(50, 4, b"seed") == labelled != plain


def test_random_permutation_is_unbiased() -> None:
    """All 3! orders about equally often (a biased Fisher–Yates fails this)."""
    rng = DeterministicRandomSource(b"fisher-yates")
    counts = Counter(random_permutation(3, rng) for _ in range(6000))
    assert len(counts) == 6
    assert all(850 <= c <= 1150 for c in counts.values()), counts  # ±5σ around 1000


def test_known_answer_graph() -> None:
    """Pins the seed → graph derivation: clients must all compute the same graph.

    A change here breaks interoperability between versions; make it deliberately.
    """
    order = random_permutation(10, DeterministicRandomSource(GRAPH_SEED_LABEL + b"secagg-kat"))
    assert order == (5, 2, 9, 0, 6, 1, 7, 4, 3, 8)
    g = graph_from_seed(10, 4, b"secagg-kat")
    assert [sorted(a) for a in g.neighbours] == [
        [1, 2, 6, 9],
        [0, 4, 6, 7],
        [0, 5, 8, 9],
        [4, 5, 7, 8],
        [1, 3, 7, 8],
        [2, 3, 8, 9],
        [0, 1, 7, 9],
        [1, 3, 4, 6],
        [2, 3, 4, 5],
        [0, 2, 5, 6],
    ]


# -- graph_from_seed: complete fallback -----------------------------------------


@pytest.mark.parametrize(("n", "k"), [(2, None), (5, None), (5, 4), (6, 5), (6, 10), (30, 29)])
def test_graph_from_seed_complete(n: int, k: int | None) -> None:
    g = graph_from_seed(n, k, b"x")
    assert g == complete_graph(n)
    assert g.is_complete
    assert g.degree == n - 1


def test_harary_with_k_n_minus_1_is_complete() -> None:
    assert harary_graph(9, 8, DeterministicRandomSource(b"x")) == complete_graph(9)


# -- invalid input ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "k"),
    [(10, 3), (10, 5), (50, 21), (10, 0), (10, -2), (10, 10), (10, 12), (2, 2), (1, 2), (0, 2)],
)
def test_harary_rejects_invalid_n_k(n: int, k: int) -> None:
    with pytest.raises(ParameterError):
        harary_graph(n, k, DeterministicRandomSource(b"x"))


@pytest.mark.parametrize(("n", "k"), [(10, 3), (10, 0), (10, -1), (1, None), (0, 4), (6, 1)])
def test_graph_from_seed_rejects_invalid_n_k(n: int, k: int | None) -> None:
    with pytest.raises(ParameterError):
        graph_from_seed(n, k, b"x")


def test_graph_from_seed_rejects_non_bytes_seed() -> None:
    with pytest.raises(ParameterError):
        graph_from_seed(10, 4, "seed")  # type: ignore[arg-type]


@pytest.mark.parametrize("order", [(0, 1, 1, 3, 4), (0, 1, 2, 3, 5), (1, 2, 3, 4)])
def test_harary_from_order_rejects_non_permutations(order: tuple[int, ...]) -> None:
    with pytest.raises(ParameterError):
        harary_from_order(order, 2)


@pytest.mark.parametrize(
    "neighbours",
    [
        (frozenset({1}), frozenset()),  # asymmetric
        (frozenset({0, 1}), frozenset({0})),  # self loop
        (frozenset({2}), frozenset()),  # out of range
        (frozenset({1}),),  # wrong length
    ],
)
def test_neighbour_graph_rejects_invalid(neighbours: tuple[frozenset[int], ...]) -> None:
    with pytest.raises(ParameterError):
        NeighbourGraph(2, neighbours)


def test_irregular_graph_has_no_degree() -> None:
    path = NeighbourGraph(3, (frozenset({1}), frozenset({0, 2}), frozenset({1})))
    assert not path.is_complete
    assert path.are_neighbours(0, 1) and not path.are_neighbours(0, 2)
    with pytest.raises(ParameterError):
        _ = path.degree
    with pytest.raises(ParameterError):
        path.holders(3)


@pytest.mark.parametrize(("n", "k"), [(3, 2), (4, 2), (5, 4), (10, 8), (11, 10), (100, 98)])
def test_densest_harary_degree_is_the_largest_even_degree_below_n(n: int, k: int) -> None:
    assert densest_harary_degree(n) == k
    graph = graph_from_seed(n, k, b"seed")
    assert graph.degree == k
    assert graph.is_complete == (k == n - 1)  # odd n: the densest ring is complete
