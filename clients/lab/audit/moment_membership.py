"""Membership inference against FedFace's broadcast second moment S (issue 14, item 8).

Every client receives S = Σ_k S_k, S_k = Σ ŵŵᵀ over client k's class
embeddings. A client holding a candidate face embedding ŵ (unit norm) scores
it with ŵᵀ(S − R)ŵ, R being every contribution it knows (its own; in the
colluding case every client's but the victim's): an enrolled ŵ adds
(ŵᵀŵ)² = 1 to the score, each other identity only (ŵ·ŵ_j)² ≈ 1/d. So noise-free
S gives the test away at 30 identities and d = 128 (AUC 1), and still at
identities ≫ d (4d identities: AUC ≈ 0.99), since the others' part only
grows like √n/d. The Gaussian noise each client adds to its S_k
(:class:`clients.training.methods.MomentLedger`) adds N(0, σ²) per noisy
contribution to the score, which is what closes the test.

Pure numpy over random unit embeddings; :func:`membership_auc` is the
whole experiment, seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.training.methods import MomentLedger


@dataclass(frozen=True)
class MembershipSetting:
    """The federation and the attacker's knowledge in one experiment."""

    clients: int = 10
    identities_per_client: int = 3
    dim: int = 128
    #: ε of each client's S_k budget (δ = 1e-5, over ``releases``); None: S without noise.
    epsilon: float | None = 1.0
    releases: int = 10
    #: True: every client but the victim colludes with the attacker (only the
    #: victim's own noise is left, the DP guarantee's setting); False: the
    #: attacker is one client and knows only its own contribution.
    colluding: bool = True
    #: Releases of the same rows the attacker averages (at most ``releases``): the
    #: worst case of a whole budget spent while the rows stand still.
    observed: int = 1
    trials: int = 300


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d))
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def scores(moment: np.ndarray, known: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """The attack: ŵᵀ(S − known)ŵ for each candidate row ŵ."""
    rest = moment - known
    result: np.ndarray = np.einsum("ij,jk,ik->i", candidates, rest, candidates)
    return result


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of an enrolled face > score of a non-enrolled one), ties counted half."""
    ordered = np.sort(negative)
    below = np.searchsorted(ordered, positive, side="left")
    up_to = np.searchsorted(ordered, positive, side="right")
    return float((below + 0.5 * (up_to - below)).sum() / (positive.size * negative.size))


def membership_auc(setting: MembershipSetting, *, seed: int = 0) -> float:
    """The attack's AUC over ``trials`` fresh federations (victim = client 1, attacker = 0).

    Each trial: every client releases S_k (noisy through its own
    :class:`MomentLedger` unless ``epsilon`` is None; ``observed`` releases
    averaged, which a ledger allows up to ``releases``); the attacker scores
    the victim's enrolled embeddings and as many fresh, non-enrolled ones.
    """
    rng = np.random.default_rng(seed)
    k, m, d = setting.clients, setting.identities_per_client, setting.dim
    enrolled_scores, absent_scores = [], []
    for _ in range(setting.trials):
        rows = [_unit(rng, m, d) for _ in range(k)]
        released = []
        for index, client_rows in enumerate(rows):
            exact = client_rows.T @ client_rows
            # Colluders hand the attacker their exact contribution, so their noise is moot.
            if setting.epsilon is None or (setting.colluding and index != 1):
                released.append(exact)
            else:  # this client's ledger and private randomness, `observed` releases averaged
                ledger = MomentLedger(setting.epsilon, 1e-5, budget=setting.releases, noise=rng)
                runs = [ledger.release(exact) for _ in range(setting.observed)]
                released.append(np.mean(runs, axis=0))
        moment = np.sum(released, axis=0)  # the secure sum every client receives
        if setting.colluding:
            known = moment - released[1]  # everything but the victim's contribution
        else:
            known = released[0]  # the attacker's own contribution only
        enrolled_scores.append(scores(moment, known, rows[1]))
        absent_scores.append(scores(moment, known, _unit(rng, m, d)))
    return auc(np.concatenate(enrolled_scores), np.concatenate(absent_scores))
