"""T04: whole rounds on random parameters, inputs and dropout plans (Hypothesis).

Complete graph (SecAgg). A drop at a phase silences a client from that phase
on (``protocol.simulation.PHASES``); the consistency phase exists only in the
active profile, so a semi-honest "consistency" drop never happens. With d the
number of drops that do happen:

- d ≤ n − t: the round completes, the unmasked sum is bit-exact, and it is over
  exactly the clients not dropped at advertise, share or masked;
- d > n − t: the round aborts; if more than n − t dropped *before* the unmask
  phase, no client released any unmasking share at all (drops during unmasking
  abort after some shares were sent, which is why the rule is stated that way).

Sparse graph (SecAgg+, small n): every secret is held by the k + 1 members of
one neighbourhood, so d ≤ k + 1 − t drops anywhere still complete exactly.

Always: no owner has both its self-mask share and its key share released.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st

from protocol.build import make_config
from protocol.config import SECURE_PROFILES as PROFILES
from protocol.config import Profile, default_colluders, minimum_threshold
from protocol.messages import UnmaskShares
from protocol.simulation import PHASES, SimulationReport, simulate
from secagg.rng import DeterministicRandomSource, uniform_below

BEFORE_MASKED_INPUT = ("advertise", "share", "masked")


@dataclass(frozen=True)
class Case:
    profile: Profile
    n: int
    threshold: int
    dim: int
    levels: int
    max_weight: int
    degree: int | None
    weights: tuple[int, ...]
    fill: str
    drops: dict[str, int]
    seed: int

    def phases(self) -> tuple[str, ...]:
        """The phases this round runs (semi-honest: no consistency; complete graph: no graph)."""
        sparse = self.degree is not None and self.degree < self.n - 1
        return tuple(
            p
            for p in PHASES
            if (p != "consistency" or self.profile == "active") and (p != "graph" or sparse)
        )

    def effective_drops(self, phases: tuple[str, ...] | None = None) -> int:
        used = self.phases() if phases is None else phases
        return sum(c for p, c in self.drops.items() if p in used and p in self.phases())


def _inputs(case: Case) -> dict[int, np.ndarray]:
    rng = DeterministicRandomSource(f"t04/{case.seed}")
    out = {}
    for c in range(1, case.n + 1):
        if case.fill == "max":
            out[c] = np.full(case.dim, case.levels - 1, dtype=np.uint64)
        elif case.fill == "zero":
            out[c] = np.zeros(case.dim, dtype=np.uint64)
        else:
            out[c] = uniform_below(rng, case.levels, case.dim).astype(np.uint64)
    return out


@st.composite
def complete_cases(draw: st.DrawFn) -> Case:
    profile: Profile = draw(st.sampled_from(PROFILES))
    n = draw(st.integers(2, 12))
    low = min(n, minimum_threshold(n, profile=profile, colluders=default_colluders(n)))
    return _finish(draw, profile, n, draw(st.integers(low, n)), None)


@st.composite
def sparse_cases(draw: st.DrawFn) -> Case:
    profile: Profile = draw(st.sampled_from(PROFILES))
    n = draw(st.integers(5, 10))
    degree = draw(st.sampled_from(range(2, n - 1, 2)))
    low = make_config(clients=n, dim=1, degree=degree, profile=profile).threshold
    return _finish(draw, profile, n, draw(st.integers(low, degree + 1)), degree)


def _finish(draw: st.DrawFn, profile: Profile, n: int, t: int, degree: int | None) -> Case:
    max_weight = draw(st.integers(1, 3))
    return Case(
        profile=profile,
        n=n,
        threshold=t,
        dim=draw(st.integers(1, 2000)),
        levels=draw(st.sampled_from([2, 3, 255, 1 << 16]) | st.integers(2, 1 << 20)),
        max_weight=max_weight,
        degree=degree,
        weights=tuple(draw(st.lists(st.integers(0, max_weight), min_size=n, max_size=n))),
        fill=draw(st.sampled_from(["random", "random", "max", "zero"])),
        drops=dict(Counter(draw(st.lists(st.sampled_from(PHASES), max_size=n)))),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _run(case: Case) -> SimulationReport:
    config = make_config(
        clients=case.n,
        dim=case.dim,
        threshold=case.threshold,
        degree=case.degree,
        profile=case.profile,
        levels=case.levels,
        max_weight=case.max_weight,
        seed=case.seed.to_bytes(4, "little"),
    )
    weights = {c: w for c, w in zip(config.clients, case.weights, strict=True)}
    return simulate(config, levels=_inputs(case), weights=weights, drops=case.drops, seed=case.seed)


def _assert_no_owner_has_both_kinds(releases: dict[int, UnmaskShares]) -> None:
    all_self: set[int] = set()
    all_keys: set[int] = set()
    for reply in releases.values():
        self_owners = {o for o, _ in reply.self_mask_shares}
        key_owners = {o for o, _ in reply.key_shares}
        assert not self_owners & key_owners
        all_self |= self_owners
        all_keys |= key_owners
    assert not all_self & all_keys


def _assert_exact_over_the_right_clients(case: Case, report: SimulationReport) -> None:
    assert report.exact is True
    assert report.result is not None
    lost = {c for p in BEFORE_MASKED_INPUT for c in report.dropped[p]}
    assert len(lost) == sum(case.drops.get(p, 0) for p in BEFORE_MASKED_INPUT)
    assert report.survivors == tuple(c for c in report.cohort if c not in lost)
    assert report.result.survivors == report.survivors
    assert report.result.weight_sum == sum(case.weights[c - 1] for c in report.survivors)


@given(complete_cases())
def test_complete_graph_round(case: Case) -> None:
    report = _run(case)
    event(f"{case.profile}: {'completed' if report.completed else 'aborted'}")
    _assert_no_owner_has_both_kinds(report.unmask_releases)
    tolerated = case.n - case.threshold
    if case.effective_drops() <= tolerated:
        assert report.completed, report.abort_reason
        _assert_exact_over_the_right_clients(case, report)
        assert sum(map(len, report.dropped.values())) == case.effective_drops()
        return
    assert not report.completed
    assert report.exact is None and report.result is None
    assert report.abort_reason is not None
    assert report.abort_reason.startswith("only ")
    pre_unmask = tuple(p for p in case.phases() if p != "unmask")
    if case.effective_drops(pre_unmask) > tolerated:
        assert report.unmask_releases == {}
    else:
        event("aborted during unmasking")
        assert report.abort_reason.endswith(f"in phase unmask, threshold is {case.threshold}")


@given(sparse_cases())
def test_sparse_graph_round(case: Case) -> None:
    assert case.degree is not None and case.degree < case.n - 1
    report = _run(case)
    event(f"sparse {case.profile}: {'completed' if report.completed else 'aborted'}")
    _assert_no_owner_has_both_kinds(report.unmask_releases)
    # A holder releases shares of its neighbourhood only: k + 1 owners at most.
    for reply in report.unmask_releases.values():
        assert len(reply.self_mask_shares) + len(reply.key_shares) <= case.degree + 1
    if case.effective_drops(("advertise", "graph")) > 0:
        # Every member's key and graph nonce seed the graph: a gap aborts the round.
        assert not report.completed
        assert report.unmask_releases == {}
        return
    if case.effective_drops() <= case.degree + 1 - case.threshold:
        assert report.completed, report.abort_reason
    if report.completed:
        _assert_exact_over_the_right_clients(case, report)
    pre_unmask = tuple(p for p in case.phases() if p != "unmask")
    if case.effective_drops(pre_unmask) > case.n - case.threshold:
        assert not report.completed
        assert report.unmask_releases == {}
