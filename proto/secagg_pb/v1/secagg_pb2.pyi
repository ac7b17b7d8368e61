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
    __slots__ = ("client", "round", "c_public", "s_public", "signature", "graph_commitment")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    C_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    S_PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    GRAPH_COMMITMENT_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    c_public: bytes
    s_public: bytes
    signature: bytes
    graph_commitment: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., c_public: _Optional[bytes] = ..., s_public: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., graph_commitment: _Optional[bytes] = ...) -> None: ...

class GraphReveal(_message.Message):
    __slots__ = ("client", "round", "nonce")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    nonce: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...

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

class RequestAuth(_message.Message):
    __slots__ = ("session", "nonce", "signature")
    SESSION_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    session: bytes
    nonce: bytes
    signature: bytes
    def __init__(self, session: _Optional[bytes] = ..., nonce: _Optional[bytes] = ..., signature: _Optional[bytes] = ...) -> None: ...

class ClientMessage(_message.Message):
    __slots__ = ("advertise_keys", "share_keys", "masked_input", "consistency_signature", "unmask_shares", "abort", "graph_reveal", "he_join", "he_key_delivery", "he_upload", "cluster_release", "auth")
    ADVERTISE_KEYS_FIELD_NUMBER: _ClassVar[int]
    SHARE_KEYS_FIELD_NUMBER: _ClassVar[int]
    MASKED_INPUT_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    UNMASK_SHARES_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_REVEAL_FIELD_NUMBER: _ClassVar[int]
    HE_JOIN_FIELD_NUMBER: _ClassVar[int]
    HE_KEY_DELIVERY_FIELD_NUMBER: _ClassVar[int]
    HE_UPLOAD_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_RELEASE_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    advertise_keys: AdvertiseKeys
    share_keys: ShareKeys
    masked_input: MaskedInput
    consistency_signature: ConsistencySignature
    unmask_shares: UnmaskShares
    abort: ClientAbort
    graph_reveal: GraphReveal
    he_join: HEJoin
    he_key_delivery: HEKeyDelivery
    he_upload: HEUpload
    cluster_release: ClusterRelease
    auth: RequestAuth
    def __init__(self, advertise_keys: _Optional[_Union[AdvertiseKeys, _Mapping]] = ..., share_keys: _Optional[_Union[ShareKeys, _Mapping]] = ..., masked_input: _Optional[_Union[MaskedInput, _Mapping]] = ..., consistency_signature: _Optional[_Union[ConsistencySignature, _Mapping]] = ..., unmask_shares: _Optional[_Union[UnmaskShares, _Mapping]] = ..., abort: _Optional[_Union[ClientAbort, _Mapping]] = ..., graph_reveal: _Optional[_Union[GraphReveal, _Mapping]] = ..., he_join: _Optional[_Union[HEJoin, _Mapping]] = ..., he_key_delivery: _Optional[_Union[HEKeyDelivery, _Mapping]] = ..., he_upload: _Optional[_Union[HEUpload, _Mapping]] = ..., cluster_release: _Optional[_Union[ClusterRelease, _Mapping]] = ..., auth: _Optional[_Union[RequestAuth, _Mapping]] = ...) -> None: ...

class RoundStart(_message.Message):
    __slots__ = ("config", "state")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    config: RoundConfig
    state: MethodState
    def __init__(self, config: _Optional[_Union[RoundConfig, _Mapping]] = ..., state: _Optional[_Union[MethodState, _Mapping]] = ...) -> None: ...

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

class OwnedNonce(_message.Message):
    __slots__ = ("client", "nonce")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    client: int
    nonce: bytes
    def __init__(self, client: _Optional[int] = ..., nonce: _Optional[bytes] = ...) -> None: ...

class GraphNonces(_message.Message):
    __slots__ = ("nonces",)
    NONCES_FIELD_NUMBER: _ClassVar[int]
    nonces: _containers.RepeatedCompositeFieldContainer[OwnedNonce]
    def __init__(self, nonces: _Optional[_Iterable[_Union[OwnedNonce, _Mapping]]] = ...) -> None: ...

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
    __slots__ = ("round_start", "key_list", "share_bundle", "consistency_request", "unmask_request", "round_complete", "abort", "graph_nonces", "he_start", "he_keys", "he_key_bundle", "he_result", "he_masked_start")
    ROUND_START_FIELD_NUMBER: _ClassVar[int]
    KEY_LIST_FIELD_NUMBER: _ClassVar[int]
    SHARE_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_REQUEST_FIELD_NUMBER: _ClassVar[int]
    UNMASK_REQUEST_FIELD_NUMBER: _ClassVar[int]
    ROUND_COMPLETE_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    GRAPH_NONCES_FIELD_NUMBER: _ClassVar[int]
    HE_START_FIELD_NUMBER: _ClassVar[int]
    HE_KEYS_FIELD_NUMBER: _ClassVar[int]
    HE_KEY_BUNDLE_FIELD_NUMBER: _ClassVar[int]
    HE_RESULT_FIELD_NUMBER: _ClassVar[int]
    HE_MASKED_START_FIELD_NUMBER: _ClassVar[int]
    round_start: RoundStart
    key_list: KeyList
    share_bundle: ShareBundle
    consistency_request: ConsistencyRequest
    unmask_request: UnmaskRequest
    round_complete: RoundComplete
    abort: ServerAbort
    graph_nonces: GraphNonces
    he_start: HEStart
    he_keys: HEKeys
    he_key_bundle: HEKeyBundle
    he_result: HEResult
    he_masked_start: HEMaskedStart
    def __init__(self, round_start: _Optional[_Union[RoundStart, _Mapping]] = ..., key_list: _Optional[_Union[KeyList, _Mapping]] = ..., share_bundle: _Optional[_Union[ShareBundle, _Mapping]] = ..., consistency_request: _Optional[_Union[ConsistencyRequest, _Mapping]] = ..., unmask_request: _Optional[_Union[UnmaskRequest, _Mapping]] = ..., round_complete: _Optional[_Union[RoundComplete, _Mapping]] = ..., abort: _Optional[_Union[ServerAbort, _Mapping]] = ..., graph_nonces: _Optional[_Union[GraphNonces, _Mapping]] = ..., he_start: _Optional[_Union[HEStart, _Mapping]] = ..., he_keys: _Optional[_Union[HEKeys, _Mapping]] = ..., he_key_bundle: _Optional[_Union[HEKeyBundle, _Mapping]] = ..., he_result: _Optional[_Union[HEResult, _Mapping]] = ..., he_masked_start: _Optional[_Union[HEMaskedStart, _Mapping]] = ...) -> None: ...

class HEConfig(_message.Message):
    __slots__ = ("round", "clients", "dim", "scheme", "key_holder", "clip", "max_weight", "levels", "nonce", "model_hash", "learning_rate")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    SCHEME_FIELD_NUMBER: _ClassVar[int]
    KEY_HOLDER_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    round: int
    clients: _containers.RepeatedScalarFieldContainer[int]
    dim: int
    scheme: str
    key_holder: int
    clip: float
    max_weight: int
    levels: int
    nonce: bytes
    model_hash: bytes
    learning_rate: float
    def __init__(self, round: _Optional[int] = ..., clients: _Optional[_Iterable[int]] = ..., dim: _Optional[int] = ..., scheme: _Optional[str] = ..., key_holder: _Optional[int] = ..., clip: _Optional[float] = ..., max_weight: _Optional[int] = ..., levels: _Optional[int] = ..., nonce: _Optional[bytes] = ..., model_hash: _Optional[bytes] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class HEJoin(_message.Message):
    __slots__ = ("client", "round", "public", "signature", "model_sha256")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    MODEL_SHA256_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    public: bytes
    signature: bytes
    model_sha256: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., public: _Optional[bytes] = ..., signature: _Optional[bytes] = ..., model_sha256: _Optional[bytes] = ...) -> None: ...

class HEKeyDelivery(_message.Message):
    __slots__ = ("client", "round", "public_context", "sealed")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    SEALED_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    public_context: bytes
    sealed: _containers.RepeatedCompositeFieldContainer[EncryptedShare]
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., public_context: _Optional[bytes] = ..., sealed: _Optional[_Iterable[_Union[EncryptedShare, _Mapping]]] = ...) -> None: ...

class HEUpload(_message.Message):
    __slots__ = ("client", "round", "blobs", "signature")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    SIGNATURE_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    blobs: _containers.RepeatedScalarFieldContainer[bytes]
    signature: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., blobs: _Optional[_Iterable[bytes]] = ..., signature: _Optional[bytes] = ...) -> None: ...

class HEStart(_message.Message):
    __slots__ = ("config", "state")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    config: HEConfig
    state: MethodState
    def __init__(self, config: _Optional[_Union[HEConfig, _Mapping]] = ..., state: _Optional[_Union[MethodState, _Mapping]] = ...) -> None: ...

class HEMaskedConfig(_message.Message):
    __slots__ = ("round", "clients", "threshold", "dim", "key_holder", "clip", "levels", "max_weight", "nonce", "model_hash", "learning_rate")
    ROUND_FIELD_NUMBER: _ClassVar[int]
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    KEY_HOLDER_FIELD_NUMBER: _ClassVar[int]
    CLIP_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    MAX_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_HASH_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    round: int
    clients: _containers.RepeatedScalarFieldContainer[int]
    threshold: int
    dim: int
    key_holder: int
    clip: float
    levels: int
    max_weight: int
    nonce: bytes
    model_hash: bytes
    learning_rate: float
    def __init__(self, round: _Optional[int] = ..., clients: _Optional[_Iterable[int]] = ..., threshold: _Optional[int] = ..., dim: _Optional[int] = ..., key_holder: _Optional[int] = ..., clip: _Optional[float] = ..., levels: _Optional[int] = ..., max_weight: _Optional[int] = ..., nonce: _Optional[bytes] = ..., model_hash: _Optional[bytes] = ..., learning_rate: _Optional[float] = ...) -> None: ...

class HEMaskedStart(_message.Message):
    __slots__ = ("config",)
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    config: HEMaskedConfig
    def __init__(self, config: _Optional[_Union[HEMaskedConfig, _Mapping]] = ...) -> None: ...

class HEKeys(_message.Message):
    __slots__ = ("joins",)
    JOINS_FIELD_NUMBER: _ClassVar[int]
    joins: _containers.RepeatedCompositeFieldContainer[HEJoin]
    def __init__(self, joins: _Optional[_Iterable[_Union[HEJoin, _Mapping]]] = ...) -> None: ...

class HEKeyBundle(_message.Message):
    __slots__ = ("sealed",)
    SEALED_FIELD_NUMBER: _ClassVar[int]
    sealed: bytes
    def __init__(self, sealed: _Optional[bytes] = ...) -> None: ...

class HEResult(_message.Message):
    __slots__ = ("blobs", "contributors")
    BLOBS_FIELD_NUMBER: _ClassVar[int]
    CONTRIBUTORS_FIELD_NUMBER: _ClassVar[int]
    blobs: _containers.RepeatedScalarFieldContainer[bytes]
    contributors: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, blobs: _Optional[_Iterable[bytes]] = ..., contributors: _Optional[_Iterable[int]] = ...) -> None: ...

class ClusterRelease(_message.Message):
    __slots__ = ("client", "round", "dim", "centers", "sizes", "radii")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    CENTERS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    RADII_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    dim: int
    centers: bytes
    sizes: bytes
    radii: bytes
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., dim: _Optional[int] = ..., centers: _Optional[bytes] = ..., sizes: _Optional[bytes] = ..., radii: _Optional[bytes] = ...) -> None: ...

class MethodState(_message.Message):
    __slots__ = ("method", "round", "moment", "releases")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    MOMENT_FIELD_NUMBER: _ClassVar[int]
    RELEASES_FIELD_NUMBER: _ClassVar[int]
    method: str
    round: int
    moment: bytes
    releases: _containers.RepeatedCompositeFieldContainer[ClusterRelease]
    def __init__(self, method: _Optional[str] = ..., round: _Optional[int] = ..., moment: _Optional[bytes] = ..., releases: _Optional[_Iterable[_Union[ClusterRelease, _Mapping]]] = ...) -> None: ...

class UploadChunk(_message.Message):
    __slots__ = ("client", "round", "upload_id", "offset", "total_length", "data", "sha256", "auth")
    CLIENT_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    UPLOAD_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    TOTAL_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    AUTH_FIELD_NUMBER: _ClassVar[int]
    client: int
    round: int
    upload_id: str
    offset: int
    total_length: int
    data: bytes
    sha256: bytes
    auth: RequestAuth
    def __init__(self, client: _Optional[int] = ..., round: _Optional[int] = ..., upload_id: _Optional[str] = ..., offset: _Optional[int] = ..., total_length: _Optional[int] = ..., data: _Optional[bytes] = ..., sha256: _Optional[bytes] = ..., auth: _Optional[_Union[RequestAuth, _Mapping]] = ...) -> None: ...

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
