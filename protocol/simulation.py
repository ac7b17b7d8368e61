"""Run one round in memory: N client machines and the server, no sockets.

The same machines run over gRPC; here the "transport" is a loop that hands
each message to its addressee. A drop plan removes clients at chosen phases
(the client goes silent when that phase's request reaches it). The clock is
a parameter, so this module stays free of ``time``; pass one to get timings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from protocol.client import ClientMachine
from protocol.config import RoundConfig
from protocol.errors import ProtocolError
from protocol.messages import ClientMessage, UnmaskShares
from protocol.policy import ClientPolicy, lab_policy
from protocol.server import AggregateResult, ServerMachine, ServerPhase
from secagg.errors import ParameterError
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource, uniform_below

#: Phases in the order clients answer them; a drop at a phase = silence from then on.
PHASES = ("advertise", "graph", "share", "masked", "consistency", "unmask")
Clock = Callable[[], float]


@dataclass
class SimulationReport:
    """What happened in one simulated round."""

    completed: bool
    abort_reason: str | None
    cohort: tuple[int, ...]
    dropped: dict[str, list[int]]
    survivors: tuple[int, ...]
    exact: bool | None  # unmasked sum == exact sum of survivors' inputs (None if aborted)
    result: AggregateResult | None
    expected_total: np.ndarray | None
    unmask_releases: dict[int, UnmaskShares]  # every unmasking reply sent, by client
    rejections: list[tuple[int, str]]
    timings: dict[str, dict[str, float]] = field(default_factory=dict)
    client_seconds: dict[int, float] = field(default_factory=dict)
    bytes_up: dict[int, int] = field(default_factory=dict)
    bytes_down: dict[int, int] = field(default_factory=dict)


def parse_drops(spec: str) -> dict[str, int]:
    """'masked:2,unmask:1' → {'masked': 2, 'unmask': 1}."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        phase, _, count = part.partition(":")
        if phase not in PHASES or not count.isdigit():
            raise ParameterError(f"bad drop spec {part!r}: use PHASE:COUNT with PHASE in {PHASES}")
        out[phase] = out.get(phase, 0) + int(count)
    return out


def _message_size(msg: object) -> int:
    """Approximate wire size: the bytes fields plus 8 bytes per integer field."""
    total = 0
    stack = [msg]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes):
            total += len(item)
        elif isinstance(item, int | float | str):
            total += 8 if not isinstance(item, str) else len(item)
        elif isinstance(item, tuple | list):
            stack.extend(item)
        elif hasattr(item, "__slots__"):
            stack.extend(getattr(item, s) for s in item.__slots__)
    return total


def simulate(
    config: RoundConfig,
    *,
    levels: Mapping[int, np.ndarray] | None = None,
    vectors: Mapping[int, np.ndarray] | None = None,
    weights: Mapping[int, int] | None = None,
    drops: Mapping[str, int] | None = None,
    seed: int | bytes = 0,
    policy: ClientPolicy | None = None,
    clock: Clock | None = None,
    tap: Callable[[int, ClientMessage], None] | None = None,
) -> SimulationReport:
    """Run one round.

    Inputs are integer ``levels`` (then the unmasked sum is checked for exact
    equality) or float ``vectors`` (quantised by each client, stochastically,
    so only the error bound can be checked); by default random levels.
    ``tap`` sees every client message before the server does (the audit
    reads the masked uploads through it).
    """
    rng = DeterministicRandomSource(seed if isinstance(seed, bytes) else seed.to_bytes(8, "little"))
    cohort = config.clients
    keys: dict[int, SigningKey] = {c: signing_key(rng) for c in cohort}
    roster = {c: k.public for c, k in keys.items()}
    if levels is None and vectors is None:
        levels = {c: uniform_below(rng, config.levels, config.dim) for c in cohort}
    weights = weights or {c: 1 for c in cohort}

    drop_at: dict[int, str] = {}
    pool = list(cohort)
    for phase in PHASES:
        for _ in range((drops or {}).get(phase, 0)):
            if not pool:
                raise ParameterError("more drops than clients")
            drop_at[pool.pop(int(uniform_below(rng, len(pool), 1)[0]))] = phase

    tick: Clock = clock or (lambda: 0.0)
    clients = {
        c: ClientMachine(
            c,
            rng=rng.fork(f"client-{c}"),
            signing_key=keys[c],
            roster=roster,
            policy=policy or lab_policy(config),
        )
        for c in cohort
    }
    server = ServerMachine(config, roster=roster)
    for c in cohort:
        if levels is not None:
            clients[c].set_levels(levels[c], weight=weights[c], model_hash=config.model_hash)
        else:
            assert vectors is not None
            clients[c].set_input(vectors[c], weight=weights[c], model_hash=config.model_hash)

    report = SimulationReport(
        completed=False,
        abort_reason=None,
        cohort=cohort,
        dropped={p: [] for p in PHASES},
        survivors=(),
        exact=None,
        result=None,
        expected_total=None,
        unmask_releases={},
        rejections=[],
        client_seconds={c: 0.0 for c in cohort},
        bytes_up={c: 0 for c in cohort},
        bytes_down={c: 0 for c in cohort},
    )
    gone: set[int] = set()
    outbox = server.start()
    sparse = config.degree is not None and config.degree < config.n - 1
    phases = [
        p
        for p in PHASES
        if (p != "consistency" or config.profile == "active") and (p != "graph" or sparse)
    ]
    for phase in [*phases, "done"]:
        client_s = 0.0
        for cid, msg in outbox:
            report.bytes_down[cid] += _message_size(msg)
            if cid in gone:
                continue
            if drop_at.get(cid) == phase:
                gone.add(cid)
                report.dropped[phase].append(cid)
                continue
            start = tick()
            replies: list[ClientMessage] = clients[cid].handle(msg)
            elapsed = tick() - start
            client_s += elapsed
            report.client_seconds[cid] += elapsed
            for reply in replies:
                report.bytes_up[cid] += _message_size(reply)
                if isinstance(reply, UnmaskShares):
                    report.unmask_releases[cid] = reply
                if tap is not None:
                    tap(cid, reply)
                start = tick()
                try:
                    server.receive(cid, reply)
                except ProtocolError as exc:
                    report.rejections.append((cid, f"{type(exc).__name__}: {exc}"))
                report.timings.setdefault(phase, {}).setdefault("server_s", 0.0)
                report.timings[phase]["server_s"] += tick() - start
        if phase == "done" or server.aborted:
            break
        start = tick()
        outbox = server.advance()
        timing = report.timings.setdefault(phase, {})
        timing["clients_s"] = client_s
        timing["server_s"] = timing.get("server_s", 0.0) + tick() - start
        if server.aborted:
            for cid, msg in outbox:  # deliver the abort
                if cid not in gone:
                    clients[cid].handle(msg)
            break

    report.completed = server.phase is ServerPhase.COMPLETED
    report.abort_reason = server.abort_reason
    report.survivors = server.survivors
    if report.completed:
        assert server.result is not None
        report.result = server.result
    if report.completed and levels is not None:
        assert server.result is not None
        expected = np.zeros(config.dim, dtype=object)
        for c in server.survivors:
            expected = expected + levels[c].astype(object) * weights[c]
        report.expected_total = expected.astype(np.uint64)
        report.exact = bool(
            np.array_equal(server.result.total, report.expected_total)
            and server.result.weight_sum == sum(weights[c] for c in server.survivors)
        )
    return report
