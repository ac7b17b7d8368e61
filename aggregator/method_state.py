"""The aggregator's side of a face-FL method over gRPC: numpy only, never torch.

Whatever the method, the server step is the same (:func:`server_step`):
θ moves by the θ-part of the securely computed weighted mean, and the
coordinates a method appended (FedFace's S_k/n_k) are multiplied back by
Σ n_k, which gives their plain sum S = Σ_k S_k. ``secagg experiment`` calls
the same function. In CKKS rounds (``mode = "ckks"``) the aggregator sees no
mean: each client takes this step on what it decrypts
(:mod:`clients.he_daemon`), and the state the aggregator serves holds only
the releases (:meth:`MethodRounds.finish_he`).

:class:`MethodRounds` keeps what a method needs between rounds: the DP
cluster releases of the running attempt (PrivacyFace, FedGC-DPC; validated
on arrival, one per cohort member), and the :class:`MethodState` the next
``RoundStart`` carries (S, or every release of the round). The state is
written to ``state_dir/method/`` before the round's checkpoint, so a
restarted aggregator serves the same one. The aggregator never sees a class
embedding: only S (a secure sum) and DP releases. :class:`FedAvgRounds` is the
same interface for plain FedAvg, doing nothing, so the coordinator never asks
which method runs.

It reads the few settings it needs through :class:`MethodSettings`, so it
does not import :mod:`aggregator.settings` (which imports it to check them).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Protocol

import numpy as np

from aggregator.durable import replace_file
from protocol.errors import ConflictingMessage, InvalidMessage, UnknownClient, WrongPhase
from protocol.he_messages import AnyServerMessage, HEStart
from protocol.messages import RoundStart
from protocol.method_messages import (
    RELEASING,
    ClusterRelease,
    MethodState,
    check_method,
    extra_dim,
    server_step,
)
from secagg.errors import ParameterError
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb

log = logging.getLogger("secagg.aggregator")
#: One RoundStart (a d × d float32 S) must fit a poll reply well inside gRPC's 16 MiB.
MAX_MOMENT_BYTES = 8 * 1024 * 1024


class MethodSettings(Protocol):
    """The settings a method reads (:class:`aggregator.settings.AggregatorSettings` has them)."""

    @property
    def method(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def embedding_dim(self) -> int: ...
    @property
    def dplc_clusters(self) -> int: ...
    @property
    def dp_noise_multiplier(self) -> float: ...
    @property
    def clip(self) -> float: ...


def check_settings(s: MethodSettings) -> None:
    """Refuse a method the service cannot run as configured, saying why."""
    check_method(s.method)
    if s.mode == "ckks" and s.dp_noise_multiplier > 0:
        raise ParameterError(
            'mode = "ckks" cannot take distributed DP (dp_noise_multiplier): clients add the '
            'noise to the quantised levels of masked rounds only (use mode = "secagg")'
        )
    if s.method == "fedavg":
        return
    if s.method != "projector" and s.embedding_dim < 1:
        raise ParameterError(f'method = "{s.method}" needs embedding_dim (the clients\' d)')
    if s.method in RELEASING and s.dplc_clusters < 1:
        raise ParameterError("dplc_clusters (the most clusters in one release) must be ≥ 1")
    if s.method == "fedface":
        if s.dp_noise_multiplier > 0:
            raise ParameterError(
                'method = "fedface" cannot run with distributed DP: S_k would be clipped and '
                "noised with the update, and the unweighted DP mean cannot restore S"
            )
        if s.clip < 1.0:
            raise ParameterError('method = "fedface" needs clip ≥ 1 (entries of S_k/n_k reach 1)')
        if 4 * extra_dim(s.method, s.embedding_dim) > MAX_MOMENT_BYTES:
            raise ParameterError(
                f"embedding_dim {s.embedding_dim} makes S larger than {MAX_MOMENT_BYTES} bytes"
            )


class MethodRounds:
    """One method's state across rounds on the aggregator (see the module docstring)."""

    def __init__(self, settings: MethodSettings, state_dir: Path) -> None:
        self.method = settings.method
        self.embedding_dim = settings.embedding_dim
        self.max_clusters = settings.dplc_clusters
        self.theta_dim = settings.dim
        self.extra_dim = extra_dim(settings.method, settings.embedding_dim)
        self.folder = state_dir / "method"
        #: What the next RoundStart carries (bound into its model hash).
        self.state = MethodState(self.method, 0)
        self._releases: dict[int, ClusterRelease] = {}

    @property
    def releases(self) -> dict[int, ClusterRelease]:
        """The running attempt's releases, by client."""
        return dict(self._releases)

    def begin_attempt(self) -> None:
        """A new round attempt: earlier attempts' releases are dropped."""
        self._releases = {}

    def check_takes_releases(self) -> None:
        """Every method's host takes releases (:meth:`accept` says which methods send any)."""

    def bind(self, msg: AnyServerMessage) -> AnyServerMessage:
        """A RoundStart or HEStart carries the state (bound into its model hash or lineage)."""
        if isinstance(msg, RoundStart | HEStart):
            return dataclasses.replace(msg, state=self.state)
        return msg

    def accept(self, client: int, release: ClusterRelease, cohort: tuple[int, ...]) -> bool:
        """Validate and keep one release; False for an identical retry."""
        if self.method not in RELEASING:
            raise InvalidMessage(f"method {self.method!r} takes no cluster releases")
        if release.client != client:
            raise InvalidMessage(f"client {client} sent a release naming client {release.client}")
        if client not in cohort:
            raise UnknownClient(f"client {client} is not in this round's cohort")
        if release.dim != self.embedding_dim:
            raise InvalidMessage(
                f"release of dimension {release.dim}; this aggregator's embedding_dim is "
                f"{self.embedding_dim}"
            )
        if len(release) > self.max_clusters:
            raise InvalidMessage(
                f"release of {len(release)} clusters exceeds dplc_clusters = {self.max_clusters}"
            )
        previous = self._releases.get(client)
        if previous is not None:
            if previous == release:
                return False
            raise ConflictingMessage(f"client {client} already released clusters this round")
        self._releases[client] = release
        return True

    def finish(self, round_: int, mean: np.ndarray, weight_sum: int) -> np.ndarray:
        """The θ step of a completed round; the next round's state is built and kept."""
        step, extra_sum = server_step(mean, self.theta_dim, weight_sum)
        moment = b""
        if self.extra_dim and weight_sum > 0:
            moment = extra_sum.astype("<f4").tobytes()
        self._close(round_, moment)
        return step

    def finish_he(self, round_: int) -> None:
        """A completed CKKS round: the next state holds its releases only.

        The aggregator never sees the decrypted mean there, so FedFace's S is
        not in it: each client recovers S from the sum it decrypts.
        """
        self._close(round_, b"")

    def _close(self, round_: int, moment: bytes) -> None:
        """The next round's state: ``moment`` and this attempt's releases, in client order."""
        releases = tuple(self._releases[c] for c in sorted(self._releases))
        self.state = MethodState(self.method, round_ + 1, moment=moment, releases=releases)
        self._releases = {}

    def _path(self, round_: int) -> Path:
        return self.folder / f"state-{round_:06d}.bin"

    def save(self) -> None:
        """Write the next round's state atomically (before the round's checkpoint)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        replace_file(
            self._path(self.state.round),
            codec.method_state_to_proto(self.state).SerializeToString(),
        )
        for old in self.folder.glob("state-*.bin"):  # keep this one and the one before
            if old.stem < f"state-{self.state.round - 1:06d}":
                old.unlink(missing_ok=True)

    def load(self, round_: int) -> None:
        """The state saved for ``round_`` (after a restart); none saved: an empty one."""
        path = self._path(round_)
        if not path.exists():
            if round_ > 0:
                log.warning("no method state saved for round %d: starting it empty", round_)
            self.state = MethodState(self.method, round_)
            return
        state = codec.method_state_from_proto(pb.MethodState.FromString(path.read_bytes()))
        if state.method != self.method or state.round != round_:
            raise ParameterError(
                f"{path} holds {state.method!r} round {state.round}, expected "
                f"{self.method!r} round {round_} (was the method changed mid-training?)"
            )
        self.state = state


class FedAvgRounds:
    """Plain FedAvg's :class:`MethodRounds`: no extras, no releases, no state to carry.

    Every hook does nothing, so rounds read the same whatever the method.
    """

    #: No state: RoundStart and HEStart carry none, and the model hash is the model's alone.
    state: MethodState | None = None

    @property
    def releases(self) -> dict[int, ClusterRelease]:
        """None ever: FedAvg takes no releases."""
        return {}

    def begin_attempt(self) -> None:
        """Nothing to drop."""

    def check_takes_releases(self) -> None:
        """Refuse a release before anything else is checked."""
        raise WrongPhase("this aggregator runs FedAvg: it takes no cluster releases")

    def accept(self, client: int, release: ClusterRelease, cohort: tuple[int, ...]) -> bool:
        """Never reached (:meth:`check_takes_releases` refuses first); refuses too."""
        self.check_takes_releases()
        return False

    def bind(self, msg: AnyServerMessage) -> AnyServerMessage:
        """The message as it is."""
        return msg

    def finish(self, round_: int, mean: np.ndarray, weight_sum: int) -> np.ndarray:
        """θ's step is the whole mean."""
        return mean

    def finish_he(self, round_: int) -> None:
        """Nothing to keep."""

    def save(self) -> None:
        """Nothing to write."""

    def load(self, round_: int) -> None:
        """Nothing to read."""


def method_rounds(settings: MethodSettings, state_dir: Path) -> MethodRounds | FedAvgRounds:
    """The method's host state: :class:`FedAvgRounds` for ``method = "fedavg"``."""
    if settings.method == "fedavg":
        return FedAvgRounds()
    return MethodRounds(settings, state_dir)
