"""Round parameters no round could run with are refused at start (issue 15, item 5)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from aggregator.preflight import check_round_parameters
from aggregator.settings import AggregatorSettings
from clients.lab.cluster import CLI, child_env
from secagg.errors import ParameterError

BASE: dict[str, object] = {"insecure": True, "profile": "semi-honest"}


def settings(**extra: object) -> AggregatorSettings:
    return AggregatorSettings(**{**BASE, **extra})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("extra", "roster", "reason"),
    [
        ({"threshold": 5}, 4, "above the cohort of 4"),
        ({"threshold": 3, "min_clients": 2}, 4, "above the cohort of 2"),
        ({"min_clients": 6}, 4, "roster holds only 4"),
        ({"threshold": 1}, 4, "below this client's safe minimum"),  # any client refuses it
        ({"degree": 2, "threshold": 4}, 8, r"degree \+ 1 = 3 holders"),
        ({"profile": "active", "threshold": 2}, 4, "below this client's safe minimum"),
    ],
)
def test_refused_naming_the_reason(extra: dict[str, object], roster: int, reason: str) -> None:
    with pytest.raises(ParameterError, match=reason):
        check_round_parameters(settings(**extra), roster)


def test_a_threshold_only_low_n_c_clients_accept_is_a_warning() -> None:
    # n = 7: the default policy assumes n_C = 2 and needs t ≥ 4 semi-honest; with n_C = 0, 2.
    warnings = check_round_parameters(settings(threshold=3), 7)
    assert len(warnings) == 1 and "default policy" in warnings[0]
    assert "threshold 3" in warnings[0]


@pytest.mark.parametrize(
    "extra",
    [{}, {"threshold": 4}, {"profile": "active"}, {"degree": 2}, {"profile": "plain"}],
)
def test_defaults_and_safe_choices_pass_silently(extra: dict[str, object]) -> None:
    assert check_round_parameters(settings(**extra), 4 if not extra.get("degree") else 8) == []


def test_the_cli_refuses_a_threshold_above_the_roster(tmp_path: Path) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(
        '[aggregator]\nlisten = "127.0.0.1:0"\nstate_dir = "state"\ninsecure = true\n'
        'profile = "semi-honest"\nthreshold = 9\n'
    )
    proc = subprocess.run(
        [*CLI, "aggregator", "serve", "--config", str(config), "--clients", "4"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "threshold = 9" in lines[0], proc.stderr
    assert not (tmp_path / "state").exists()
