"""The signed roster: which client ids exist, and the keys bound to them.

The consortium CA (not the aggregator's operator, security.md §1.1 and §8)
publishes the roster; clients and the aggregator pin its Ed25519 public key.
Without this binding the aggregator could invent clients (Sybil, X4), so the
roster is parsed strictly and its signature is checked before anything in it
is believed.

The signature covers the canonical encoding (:func:`secagg.encoding.encode`)
of the version and every entry in ascending id order, never the JSON bytes:
JSON has many spellings of one document, and a verifier must not depend on
which one it received. The document must also list entries in ascending id
order, so reordering is rejected rather than silently normalised.

Pure: takes and returns bytes; no files, clocks or network.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from protocol.errors import AuthenticationFailed, UnknownClient
from secagg.encoding import Field
from secagg.errors import InvalidKey, ParameterError
from secagg.primitives.signing import (
    PUBLIC_BYTES,
    SIGNATURE_BYTES,
    SigningKey,
    check_public_key,
    sign,
    verify,
)

ROSTER_VERSION = 1
MAX_CLIENT_ID = 2**63 - 1  # ids are uint64 on the wire and must also fit SQLite's int64
MAX_ROSTER_BYTES = 16 * 1024 * 1024  # ≈ 80k entries; bounds parsing work on hostile input
MAX_NAME_CHARS = 128
_DOMAIN = "secagg/v1/roster"
_HEX = re.compile(r"[0-9a-f]*")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]*")
_TOP_KEYS = frozenset({"version", "clients", "signature"})
_ENTRY_KEYS = frozenset({"id", "name", "signing_public", "cert_sha256"})


class InvalidRoster(ParameterError):
    """The roster document is malformed (schema, encoding, duplicates, order)."""


@dataclass(frozen=True, slots=True)
class RosterEntry:
    """One enrolled client: its id, display name, Ed25519 key and certificate hash."""

    id: int
    name: str
    signing_public: bytes
    cert_sha256: bytes

    def __post_init__(self) -> None:
        _check_entry(self)


@dataclass(frozen=True, slots=True)
class Roster:
    """A verified roster. ``entries`` maps client id to its entry."""

    entries: dict[int, RosterEntry]
    version: int = ROSTER_VERSION

    def __post_init__(self) -> None:
        if any(cid != e.id for cid, e in self.entries.items()):
            raise InvalidRoster("roster map keys must equal the entries' ids")

    def __contains__(self, client_id: object) -> bool:
        return client_id in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def ids(self) -> tuple[int, ...]:
        """Enrolled ids, ascending (a valid cohort order)."""
        return tuple(sorted(self.entries))

    def signing_keys(self) -> dict[int, bytes]:
        """Client id → Ed25519 public key, the form the protocol machines take."""
        return {cid: e.signing_public for cid, e in sorted(self.entries.items())}

    def authenticate(self, client_id: int, cert_sha256: bytes | None = None) -> RosterEntry:
        """The entry of a peer identified by its certificate.

        Raises :class:`UnknownClient` (PERMISSION_DENIED) for an id that is not
        enrolled, and :class:`AuthenticationFailed` (UNAUTHENTICATED) when the
        presented certificate's SHA-256 differs from the enrolled one (a
        re-issued or substituted certificate). Pass ``cert_sha256=None`` to
        check enrolment only.
        """
        entry = self.entries.get(client_id)
        if entry is None:
            raise UnknownClient(f"client {client_id} is not enrolled in the roster")
        if cert_sha256 is not None and cert_sha256 != entry.cert_sha256:
            raise AuthenticationFailed(
                f"client {client_id}: certificate does not match the enrolled one"
            )
        return entry


def _check_entry(e: RosterEntry) -> None:
    if type(e.id) is not int or not 1 <= e.id <= MAX_CLIENT_ID:
        raise InvalidRoster(f"client id must be an integer in [1, 2^63 - 1], got {e.id!r}")
    if (
        type(e.name) is not str
        or not 1 <= len(e.name) <= MAX_NAME_CHARS
        or not _NAME.fullmatch(e.name)
    ):
        raise InvalidRoster(f"client {e.id}: invalid name {e.name!r}")
    if type(e.signing_public) is not bytes or len(e.signing_public) != PUBLIC_BYTES:
        raise InvalidRoster(f"client {e.id}: signing_public must be {PUBLIC_BYTES} bytes")
    try:
        check_public_key(e.signing_public)
    except InvalidKey as exc:
        raise InvalidRoster(f"client {e.id}: invalid Ed25519 public key") from exc
    if type(e.cert_sha256) is not bytes or len(e.cert_sha256) != 32:
        raise InvalidRoster(f"client {e.id}: cert_sha256 must be 32 bytes")


def _sorted_unique(entries: Iterable[RosterEntry]) -> list[RosterEntry]:
    """Entries in id order; ids, names, keys and certificates each unique.

    A shared signing key or certificate would let one organisation speak for
    two ids, so duplicates are a roster error, not just a data-entry slip.
    """
    ordered = sorted(entries, key=lambda e: e.id)
    if not ordered:
        raise InvalidRoster("roster has no clients")
    for what, values in (
        ("id", [e.id for e in ordered]),
        ("name", [e.name for e in ordered]),
        ("signing key", [e.signing_public for e in ordered]),
        ("certificate", [e.cert_sha256 for e in ordered]),
    ):
        if len(set(values)) != len(values):
            raise InvalidRoster(f"duplicate {what} in roster")
    return ordered


def _signed_fields(ordered: list[RosterEntry], version: int) -> list[Field]:
    fields: list[Field] = [_DOMAIN, version, len(ordered)]
    for e in ordered:
        fields += [e.id, e.name, e.signing_public, e.cert_sha256]
    return fields


def sign_roster(entries: Iterable[RosterEntry], key: SigningKey) -> bytes:
    """The 64-byte Ed25519 signature over ``entries`` (sorted by id)."""
    return sign(key, *_signed_fields(_sorted_unique(entries), ROSTER_VERSION))


def roster_document(entries: Iterable[RosterEntry], key: SigningKey) -> bytes:
    """The signed roster as JSON bytes, ready to publish (entries in id order)."""
    ordered = _sorted_unique(entries)
    doc = {
        "version": ROSTER_VERSION,
        "clients": [
            {
                "id": e.id,
                "name": e.name,
                "signing_public": e.signing_public.hex(),
                "cert_sha256": e.cert_sha256.hex(),
            }
            for e in ordered
        ],
        "signature": sign_roster(ordered, key).hex(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def parse_roster(raw_json: bytes, roster_public: bytes) -> Roster:
    """Parse and verify a roster signed by the holder of ``roster_public``.

    Raises :class:`InvalidRoster` for any schema violation and
    :class:`secagg.errors.InvalidSignature` when the signature does not verify
    (which includes every edit to a signed field).
    """
    if len(roster_public) != PUBLIC_BYTES:
        raise InvalidRoster(f"roster public key must be {PUBLIC_BYTES} bytes")
    if len(raw_json) > MAX_ROSTER_BYTES:
        raise InvalidRoster(f"roster larger than {MAX_ROSTER_BYTES} bytes")
    try:
        doc = json.loads(
            raw_json.decode("utf-8"),
            object_pairs_hook=_no_duplicate_keys,
            parse_constant=_reject_constant,
            parse_float=_reject_float,
        )
    except InvalidRoster:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidRoster(f"roster is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidRoster("roster must be a JSON object")
    _exact_keys(doc, _TOP_KEYS, "roster")
    version = doc["version"]
    if type(version) is not int or version != ROSTER_VERSION:
        raise InvalidRoster(f"unsupported roster version {version!r}")
    items = doc["clients"]
    if not isinstance(items, list) or not items:
        raise InvalidRoster("roster 'clients' must be a non-empty list")
    listed = [_parse_entry(item, i) for i, item in enumerate(items)]
    ordered = _sorted_unique(listed)
    if [e.id for e in listed] != [e.id for e in ordered]:
        raise InvalidRoster("roster entries must be listed in ascending id order")
    signature = _hex(doc["signature"], SIGNATURE_BYTES, "signature")
    verify(roster_public, signature, *_signed_fields(ordered, version))
    return Roster({e.id: e for e in ordered}, version)


def _parse_entry(item: Any, index: int) -> RosterEntry:
    if not isinstance(item, dict):
        raise InvalidRoster(f"roster entry {index} must be an object")
    _exact_keys(item, _ENTRY_KEYS, f"roster entry {index}")
    return RosterEntry(
        id=item["id"],
        name=item["name"],
        signing_public=_hex(item["signing_public"], PUBLIC_BYTES, f"entry {index} signing_public"),
        cert_sha256=_hex(item["cert_sha256"], 32, f"entry {index} cert_sha256"),
    )


def _exact_keys(obj: Mapping[str, Any], keys: frozenset[str], what: str) -> None:
    missing, extra = keys - obj.keys(), obj.keys() - keys
    if missing or extra:
        raise InvalidRoster(f"{what}: missing {sorted(missing)}, unexpected {sorted(extra)}")


def _hex(value: Any, size: int, what: str) -> bytes:
    """Lower-case hex of exactly ``size`` bytes: one spelling per value."""
    if not isinstance(value, str) or len(value) != 2 * size or not _HEX.fullmatch(value):
        raise InvalidRoster(f"{what} must be {2 * size} lower-case hex digits")
    return bytes.fromhex(value)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise InvalidRoster(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise InvalidRoster(f"non-standard JSON constant {name}")


def _reject_float(text: str) -> Any:
    raise InvalidRoster(f"roster holds no floating-point numbers, got {text}")
