"""T55: no message lets a client hand decrypted values back to the server (the CKKS oracle).

Li and Micciancio: raw CKKS decryptions of ciphertexts the server chose leak
the secret key. So nothing a client sends may carry decrypted values. This
audit reads the wire schema (every message an RPC accepts, transitively) and
the protocol's client → server dataclasses, and fails the build if any of
them could: a real-valued field (decrypted CKKS values are reals), or a field
or message whose name says it holds a decryption, plaintext or aggregate.
Opaque ``bytes`` named for what they are (ciphertexts, payloads, keys,
signatures) pass; the tests below show each rule firing on a synthetic
schema, so the audit can fail.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from protocol import he_flow, he_masked, messages

PROTO = Path(__file__).resolve().parents[3] / "proto" / "secagg_pb" / "v1" / "secagg.proto"

#: Names of data a client must never send: decryptions, plaintexts, sums, means.
FORBIDDEN_NAME = re.compile(
    r"decrypt|plaintext|cleartext|aggregate|result|mean|average|(^|_)sums?($|_)|values?$",
    re.IGNORECASE,
)
#: Types that would carry real numbers (proto scalars, Python annotations).
REAL_PROTO_TYPES = {"double", "float"}

_TOKEN = re.compile(r'"[^"]*"|[A-Za-z_][\w.]*|\d+|[{}();=<>,\[\]]')


@dataclass(frozen=True)
class ProtoField:
    message: str
    name: str
    types: tuple[str, ...]  # the value type, or key and value of a map


@dataclass
class Schema:
    messages: dict[str, list[ProtoField]]
    requests: dict[str, str]  # rpc name -> request message


def parse_proto(text: str) -> Schema:
    """Messages (with oneof members as fields) and each RPC's request type; enough for proto3."""
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    toks = _TOKEN.findall(text)
    schema = Schema({}, {})
    scopes: list[tuple[str, str]] = []  # (kind, name)
    i = 0
    while i < len(toks):
        tok = toks[i]
        kind = scopes[-1][0] if scopes else "file"
        if tok == "}":
            scopes.pop()
            i += 1
        elif tok in ("message", "enum", "service", "oneof") and toks[i + 2] == "{":
            if tok == "message":
                schema.messages.setdefault(toks[i + 1], [])
            owner = toks[i + 1] if tok != "oneof" else scopes[-1][1]
            scopes.append((tok, owner))
            i += 3
        elif tok in ("syntax", "package", "import", "option", "reserved") or kind == "enum":
            i = toks.index(";", i) + 1
        elif tok == "rpc":
            name, j = toks[i + 1], i + 3
            if toks[j] == "stream":
                j += 1
            schema.requests[name] = toks[j]
            end = toks.index(")", toks.index("returns", j)) + 1
            i = end + 1 if toks[end] == ";" else _skip_block(toks, end)
        elif kind in ("message", "oneof"):
            j = i + 1 if tok in ("repeated", "optional") else i
            if toks[j] == "map":  # map < K , V > name = n ;
                types_, name = (toks[j + 2], toks[j + 4]), toks[j + 6]
            else:
                types_, name = (toks[j],), toks[j + 1]
            schema.messages[scopes[-1][1]].append(ProtoField(scopes[-1][1], name, types_))
            i = toks.index(";", j) + 1
        else:
            raise ValueError(f"unexpected token {tok!r} in the proto")
    return schema


def _skip_block(toks: list[str], start: int) -> int:
    depth, i = 0, start
    while True:
        depth += {"{": 1, "}": -1}.get(toks[i], 0)
        i += 1
        if depth == 0:
            return i


def proto_violations(schema: Schema) -> list[str]:
    """Every field a client could send that breaks a rule, as 'Message.field: why'."""
    seen: set[str] = set()
    todo = sorted(set(schema.requests.values()))
    problems = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name not in schema.messages:
            problems.append(f"{name}: request type is not a message of this schema")
            continue
        if FORBIDDEN_NAME.search(name):
            problems.append(f"{name}: a client-sent message named for decrypted data")
        for f in schema.messages[name]:
            if FORBIDDEN_NAME.search(f.name):
                problems.append(f"{name}.{f.name}: a client-sent field named for decrypted data")
            if REAL_PROTO_TYPES & set(f.types):
                problems.append(f"{name}.{f.name}: a client-sent real-valued field")
            todo.extend(t for t in f.types if t in schema.messages)
    return problems


def dataclass_violations(roots: list[type]) -> list[str]:
    """The same rules on protocol dataclasses a client sends (walking nested ones)."""
    problems = []
    todo, seen = list(roots), set()
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        if FORBIDDEN_NAME.search(cls.__name__):
            problems.append(f"{cls.__name__}: a client-sent message named for decrypted data")
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            leaves = _leaf_types(hints[f.name])
            if FORBIDDEN_NAME.search(f.name):
                problems.append(f"{cls.__name__}.{f.name}: named for decrypted data")
            if leaves & {float, complex, np.ndarray}:
                problems.append(f"{cls.__name__}.{f.name}: carries real numbers or arrays")
            todo.extend(t for t in leaves if dataclasses.is_dataclass(t))
    return problems


def _leaf_types(hint: object) -> set[type]:
    args = typing.get_args(hint)
    if not args:
        return {hint} if isinstance(hint, type) else {object}
    out: set[type] = set()
    for arg in args:
        if arg is not Ellipsis:
            out |= _leaf_types(arg)
    origin = typing.get_origin(hint)
    return out if origin in (tuple, list, typing.Union, types.UnionType) else out | {object}


def client_message_types() -> list[type]:
    unions = (messages.ClientMessage, he_flow.HEClientMessage, he_masked.HEMaskedClientMessage)
    return sorted({t for u in unions for t in typing.get_args(u)}, key=lambda t: t.__name__)


# ---------------------------------------------------------------- the audit


def test_no_rpc_accepts_decrypted_values() -> None:
    schema = parse_proto(PROTO.read_text(encoding="utf-8"))
    assert {"Submit", "Upload"} <= set(schema.requests)  # the parser saw the service
    assert "ciphertext" in {f.name for f in schema.messages["EncryptedShare"]}
    assert proto_violations(schema) == []


def test_no_client_message_carries_decrypted_values() -> None:
    roots = client_message_types()
    assert {"MaskedInput", "HEUpload", "HEKeyDelivery"} <= {t.__name__ for t in roots}
    assert dataclass_violations(roots) == []


# ---------------------------------------------------------------- the audit can fail

CLEAN = PROTO.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("edit", "flagged"),
    [
        (  # a new oneof member carrying the decrypted mean back
            (
                "    ClientAbort abort = 6;\n",
                "    ClientAbort abort = 6;\n    Feedback feedback = 7;\n",
                "message Feedback { uint64 client = 1; bytes decrypted_mean = 2; }\n",
            ),
            "Feedback.decrypted_mean",
        ),
        (  # a real-valued field on a request, however it is named
            ("  uint64 after = 3;", "  uint64 after = 3;\n  repeated double tail = 4;", ""),
            "PollRequest.tail",
        ),
        (  # a new RPC whose request is named for the aggregate
            (
                "  rpc Poll(",
                "  rpc Check(AggregateCheck) returns (Ack);\n  rpc Poll(",
                "message AggregateCheck { bytes blob = 1; }\n",
            ),
            "AggregateCheck",
        ),
        (  # a map of values nested two messages deep
            (
                "  bytes sha256 = 7;",
                "  bytes sha256 = 7;\n  Extra extra = 8;",
                "message Extra { map<string, Inner> parts = 1; }\n"
                "message Inner { repeated uint64 values = 1; }\n",
            ),
            "Inner.values",
        ),
    ],
)
def test_the_proto_audit_flags_a_synthetic_oracle(edit: tuple[str, str, str], flagged: str) -> None:
    old, new, extra = edit
    assert CLEAN.count(old) == 1
    bad = CLEAN.replace(old, new) + extra
    problems = proto_violations(parse_proto(bad))
    assert any(p.startswith(flagged) for p in problems), problems


def test_the_proto_audit_lets_harmless_fields_through() -> None:
    """A request signature or nonce (say) must not trip the audit."""
    ok = CLEAN.replace(
        "  uint64 after = 3;", "  uint64 after = 3;\n  bytes nonce = 4;\n  bytes signature = 5;"
    )
    assert proto_violations(parse_proto(ok)) == []


@dataclass(frozen=True)
class Feedback:
    """A synthetic client message that sends a decryption back."""

    client: int
    round: int
    decrypted: np.ndarray


@dataclass(frozen=True)
class Wrapper:
    """A synthetic client message nesting it, plus a real-valued field."""

    client: int
    inner: tuple[Feedback, ...]
    score: float | None


def test_the_dataclass_audit_flags_a_synthetic_oracle() -> None:
    problems = dataclass_violations([*client_message_types(), Wrapper])
    assert any(p.startswith("Feedback.decrypted") for p in problems)
    assert any(p.startswith("Wrapper.score") for p in problems)
    assert not any(p.startswith(("MaskedInput", "HEUpload")) for p in problems)
