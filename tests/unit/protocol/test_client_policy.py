"""The client's own policy against a server that announces whatever suits it (issue 14).

One test per class of downgrade: each plays the server, hands the real
:class:`ClientMachine` what a hostile aggregator would announce, and checks
that the client refuses before any key leaves it (a :class:`ClientAbort`
naming the rule, no :class:`AdvertiseKeys`), or aborts mid-round without
releasing a share. Every one of them passed the landed client before.
"""

from __future__ import annotations

import dataclasses
import hashlib
from fractions import Fraction

import pytest

from protocol import session as ses
from protocol.build import make_config
from protocol.client import ClientMachine, ClientPhase
from protocol.config import RoundConfig
from protocol.graph import graph_from_seed
from protocol.messages import (
    AdvertiseKeys,
    ClientAbort,
    ClientMessage,
    GraphNonces,
    GraphReveal,
    KeyList,
    RoundStart,
    ServerAbort,
    ShareKeys,
)
from protocol.policy import (
    MODES,
    SAFE_MODES,
    ClientPolicy,
    consortium_colluders,
    mode_of,
    sparse_threshold,
)
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource

VICTIM = 1


def keys(n: int, seed: str = "policy") -> dict[int, SigningKey]:
    rng = DeterministicRandomSource(seed)
    return {c: signing_key(rng) for c in range(1, n + 1)}


def machine(
    client: int, signing: dict[int, SigningKey], policy: ClientPolicy | None = None
) -> ClientMachine:
    return ClientMachine(
        client,
        rng=DeterministicRandomSource(f"client-{client}"),
        signing_key=signing[client],
        roster={c: k.public for c, k in signing.items()},
        policy=policy,
    )


def config(n: int, **changes: object) -> RoundConfig:
    base = make_config(clients=n, dim=8, profile="active", seed=b"policy")
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def refused(replies: list[ClientMessage], m: ClientMachine, rule: str) -> None:
    assert [type(r) for r in replies] == [ClientAbort], replies
    assert m.phase is ClientPhase.ABORTED
    assert "refused by this client's policy" in (m.abort_reason or "")
    assert rule in (m.abort_reason or ""), m.abort_reason


# ---------------------------------------------------------------- 1 profile downgrade


def test_semi_honest_profile_is_refused_by_default() -> None:
    signing = keys(10)
    m = machine(VICTIM, signing)
    refused(m.handle(RoundStart(config(10, profile="semi-honest"))), m, "profile 'semi-honest'")


def test_semi_honest_profile_only_with_an_opt_in_that_is_warned_about() -> None:
    signing = keys(10)
    policy = ClientPolicy().with_opt_in("semi-honest")
    m = machine(VICTIM, signing, policy)
    (reply,) = m.handle(RoundStart(config(10, profile="semi-honest")))
    assert isinstance(reply, AdvertiseKeys)
    assert any("semi-honest" in w for w in policy.warnings())
    assert ClientPolicy().warnings() == []


# ---------------------------------------------------------------- 2 mode downgrade


def test_default_modes_exclude_plain_and_every_single_key_he_scheme() -> None:
    policy = ClientPolicy()
    assert set(policy.modes) == set(SAFE_MODES) == {"secagg", "secagg+", "bfv-masked"}
    for mode in ("plain", "ckks", "bfv"):
        assert policy.mode_problem(mode, None), mode
        assert policy.with_opt_in(mode).mode_problem(mode, None) is None
    with pytest.raises(ParameterError, match="unknown modes"):
        ClientPolicy(modes=("rot13",))


def test_hybrid_half_is_judged_as_bfv_masked() -> None:
    signing = keys(10)
    cfg = config(10)
    only_secagg = ClientPolicy(modes=("secagg",))
    assert only_secagg.check(cfg, roster_size=10) is None
    assert "bfv-masked" in (only_secagg.check(cfg, roster_size=10, hybrid=True) or "")
    assert ClientPolicy().check(cfg, roster_size=10, hybrid=True) is None
    assert machine(VICTIM, signing).hybrid is False


# ---------------------------------------------------------------- 3 tiny cohorts


def test_cohort_of_victim_and_one_colluder_is_refused() -> None:
    signing = keys(10)
    cfg = config(10, clients=(1, 2), threshold=2)
    for policy in (None, ClientPolicy(colluders=0)):
        m = machine(VICTIM, signing, policy)
        refused(m.handle(RoundStart(cfg)), m, "cohort of 2")


def test_k_min_is_not_capped_at_the_cohort() -> None:
    """{victim, c1, c2} with n_C = 2: t = 3 = n, but only the victim is honest."""
    signing = keys(10)
    cfg = config(10, clients=(1, 2, 3), threshold=3)
    m = machine(VICTIM, signing, ClientPolicy(colluders=2))
    refused(m.handle(RoundStart(cfg)), m, "k_min = 3 honest inputs beside n_C = 2")


def test_colluders_come_from_the_roster_not_the_announced_cohort() -> None:
    """A consortium of 30 assumes up to 9 colluders, whatever cohort the server picks."""
    signing = keys(30)
    assert ClientPolicy().assumed_colluders(30) == consortium_colluders(30) == 9
    small = config(30, clients=tuple(range(1, 11)), threshold=10)  # n = 10 < 9 + 3? no: 12
    m = machine(VICTIM, signing)
    refused(m.handle(RoundStart(small)), m, "n_C = 9")
    # The same cohort is fine for a client whose operator states n_C = 3 ...
    ok = machine(VICTIM, signing, ClientPolicy(colluders=3))
    assert isinstance(
        ok.handle(RoundStart(dataclasses.replace(small, threshold=7)))[0], AdvertiseKeys
    )
    # ... and a client without a roster must be told n_C.
    bare = ClientPolicy().with_opt_in("semi-honest")
    assert "n_C is unknown" in (bare.check(config(10, profile="semi-honest"), roster_size=0) or "")


# ---------------------------------------------------------------- 4 SecAgg+ off by one


def test_secagg_plus_threshold_counts_k_plus_one_holders() -> None:
    """n = 20, k = 8, one colluder: t = 5 lets one corrupt neighbour reach 5 of both kinds.

    Holders are the 8 neighbours and the client: the corrupt one gives both
    kinds, the 8 honest ones split 4 + 4, so the server holds 5 of each.
    """
    assert 1 + (8 + 1 - 1) // 2 == 5  # the counting above, in numbers
    policy = ClientPolicy(colluders=1)
    assert sparse_threshold(20, 8, profile="active", colluders=1) == 6
    signing = keys(20)
    cfg = config(20, degree=8, threshold=5)
    assert mode_of(cfg) == "secagg+"
    m = machine(VICTIM, signing, policy)
    refused(m.handle(RoundStart(cfg)), m, "threshold 5 is below this client's safe minimum 6")
    fine = machine(VICTIM, signing, policy)
    assert isinstance(
        fine.handle(RoundStart(dataclasses.replace(cfg, threshold=6)))[0], AdvertiseKeys
    )


# ---------------------------------------------------------------- 5 the graph


def test_a_sparse_graph_does_not_lower_the_colluders_assumed() -> None:
    """n = 10: degree 4 used to switch n_C from 3 to 5% of 10 = 0 and accept t = 3."""
    signing = keys(10)
    m = machine(VICTIM, signing)
    assert sparse_threshold(10, 4, profile="active", colluders=3) == 5  # n_C = 3 kept
    refused(m.handle(RoundStart(config(10, degree=4, threshold=3))), m, "safe minimum 5")


@pytest.mark.parametrize("degree", [3, 1, 5])
def test_odd_or_tiny_degree_is_refused_not_raised(degree: int) -> None:
    signing = keys(10)
    m = machine(VICTIM, signing, ClientPolicy(colluders=0, min_honest=1))
    refused(m.handle(RoundStart(config(10, degree=degree, threshold=2))), m, "degree")


def test_degrees_the_client_accepts_are_its_own() -> None:
    signing = keys(20)
    cfg = config(20, degree=8, threshold=6)
    m = machine(VICTIM, signing, ClientPolicy(colluders=1, degrees=(12, 16)))
    refused(m.handle(RoundStart(cfg)), m, "not among this client's [12, 16]")


def _advertised(
    n: int, degree: int
) -> tuple[RoundConfig, dict[int, ClientMachine], list[AdvertiseKeys]]:
    signing = keys(n)
    cfg = config(n, degree=degree, threshold=degree // 2 + 2)
    policy = ClientPolicy(colluders=0)
    assert policy.check(cfg, roster_size=n) is None
    clients = {c: machine(c, signing, policy) for c in cfg.clients}
    ads = []
    for m in clients.values():
        (ad,) = m.handle(RoundStart(cfg))
        assert isinstance(ad, AdvertiseKeys)
        ads.append(ad)
    return cfg, clients, ads


def test_secagg_plus_key_list_must_hold_the_whole_cohort() -> None:
    """The server may not choose U1: it seeds the graph, so leaving keys out re-draws it."""
    _, clients, ads = _advertised(10, 4)
    short = KeyList(tuple(a for a in ads if a.client != 7))
    replies = clients[VICTIM].handle(short)
    assert [type(r) for r in replies] == [ClientAbort]
    assert "every cohort member's key" in (clients[VICTIM].abort_reason or "")
    full = clients[2].handle(KeyList(tuple(ads)))
    assert [type(r) for r in full] == [GraphReveal]


def _revealed(
    n: int = 10, degree: int = 4
) -> tuple[RoundConfig, dict[int, ClientMachine], list[AdvertiseKeys], dict[int, bytes]]:
    cfg, clients, ads = _advertised(n, degree)
    nonces = {}
    for c, m in clients.items():
        (reveal,) = m.handle(KeyList(tuple(ads)))
        assert isinstance(reveal, GraphReveal) and m.phase is ClientPhase.AWAITING_GRAPH
        nonces[c] = reveal.nonce
    return cfg, clients, ads, nonces


def test_the_secagg_plus_graph_comes_from_every_members_revealed_nonce() -> None:
    """Commit-reveal: each signed key carries a commitment, opened only once U1 is fixed."""
    cfg, clients, ads, nonces = _revealed()
    for ad in ads:
        assert ad.graph_commitment == ses.graph_commitment(cfg, ad.client, nonces[ad.client])
    replies = clients[VICTIM].handle(GraphNonces(tuple(sorted(nonces.items()))))
    assert [type(r) for r in replies] == [ShareKeys]
    session = clients[VICTIM].session_id
    expected = graph_from_seed(cfg.n, cfg.degree, ses.graph_seed(session, nonces.items()))
    assert clients[VICTIM].graph == expected
    # Keys alone no longer fix the graph: a colluder grinding its keys against the honest
    # ones cannot know the graph, since one honest nonce (unknown then) re-draws it.
    other = {**nonces, 2: bytes(32)}
    redrawn = graph_from_seed(cfg.n, cfg.degree, ses.graph_seed(session, other.items()))
    assert redrawn != expected


@pytest.mark.parametrize("fault", ["swapped", "missing", "extra", "short"])
def test_nonces_that_do_not_open_the_commitments_abort_before_any_share(fault: str) -> None:
    """A server that grinds a colluder's nonce after seeing the others' is caught here."""
    cfg, clients, _, nonces = _revealed()
    items = dict(nonces)
    if fault == "swapped":
        items[cfg.clients[-1]] = hashlib.sha256(b"ground").digest()
    elif fault == "missing":
        del items[cfg.clients[-1]]
    elif fault == "extra":
        items[99] = bytes(32)
    else:
        items[cfg.clients[-1]] = items[cfg.clients[-1]][:16]
    replies = clients[VICTIM].handle(GraphNonces(tuple(sorted(items.items()))))
    assert [type(r) for r in replies] == [ClientAbort]
    assert clients[VICTIM].phase is ClientPhase.ABORTED


def test_a_key_list_without_graph_commitments_is_refused_in_secagg_plus() -> None:
    _, clients, ads = _advertised(10, 4)
    stripped = tuple(
        dataclasses.replace(a, graph_commitment=b"") if a.client != VICTIM else a for a in ads
    )
    replies = clients[VICTIM].handle(KeyList(stripped))
    assert [type(r) for r in replies] == [ClientAbort]
    assert "graph commitment" in (clients[VICTIM].abort_reason or "")


def test_the_server_aborts_when_a_member_withholds_its_nonce() -> None:
    """Choosing whose nonces count would be a re-draw, so a missing reveal ends the round."""
    from protocol.policy import lab_policy
    from protocol.server import ServerMachine, ServerPhase

    signing = keys(10)
    cfg = config(10, degree=4, threshold=4)
    server = ServerMachine(cfg, roster={c: k.public for c, k in signing.items()})
    clients = {c: machine(c, signing, lab_policy(cfg)) for c in cfg.clients}
    for c, msg in server.start():
        for reply in clients[c].handle(msg):
            server.receive(c, reply)
    for c, msg in server.advance():
        assert isinstance(msg, KeyList)
        for reply in clients[c].handle(msg):
            if c != cfg.clients[-1]:
                server.receive(c, reply)
    assert server.phase is ServerPhase.GRAPH
    outbox = server.advance()
    assert server.phase is ServerPhase.ABORTED and "graph nonces missing" in (
        server.abort_reason or ""
    )
    assert all(isinstance(m, ServerAbort) for _, m in outbox)


def test_an_unsigned_key_of_a_non_neighbour_is_refused() -> None:
    _, clients, ads = _advertised(10, 4)
    far = 7 if VICTIM != 7 else 8  # the graph is not drawn yet: every key is checked
    forged = tuple(
        dataclasses.replace(a, signature=bytes(64)) if a.client == far else a for a in ads
    )
    replies = clients[VICTIM].handle(KeyList(forged))
    assert [type(r) for r in replies] == [ClientAbort]
    assert f"bad key signature from client {far}" in (clients[VICTIM].abort_reason or "")


# ---------------------------------------------------------------- 7 robustness


def test_a_malformed_key_inside_a_key_list_aborts_instead_of_raising() -> None:
    _, clients, ads = _advertised(10, 4)
    broken = tuple(
        dataclasses.replace(a, c_public=a.c_public[:31]) if a.client == 2 else a for a in ads
    )
    replies = clients[VICTIM].handle(KeyList(broken))
    assert [type(r) for r in replies] == [ClientAbort]
    assert clients[VICTIM].phase is ClientPhase.ABORTED


def test_any_error_a_message_provokes_ends_the_round_cleanly() -> None:
    signing = keys(10)
    m = machine(VICTIM, signing)
    m.handle(RoundStart(config(10)))
    replies = m.handle(KeyList(None))  # type: ignore[arg-type]
    assert [type(r) for r in replies] == [ClientAbort]
    assert "malformed server message" in (m.abort_reason or "")
    assert m.handle(RoundStart(config(10))) == []  # terminal: nothing more


# ---------------------------------------------------------------- settings


def test_policy_settings_parse_and_refuse_nonsense() -> None:
    policy = ClientPolicy.from_settings(
        {"modes": ["secagg"], "colluders": -1, "min_honest": 4, "degrees": [8]}
    )
    assert policy.modes == ("secagg",) and policy.colluders is None and policy.degrees == (8,)
    for bad in (
        {"modes": "secagg"},
        {"colluders": -2},
        {"min_honest": 0},
        {"degrees": [3]},
        {"profiles": ["plain"]},
        {"threshold": 3},
        {"colluders": True},
    ):
        with pytest.raises(ParameterError):
            ClientPolicy.from_settings(bad)
    assert set(MODES) >= set(SAFE_MODES)


# ---------------------------------------------------------------- 8 and 9


def test_a_dp_plan_below_sigma_one_half_is_refused() -> None:
    """The bound on sums of discrete Gaussians the accounting uses needs σ ≥ 1/2."""
    from secagg.dp.plan import plan_ddg

    ok = plan_ddg(dim=100, l2_clip=1.0, noise_multiplier=1.0, min_honest=3)
    assert ok.sigma2 >= Fraction(1, 4)
    with pytest.raises(ParameterError, match="below 1/4"):
        plan_ddg(dim=100, l2_clip=1.0, noise_multiplier=1e-4, min_honest=3, gamma=0.5)


def test_the_server_refuses_a_low_order_key_at_advertise() -> None:
    """One client with an all-zero (low-order) key would spoil every round it joins."""
    from protocol.errors import InvalidMessage
    from protocol.policy import lab_policy
    from protocol.server import ServerMachine
    from secagg.primitives.signing import sign

    signing = keys(5)
    cfg = config(5)
    server = ServerMachine(cfg, roster={c: k.public for c, k in signing.items()})
    server.start()
    for client, low in ((2, bytes(32)), (3, (1).to_bytes(32, "little"))):
        fields = ses.advertise_fields(cfg, client, low, low)
        bad = AdvertiseKeys(client, cfg.round, low, low, sign(signing[client], *fields))
        with pytest.raises(InvalidMessage, match="low-order"):
            server.receive(client, bad)
        assert client in server.excluded  # out of this round, nobody else's round spoiled
    good = machine(4, signing, lab_policy(cfg)).handle(RoundStart(cfg))[0]
    server.receive(4, good)  # real keys are accepted
