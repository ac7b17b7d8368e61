"""The documented synthetic trainer, until face training plugs in.

Each client pulls the model toward a private target vector drawn from its id
(update = rate · (target − model)), so FedAvg converges to the mean target
and a test can predict every round. With ``exact_levels`` it instead returns
integer levels drawn from (client, round), which lets integration tests check
the aggregate for exact equality.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from protocol.method_messages import ClusterRelease
from secagg.rng import DeterministicRandomSource, uniform_below


@dataclass(frozen=True)
class LocalUpdate:
    """What local training hands to the protocol: a float update or integer levels.

    ``release`` is a face-FL method's DP cluster release, the one thing sent in
    the clear (already charged to the client's ledger); None for most methods.
    """

    vector: np.ndarray | None
    levels: np.ndarray | None
    weight: int
    release: ClusterRelease | None = None


@functools.lru_cache(maxsize=4)
def target(client: int, dim: int) -> np.ndarray:
    """Client ``client``'s private optimum (deterministic; cached, read-only).

    Cached so that ``secagg bench round``, which excludes training, does not
    spend a daemon's time redrawing the same 8 MB each round.
    """
    rng = DeterministicRandomSource(f"synthetic-target-{client}")
    out = np.frombuffer(rng.random_bytes(8 * dim), "<u8") / 2.0**64 - 0.5
    out.setflags(write=False)
    return out


def exact_levels(client: int, round_: int, dim: int, levels: int) -> np.ndarray:
    """The integer input a client contributes in ``exact_levels`` mode."""
    rng = DeterministicRandomSource(f"synthetic-levels-{client}-{round_}")
    return uniform_below(rng, levels, dim)


@dataclass(frozen=True)
class SyntheticTrainer:
    """See the module docstring."""

    client: int
    rate: float = 0.5
    weight: int = 1
    exact: bool = False
    levels: int = 1 << 16

    def __call__(self, model: np.ndarray, round_: int) -> LocalUpdate:
        if self.exact:
            return LocalUpdate(
                None, exact_levels(self.client, round_, model.size, self.levels), self.weight
            )
        update = self.rate * (target(self.client, model.size) - model.astype(np.float64))
        return LocalUpdate(np.clip(update, -1.0, 1.0), None, self.weight)
