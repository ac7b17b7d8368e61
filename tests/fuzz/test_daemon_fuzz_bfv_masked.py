"""Fuzz the client daemon in bfv-masked rounds: no hostile server message escapes (issue 14).

As tests/fuzz/test_daemon_fuzz.py, for the hybrid: the honest transcript is
every server message client 1 gets in an in-memory bfv-masked round (the
start, the join list and key list, its sealed key, shares, consistency and
unmask requests, the encrypted sum), computed with the same seed the fuzzed
daemon draws its keys from, so the honest messages after a prefix are the
ones it expects. One message is replaced by a byte- or field-level mutation.
Passing: zero exceptions escape ``Daemon.run`` and the daemon never sends
its masked input twice.
"""

from __future__ import annotations

import os
import random
from collections import Counter

import numpy as np
import pytest

from clients.daemon import Daemon
from protocol.he_masked import HEMaskedClientMachine, HEMaskedServerMachine
from protocol.he_messages import HEMaskedConfig, HEMaskedStart
from protocol.he_model import model_sha256
from protocol.messages import MaskedInput
from protocol.policy import ClientPolicy
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.fuzz.test_daemon_fuzz import DIM, MODEL, VICTIM_SEED, N, Script, hostile, trainer

CASES = int(os.environ.get("SECAGG_FUZZ_MASKED_CASES", "600"))


def honest_transcript() -> tuple[dict[int, SigningKey], list[pb.ServerMessage]]:
    """Every server message client 1 gets in an honest in-memory hybrid round."""
    rng = DeterministicRandomSource("fuzz-masked-keys")
    keys = {c: signing_key(rng) for c in range(1, N + 1)}
    roster = {c: k.public for c, k in keys.items()}
    config = HEMaskedConfig(
        round=0,
        clients=tuple(range(1, N + 1)),
        threshold=3,
        dim=DIM,
        key_holder=2,  # client 1 receives a sealed key (creating one costs more per case)
        clip=1.0,
        levels=1 << 16,
        max_weight=1,
        nonce=bytes(32),
        model_hash=model_sha256(np.frombuffer(MODEL, "<f4").astype(np.float32)),
    )
    server = HEMaskedServerMachine(config, roster=roster)
    clients = {
        c: HEMaskedClientMachine(
            c,
            rng=DeterministicRandomSource(VICTIM_SEED if c == 1 else f"fuzz-masked-{c}"),
            signing_key=keys[c],
            roster=roster,
            policy=ClientPolicy(colluders=0),
        )
        for c in config.clients
    }
    for machine in clients.values():  # client 1's input is the fuzzed daemon's trainer's
        update = trainer(np.frombuffer(MODEL, "<f4"), 0)
        assert update.levels is not None
        machine.set_levels(update.levels, weight=1, model_hash=config.model_hash)
    down: list[pb.ServerMessage] = []
    outbox = server.start()
    for _ in range(8):
        for cid, msg in outbox:
            if cid == 1:
                down.append(codec.server_to_proto(msg))  # type: ignore[arg-type]
            for reply in clients[cid].handle(msg):
                server.receive(cid, reply)
        if server.phase.value in ("completed", "aborted"):
            break
        outbox = server.advance()
    assert server.phase.value == "completed" and clients[1].total is not None
    return keys, down


@pytest.mark.slow
def test_no_hostile_server_message_escapes_a_bfv_masked_round() -> None:
    keys, honest = honest_transcript()
    roster = {c: k.public for c, k in keys.items()}
    rng = random.Random(20261208)
    escaped: list[tuple[int, str]] = []
    kinds: Counter[str] = Counter()
    completed = 0
    for case in range(CASES):
        target = rng.randrange(len(honest))
        bad = hostile(honest[target], rng)
        kinds[bad.WhichOneof("kind") or "empty"] += 1
        rest = honest[target + 1 :] if rng.random() < 0.3 else []
        script = Script([*honest[:target], bad, *rest])
        daemon = Daemon(
            1,
            script,  # type: ignore[arg-type]
            trainer,
            signing_key=keys[1],
            roster=roster,
            policy=ClientPolicy(colluders=0),
            rng=DeterministicRandomSource(VICTIM_SEED),  # the transcript's keys
        )
        try:
            daemon.run()
        except Exception as exc:
            escaped.append((case, f"{type(exc).__name__}: {exc}"))
            continue
        masked = [m for m in script.sent if isinstance(m, MaskedInput)]
        assert len(masked) <= 1, case
        completed += len(daemon.stats.rounds_completed)
    print(f"{CASES} cases, message kinds: {dict(kinds)}, rounds completed: {completed}")
    assert escaped == [], escaped[:10]
    assert {"he_masked_start", "he_keys", "key_list", "he_key_bundle", "he_result"} <= set(kinds)


def test_the_honest_transcript_completes_the_daemons_round() -> None:
    """The fuzz's baseline: unmutated, the daemon decrypts the sum and completes."""
    keys, honest = honest_transcript()
    assert isinstance(codec.any_server_from_proto(honest[0]), HEMaskedStart)
    script = Script(honest)
    daemon = Daemon(
        1,
        script,  # type: ignore[arg-type]
        trainer,
        signing_key=keys[1],
        roster={c: k.public for c, k in keys.items()},
        policy=ClientPolicy(colluders=0),
        rng=DeterministicRandomSource(VICTIM_SEED),
    )
    daemon.run()
    assert daemon.stats.rounds_completed == [0] and not daemon.stats.rounds_aborted
    assert sum(isinstance(m, MaskedInput) for m in script.sent) == 1
