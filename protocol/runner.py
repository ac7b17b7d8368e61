"""One in-memory round for every mode: the lab's, the benchmarks' and the audit's runner.

:func:`run_round` looks the mode up in the registry (:mod:`protocol.modes`)
and runs that mode's in-memory transport (:func:`protocol.simulation.simulate`,
:func:`protocol.he_flow.run_he_round`, :func:`protocol.he_masked.run_he_masked_round`,
:func:`run_plain_round`), returning one :class:`RoundReport`. The mode's own
report stays in ``detail`` for the hosts that read mode-specific figures
(per-phase timings, released unmasking shares).

Drops: the SecAgg runner takes a count per phase and picks the clients
itself from the round's seed; the other runners take the clients per phase.
Randomness: the SecAgg runner draws its keys from ``seed``; the others take
``rng`` (and ``roster_keys``, else keys drawn from ``rng``), so a host that
draws inputs from the same source keeps its order of draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from protocol.config import RoundConfig
from protocol.errors import ProtocolError
from protocol.he_messages import HEConfig, HEMaskedConfig
from protocol.messages import MaskedInput
from protocol.modes import Mode, ModeConfig, mode, mode_of_config
from protocol.policy import ClientPolicy, lab_policy
from protocol.server import ServerPhase
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource, RandomSource

Clock = Callable[[], float]
#: A phase's drops: a count (the SecAgg runner picks) or the clients that go silent.
Drops = Mapping[str, int] | Mapping[str, Sequence[int]]


@dataclass
class RoundReport:
    """What one in-memory round did, in any mode.

    ``mean`` is Σ w·x / Σ w as the party that learns it sees it (the server
    for plain and SecAgg, the first receiving client for the HE modes);
    ``results`` holds every receiving client's decrypted mean (HE modes).
    ``exact`` compares an integer sum with Σ w·levels of the survivors (None
    where the mode is approximate or the inputs were floats). ``upload_bytes``
    is the largest upload of one client.
    """

    mode: str
    completed: bool
    abort_reason: str | None
    survivors: tuple[int, ...]
    dropped: dict[str, list[int]]
    mean: np.ndarray | None
    weight_sum: int | float | None
    exact: bool | None
    upload_bytes: int
    results: dict[int, np.ndarray] = field(default_factory=dict)
    rejections: list[tuple[int, str]] = field(default_factory=list)
    bytes_up: dict[int, int] = field(default_factory=dict)
    #: The mode's own report (SimulationReport, HERoundReport, HEMaskedReport, PlainReport).
    detail: Any = None


def run_round(
    name: str | Mode | None,
    config: ModeConfig,
    *,
    levels: Mapping[int, np.ndarray] | None = None,
    vectors: Mapping[int, np.ndarray] | None = None,
    weights: Mapping[int, int] | None = None,
    drops: Drops | None = None,
    seed: int | bytes = 0,
    rng: RandomSource | None = None,
    roster_keys: Mapping[int, SigningKey] | None = None,
    policy: ClientPolicy | None = None,
    clock: Clock | None = None,
    tap: Callable[[int, Any], None] | None = None,
) -> RoundReport:
    """Run one round of ``name`` (None: the mode ``config`` amounts to) over ``config``.

    Inputs are integer ``levels`` or float ``vectors`` as the mode takes them
    (the SecAgg runner takes either and draws random levels when given none;
    CKKS/BFV take vectors; bfv-masked takes levels). ``weights`` default to 1.
    """
    entry = mode_of_config(config) if name is None else mode(name)
    if not isinstance(config, entry.config_type):
        raise ParameterError(
            f"mode {entry.name!r} runs a {entry.config_type.__name__}, "
            f"not a {type(config).__name__}"
        )
    if entry.name in ("secagg", "secagg+"):
        assert isinstance(config, RoundConfig)
        return _secagg(entry, config, levels, vectors, weights, drops, seed, policy, clock, tap)
    source = rng or DeterministicRandomSource(
        seed if isinstance(seed, bytes) else seed.to_bytes(8, "little")
    )
    weights = weights or {c: 1 for c in config.clients}
    plan = _client_drops(entry, drops)
    if entry.name == "plain":
        assert isinstance(config, RoundConfig)
        return run_plain_round(
            config, levels=levels, vectors=vectors, weights=weights, drops=plan, policy=policy
        )
    keys = roster_keys or {c: signing_key(source) for c in config.clients}
    if isinstance(config, HEConfig):
        return _he(entry, config, levels, vectors, weights, plan, keys, source)
    assert isinstance(config, HEMaskedConfig)
    if levels is None:
        raise ParameterError("bfv-masked takes integer levels (quantise the updates first)")
    return _he_masked(config, levels, weights, plan, keys, source, policy, clock, tap)


def _client_drops(entry: Mode, drops: Drops | None) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for phase, who in (drops or {}).items():
        if phase not in entry.drop_phases:
            raise ParameterError(f"{entry.name} drops at one of {entry.drop_phases}, not {phase!r}")
        if isinstance(who, int):
            raise ParameterError(f"{entry.name} takes the clients that drop, not a count")
        out[phase] = [int(c) for c in who]
    return out


def _secagg(
    entry: Mode,
    config: RoundConfig,
    levels: Mapping[int, np.ndarray] | None,
    vectors: Mapping[int, np.ndarray] | None,
    weights: Mapping[int, int] | None,
    drops: Drops | None,
    seed: int | bytes,
    policy: ClientPolicy | None,
    clock: Clock | None,
    tap: Callable[[int, Any], None] | None,
) -> RoundReport:
    from protocol.simulation import simulate

    counts: dict[str, int] = {}
    for phase, count in (drops or {}).items():
        if not isinstance(count, int):
            raise ParameterError(f"{entry.name} takes a count of drops per phase")
        counts[phase] = count
    sim = simulate(
        config,
        levels=levels,
        vectors=vectors,
        weights=weights,
        drops=counts or None,
        seed=seed,
        policy=policy,
        clock=clock,
        tap=tap,
    )
    result = sim.result
    return RoundReport(
        mode=entry.name,
        completed=sim.completed,
        abort_reason=sim.abort_reason,
        survivors=sim.survivors,
        dropped=sim.dropped,
        mean=result.weighted_mean() if result is not None else None,
        weight_sum=result.weight_sum if result is not None else None,
        exact=sim.exact,
        upload_bytes=max(sim.bytes_up.values(), default=0),
        rejections=sim.rejections,
        bytes_up=sim.bytes_up,
        detail=sim,
    )


def _he(
    entry: Mode,
    config: HEConfig,
    levels: Mapping[int, np.ndarray] | None,
    vectors: Mapping[int, np.ndarray] | None,
    weights: Mapping[int, int],
    drops: dict[str, list[int]],
    keys: Mapping[int, SigningKey],
    rng: RandomSource,
) -> RoundReport:
    from protocol.he_flow import run_he_round

    if vectors is None:
        raise ParameterError(f"{entry.name} takes float vectors (each client encodes its own)")
    he = run_he_round(
        config, vectors=vectors, weights=weights, roster_keys=keys, rng=rng, drops=drops or None
    )
    first = min(he.results, default=None)
    return RoundReport(
        mode=entry.name,
        completed=he.completed,
        abort_reason=he.abort_reason,
        survivors=he.contributors,
        dropped=he.dropped,
        mean=he.results[first] if first is not None else None,
        weight_sum=sum(weights[c] for c in he.contributors) if he.completed else None,
        exact=None,
        upload_bytes=he.upload_bytes,
        results=he.results,
        detail=he,
    )


def _he_masked(
    config: HEMaskedConfig,
    levels: Mapping[int, np.ndarray],
    weights: Mapping[int, int],
    drops: dict[str, list[int]],
    keys: Mapping[int, SigningKey],
    rng: RandomSource,
    policy: ClientPolicy | None,
    clock: Clock | None,
    tap: Callable[[int, Any], None] | None,
) -> RoundReport:
    from protocol.he_masked import run_he_masked_round

    hm = run_he_masked_round(
        config,
        levels=levels,
        weights=weights,
        roster_keys=keys,
        rng=rng,
        drops=drops,
        clock=clock,
        tap=tap,
        policy=policy,
    )
    first = min(hm.results, default=None)
    return RoundReport(
        mode="bfv-masked",
        completed=hm.completed,
        abort_reason=hm.abort_reason,
        survivors=hm.survivors,
        dropped=hm.dropped,
        mean=hm.results[first] if first is not None else None,
        weight_sum=hm.weight_sum,
        exact=hm.exact,
        upload_bytes=hm.upload_bytes,
        results=hm.results,
        rejections=hm.rejections,
        detail=hm,
    )


# ---------------------------------------------------------------- plain


@dataclass
class PlainReport:
    """The plain round's own figures: the server's float sums."""

    total: np.ndarray | None
    weight_sum: int | None


def run_plain_round(
    config: RoundConfig,
    *,
    levels: Mapping[int, np.ndarray] | None = None,
    vectors: Mapping[int, np.ndarray] | None = None,
    weights: Mapping[int, int] | None = None,
    drops: Mapping[str, Sequence[int]] | None = None,
    policy: ClientPolicy | None = None,
) -> RoundReport:
    """One plain round in memory (:mod:`protocol.plain`): updates in the clear, summed.

    ``drops["masked"]`` lists the clients that never send their update.
    Integer ``levels`` are sent as floats, as :class:`protocol.plain.PlainClient` does.
    """
    from protocol.plain import PlainClient, PlainServer

    inputs = vectors if vectors is not None else levels
    if inputs is None:
        raise ParameterError("plain takes vectors or levels")
    weights = weights or {c: 1 for c in config.clients}
    silent = set((drops or {}).get("masked", ()))
    accept = policy or lab_policy(config)
    clients = {c: PlainClient(c, policy=accept) for c in config.clients}
    server = PlainServer(config)
    for c, machine in clients.items():
        machine.set_input(inputs[c], weight=weights[c], model_hash=config.model_hash)
    bytes_up = {c: 0 for c in config.clients}
    rejections: list[tuple[int, str]] = []
    for cid, msg in server.start():
        if cid in silent:
            continue
        for reply in clients[cid].handle(msg):
            if isinstance(reply, MaskedInput):
                bytes_up[cid] += len(reply.payload)
            try:
                server.receive(cid, reply)
            except ProtocolError as exc:
                rejections.append((cid, f"{type(exc).__name__}: {exc}"))
    for cid, msg in server.advance():
        if cid not in silent:
            clients[cid].handle(msg)
    result = server.result
    completed = server.phase is ServerPhase.COMPLETED and result is not None
    return RoundReport(
        mode="plain",
        completed=completed,
        abort_reason=server.abort_reason,
        survivors=server.survivors,
        dropped={"masked": sorted(silent)},
        mean=result.weighted_mean() if result is not None else None,
        weight_sum=result.weight_sum if result is not None else None,
        exact=None,
        upload_bytes=max(bytes_up.values(), default=0),
        rejections=rejections,
        bytes_up=bytes_up,
        detail=PlainReport(
            result.total if result is not None else None,
            result.weight_sum if result is not None else None,
        ),
    )
