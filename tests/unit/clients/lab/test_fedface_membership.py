"""Membership inference from FedFace's broadcast S: open without noise, closed with it.

The attack (clients/lab/audit/moment_membership.py) scores a candidate face
ŵ by ŵᵀ(S − what the attacker knows)ŵ. 30 identities (10 clients × 3),
d = 128, fixed seeds; each AUC pools ≥ 600 enrolled and 600 absent faces,
so its standard error is about 0.02 and the 0.6 bound sits well clear of
the measured values (0.50–0.55 with noise).
"""

from __future__ import annotations

import numpy as np

from clients.lab.audit.moment_membership import MembershipSetting, auc, membership_auc


def test_the_auc_counts_pairs_and_ties() -> None:
    assert auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert auc(np.array([1.0]), np.array([1.0])) == 0.5


def test_noise_free_s_gives_membership_away() -> None:
    assert membership_auc(MembershipSetting(epsilon=None, colluding=False)) == 1.0


def test_identities_far_above_d_do_not_close_the_test_without_noise() -> None:
    """Why the client adds noise rather than only asking for identities ≫ d: 4d = 512."""
    setting = MembershipSetting(
        epsilon=None, clients=128, identities_per_client=4, colluding=False, trials=60
    )
    assert membership_auc(setting) > 0.95


def test_default_noise_leaves_the_attack_near_chance_even_with_colluders() -> None:
    # Every client but the victim colludes: only the victim's own noise stands.
    assert membership_auc(MembershipSetting(trials=200)) <= 0.6
    assert membership_auc(MembershipSetting(colluding=False, trials=200), seed=1) <= 0.6


def test_default_noise_holds_over_the_whole_budget_averaged() -> None:
    """The worst case the ledger allows: all 10 releases of unchanged rows, averaged."""
    assert membership_auc(MembershipSetting(observed=10, trials=200), seed=2) <= 0.6


def test_a_large_epsilon_does_not_close_it() -> None:
    """Guard that the noise is what closes the test (ε = 64 over 10 releases)."""
    assert membership_auc(MembershipSetting(epsilon=64.0, trials=200), seed=3) > 0.8
