"""Fuzz the client daemon with hostile server messages: nothing may escape (issue 14).

Each case runs the real :class:`clients.daemon.Daemon` (the real codec, the
real machines) against a scripted transport: a prefix of an honest round's
server messages for client 1 (none, the RoundStart, or the RoundStart and the
KeyList), then one hostile message, then whatever of the honest round is left.
The hostile message is one of every server message type (SecAgg and HE),
mutated at the byte level (bit flips, truncation, splices, random bytes) or
at the field level (every scalar, bytes and repeated field of the decoded
message, set to an extreme or wrong value). Cases whose bytes do not parse
as a ServerMessage at all are replaced (gRPC would refuse them before the
daemon saw them). Passing: zero exceptions escape ``Daemon.run`` and the
daemon never sends its masked input twice or after an abort.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter

import numpy as np
import pytest
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError, Message

from clients.daemon import Daemon
from clients.training.synthetic import LocalUpdate
from protocol.build import make_config
from protocol.client import ClientMachine
from protocol.he_messages import AnyClientMessage, HEConfig, HEResult, HEStart
from protocol.messages import MaskedInput, ServerMessage
from protocol.method_messages import bound_model_hash
from protocol.policy import ClientPolicy
from secagg.rng import DeterministicRandomSource
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.unit.protocol.helpers import Harness

N, DIM, CASES = 4, 6, int(os.environ.get("SECAGG_FUZZ_CASES", "10000"))
VICTIM_SEED = "fuzz-victim"
MODEL = np.linspace(-1, 1, DIM).astype("<f4").tobytes()
EXTREME_INTS = [0, 1, -1, 2, 3, 255, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63)]


class Script:
    """Poll replies from a list; records what the daemon sends."""

    def __init__(self, messages: list[pb.ServerMessage]) -> None:
        self.replies = []
        for i, m in enumerate(messages):
            r = pb.PollReply(epoch=1, seq=i + 1)
            r.message.CopyFrom(m)
            self.replies.append(r)
        self.sent: list[AnyClientMessage] = []

    def poll(self, epoch: int, after: int, timeout: float) -> pb.PollReply:
        return self.replies.pop(0) if self.replies else pb.PollReply(finished=True)

    def send(self, msg: AnyClientMessage, timeout: float = 60.0) -> None:
        self.sent.append(msg)

    def model(self, round_: int, timeout: float = 60.0) -> bytes:
        return MODEL


def trainer(model: np.ndarray, round_: int) -> LocalUpdate:
    return LocalUpdate(None, np.arange(DIM, dtype=np.uint64) % 7, 1)


def honest_transcript() -> tuple[Harness, list[pb.ServerMessage]]:
    """Every server message client 1 gets in an honest round, as protos."""
    config = make_config(clients=N, dim=DIM, profile="active", seed=b"fuzz")
    config = dataclasses.replace(config, model_hash=bound_model_hash(MODEL, None))
    h = Harness(config, seed="fuzz", without_input=[1])
    # Client 1 draws from the seed each fuzzed daemon gets, so the honest messages
    # after its RoundStart (key list, shares, survivors) are the ones it expects.
    h.clients[1] = ClientMachine(
        1,
        rng=DeterministicRandomSource(VICTIM_SEED),
        signing_key=h.keys[1],
        roster=h.roster,
        policy=ClientPolicy(colluders=0),
    )
    h.set_input(1)
    h.run()
    down: list[ServerMessage] = [m for c, m in h.down if c == 1]
    return h, [codec.server_to_proto(m) for m in down]


def he_messages() -> list[pb.ServerMessage]:
    config = HEConfig(
        round=0,
        clients=tuple(range(1, N + 1)),
        dim=DIM,
        scheme="ckks",
        key_holder=2,
        clip=1.0,
        max_weight=1,
        levels=1 << 16,
        nonce=bytes(32),
        model_hash=bytes(32),
    )
    start = codec.server_to_proto(HEStart(config))
    result = codec.server_to_proto(HEResult((b"\x00" * 64,), (1, 2, 3, 4)))
    keys = pb.ServerMessage()
    keys.he_keys.SetInParent()
    bundle = pb.ServerMessage()
    bundle.he_key_bundle.SetInParent()
    return [start, result, keys, bundle]


# ---------------------------------------------------------------- mutations


def byte_mutation(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    kind = rng.randrange(5)
    if kind == 0 and data:  # bit flips
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncation
        del data[rng.randrange(len(data) + 1) :]
    elif kind == 2:  # splice random bytes in
        i = rng.randrange(len(data) + 1)
        data[i:i] = rng.randbytes(rng.randint(1, 16))
    elif kind == 3 and data:  # overwrite a slice
        i = rng.randrange(len(data))
        data[i : i + 8] = rng.randbytes(8)
    else:  # nothing of the original
        data = bytearray(rng.randbytes(rng.randint(0, 96)))
    return bytes(data)


def _fields(message: Message) -> list[tuple[Message, FieldDescriptor]]:
    """Every (message, field) pair reachable in a decoded message, set or not."""
    out = []
    for field in message.DESCRIPTOR.fields:
        out.append((message, field))
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if field.is_repeated:
                for item in getattr(message, field.name):
                    out.extend(_fields(item))
            elif message.HasField(field.name):
                out.extend(_fields(getattr(message, field.name)))
    return out


def field_mutation(message: pb.ServerMessage, rng: random.Random) -> pb.ServerMessage:
    out = pb.ServerMessage()
    out.CopyFrom(message)
    kind = out.WhichOneof("kind")
    inner = _fields(getattr(out, kind)) if kind else []
    owner, field = rng.choice(inner or _fields(out))
    repeated = field.is_repeated
    value = getattr(owner, field.name)
    if repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            action = rng.randrange(3)
            if action == 0 and len(value):
                value.add().CopyFrom(value[rng.randrange(len(value))])  # duplicate an entry
            elif action == 1 and len(value):
                del value[rng.randrange(len(value))]
            else:
                del value[:]
        elif field.type == FieldDescriptor.TYPE_BYTES:
            value.append(rng.randbytes(rng.choice([0, 1, 31, 32, 33])))
        else:
            value.append(rng.choice([v for v in EXTREME_INTS if _fits(field, v)]))
        return out
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        owner.ClearField(field.name)
    elif field.type == FieldDescriptor.TYPE_BYTES:
        current = getattr(owner, field.name)
        setattr(owner, field.name, rng.choice([b"", current[:-1], current + b"\x00", bytes(64)]))
    elif field.type == FieldDescriptor.TYPE_STRING:
        setattr(owner, field.name, rng.choice(["", "x" * 1000, "semi-honest", "plain", "ckks"]))
    elif field.type == FieldDescriptor.TYPE_BOOL:
        setattr(owner, field.name, not getattr(owner, field.name))
    elif field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        setattr(owner, field.name, rng.choice([0.0, -1.0, 1e308, float("nan"), float("inf")]))
    elif field.type == FieldDescriptor.TYPE_ENUM:
        setattr(owner, field.name, rng.choice([*field.enum_type.values_by_number, 99]))
    else:
        setattr(owner, field.name, rng.choice([v for v in EXTREME_INTS if _fits(field, v)]))
    return out


def _fits(field: FieldDescriptor, value: int) -> bool:
    unsigned = field.type in (
        FieldDescriptor.TYPE_UINT32,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_FIXED32,
        FieldDescriptor.TYPE_FIXED64,
    )
    wide = field.type in (
        FieldDescriptor.TYPE_INT64,
        FieldDescriptor.TYPE_UINT64,
        FieldDescriptor.TYPE_SINT64,
        FieldDescriptor.TYPE_FIXED64,
        FieldDescriptor.TYPE_SFIXED64,
    )
    low, high = (0, 2**64 - 1) if unsigned else (-(2**63), 2**63 - 1)
    if not wide:
        low, high = (0, 2**32 - 1) if unsigned else (-(2**31), 2**31 - 1)
    return low <= value <= high


def hostile(message: pb.ServerMessage, rng: random.Random) -> pb.ServerMessage:
    """A mutation of ``message`` that still parses as a ServerMessage."""
    while True:
        if rng.random() < 0.5:
            return field_mutation(message, rng)
        raw = byte_mutation(message.SerializeToString(), rng)
        out = pb.ServerMessage()
        try:
            out.ParseFromString(raw)
        except DecodeError:
            continue
        if out.WhichOneof("kind") is None and rng.random() < 0.9:
            continue  # mostly keep a message the daemon will try to use
        return out


# ---------------------------------------------------------------- the fuzz


@pytest.mark.slow
def test_no_hostile_server_message_escapes_the_daemon() -> None:
    h, honest = honest_transcript()
    he = he_messages()
    rng = random.Random(20261207)
    escaped: list[tuple[int, str]] = []
    kinds: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for case in range(CASES):
        opt_in_he = rng.random() < 0.1
        pool = he if opt_in_he else honest
        target = rng.randrange(len(pool))
        prefix = [] if opt_in_he else honest[: min(target, rng.randrange(3))]
        bad = hostile(pool[target], rng)
        kinds[bad.WhichOneof("kind") or "empty"] += 1
        rest = honest[len(prefix) + 1 :] if not opt_in_he and rng.random() < 0.3 else []
        script = Script([*prefix, bad, *rest])
        policy = ClientPolicy(colluders=0)
        daemon = Daemon(
            1,
            script,  # type: ignore[arg-type]
            trainer,
            signing_key=h.keys[1],
            roster=h.roster,
            policy=policy.with_opt_in("ckks") if opt_in_he else policy,
            rng=DeterministicRandomSource(VICTIM_SEED),  # the transcript's keys
        )
        try:
            daemon.run()
        except Exception as exc:
            escaped.append((case, f"{type(exc).__name__}: {exc}"))
            continue
        masked = [m for m in script.sent if isinstance(m, MaskedInput)]
        assert len(masked) <= 1, case
        reasons.update(r.split(":")[0][:40] for _, r in daemon.stats.rounds_aborted)
    print(f"{CASES} cases, message kinds: {dict(kinds)}")
    print(f"how the daemon left rounds: {reasons.most_common(12)}")
    assert escaped == [], escaped[:10]
    assert set(kinds) >= {
        "round_start",
        "key_list",
        "share_bundle",
        "consistency_request",
        "unmask_request",
        "round_complete",
        "he_start",
        "he_result",
    }
