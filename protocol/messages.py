"""Typed protocol messages, one frozen dataclass per round message.

Client → server messages carry the sender id and the round, so the server
can reject stale and misattributed messages without decoding anything else.
Server → client messages carry only what the receiving client needs. The
wire codec (``secagg_pb``) maps these one to one; no string keys anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.config import RoundConfig
from protocol.method_messages import MethodState

# ---------------------------------------------------------------- client → server


@dataclass(frozen=True, slots=True)
class AdvertiseKeys:
    """Round 0: the encryption key c_pk and mask key s_pk, signed (active profile).

    ``graph_commitment`` (SecAgg+ only, else empty) commits to the nonce this
    client reveals once U1 is fixed; the neighbour graph is drawn from every
    member's nonce, so no one who sees others' keys first can steer it.
    """

    client: int
    round: int
    c_public: bytes
    s_public: bytes
    signature: bytes  # empty in the semi-honest profile
    graph_commitment: bytes = b""


@dataclass(frozen=True, slots=True)
class EncryptedShare:
    """One AES-GCM ciphertext of (shares of s_sk and b) from ``sender`` to ``recipient``."""

    sender: int
    recipient: int
    ciphertext: bytes


@dataclass(frozen=True, slots=True)
class ShareKeys:
    """Round 1: shares for every holder, and a signed commitment to the self-mask seed."""

    client: int
    round: int
    shares: tuple[EncryptedShare, ...]
    self_mask_commitment: bytes
    signature: bytes  # over the commitment; empty in the semi-honest profile


@dataclass(frozen=True, slots=True)
class GraphReveal:
    """Round 0½ (SecAgg+): the nonce behind this client's graph commitment, sent after U1."""

    client: int
    round: int
    nonce: bytes


@dataclass(frozen=True, slots=True)
class MaskedInput:
    """Round 2: y = w·q(x) ‖ w plus masks, in the form the round's variant fixes.

    ``payload`` is opaque here: plain SecAgg bit-packs y mod 2^k, the
    bfv-masked hybrid sends y mod t as signed BFV ciphertexts. The round (not
    the message) says which, and only that variant's payload object
    (:mod:`protocol.payload`) reads it, so the wire has one shape for both.
    """

    client: int
    round: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class ConsistencySignature:
    """Round 3 (active profile): the client's signature over the survivor set U3."""

    client: int
    round: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class UnmaskShares:
    """Round 4: per peer, *either* its self-mask share (alive) or its key share (dropped)."""

    client: int
    round: int
    self_mask_shares: tuple[tuple[int, bytes], ...]  # (owner, share) for owners in U3
    key_shares: tuple[tuple[int, bytes], ...]  # (owner, share) for owners in U2 \ U3


@dataclass(frozen=True, slots=True)
class ClientAbort:
    """The client leaves the round; ``reason`` is for the audit log."""

    client: int
    round: int
    reason: str


ClientMessage = (
    AdvertiseKeys
    | GraphReveal
    | ShareKeys
    | MaskedInput
    | ConsistencySignature
    | UnmaskShares
    | ClientAbort
)

# ---------------------------------------------------------------- server → client


@dataclass(frozen=True, slots=True)
class RoundStart:
    """Announces the round config; the client answers with AdvertiseKeys.

    ``state`` names a face-FL method and carries what it needs from the last
    round (protocol/method_messages.py); None is plain FedAvg. It is bound
    into ``config.model_hash``.
    """

    config: RoundConfig
    state: MethodState | None = None


@dataclass(frozen=True, slots=True)
class KeyList:
    """U1: every client's signed AdvertiseKeys, as received by the server."""

    keys: tuple[AdvertiseKeys, ...]


@dataclass(frozen=True, slots=True)
class GraphNonces:
    """Every U1 member's revealed graph nonce (SecAgg+); the answer is ShareKeys."""

    nonces: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class ShareBundle:
    """The shares addressed to this client, and U2 (everyone who sent shares).

    Receiving it is the request to send the masked input.
    """

    senders: tuple[int, ...]
    shares: tuple[EncryptedShare, ...]


@dataclass(frozen=True, slots=True)
class ConsistencyRequest:
    """U3 (active profile): the clients whose masked input the server holds."""

    survivors: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class UnmaskRequest:
    """U3 again, with ≥ t signatures over it (active profile; empty when semi-honest)."""

    survivors: tuple[int, ...]
    signatures: tuple[tuple[int, bytes], ...]


@dataclass(frozen=True, slots=True)
class RoundComplete:
    """The server rebuilt the sum; the client's part is done."""


@dataclass(frozen=True, slots=True)
class ServerAbort:
    """The round is aborted; no client may send anything else for it."""

    reason: str


ServerMessage = (
    RoundStart
    | KeyList
    | GraphNonces
    | ShareBundle
    | ConsistencyRequest
    | UnmaskRequest
    | RoundComplete
    | ServerAbort
)
