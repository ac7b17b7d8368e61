"""Where the model lives in HE mode: on the clients, bound by a lineage both sides compute.

The aggregator sums ciphertexts and never sees the aggregate, so it cannot
take the FedAvg step or hold any model after the initial one θ₀. Every client
keeps its own copy: it starts from θ₀ (whose hash the aggregator announces,
as for SecAgg), and after each completed round applies the decrypted weighted
mean itself, θ ← θ + η·mean (float32, as the SecAgg coordinator does).

What the aggregator can still bind is the *lineage* of the model: the hash of
θ₀, then, round by round, a hash chained over the digest of the encrypted sum
it sent. It announces the lineage as the next HEConfig's ``model_hash``; a
client compares it with the chain it computed over the sums it applied, so a
client that missed a round (or was sent another sum) sees at once that its
model is not the announced one and stays out. Deterministic decryption makes
equal lineages mean equal models; the real SHA-256 of each client's model is
additionally signed into its join and compared by every member of the session
(:class:`protocol.he_flow.KeyCeremonyClient`), which catches what the lineage
cannot (another TenSEAL build decrypting differently, a wrong step size).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from secagg.encoding import encode
from secagg.errors import ParameterError

#: Domain label of the model hash (every mode: SecAgg, bfv-masked, CKKS's θ₀).
MODEL_LABEL = b"secagg/v1/model\x00"


def model_sha256(model: np.ndarray | bytes) -> bytes:
    """The model hash: SHA-256 over a label and the model's float32 little-endian bytes.

    The one construction for every mode (the aggregator announces θ₀'s, a
    client recomputes it from what it downloaded). ``bytes`` are taken as
    already float32 LE (the wire form); an array is converted first. A round
    config with a method state carries
    :func:`protocol.method_messages.bound_model_hash` instead.
    """
    raw = model if isinstance(model, bytes) else np.asarray(model, dtype="<f4").tobytes()
    return hashlib.sha256(MODEL_LABEL + raw).digest()


def sum_digest(blobs: Sequence[bytes]) -> bytes:
    """Digest of an encrypted sum (the ciphertexts in order), what the lineage chains over."""
    return hashlib.sha256(encode("he-sum", *blobs)).digest()


def next_lineage(previous: bytes, round_: int, digest: bytes) -> bytes:
    """The lineage after applying round ``round_``'s sum (``digest`` from :func:`sum_digest`)."""
    if len(previous) != 32 or len(digest) != 32:
        raise ParameterError("lineage and sum digest must be 32 bytes")
    return hashlib.sha256(encode("he-lineage", previous, round_, digest)).digest()


def apply_mean(model: np.ndarray, mean: np.ndarray, learning_rate: float) -> np.ndarray:
    """θ + η·mean in float32: the server step every client takes on its own copy."""
    if mean.shape != model.shape:
        raise ParameterError(f"mean of shape {mean.shape} does not fit the model {model.shape}")
    out: np.ndarray = (model + learning_rate * mean).astype(np.float32)
    return out
