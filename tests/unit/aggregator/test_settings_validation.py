"""Every aggregator setting is type-checked, finite and in range at start (issue 15, item 4).

One table over every field of AggregatorSettings: each bad value must be
refused with a ParameterError whose message names the key. The table must
cover every field, so a new setting cannot slip in unchecked. A real CLI
process shows the operator's view: one line naming the key, exit status 2,
nothing served.
"""

from __future__ import annotations

import math
import subprocess
from dataclasses import fields
from pathlib import Path

import pytest

from aggregator.settings import AggregatorSettings, load_settings
from clients.lab.cluster import CLI, child_env
from secagg.errors import ParameterError

NAN, INF = math.nan, math.inf
BASE: dict[str, object] = {"insecure": True, "profile": "semi-honest"}

# Per setting: values that must be refused. Strings for booleans and numbers, booleans
# for numbers, floats for integers, NaN and infinities, out-of-range values.
BAD: dict[str, list[object]] = {
    "listen": [1, "127.0.0.1:99999", "127.0.0.1", ":50051", "host:port", "127.0.0.1:-1"],
    "pki_dir": [0, False],
    "insecure": ["false", "true", 0, 1],
    "state_dir": [1, None],
    "rounds": [True, 0, -1, 1.0, "5", NAN],
    "dim": [0, -5, 1e12, 10**12, True, "1000"],
    "initial_model": [0],
    "min_clients": [-1, 1.5, True],
    "threshold": [-1, 2.0, False],
    "degree": [-2, 1, 3, 1.0, True],
    "profile": ["malicious", 1, True],
    "mode": ["he", 0],
    "clip": [0, -1.0, NAN, INF, "1", True],
    "levels": [1, 0, -3, 65536.0, True],
    "max_weight": [0, -1, 1.0, True],
    "learning_rate": [NAN, INF, -INF, 0, -1.0, "1", True],
    "phase_timeout_s": [NAN, INF, 0, -1, 1e300, "30", False],
    "dp_noise_multiplier": [NAN, INF, -0.5, "0", True],
    "dp_clip": [NAN, 0, -1, INF, True],
    "dp_colluders": [-2, 1.0, True],
    "method": [0, "fedgc-reference", "nope"],
    "embedding_dim": [-1, 1.5, True],
    "dplc_clusters": [-1, 2.0, True],
    "train_timeout_s": [NAN, -1, INF, "0"],
    "start_timeout_s": [NAN, -1, INF],
    "join_window_s": [NAN, -1, INF, "3", True],
    "retry_delay_s": [NAN, -1, INF],
    "poll_wait_s": [NAN, 0, -1, INF, 1e9],
    "max_workers": [0, -1, 64.0, True, 10**9],
    "rate_limit_per_s": [NAN, INF, -1, "200", True],
    "rate_limit_burst": [-1, 400.0, True],
    "max_inflight_per_client": [-1, 8.0, True],
    "upload_bytes_per_s": [NAN, INF, -1, True],
    "stream_idle_timeout_s": [NAN, -1, INF, "10"],
    "stream_timeout_s": [NAN, -1, INF, True],
    "max_uploads_per_client": [-1, 2.0, True],
    "max_uploads": [-1, 65, 8.0, True],  # 65 > max_workers = 64
    "allow_insecure_remote": ["false", 0, 1],
    "malloc_arenas": [-1, 2.0, True],
    "synchronous": ["OFF", "normal", 1],
    "keep_rounds": [-1, 10.0, True],
    "keep_checkpoints": [-1, 5.0, True],
    "operator_listen": [9464, "127.0.0.1:70000", "localhost"],
}
CASES = [(key, value) for key, values in BAD.items() for value in values]


def test_the_table_covers_every_setting() -> None:
    assert set(BAD) == {f.name for f in fields(AggregatorSettings)}


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_bad_value_is_refused_naming_its_key(key: str, value: object) -> None:
    with pytest.raises(ParameterError) as refused:
        AggregatorSettings(**{**BASE, key: value})  # type: ignore[arg-type]
    assert key in str(refused.value)


@pytest.mark.parametrize(
    "extra",
    [
        {"rate_limit_per_s": 10.0, "rate_limit_burst": 0},
        {"insecure": False, "allow_insecure_remote": True, "pki_dir": "pki"},
    ],
)
def test_cross_field_rules(extra: dict[str, object]) -> None:
    with pytest.raises(ParameterError):
        AggregatorSettings(**{**BASE, **extra})  # type: ignore[arg-type]


def test_good_values_still_pass() -> None:
    settings = AggregatorSettings(
        **BASE,  # type: ignore[arg-type]
        phase_timeout_s=8,  # an integer where a float is declared is fine
        operator_listen="127.0.0.1:0",
        rate_limit_per_s=0,
        rate_limit_burst=0,
        learning_rate=0.5,
    )
    assert settings.phase_timeout_s == 8


def test_config_file_errors_are_one_message(tmp_path: Path) -> None:
    with pytest.raises(ParameterError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[aggregator\nrounds = 1\n")
    with pytest.raises(ParameterError, match="not valid TOML"):
        load_settings(broken)
    nan = tmp_path / "nan.toml"
    nan.write_text('[aggregator]\ninsecure = true\nprofile = "semi-honest"\npoll_wait_s = nan\n')
    with pytest.raises(ParameterError, match="poll_wait_s"):
        load_settings(nan)


@pytest.mark.parametrize(
    ("line", "key"),
    [('insecure = "false"', "insecure"), ("learning_rate = nan", "learning_rate")],
)
def test_the_cli_refuses_at_start_with_one_line(tmp_path: Path, line: str, key: str) -> None:
    config = tmp_path / "aggregator.toml"
    config.write_text(
        f'[aggregator]\nlisten = "127.0.0.1:0"\nstate_dir = "state"\npki_dir = "pki"\n{line}\n'
    )
    proc = subprocess.run(
        [*CLI, "aggregator", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], proc.stderr
    assert "listening" not in proc.stdout
    assert not (tmp_path / "state").exists()
