"""Who shares with whom: complete graphs (SecAgg) and random Harary graphs (SecAgg+).

SecAgg is SecAgg+ on the complete graph, so the protocol takes a
:class:`NeighbourGraph` and never special-cases either. A client agrees
pairwise masks with its neighbours and Shamir-shares its secrets to its
*holders*: its neighbours plus itself.

Degree convention. ``k`` (``NeighbourGraph.degree``, the ``k`` of
:func:`harary_graph` and of :func:`protocol.params.find_parameters`, the CLI's
``--degree``) counts the neighbours of a client *other than itself*. It equals
the "number of neighbours" that FCP's parameter finder returns; FCP's graph
class and Flower's ``num_shares`` count the client too and so are k + 1. A
Harary graph places the clients on a ring and joins each to the k/2 nearest on
either side, so k must be even (FCP likewise insists on an odd k + 1). The
complete graph on n clients has k = n − 1. A ``--degree K`` option therefore
means K *other* clients (K + 1 share holders); a Flower ``num_shares`` of s
corresponds to K = s − 1.

Security rests on the ring order being uniformly random and fixed before the
adversary picks whom to corrupt: anyone who can try many seeds can steer a
target's neighbourhood. Derive the public seed from values no single party
controls (for instance the session id over all advertised keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from secagg.errors import ParameterError
from secagg.rng import DeterministicRandomSource, RandomSource, uniform_below

GRAPH_SEED_LABEL = b"secagg/v1/neighbour-graph\x00"
"""Prefixed to the public seed so the graph stream never equals another use of that seed."""


@dataclass(frozen=True, slots=True)
class NeighbourGraph:
    """An undirected graph on clients 0..n−1 without self loops.

    ``neighbours[i]`` are the clients that i agrees pairwise masks with. The
    constructor checks symmetry and ranges, so a graph that exists is valid.
    """

    n: int
    neighbours: tuple[frozenset[int], ...]

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ParameterError(f"a graph needs at least one node, got n={self.n}")
        if len(self.neighbours) != self.n:
            raise ParameterError(f"expected {self.n} neighbour sets, got {len(self.neighbours)}")
        # Vectorised, so even 10^5-node graphs are checked cheaply.
        sizes = np.fromiter(map(len, self.neighbours), dtype=np.int64, count=self.n)
        src = np.repeat(np.arange(self.n, dtype=np.int64), sizes)
        dst = np.fromiter(chain.from_iterable(self.neighbours), dtype=np.int64, count=src.size)
        if src.size and (dst.min() < 0 or dst.max() >= self.n):
            raise ParameterError("a neighbour index is out of range")
        if np.any(src == dst):
            raise ParameterError("a node lists itself as a neighbour")
        forward = np.sort(src * self.n + dst)
        backward = np.sort(dst * self.n + src)
        if not np.array_equal(forward, backward):
            raise ParameterError("the neighbour relation is not symmetric")

    def holders(self, i: int) -> frozenset[int]:
        """Who receives client i's Shamir shares: its neighbours and i itself (k + 1)."""
        self._check_node(i)
        return self.neighbours[i] | {i}

    def are_neighbours(self, i: int, j: int) -> bool:
        """Whether i and j share a pairwise mask (never true for i == j)."""
        self._check_node(i)
        self._check_node(j)
        return j in self.neighbours[i]

    @property
    def is_complete(self) -> bool:
        """Every client is a neighbour of every other (plain SecAgg)."""
        return all(len(adjacent) == self.n - 1 for adjacent in self.neighbours)

    @property
    def degree(self) -> int:
        """k: neighbours per client, not counting the client itself.

        Raises ParameterError if the graph is not regular; the graphs built
        here always are.
        """
        sizes = {len(adjacent) for adjacent in self.neighbours}
        if len(sizes) != 1:
            raise ParameterError(f"graph is not regular: degrees {sorted(sizes)}")
        return sizes.pop()

    def _check_node(self, i: int) -> None:
        if not 0 <= i < self.n:
            raise ParameterError(f"node {i} is not in 0..{self.n - 1}")


def complete_graph(n: int) -> NeighbourGraph:
    """Everyone is everyone's neighbour (k = n − 1): SecAgg. Needs n ≥ 2."""
    if n < 2:
        raise ParameterError(f"secure aggregation needs at least 2 clients, got n={n}")
    everyone = frozenset(range(n))
    return NeighbourGraph(n, tuple(everyone - {i} for i in range(n)))


def random_permutation(n: int, rng: RandomSource) -> tuple[int, ...]:
    """A uniformly random ordering of 0..n−1 (Fisher–Yates, exact draws via uniform_below).

    Deterministic for a given rng stream, so every party that replays the same
    seed gets the same order. One uniform_below call per node (about 10 µs).
    """
    if n < 1:
        raise ParameterError(f"need n >= 1, got {n}")
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = int(uniform_below(rng, i + 1, 1)[0])
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def _check_harary(n: int, k: int) -> None:
    if n < 3:
        raise ParameterError(f"a Harary graph needs n >= 3, got n={n}")
    if k < 2 or k > n - 1:
        raise ParameterError(f"need 2 <= k <= n - 1 neighbours, got k={k}, n={n}")
    if k % 2:
        raise ParameterError(
            f"k={k} neighbours is odd: a Harary ring joins k/2 on each side, so k must be even"
        )


def harary_from_order(order: Sequence[int], k: int) -> NeighbourGraph:
    """Place clients on a ring in ``order`` and join each to the k/2 nearest on each side.

    ``order[p]`` is the client at ring position p. k must be even with
    2 ≤ k ≤ n − 1; k = n − 1 (n odd) gives the complete graph.
    """
    n = len(order)
    _check_harary(n, k)
    if sorted(order) != list(range(n)):
        raise ParameterError("order must be a permutation of 0..n-1")
    half = k // 2
    ring = list(order)
    ring = ring[n - half :] + ring + ring[:half]  # ring[p + half] is order[p]
    adjacent: list[frozenset[int]] = [frozenset()] * n
    for p, node in enumerate(order):
        adjacent[node] = frozenset(ring[p : p + half] + ring[p + half + 1 : p + k + 1])
    return NeighbourGraph(n, tuple(adjacent))


def harary_graph(n: int, k: int, rng: RandomSource) -> NeighbourGraph:
    """A random k-regular Harary graph: a random ring order, k/2 neighbours per side.

    k counts neighbours other than the client itself (FCP's finder k); it must
    be even with 2 ≤ k ≤ n − 1, otherwise ParameterError. Odd k is refused
    rather than rounded, so the degree is exactly what the parameters promise.
    """
    _check_harary(n, k)
    return harary_from_order(random_permutation(n, rng), k)


def densest_harary_degree(n: int) -> int:
    """The lab's SecAgg+ degree for n clients: the largest even k ≤ n − 1, at least 2.

    The demos, the experiment and the distributed-DP lab run SecAgg+ on the
    densest Harary graph that is not complete (k = n − 1 for odd n is the
    complete graph itself). One formula, so they all run the same graph; the
    bench's ``secaggplus_graph`` asks FCP's finder instead, and
    ``secagg_bench.peers.flower_graph`` reproduces Flower's own default.
    """
    return max(2, (n - 1) // 2 * 2)


def graph_from_seed(n: int, k: int | None, seed: bytes) -> NeighbourGraph:
    """The neighbour graph every party derives from the same public seed.

    ``k`` None, or k ≥ n − 1, gives the complete graph; otherwise
    :func:`harary_graph` driven by ``DeterministicRandomSource(GRAPH_SEED_LABEL
    + seed)``. Raises ParameterError for an invalid (n, k) pair.
    """
    if not isinstance(seed, bytes | bytearray):
        raise ParameterError("the graph seed must be bytes")
    if k is None or k >= n - 1:
        return complete_graph(n)
    return harary_graph(n, k, DeterministicRandomSource(GRAPH_SEED_LABEL + bytes(seed)))
