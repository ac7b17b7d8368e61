"""`secagg bench suite`: the CI-sized sweep writes every output, skips are recorded, peers map."""

from __future__ import annotations

import csv
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from secagg.cli import main
from secagg.errors import ParameterError
from secagg_bench import mask as bench_mask
from secagg_bench import peers as bench_peers
from secagg_bench import report as bench_report
from secagg_bench import suite as bench_suite

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOT_FILES = [name for name, *_ in bench_report.PLOTS]


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One `secagg bench suite --quick --json` run shared by the tests below."""
    out = tmp_path_factory.mktemp("suite")
    capture = tmp_path_factory.mktemp("stdout") / "stdout.json"
    real_stdout = sys.stdout
    with capture.open("w") as fh:
        sys.stdout = fh
        try:
            code = main(["bench", "suite", "--quick", "--out", str(out), "--json"])
        finally:
            sys.stdout = real_stdout
    assert code == 0
    return out, json.loads(capture.read_text())


def test_quick_suite_measures_every_cell(quick: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick
    rows = doc["rows"]
    expected = {
        (m, n, d)
        for m in bench_suite.MODES
        for n in bench_suite.QUICK_CLIENTS
        for d in bench_suite.QUICK_DIMS
    }
    assert {(r["mode"], r["clients"], r["dim"]) for r in rows} == expected
    for r in rows:
        assert r["status"] == "ok", r
        assert r["client_s"] > 0 and r["server_s"] > 0
        assert r["bytes_per_param"] == pytest.approx(r["bytes_up_per_client"] / r["dim"])
        assert r["expansion_vs_fp32"] == pytest.approx(r["bytes_up_per_client"] / (4 * r["dim"]))
    by = {(r["mode"], r["clients"], r["dim"]): r for r in rows}
    n, d = max(bench_suite.QUICK_CLIENTS), max(bench_suite.QUICK_DIMS)
    # Masked uploads pack 16-bit levels, below the fp32 baseline; ciphertexts are larger.
    assert by[("secagg", n, d)]["bytes_up_per_client"] < by[("plain", n, d)]["bytes_up_per_client"]
    assert by[("ckks", n, d)]["expansion_vs_fp32"] > 2
    assert by[("plain", n, d)]["expansion_vs_fp32"] == pytest.approx(1.0, abs=0.01)
    assert by[("secagg", n, d)]["degree"] == n - 1
    # The hybrid round runs for real: its decrypted mean is within the quantisation error.
    hybrid = by[("bfv-masked", n, d)]
    assert hybrid["raw"]["exact_sum"] is True and 0 < hybrid["max_abs_error"] < 1e-3


def test_quick_suite_writes_csv_json_table_and_plots(quick: tuple[Path, dict[str, Any]]) -> None:
    out, doc = quick
    assert json.loads((out / "results.json").read_text())["rows"] == doc["rows"]
    with (out / "results.csv").open() as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == bench_report.COLUMNS
        lines = list(reader)
    assert len(lines) == len(doc["rows"])
    for line, row in zip(lines, doc["rows"], strict=True):
        assert line["mode"] == row["mode"] and float(line["server_s"]) == row["server_s"]
    table = (out / "table.md").read_text()
    assert doc["command"] in table
    for r in doc["rows"]:
        assert f"| {bench_report.dim_label(r['dim'])} | {r['clients']} | {r['mode']} |" in table
    for name in PLOT_FILES:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000, name
    assert sorted(doc["outputs"]) == sorted(["table.md", *PLOT_FILES])


def test_cells_over_the_limits_are_recorded_not_dropped(tmp_path: Path) -> None:
    options = bench_suite.SuiteOptions(
        out=tmp_path,
        clients=(3,),
        dims=(100, 200),
        modes=("plain", "secagg"),
        max_cell_s=1e-9,
        calibrate_s=0,
    )
    doc = bench_suite.run(options, progress=lambda _: None)
    assert len(doc["rows"]) == 4
    assert all(r["status"] == "skipped" and "--max-cell-s" in r["reason"] for r in doc["rows"])
    table = (tmp_path / "table.md").read_text()
    assert table.count("| skipped |") == 4
    for name in PLOT_FILES:
        assert (tmp_path / name).read_bytes().startswith(PNG_SIGNATURE)


def test_total_time_limit_skips_cells_and_cheapest_run_first(tmp_path: Path) -> None:
    options = bench_suite.SuiteOptions(
        out=tmp_path,
        clients=(3, 40),
        dims=(100,),
        modes=("plain", "secagg"),
        max_total_s=1e-6,
        calibrate_s=0,
    )
    order = [bench_suite.estimate(c, options).seconds for c in bench_suite.plan(options)]
    assert order == sorted(order) and len(order) == 4
    doc = bench_suite.run(options, progress=lambda _: None)
    assert all("--max-total-s" in r["reason"] for r in doc["rows"])


def test_an_interrupted_sweep_still_writes_every_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bench_suite.run_cell
    calls: list[bench_suite.Cell] = []

    def stop_at_the_second(cell: bench_suite.Cell, *args: Any, **kwargs: Any) -> Any:
        calls.append(cell)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(cell, *args, **kwargs)

    monkeypatch.setattr(bench_suite, "run_cell", stop_at_the_second)
    options = bench_suite.SuiteOptions(
        out=tmp_path, clients=(3,), dims=(100,), modes=("plain", "secagg", "ckks"), calibrate_s=0
    )
    doc = bench_suite.run(options, progress=lambda _: None)
    assert doc["interrupted"] and [r["status"] for r in doc["rows"]] == ["ok", "skipped", "skipped"]
    assert "interrupted" in doc["rows"][1]["reason"]
    assert "Interrupted" in (tmp_path / "table.md").read_text()
    assert all((tmp_path / name).exists() for name in PLOT_FILES)


def test_peers_absent_are_skipped_with_the_reason(tmp_path: Path) -> None:
    options = bench_suite.SuiteOptions(
        out=tmp_path,
        clients=(3,),
        dims=(100,),
        modes=("plain", "secagg+", "ckks"),
        peers=True,
        peers_python=tmp_path / "no-venv" / "python",
        peers_dir=tmp_path,  # harnesses present (any folder), their venv not
        calibrate_s=0,
    )
    doc = bench_suite.run(options, progress=lambda _: None)
    peers = [r for r in doc["rows"] if r["system"] != "secagg"]
    assert {(r["system"], r["mode"]) for r in peers} == {("flower", "secagg+"), ("nvflare", "ckks")}
    assert all(r["status"] == "skipped" and "peer environment absent" in r["reason"] for r in peers)
    assert all("run `make peers`" in r["reason"] for r in peers)
    assert all(r["status"] == "ok" for r in doc["rows"] if r["system"] == "secagg")


def test_peers_default_to_the_checkout() -> None:
    """The harnesses ship in the repo; the venv is the one `make peers` builds beside them."""
    root = bench_peers.checkout_root()
    assert bench_peers.DEFAULT_PEERS_DIR == root / "benchmarks" / "peers"
    assert bench_peers.DEFAULT_PEERS_PYTHON == root / ".peers-venv" / "bin" / "python"
    for _, script, _ in bench_peers.PEER_OF_MODE.values():
        assert (bench_peers.DEFAULT_PEERS_DIR / script).is_file()
    assert "make peers" in (root / "Makefile").read_text()


def test_checkout_root_falls_back_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installed as a wheel (no benchmarks/peers beside the package) it looks where it runs."""
    site = tmp_path / "site-packages" / "secagg_bench"
    site.mkdir(parents=True)
    monkeypatch.setattr(bench_peers, "__file__", str(site / "peers.py"))
    assert bench_peers.checkout_root(tmp_path / "repo") == (tmp_path / "repo").resolve()


def _fake_harness(folder: Path, body: str) -> Path:
    folder.mkdir()
    (folder / "flower_secaggplus_bench.py").write_text(textwrap.dedent(body))
    return folder


def test_peer_harness_line_becomes_a_row(tmp_path: Path) -> None:
    scripts = _fake_harness(
        tmp_path / "peers",
        """
        import json, sys
        a = sys.argv
        d, n = int(a[a.index("--d") + 1]), int(a[a.index("--N") + 1])
        print("progress", file=sys.stderr)
        print(json.dumps({"peer": "flwr", "version": "x", "graph": a[a.index("--graph") + 1],
            "d": d, "N": n, "k": 4, "threshold": 3, "dropouts": n // 10,
            "client_mask_s": 0.25, "server_total_s": 1.5,
            "bytes_up_total_per_client": 8 * d + 17, "max_abs_err": 1e-6}))
        """,
    )
    env = bench_peers.PeerEnv(Path(sys.executable), scripts)
    assert env.missing is None
    result = bench_peers.run_cell(env, "secagg+", 20, 1000, dropout=0.1, distinct=2, timeout_s=60)
    fields = result["fields"]
    assert result["raw"]["graph"] == "sparse" and "--dropout" in result["argv"]
    assert fields["system"] == "flower" and fields["degree"] == 4
    assert (fields["client_s"], fields["server_s"]) == (0.25, 1.5)
    assert fields["bytes_up_per_client"] == 8017 and fields["dropout"] == pytest.approx(0.1)


def test_failing_peer_harness_reports_its_stderr(tmp_path: Path) -> None:
    scripts = _fake_harness(
        tmp_path / "peers", "import sys\nprint('KeyError: 7', file=sys.stderr)\nsys.exit(3)\n"
    )
    env = bench_peers.PeerEnv(Path(sys.executable), scripts)
    with pytest.raises(RuntimeError, match=r"exited 3: KeyError: 7"):
        bench_peers.run_cell(env, "secagg", 10, 100, dropout=0.1, distinct=2, timeout_s=60)


def test_lists_and_options_are_checked() -> None:
    assert bench_suite.parse_list("1e5, 1e6,10", name="--dims") == (100_000, 1_000_000, 10)
    for bad in ("1.5", "abc", "0", ""):
        with pytest.raises(ParameterError):
            bench_suite.parse_list(bad, name="--dims")
    with pytest.raises(ParameterError, match="unknown mode"):
        bench_suite.SuiteOptions(out=Path("x"), modes=("secagg", "paillier"))
    with pytest.raises(ParameterError, match="dropout"):
        bench_suite.SuiteOptions(out=Path("x"), dropout=0.7)


def test_plan_estimates_grow_with_n_and_d(tmp_path: Path) -> None:
    options = bench_suite.SuiteOptions(
        out=tmp_path, clients=(10, 100), dims=(1000, 100_000), calibrate_s=0
    )
    est = {
        (c["mode"], c["clients"], c["dim"]): c["estimate_s"]
        for c in bench_suite.describe_plan(options)
    }
    for mode in bench_suite.MODES:
        assert est[(mode, 100, 1000)] > est[(mode, 10, 1000)]
        assert est[(mode, 10, 100_000)] > est[(mode, 10, 1000)]
    # The complete graph costs more than the sparse one once SecAgg+ is sparse.
    assert est[("secagg", 100, 100_000)] > est[("secagg+", 100, 100_000)]


def test_bench_mask_run_keeps_its_output_and_measure_adds_the_server_total() -> None:
    kwargs: dict[str, Any] = {"clients": 4, "dim": 50}
    full = bench_mask.measure(**kwargs)
    plain = bench_mask.run(**kwargs)
    assert set(full) - set(plain) == set(bench_mask.EXTRA_KEYS)
    assert full["server_total_s"] >= full["server_unmask_s"] > 0


_PEER_VENV = bench_peers.PeerEnv(bench_peers.DEFAULT_PEERS_PYTHON, bench_peers.DEFAULT_PEERS_DIR)


@pytest.mark.slow
@pytest.mark.skipif(_PEER_VENV.missing is not None, reason=f"{_PEER_VENV.missing}")
def test_real_peer_cell_runs_beside_ours(tmp_path: Path) -> None:
    """One tiny Flower SecAgg+ cell in the `make peers` venv, through the suite."""
    options = bench_suite.SuiteOptions(
        out=tmp_path, clients=(5,), dims=(1000,), modes=("secagg+",), peers=True, calibrate_s=0
    )
    doc = bench_suite.run(options, progress=lambda _: None)
    flower = next(r for r in doc["rows"] if r["system"] == "flower")
    assert flower["status"] == "ok", flower["reason"]
    assert flower["raw"]["version"] == "1.42.0" and flower["raw"]["d"] == 1000
    assert flower["client_s"] > 0 and flower["server_s"] > 0
    assert flower["bytes_up_per_client"] > 4 * 1000  # Flower uploads int64 words, more than fp32
    assert flower["max_abs_error"] < 1e-3
