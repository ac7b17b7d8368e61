"""HE primitives (group "he"): one client's encryption, the aggregator's sum, decryption.

Small sizes so `make test` runs each once in seconds; `benchmarks/secagg_bench/he.py`
measures a full round at D = 1e6 beside NVIDIA FLARE's HE path.
"""

from __future__ import annotations

import numpy as np
import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from secagg import he
from secagg_bench.he import run

DIM = 4 * 8192
CLIENTS = 4
PROFILES = {"ckks": he.CKKS_8192, "ckks-compact": he.CKKS_8192_COMPACT, "bfv": he.BFV_8192}


@pytest.fixture(scope="module", params=sorted(PROFILES))
def keys(request: pytest.FixtureRequest) -> tuple[he.HEContext, he.HEContext]:
    params = PROFILES[request.param]
    secret = he.make_context(params)
    return secret, he.load_public(he.public_bytes(secret), params)


def _upload(ctx: he.HEContext) -> list[bytes]:
    if isinstance(ctx.params, he.CkksParams):
        return he.encrypt(ctx, np.linspace(-1, 1, DIM))
    return he.encrypt_ints(ctx, np.arange(DIM) - DIM // 2)


@pytest.mark.benchmark(group="he")
def test_encrypt(benchmark: BenchmarkFixture, keys: tuple[he.HEContext, he.HEContext]) -> None:
    blobs = benchmark(_upload, keys[0])
    assert sum(map(len, blobs)) / DIM < 8.2


@pytest.mark.benchmark(group="he")
def test_aggregate(benchmark: BenchmarkFixture, keys: tuple[he.HEContext, he.HEContext]) -> None:
    uploads = [_upload(keys[0])] * CLIENTS
    total = benchmark(he.add_all, keys[1], uploads, length=DIM)
    assert len(total) == he.chunk_count(keys[0].params, DIM)


@pytest.mark.benchmark(group="he")
def test_decrypt(benchmark: BenchmarkFixture, keys: tuple[he.HEContext, he.HEContext]) -> None:
    secret, public = keys
    total = he.add_all(public, [_upload(secret)] * CLIENTS, length=DIM)
    fn = he.decrypt if isinstance(secret.params, he.CkksParams) else he.decrypt_ints
    out = benchmark(fn, secret, total, DIM)
    assert out.shape == (DIM,)


@pytest.mark.parametrize("scheme,masked", [("ckks", False), ("bfv", False), ("bfv", True)])
def test_round_harness_smoke(scheme: str, masked: bool) -> None:
    row = run(scheme, 3, 2 * 8192 - 1, masked)  # D + 1 values fill two ciphertexts
    assert row["bytes_per_param"] < 10 and row["context_bytes"] < 256
    assert row["max_abs_error"] < (1e-6 if scheme == "ckks" else 2.0 ** -row["fraction_bits"])
