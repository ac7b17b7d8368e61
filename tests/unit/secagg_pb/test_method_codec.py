"""The face-FL method messages on the wire (protocol/method_messages.py and the codec).

Releases and method states round-trip exactly through the one codec, invalid
ones decode to InvalidMessage (INVALID_ARGUMENT) whatever is wrong with them,
the request signature covers every field of a release, and the model hash
binds the state while leaving FedAvg's hash as it always was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np
import pytest

from protocol.build import make_config
from protocol.errors import InvalidMessage
from protocol.he_model import model_sha256
from protocol.messages import RoundStart
from protocol.method_messages import (
    ClusterRelease,
    MethodState,
    bound_model_hash,
    check_method,
    extra_dim,
)
from protocol.request_auth import body_digest, phase_of
from secagg.errors import ParameterError
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.wire import parse_any_server_message


def release(client: int = 2, count: int = 2, dim: int = 3) -> ClusterRelease:
    rng = np.random.default_rng(client)
    centers = rng.standard_normal((count, dim))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    return ClusterRelease.of(client, 4, centers, rng.uniform(5, 9, count), [0.1] * count)


def test_a_release_round_trips_and_is_what_the_arrays_were() -> None:
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((3, 5))
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    sent = ClusterRelease.of(7, 2, centers, [6.5, 7.0, 9.25], [0.1, 0.2, 0.3])
    wire = codec.client_to_proto(sent).SerializeToString()
    back = codec.parse_any_client_message(wire)
    assert back == sent
    assert isinstance(back, ClusterRelease)
    got_centers, sizes, radii = back.arrays()
    assert np.allclose(got_centers, centers, atol=1e-6)
    assert sizes.tolist() == [6.5, 7.0, 9.25]
    assert np.allclose(radii, [0.1, 0.2, 0.3])
    assert len(back) == 3


def test_an_empty_release_is_valid() -> None:
    empty = ClusterRelease.of(1, 0, np.zeros((0, 4)), [], [])
    assert len(empty) == 0
    assert codec.parse_any_client_message(codec.client_to_proto(empty).SerializeToString()) == empty


def test_round_start_carries_the_state_or_none() -> None:
    config = make_config(clients=3, dim=4)
    state = MethodState("fedgc", 3, releases=(release(1), release(2)))
    for start in (RoundStart(config), RoundStart(config, state)):
        wire = codec.server_to_proto(start).SerializeToString()
        assert parse_any_server_message(wire) == start
    moment = MethodState("fedface", 1, moment=np.eye(3, dtype="<f4").tobytes())
    back = parse_any_server_message(
        codec.server_to_proto(RoundStart(config, moment)).SerializeToString()
    )
    assert isinstance(back, RoundStart) and back.state is not None
    matrix = back.state.moment_matrix()
    assert matrix is not None and np.array_equal(matrix, np.eye(3))


def test_state_storage_round_trips() -> None:
    state = MethodState("privacyface", 9, releases=(release(3),))
    raw = codec.method_state_to_proto(state).SerializeToString()
    assert codec.method_state_from_proto(pb.MethodState.FromString(raw)) == state


BAD_RELEASES = {
    "nan centre": {"centers": np.array([np.nan, 0, 1], "<f4").tobytes()},
    "inf size": {"sizes": np.array([np.inf], "<f4").tobytes()},
    "centres not a multiple of d": {"centers": np.zeros(4, "<f4").tobytes()},
    "sizes not float32": {"sizes": b"\x00\x00\x80"},
    "radii count differs": {"radii": np.zeros(2, "<f4").tobytes()},
    "not a unit centre": {"centers": np.array([0.5, 0, 0], "<f4").tobytes()},
    "negative radius": {"radii": np.array([-0.1], "<f4").tobytes()},
    "radius of pi": {"radii": np.array([math.pi], "<f4").tobytes()},
    "dimension 0": {"dim": 0},
    "dimension too large": {"dim": 5000},
    "client 0": {"client": 0},
}


@pytest.mark.parametrize("change", BAD_RELEASES.values(), ids=list(BAD_RELEASES))
def test_invalid_releases_are_invalid_message(change: dict[str, object]) -> None:
    good = codec.client_to_proto(release(count=1)).cluster_release
    wire = pb.ClusterRelease()
    wire.CopyFrom(good)
    for key, value in change.items():
        setattr(wire, key, value)
    with pytest.raises(InvalidMessage, match="ClusterRelease"):
        codec.any_client_from_proto(pb.ClientMessage(cluster_release=wire))


def test_invalid_states_are_invalid_message() -> None:
    bad = [
        pb.MethodState(method="fedgc-reference", round=1),  # never over the service
        pb.MethodState(method="fedface", round=1, moment=b"\x00" * 12),  # not d × d
        pb.MethodState(method="fedface", round=1, moment=np.array([np.nan], "<f4").tobytes()),
        pb.MethodState(  # out of client order
            method="fedgc",
            round=1,
            releases=[codec.client_to_proto(release(c)).cluster_release for c in (2, 1)],
        ),
        pb.MethodState(  # two dimensions in one round
            method="fedgc",
            round=1,
            releases=[
                codec.client_to_proto(release(1, dim=3)).cluster_release,
                codec.client_to_proto(release(2, dim=4)).cluster_release,
            ],
        ),
    ]
    for wire in bad:
        with pytest.raises(InvalidMessage):
            codec.method_state_from_proto(wire)


def test_the_request_signature_covers_every_field_of_a_release() -> None:
    base = release()
    assert phase_of(base) == "release"
    centers, sizes, radii = base.arrays()
    variants = [
        base,
        dataclasses.replace(base, client=3),
        dataclasses.replace(base, round=5),
        ClusterRelease.of(2, 4, centers[::-1], sizes, radii),
        ClusterRelease.of(2, 4, centers, sizes + 1, radii),
        ClusterRelease.of(2, 4, centers, sizes, radii + 0.1),
        release(dim=4),
        release(count=3),
    ]
    assert len({body_digest(v) for v in variants}) == len(variants)


def test_the_model_hash_binds_the_state_and_leaves_fedavg_unchanged() -> None:
    model = np.arange(6, dtype="<f4").tobytes()
    classic = hashlib.sha256(b"secagg/v1/model\x00" + model).digest()
    assert bound_model_hash(model, None) == classic
    # the one model hash: the wire bytes and the array (any float dtype) agree
    assert model_sha256(model) == model_sha256(np.arange(6, dtype=np.float64)) == classic
    a = MethodState("fedgc", 1, releases=(release(1),))
    b = MethodState("fedgc", 1, releases=(release(2),))
    hashes = {
        bound_model_hash(model, a),
        bound_model_hash(model, b),
        bound_model_hash(model, MethodState("privacyface", 1, releases=(release(1),))),
        bound_model_hash(model, MethodState("fedgc", 2, releases=(release(1),))),
        bound_model_hash(model[:-4] + b"\x00" * 4, a),
        classic,
    }
    assert len(hashes) == 6


def test_methods_and_their_extra_coordinates() -> None:
    assert extra_dim("fedface", 16) == 256
    assert all(extra_dim(m, 16) == 0 for m in ("fedavg", "projector", "fedgc", "privacyface"))
    with pytest.raises(ParameterError, match="trusted aggregator"):
        check_method("fedgc-reference")
    with pytest.raises(ParameterError, match="unknown method"):
        check_method("fedprox")
