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


@dataclass(frozen=True)
class RoundInputs:
    """Everything a round's host supplies besides the config (see :func:`run_round`)."""

    levels: Mapping[int, np.ndarray] | None = None
    vectors: Mapping[int, np.ndarray] | None = None
    weights: Mapping[int, int] | None = None
    drops: Drops | None = None
    seed: int | bytes = 0
    rng: RandomSource | None = None
    roster_keys: Mapping[int, SigningKey] | None = None
    policy: ClientPolicy | None = None
    clock: Clock | None = None
    tap: Callable[[int, Any], None] | None = None

    def source(self) -> RandomSource:
        """``rng``, else a deterministic source from ``seed``."""
        if self.rng is not None:
            return self.rng
        seed = self.seed
        return DeterministicRandomSource(
            seed if isinstance(seed, bytes) else seed.to_bytes(8, "little")
        )

    def weights_for(self, clients: Sequence[int]) -> Mapping[int, int]:
        """``weights``, else 1 each."""
        return self.weights or {c: 1 for c in clients}

    def keys_for(self, clients: Sequence[int], rng: RandomSource) -> Mapping[int, SigningKey]:
        """``roster_keys``, else one signing key per client drawn from ``rng``, in order."""
        return self.roster_keys or {c: signing_key(rng) for c in clients}

    def client_drops(self, entry: Mode) -> dict[str, list[int]]:
        """The clients that drop per phase (for the runners that take clients, not counts)."""
        out: dict[str, list[int]] = {}
        for phase, who in (self.drops or {}).items():
            if phase not in entry.drop_phases:
                raise ParameterError(
                    f"{entry.name} drops at one of {entry.drop_phases}, not {phase!r}"
                )
            if isinstance(who, int):
                raise ParameterError(f"{entry.name} takes the clients that drop, not a count")
            out[phase] = [int(c) for c in who]
        return out


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
    The registry entry's ``run`` does the round (:class:`protocol.modes.Mode`).
    """
    entry = mode_of_config(config) if name is None else mode(name)
    if not isinstance(config, entry.config_type):
        raise ParameterError(
            f"mode {entry.name!r} runs a {entry.config_type.__name__}, "
            f"not a {type(config).__name__}"
        )
    inputs = RoundInputs(
        levels, vectors, weights, drops, seed, rng, roster_keys, policy, clock, tap
    )
    report: RoundReport = entry.run(entry, config, inputs)
    report.mode = entry.name
    return report


# ---------------------------------------------------------------- the modes' adapters


def run_secagg(entry: Mode, config: RoundConfig, inputs: RoundInputs) -> RoundReport:
    """SecAgg / SecAgg+ (:func:`protocol.simulation.simulate`); drops are counts per phase."""
    from protocol.simulation import simulate

    counts: dict[str, int] = {}
    for phase, count in (inputs.drops or {}).items():
        if not isinstance(count, int):
            raise ParameterError(f"{entry.name} takes a count of drops per phase")
        counts[phase] = count
    sim = simulate(
        config,
        levels=inputs.levels,
        vectors=inputs.vectors,
        weights=inputs.weights,
        drops=counts or None,
        seed=inputs.seed,
        policy=inputs.policy,
        clock=inputs.clock,
        tap=inputs.tap,
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


def run_he(entry: Mode, config: HEConfig, inputs: RoundInputs) -> RoundReport:
    """CKKS / BFV (:func:`protocol.he_flow.run_he_round`): float vectors, clients decrypt."""
    from protocol.he_flow import run_he_round

    if inputs.vectors is None:
        raise ParameterError(f"{entry.name} takes float vectors (each client encodes its own)")
    rng = inputs.source()
    drops = inputs.client_drops(entry)
    weights = inputs.weights_for(config.clients)
    keys = inputs.keys_for(config.clients, rng)
    he = run_he_round(
        config,
        vectors=inputs.vectors,
        weights=weights,
        roster_keys=keys,
        rng=rng,
        drops=drops or None,
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


def run_he_masked(entry: Mode, config: HEMaskedConfig, inputs: RoundInputs) -> RoundReport:
    """bfv-masked (:func:`protocol.he_masked.run_he_masked_round`): integer levels."""
    from protocol.he_masked import run_he_masked_round

    if inputs.levels is None:
        raise ParameterError("bfv-masked takes integer levels (quantise the updates first)")
    rng = inputs.source()
    drops = inputs.client_drops(entry)
    hm = run_he_masked_round(
        config,
        levels=inputs.levels,
        weights=inputs.weights_for(config.clients),
        roster_keys=inputs.keys_for(config.clients, rng),
        rng=rng,
        drops=drops,
        clock=inputs.clock,
        tap=inputs.tap,
        policy=inputs.policy,
    )
    first = min(hm.results, default=None)
    return RoundReport(
        mode=entry.name,
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


def run_plain(entry: Mode, config: RoundConfig, inputs: RoundInputs) -> RoundReport:
    """The plain baseline (:func:`run_plain_round`); drops are clients at ``masked``."""
    return run_plain_round(
        config,
        levels=inputs.levels,
        vectors=inputs.vectors,
        weights=inputs.weights,
        drops=inputs.client_drops(entry),
        policy=inputs.policy,
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
