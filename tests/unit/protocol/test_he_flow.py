"""The HE round in memory: weighted mean with a dropout, no key at the server, bad inputs."""

from __future__ import annotations

import dataclasses
import hashlib

import numpy as np
import pytest

from protocol.errors import AuthenticationFailed, InvalidMessage
from protocol.he_flow import (
    HEClientMachine,
    HEConfig,
    HEJoin,
    HEKeyDelivery,
    HEKeys,
    HEPhase,
    HEServerMachine,
    HEStart,
    HEUpload,
    run_he_round,
)
from secagg import he
from secagg.primitives.signing import SigningKey, signing_key
from secagg.rng import DeterministicRandomSource


def setup(
    scheme: str = "ckks", n: int = 4
) -> tuple[HEConfig, dict[int, SigningKey], dict[int, np.ndarray]]:
    rng = DeterministicRandomSource(scheme)
    config = HEConfig(
        round=0,
        clients=tuple(range(1, n + 1)),
        dim=300,
        scheme=scheme,  # type: ignore[arg-type]
        key_holder=1,
        clip=1.0,
        max_weight=10,
        levels=1 << 16,
        nonce=bytes(32),
        model_hash=hashlib.sha256(b"model").digest(),
    )
    keys = {c: signing_key(rng) for c in config.clients}
    vectors = {
        c: np.frombuffer(rng.random_bytes(8 * 300), "<u8") / 2.0**64 * 2 - 1 for c in config.clients
    }
    return config, keys, vectors


@pytest.mark.parametrize(("scheme", "tol"), [("ckks", 1e-6), ("bfv", 2 * 2.0 / 65535)])
def test_weighted_mean_with_a_dropout(scheme: str, tol: float) -> None:
    config, keys, vectors = setup(scheme)
    weights = {1: 3, 2: 5, 3: 7, 4: 2}
    report = run_he_round(
        config,
        vectors=vectors,
        weights=weights,
        roster_keys=keys,
        rng=DeterministicRandomSource(1),
        drops={"upload": [4]},
    )
    assert report.completed and report.contributors == (1, 2, 3)
    expected = sum(weights[c] * vectors[c] for c in (1, 2, 3)) / 15
    assert set(report.results) == {1, 2, 3}
    for result in report.results.values():
        assert float(np.max(np.abs(result - expected))) <= tol


def drive_to_delivery(
    config: HEConfig, keys: dict[int, SigningKey], vectors: dict[int, np.ndarray]
):  # type: ignore[no-untyped-def]
    roster = {c: k.public for c, k in keys.items()}
    server = HEServerMachine(config, roster=roster)
    clients = {
        c: HEClientMachine(c, rng=DeterministicRandomSource(c), signing_key=keys[c], roster=roster)
        for c in config.clients
    }
    for c, m in clients.items():
        m.set_input(vectors[c], weight=1, model_hash=config.model_hash)
    for c, msg in server.start():
        for reply in clients[c].handle(msg):
            server.receive(c, reply)
    replies: dict[int, list[object]] = {}
    for c, msg in server.advance():
        replies[c] = list(clients[c].handle(msg))
    return server, clients, replies


def test_the_server_never_holds_a_key_that_decrypts() -> None:
    config, keys, vectors = setup()
    _server, _clients, replies = drive_to_delivery(config, keys, vectors)
    delivery = next(r for r in replies[1] if isinstance(r, HEKeyDelivery))
    upload = next(r for r in replies[1] if isinstance(r, HEUpload))
    public = he.load_public(delivery.public_context, config.params)
    with pytest.raises(Exception):  # noqa: B017 - TenSEAL raises its own error type
        he.decrypt(public, list(upload.blobs), config.vector_length)
    # What the server relays is sealed to each client: opening it needs that client's key.
    for sealed in delivery.sealed:
        assert b"secret" not in sealed.ciphertext and len(sealed.ciphertext) > 1000


def test_unsigned_join_is_refused_by_server_and_clients() -> None:
    config, keys, vectors = setup()
    roster = {c: k.public for c, k in keys.items()}
    server = HEServerMachine(config, roster=roster)
    client = HEClientMachine(
        2, rng=DeterministicRandomSource(2), signing_key=keys[2], roster=roster
    )
    client.set_input(vectors[2], weight=1, model_hash=config.model_hash)
    join = client.handle(HEStart(config))[0]
    assert isinstance(join, HEJoin)
    forged = dataclasses.replace(join, client=3, signature=bytes(64))
    with pytest.raises(AuthenticationFailed):
        server.receive(3, forged)
    # A server that injects it anyway makes the honest client abort before any key moves.
    assert client.handle(HEKeys((join, forged, dataclasses.replace(forged, client=1)))) == []
    assert client.phase is HEPhase.ABORTED


def test_tampered_or_foreign_uploads_are_rejected_and_not_summed() -> None:
    config, keys, vectors = setup()
    server, clients, replies = drive_to_delivery(config, keys, vectors)
    for r in replies[1]:
        server.receive(1, r)  # holder: delivery and its own upload
    bundles = server.advance()
    uploads = {c: clients[c].handle(msg)[0] for c, msg in bundles}
    good = uploads[2]
    assert isinstance(good, HEUpload)
    flipped = bytearray(good.blobs[0])
    flipped[len(flipped) // 2] ^= 0xFF
    with pytest.raises((InvalidMessage, AuthenticationFailed)):
        server.receive(2, dataclasses.replace(good, blobs=(bytes(flipped), *good.blobs[1:])))
    other = he.make_context(config.params)  # a foreign key with the same parameters
    foreign = tuple(he.encrypt(other, np.zeros(config.vector_length)))
    with pytest.raises((InvalidMessage, AuthenticationFailed)):
        server.receive(3, dataclasses.replace(uploads[3], blobs=foreign))
    assert server.contributors == (1,)
