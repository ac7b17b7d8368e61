"""Whole rounds: T05 (dropout matrix) and T06 (late arrival), plus plain exact sums.

The rule checked throughout (complete graph): with d clients silent from some
phase on, the round completes bit-exactly iff d ≤ n − t, over exactly the
clients whose masked input reached the server; otherwise every client still
listening is sent ServerAbort, and no unmasking share leaves a client unless
the drops happened during unmasking itself. Whatever happens, no owner ever
has both its self-mask share and its key share released (by anyone).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from protocol.client import ClientPhase
from protocol.config import Profile
from protocol.errors import WrongPhase
from protocol.messages import KeyList, MaskedInput, ServerAbort, UnmaskShares
from protocol.server import ServerPhase
from protocol.simulation import PHASES, simulate
from secagg.masking import pairwise_seed, pairwise_sign, self_mask_seed
from secagg.packing import unpack
from secagg.primitives import shamir
from secagg.primitives.prg import prg_accumulate, reduce_mod, word_dtype
from secagg.primitives.x25519 import X25519KeyPair, x25519_public
from secagg.rng import DeterministicRandomSource, uniform_below
from tests.unit.protocol.helpers import Harness, owners, small_config

# ---------------------------------------------------------------------- helpers


def assert_no_owner_has_both_kinds(releases: dict[int, list[UnmaskShares]]) -> None:
    """Per reply and across all replies: an owner is either alive or dropped, never both."""
    all_self: set[int] = set()
    all_keys: set[int] = set()
    for replies in releases.values():
        for reply in replies:
            self_owners, key_owners = owners(reply)
            assert not self_owners & key_owners, reply
            all_self |= self_owners
            all_keys |= key_owners
    assert not all_self & all_keys


def pick_droppers(
    cohort: tuple[int, ...], phase: str, count: int, seed: int
) -> dict[str, list[int]]:
    """``count`` distinct clients, drawn reproducibly, silent from ``phase`` on."""
    rng = DeterministicRandomSource(f"t05/{phase}/{count}/{seed}")
    pool = list(cohort)
    chosen = [pool.pop(int(uniform_below(rng, len(pool), 1)[0])) for _ in range(count)]
    return {phase: chosen}


# ---------------------------------------------------------------------- exact sums


@pytest.mark.parametrize("profile", ["active", "semi-honest"])
@pytest.mark.parametrize("n", [2, 3, 7])
def test_round_without_drops_is_exact(profile: Profile, n: int) -> None:
    h = Harness(small_config(n, dim=33, profile=profile), seed=n)
    h.run()
    h.assert_exact(h.config.clients)
    assert all(c.phase is ClientPhase.COMPLETED for c in h.clients.values())
    # Every client released exactly one reply: self-mask shares for everyone, no key shares.
    assert set(h.releases) == set(h.config.clients)
    for replies in h.releases.values():
        (reply,) = replies
        assert owners(reply) == (set(h.config.clients), set())


def test_round_with_weights_and_extreme_levels_is_exact() -> None:
    """Max levels × max weight hits the no-wrap bound exactly: still bit-exact."""
    config = small_config(5, dim=70, levels=1 << 12, max_weight=3)
    assert config.threshold == 4
    top = np.full(config.dim, config.levels - 1, dtype=np.uint64)
    levels = {c: top.copy() for c in config.clients}
    weights = {1: 3, 2: 3, 3: 0, 4: 3, 5: 3}
    h = Harness(config, levels=levels, weights=weights)
    h.run({"unmask": [4]})
    h.assert_exact(config.clients)
    assert h.server.result is not None
    assert int(h.server.result.total.max()) == 12 * (config.levels - 1)


@pytest.mark.parametrize("degree", [4, 6])
def test_sparse_graph_round_with_a_drop_is_exact(degree: int) -> None:
    config = small_config(9, dim=20, degree=degree)
    assert config.threshold <= degree  # one drop per neighbourhood is tolerated
    h = Harness(config, seed=degree)
    h.run({"masked": [5]})
    h.assert_exact(c for c in config.clients if c != 5)
    # Shares go to neighbours only: nobody releases anything about a non-neighbour.
    for replies in h.releases.values():
        (reply,) = replies
        self_owners, key_owners = owners(reply)
        assert len(self_owners | key_owners) <= degree + 1
    assert_no_owner_has_both_kinds(h.releases)


def test_simulation_agrees_with_the_harness() -> None:
    """protocol.simulation (used by the property tests) reports the same outcome."""
    config = small_config(7, dim=10)
    assert config.threshold == 5
    report = simulate(config, drops={"share": 1, "unmask": 1}, seed=3)
    assert report.completed and report.exact
    assert len(report.survivors) == 6
    failed = simulate(config, drops={"share": 2, "unmask": 1}, seed=3)
    assert not failed.completed
    assert failed.abort_reason == "only 4 clients answered in phase unmask, threshold is 5"
    assert_no_owner_has_both_kinds({c: [r] for c, r in report.unmask_releases.items()})


# ---------------------------------------------------------------------- T05


N05, T05, DIM05 = 10, 7, 50
SECAGG_PHASES = [p for p in PHASES if p != "graph"]  # the complete graph has no graph phase
SEEDS = range(5)
CELLS = [pytest.param("advertise", 0, s, id=f"none-seed{s}") for s in SEEDS]
CELLS += [
    pytest.param(phase, count, s, id=f"{phase}-{count}-seed{s}")
    for phase in SECAGG_PHASES
    for count in (1, 2, 3)
    for s in SEEDS
]
CELLS += [
    pytest.param(phase, 4, s, id=f"{phase}-4-seed{s}") for phase in SECAGG_PHASES for s in (0, 1)
]


@pytest.mark.slow
@pytest.mark.parametrize(("phase", "count", "seed"), CELLS)
def test_dropout_matrix(phase: str, count: int, seed: int) -> None:
    config = small_config(N05, dim=DIM05, threshold=T05, seed=bytes([seed]))
    assert config.threshold == 2 * N05 // 3 + 1
    h = Harness(config, seed=f"t05-{seed}")
    drops = pick_droppers(config.clients, phase, count, seed)
    h.run(drops)
    silent = set(drops[phase])
    listening = [c for c in config.clients if c not in silent]
    assert_no_owner_has_both_kinds(h.releases)

    if count <= N05 - T05:
        lost_before_masked = silent if phase in ("advertise", "share", "masked") else set()
        survivors = [c for c in config.clients if c not in lost_before_masked]
        h.assert_exact(survivors)
        assert h.server.survivors == tuple(survivors)
        # Drops after the masked input do not change the sum, only who unmasks it.
        for c in listening:
            assert h.clients[c].phase is ClientPhase.COMPLETED
        # Self-mask shares for U3; key shares for exactly the clients that sent shares
        # but no masked input (U2 minus U3); nothing about clients outside U2.
        shared_only = silent if phase == "masked" else set()
        for replies in h.releases.values():
            (reply,) = replies
            assert owners(reply) == (set(survivors), shared_only)
        return

    assert h.server.phase is ServerPhase.ABORTED
    assert h.server.result is None
    assert h.server.abort_reason == (
        f"only {N05 - count} clients answered in phase {phase}, threshold is {T05}"
    )
    # ServerAbort reached every client still listening, and each of them stopped.
    told = {c for c, m in h.down if isinstance(m, ServerAbort)}
    assert told == set(listening)
    for c in listening:
        assert h.clients[c].phase is ClientPhase.ABORTED
        assert h.clients[c].abort_reason == f"server aborted: {h.server.abort_reason}"
    if phase != "unmask":
        assert h.releases == {}
    else:
        assert set(h.releases) == set(listening)


# ---------------------------------------------------------------------- T06


def _oracle_strip_pairwise(
    h: Harness, late: int, payload: bytes, s_sk: bytes, peers: list[int]
) -> np.ndarray:
    """What the server can compute from y_late and late's mask key: y − pairwise masks."""
    config = h.config
    bits = config.modulus_bits
    key_list = next(m for c, m in h.down if isinstance(m, KeyList))
    s_public = {k.client: k.s_public for k in key_list.keys}
    acc = unpack(payload, config.vector_length, bits).astype(word_dtype(bits))
    pair = X25519KeyPair(s_sk)
    for v in peers:
        seed = pairwise_seed(
            pair.exchange(s_public[v]), session_id=h.server.session_id, u=late, v=v
        )
        prg_accumulate(acc, seed, bits, subtract=pairwise_sign(late, v) > 0)
    return reduce_mod(acc, bits)


@pytest.mark.parametrize("closing", [ServerPhase.SHARE, ServerPhase.MASKED, ServerPhase.UNMASK])
def test_identical_retry_after_its_phase_closed_is_a_no_op(closing: ServerPhase) -> None:
    """The closing message's ack was lost (aggregator restart): its exact retry is harmless.

    A changed message for the closed phase is still refused, and the round stays exact.
    """
    config = small_config(4, dim=10)
    h = Harness(config, seed="retry")
    h.run_until(closing)
    replies = h.deliver_down()
    assert not h.deliver_up(replies)
    last = max(replies)
    (sent,) = replies[last]
    h.advance()  # the phase closed with every answer in
    before = (h.server.phase, h.server.accepted_count(), dict(h.server.excluded))
    sum_before = h.server.payload.sum.copy() if h.server.payload.sum is not None else None
    assert h.send(last, sent) is None  # identical: accepted as a repeat, nothing changes
    assert (h.server.phase, h.server.accepted_count(), dict(h.server.excluded)) == before
    if sum_before is not None:
        assert np.array_equal(h.server.payload.sum, sum_before)
    if not isinstance(sent, MaskedInput):  # a different message for the closed phase
        other = replies[min(replies)][0]
        assert isinstance(h.send(last, dataclasses.replace(other, client=last)), WrongPhase)
    h.run()
    h.assert_exact(config.clients)


@pytest.mark.parametrize("profile", ["active", "semi-honest"])
def test_late_masked_input_is_refused_and_stays_masked(profile: Profile) -> None:
    config = small_config(5, dim=12, profile=profile)
    late = 3
    h = Harness(config, seed="t06")
    h.run_until(ServerPhase.MASKED)
    replies = h.deliver_down()
    (held,) = replies.pop(late)
    assert isinstance(held, MaskedInput)
    h.deliver_up(replies)
    h.advance()  # the deadline passed without the late client
    others = [c for c in config.clients if c != late]
    assert h.server.survivors == tuple(others)

    # It arrives now, and again in every later phase: always FAILED_PRECONDITION.
    while h.server.phase not in (ServerPhase.COMPLETED, ServerPhase.ABORTED):
        sum_before = h.server.payload.sum.copy()
        waiting = h.server.waiting_for()
        error = h.send(late, held)
        assert isinstance(error, WrongPhase)
        assert error.status == "FAILED_PRECONDITION"
        assert np.array_equal(h.server.payload.sum, sum_before)
        assert h.server.waiting_for() == waiting
        assert late not in h.server.excluded
        h.step()
    error = h.send(late, held)
    assert isinstance(error, WrongPhase)
    h.finish()
    h.assert_exact(others)

    # Everyone revealed late's mask key share, and nobody its self-mask share.
    accepted = [s.msg for s in h.up if s.phase is ServerPhase.UNMASK and s.error is None]
    assert {m.client for m in accepted} == set(others)
    key_shares: list[tuple[int, bytes]] = []
    for msg in accepted:
        assert isinstance(msg, UnmaskShares)
        self_owners, key_owners = owners(msg)
        assert late in key_owners
        assert late not in self_owners
        key_shares.append((config.index_of(msg.client), dict(msg.key_shares)[late]))

    # Oracle: the server rebuilds s_late and strips every pairwise mask from the late
    # payload; the self mask still hides the input ...
    xs = [x for x, _ in key_shares]
    stacked = np.stack([shamir.share_from_bytes(s) for _, s in key_shares])[:, None, :]
    (s_sk,) = shamir.reconstruct(xs, stacked, t=config.threshold)
    key_list = next(m for c, m in h.down if isinstance(m, KeyList))
    assert x25519_public(s_sk) == next(k.s_public for k in key_list.keys if k.client == late)
    stripped = _oracle_strip_pairwise(h, late, held.payload, s_sk, others)
    values = np.append(h.levels[late] * np.uint64(h.weights[late]), np.uint64(h.weights[late]))
    assert not np.array_equal(stripped, values)
    # ... and b_late, which only the late client still holds, is exactly what is missing.
    b_late = h.clients[late]._b
    assert b_late is not None
    prg_accumulate(
        stripped,
        self_mask_seed(b_late, session_id=h.server.session_id, owner=late),
        config.modulus_bits,
        subtract=True,
    )
    assert np.array_equal(reduce_mod(stripped, config.modulus_bits), values)
