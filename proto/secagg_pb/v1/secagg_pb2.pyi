from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RoundConfig(_message.Message):
    __slots__ = ("round", "clients", "threshold", "dim", "modulus_bits", "clip", "levels", "max_weight", "profile", "degree", "nonce", "model_hash")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    MODULUS_BITS_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    DEGREE_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    round: int
    clients: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    dim: int
    modulus_bits: int
    clip: float
    levels: int
    max_weight: int
    profile: str
    degree: int
    nonce: bytes
    model_hash: bytes
    def __init__(self, round: _Optional[int] = ..., clients: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., dim: _Optional[int] = ..., modulus_bits: _Optional[int] = ..., clip: _Optional[float] = ..., levels: _Optional[int] = ..., max_weight: _Optional[int] = ..., profile: _Optional[str] = ..., degree: _Optional[int] = ..., nonce: _Optional[bytes] = ..., model_hash: _Optional[bytes] = ...) -> None: ...

class AdvertiseKeys(_message.Message):
    __slots__ = ("client", "round", "c_public", "s_public", "signature")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    C_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    S_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    c_public: bytes
    s_public: bytes
    signature: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., c_public: _Optional[bytes] = ..., s_public: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class EncryptedShare(_message.Message):
    __slots__ = ("sender", "recipient", "ciphertext")
    SENDER_FIELD_NUMBER: _ClassVar[int]
    RECIPIENT_FIELD_NUMBER: _ClassVar[int]
    CIPHERTEXT_FIELD_NUMBER: _ClassVar[int]
    sender: int
    recipient: int
    ciphertext: bytes
    def __init__(self, sender: _Optional[int] = ..., recipient: _Optional[int] = ..., ciphertext: _Optional[bytes] = ...) -> None: ...

class ShareKeys(_message.Message):
    __slots__ = ("client", "round", "shares", "self_mask_commitment", "signature")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    SELF_MASK_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    shares: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    self_mask_commitment: bytes
    signature: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., shares: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ..., self_mask_commitment: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class MaskedInput(_message.Message):
    __slots__ = ("client", "round", "payload")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    payload: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., payload: _Optional[bytes] = ...) -> None: ...

class ConsistencySignature(_message.Message):
    __slots__ = ("client", "round", "signature")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    signature: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class OwnedShare(_message.Message):
    __slots__ = ("owner", "share")
    OWNER_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    owner: int
    share: bytes
    def __init__(self, owner: _Optional[int] = ..., share: _Optional[bytes] = ...) -> None: ...

class UnmaskShares(_message.Message):
    __slots__ = ("client", "round", "self_mask_shares", "key_shares")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    SELF_MASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    KEY_SHARES_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    self_mask_shares: _containers.RepeatedCompositeFieldContainer[OwnedShare]
    key_shares: _containers.RepeatedCompositeFieldContainer[OwnedShare]
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., self_mask_shares: _Optional[_Iterable[_Union[OwnedShare, _Mapping]]] = ..., key_shares: _Optional[_Iterable[_Union[OwnedShare, _Mapping]]] = ...) -> None: ...

class ClientAbort(_message.Message):
    __slots__ = ("client", "round", "reason")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    reason: str
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("advertise_keys", "share_keys", "masked_input", "consistency_signature", "unmask_shares", "abort")
    ADVERTISE_KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARE_KEYS_FIELD_NUMBER: _ClassVar[int]
    MASKED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    UNMASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    advertise_keys: AdvertiseKeys
    share_keys: ShareKeys
    masked_input: MaskedInput
    consistency_signature: ConsistencySignature
    unmask_shares: UnmaskShares
    abort: ClientAbort
    def __init__(self, advertise_keys: _Optional[_Union[AdvertiseKeys, _Mapping]] = ..., share_keys: _Optional[_Union[ShareKeys, _Mapping]] = ..., masked_input: _Optional[_Union[MaskedInput, _Mapping]] = ..., consistency_signature: _Optional[_Union[ConsistencySignature, _Mapping]] = ..., unmask_shares: _Optional[_Union[UnmaskShares, _Mapping]] = ..., abort: _Optional[_Union[ClientAbort, _Mapping]] = ...) -> None: ...

class RoundStart(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: RoundConfig
    def __init__(self, config: _Optional[_Union[RoundConfig, _Mapping]] = ...) -> None: ...

class KeyList(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[AdvertiseKeys]
    def __init__(self, keys: _Optional[_Iterable[_Union[AdvertiseKeys, _Mapping]]] = ...) -> None: ...

class ShareBundle(_message.Message):
    __slots__ = ("senders", "shares")
    SENDERS_FIELD_NUMBER: _ClassVar[int]
    SHARES_FIELD_NUMBER: _ClassVar[int]
    senders: _containers.RepeatedScalarFieldContainer[int]
    shares: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    def __init__(self, senders: _Optional[_Iterable[int]] = ..., shares: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ...) -> None: ...

class ConsistencyRequest(_message.Message):
    __slots__ = ("survivors",)
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, survivors: _Optional[_Iterable[int]] = ...) -> None: ...

class SignedBy(_message.Message):
    __slots__ = ("client", "signature")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client: int
    signature: bytes
    def __init__(self, client: _Optional[int] = ..., signature: _Optional[bytes] = ...) -> None: ...

class UnmaskRequest(_message.Message):
    __slots__ = ("survivors", "signatures")
    SURVIVORS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURES_FIELD_NUMBER: _ClassVar[int]
    survivors: _containers.RepeatedScalarFieldContainer[int]
    signatures: _containers.RepeatedCompositeFieldContainer[SignedBy]
    def __init__(self, survivors: _Optional[_Iterable[int]] = ..., signatures: _Optional[_Iterable[_Union[SignedBy, _Mapping]]] = ...) -> None: ...

class RoundComplete(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ServerAbort(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class ServerMessage(_message.Message):
    __slots__ = ("round_start", "key_list", "share_bundle", "consistency_request", "unmask_request", "round_complete", "abort")
    ROUND_START_FIELD_NUMBER: _ClassVar[int]
    KEY_LIST_FIELD_NUMBER: _ClassVar[int]
    SHARE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_REQUEST_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    ROUND_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    round_start: RoundStart
    key_list: KeyList
    share_bundle: ShareBundle
    consistency_request: ConsistencyRequest
    unmask_request: UnmaskRequest
    round_complete: RoundComplete
    abort: ServerAbort
    def __init__(self, round_start: _Optional[_Union[RoundStart, _Mapping]] = ..., key_list: _Optional[_Union[KeyList, _Mapping]] = ..., share_bundle: _Optional[_Union[ShareBundle, _Mapping]] = ..., consistency_request: _Optional[_Union[ConsistencyRequest, _Mapping]] = ..., unmask_request: _Optional[_Union[UnmaskRequest, _Mapping]] = ..., round_complete: _Optional[_Union[RoundComplete, _Mapping]] = ..., abort: _Optional[_Union[ServerAbort, _Mapping]] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("client", "round", "upload_id", "offset", "total_length", "data", "sha256")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    upload_id: str
    offset: int
    total_length: int
    data: bytes
    sha256: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., upload_id: _Optional[str] = ..., offset: _Optional[int] = ..., total_length: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("status",)
    STATUS_FIELD_NUMBER: _ClassVar[int]
    status: str
    def __init__(self, status: _Optional[str] = ...) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("client", "epoch", "after")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    client: int
    epoch: int
    after: int
    def __init__(self, client: _Optional[int] = ..., epoch: _Optional[int] = ..., after: _Optional[int] = ...) -> None: ...

class PollReply(_message.Message):
    __slots__ = ("epoch", "seq", "message", "finished")
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    epoch: int
    seq: int
    message: ServerMessage
    finished: bool
    def __init__(self, epoch: _Optional[int] = ..., seq: _Optional[int] = ..., message: _Optional[_Union[ServerMessage, _Mapping]] = ..., finished: _Optional[bool] = ...) -> None: ...

class ModelRequest(_message.Message):
    __slots__ = ("client", "round")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ...) -> None: ...

class ModelChunk(_message.Message):
    __slots__ = ("round", "offset", "total_length", "data")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    round: int
    offset: int
    total_length: int
    data: bytes
    def __init__(self, round: _Optional[int] = ..., offset: _Optional[int] = ..., total_length: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...
