"""The three views come from a real SecAgg round: exact sum, uniform-looking masked upload."""

from __future__ import annotations

import numpy as np
import pytest

from clients.lab.audit.views import build_views, power_of_two_clip


def test_views_of_a_three_client_round() -> None:
    rng = np.random.default_rng(0)
    updates = [rng.normal(0.0, 1e-3, 2_000) for _ in range(3)]
    views = build_views(updates, seed=7)
    assert views.exact  # the unmasked total is exactly the sum of the clients' levels
    assert np.array_equal(views.individual, updates[0])
    step = 2 * power_of_two_clip(updates) / ((1 << 24) - 1)  # one quantisation level
    assert np.max(np.abs(views.total - sum(updates))) <= 3 * step / 2 + 1e-15
    # The masked upload read as an update carries nothing of client 1's update.
    assert abs(np.corrcoef(views.masked, updates[0])[0, 1]) < 0.1
    clip = power_of_two_clip(updates)  # read as levels, the masked words fill [−clip, clip]
    assert np.std(views.masked) == pytest.approx(clip / np.sqrt(3), rel=0.1)
    assert views.chi2_p_masked > 1e-3
    assert views.chi2_p_plain < 1e-9


def test_power_of_two_clip_covers_every_coordinate() -> None:
    assert power_of_two_clip([np.array([0.3, -0.7]), np.array([0.1])]) == 1.0
    assert power_of_two_clip([np.array([3e-3])]) == pytest.approx(2**-8)
    assert power_of_two_clip([np.zeros(3)]) == 1.0


def test_a_sum_needs_two_clients() -> None:
    with pytest.raises(ValueError, match="at least 2 clients"):
        build_views([np.zeros(10)], seed=0)
