"""The mode registry: every entry builds, runs a tiny round through the one runner, and
sums right; the hosts' choices are the registry's names; unknown modes get a clear error."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from protocol import modes
from protocol.build import make_config
from protocol.he_messages import HEConfig, HEMaskedConfig
from protocol.policy import MODES, SAFE_MODES, ClientPolicy
from protocol.runner import run_round
from secagg.errors import ParameterError
from secagg.quantization import Quantizer
from secagg.rng import DeterministicRandomSource, uniform_below

N, DIM = 4, 6


def _inputs(config: object) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, int]]:
    rng = DeterministicRandomSource(b"test-modes")
    levels_count = int(config.levels)
    levels = {c: uniform_below(rng, levels_count, DIM) for c in range(1, N + 1)}
    vectors = {c: (rng_vec(rng) * 2 - 1) for c in range(1, N + 1)}
    weights = {c: 1 for c in range(1, N + 1)}
    return levels, vectors, weights


def rng_vec(rng: DeterministicRandomSource) -> np.ndarray:
    return np.frombuffer(rng.random_bytes(8 * DIM), "<u8") / 2.0**64


@pytest.mark.parametrize("name", modes.names())
def test_every_mode_builds_and_runs_a_round_with_the_right_sum(name: str) -> None:
    entry = modes.mode(name)
    config = entry.build(clients=N, dim=DIM, seed=b"modes")
    assert isinstance(config, entry.config_type)
    assert modes.mode_of_config(config) is entry
    levels, vectors, weights = _inputs(config)
    floats = name in ("plain", "ckks")  # these take float updates
    report = run_round(
        name,
        config,
        levels=None if floats else levels,
        vectors=vectors if floats or name == "bfv" else None,
        weights=weights,
        seed=7,
    )
    assert report.completed, report.abort_reason
    assert report.mode == name
    assert report.survivors == tuple(range(1, N + 1))
    assert report.mean is not None and report.mean.shape == (DIM,)
    if floats or name == "bfv":
        expected = np.mean([np.clip(v, -1, 1) for v in vectors.values()], axis=0)
        # float32 (plain), CKKS precision, or one quantisation level (BFV, stochastic rounding)
        step = Quantizer(config.clip, config.levels).step
        tolerance = step if name == "bfv" else 1e-4
        assert np.max(np.abs(report.mean - expected)) < tolerance
    else:
        assert report.exact is True  # the unmasked / decrypted integer sum equals Σ levels
    assert report.upload_bytes > 0


def test_the_runner_infers_the_mode_from_the_config_and_refuses_a_mismatch() -> None:
    config = make_config(clients=N, dim=DIM)
    assert run_round(None, config, seed=1).mode == "secagg"
    with pytest.raises(ParameterError, match="runs a HEConfig"):
        run_round("ckks", config)


def test_drops_follow_each_runner_s_convention() -> None:
    config = modes.build_config("plain", clients=N, dim=DIM)
    vectors = {c: np.zeros(DIM) for c in config.clients}
    report = run_round("plain", config, vectors=vectors, drops={"masked": [2]})
    assert report.completed and report.survivors == (1, 3, 4)
    with pytest.raises(ParameterError, match="not a count"):
        run_round("plain", config, vectors=vectors, drops={"masked": 1})
    with pytest.raises(ParameterError, match="drops at one of"):
        run_round("plain", config, vectors=vectors, drops={"share": [1]})
    secagg = modes.build_config("secagg", clients=6, dim=DIM)  # t = 5: one may drop
    dropped = run_round("secagg", secagg, drops={"masked": 1}, seed=3)
    assert dropped.completed and len(dropped.survivors) == 5 and dropped.exact
    with pytest.raises(ParameterError, match="count of drops"):
        run_round("secagg", secagg, drops={"masked": [2]})


def test_an_unknown_mode_names_the_known_ones() -> None:
    with pytest.raises(ParameterError) as err:
        modes.mode("sekagg")
    for name in MODES:
        assert name in str(err.value)
    with pytest.raises(ParameterError, match="unknown host"):
        modes.names(host="nowhere")


def test_mask_is_an_alias_of_secagg() -> None:
    assert modes.mode("mask") is modes.mode("secagg")
    assert "mask" not in modes.names()


def test_the_registry_agrees_with_the_policy_and_the_wire() -> None:
    from secagg_pb.v1 import secagg_pb2

    assert modes.names() == MODES
    for entry in modes.REGISTRY:
        assert entry.policy.opt_in == (entry.name not in SAFE_MODES)
        assert (entry.policy.warning is not None) == entry.policy.opt_in
        # The default policy refuses exactly the opt-ins; opting in admits them.
        profile = entry.policy.profiles[0] if entry.policy.profiles else None
        refused = entry.policy_problem(ClientPolicy(), profile)
        assert (refused is not None) == entry.policy.opt_in
        assert entry.policy_problem(ClientPolicy().with_opt_in(entry.name), profile) is None
        for message in (entry.wire.start, entry.wire.config, entry.wire.upload):
            assert hasattr(secagg_pb2, message), message
    assert modes.opt_ins() == ("plain", "ckks", "bfv")
    assert isinstance(modes.build_config("bfv-masked", clients=3, dim=2), HEMaskedConfig)
    assert isinstance(modes.build_config("bfv", clients=3, dim=2), HEConfig)


def _choices(parser: argparse.ArgumentParser, *path: str, option: str) -> tuple[str, ...]:
    for step in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[step]
    action = next(a for a in parser._actions if option in a.option_strings)
    assert action.choices is not None
    return tuple(action.choices)


def _parser(register: object) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))  # type: ignore[operator]
    return parser


def test_the_cli_choices_are_the_registry_names() -> None:
    from clients.commands import register as register_client
    from clients.lab.commands import register as register_lab
    from secagg_bench.commands import register as register_bench

    lab = _parser(register_lab)
    assert _choices(lab, "simulate", option="--mode") == (*modes.names("simulate"), "mask")
    assert _choices(lab, "experiment", option="--mode") == modes.names("experiment")
    assert _choices(lab, "demo", option="--mode") == modes.names("demo")
    bench = _parser(register_bench)
    assert _choices(bench, "bench", "round", option="--mode") == modes.names("bench-round")
    client = _parser(register_client)
    allow = _choices(client, "client", "run", option="--allow")
    assert allow == (*modes.opt_ins(), "semi-honest")


def test_the_settings_and_the_suite_read_the_registry() -> None:
    from aggregator.settings import MODES as SERVICE_MODES
    from secagg_bench.suite import MODES as SUITE_MODES

    assert modes.names("service") == SERVICE_MODES
    assert modes.names("suite") == SUITE_MODES


def test_every_mode_has_a_plot_style() -> None:
    from secagg_bench.report import COLOURS, MARKERS

    assert set(COLOURS) == set(modes.names()) == set(MARKERS)


def _simulate_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    import json

    from secagg.cli import main

    code = main(["simulate", "--clients", "5", "--dim", "8", "--json", *argv])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    out.pop("timings_s", None)
    out.pop("seconds", None)
    return dict(out)


def test_simulate_mask_is_secagg_with_the_same_output(capsys: pytest.CaptureFixture[str]) -> None:
    mask = _simulate_json(capsys, "--mode", "mask", "--drop", "masked:1")
    assert mask == _simulate_json(capsys, "--mode", "secagg", "--drop", "masked:1")
    assert mask["exact_sum"] is True and mask["graph"] == "complete"
    sparse = _simulate_json(capsys, "--mode", "secagg+", "--clients", "8")
    assert sparse["graph"] == "harary" and sparse["exact_sum"] is True


def test_simulate_runs_the_plain_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    plain = _simulate_json(capsys, "--mode", "plain", "--drop-uploads", "1")
    assert plain["completed"] is True and plain["contributors"] == [1, 2, 3, 4]
    error = plain["max_abs_error_vs_weighted_mean"]
    assert isinstance(error, float) and error < 1e-6  # float32 in the clear
