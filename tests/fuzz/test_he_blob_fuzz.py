"""T31: byte fuzzing of the ciphertext pre-validator, with TenSEAL parsing in a subprocess.

atheris is not installed, so Hypothesis drives the mutations: bit flips, byte
overwrites, truncation, extension and header rewrites of real ciphertexts
(fresh and summed, BFV and CKKS), plus raw (uncompressed) SEAL bodies that
start with a valid parameter hash and continue with random bytes. Every blob
goes through ``check_blob`` here; those it lets through are loaded by
TenSEAL in a worker process (``he_blob_worker.py``), so a crash in SEAL's C++
cannot take the test runner down. Pass criteria (security.md T31): no crash,
no load over 1 s, and no exception other than InvalidCiphertext anywhere. A
failing blob is written to the pytest temporary directory and named in the
failure.
"""

from __future__ import annotations

import json
import os
import selectors
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secagg import he
from secagg.he.validate import SEAL_HEADER, SEAL_MAGIC, check_blob
from secagg.rng import DeterministicRandomSource

ROOT = Path(__file__).resolve().parents[2]
SCHEMES = {0: he.BFV_8192, 1: he.CKKS_8192}
REPLY_TIMEOUT_S = 10.0  # a hang; the load itself must stay under MAX_LOAD_S
MAX_LOAD_S = 1.0


class Worker:
    """The TenSEAL worker process; restarted after a crash or a hang."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self._start()

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "fuzz" / "he_blob_worker.py")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            cwd=ROOT,
        )
        ready = self._reply(timeout=60.0)
        assert ready == {"ready": True}, ready

    def _reply(self, timeout: float) -> dict[str, object] | None:
        assert self.proc is not None and self.proc.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        events = selector.select(timeout)
        selector.close()
        if not events:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None

    def load(self, scheme: int, fresh: bool, blob: bytes) -> dict[str, object]:
        """The worker's verdict, or {"outcome": "crash" | "hang"}."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(struct.pack(">IBB", len(blob), scheme, int(fresh)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        reply = self._reply(REPLY_TIMEOUT_S)
        if reply is None:
            hung = self.proc.poll() is None
            self.close()
            self._start()
            return {"outcome": "hang" if hung else "crash", "returncode": self.proc.returncode}
        return reply

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


@dataclass(frozen=True)
class Seed:
    scheme: int
    fresh: bool
    blob: bytes


def make_seeds() -> list[Seed]:
    seeds = []
    for scheme, params in SCHEMES.items():
        ctx = he.make_context(params)
        public = he.load_public(he.public_bytes(ctx), params)
        n = params.poly_degree
        if isinstance(params, he.CkksParams):
            fresh = he.encrypt(ctx, np.linspace(-1, 1, n))
        else:
            fresh = he.encrypt_ints(ctx, np.arange(n) - n // 2)
        summed = he.add_all(public, [fresh, fresh], length=n)
        seeds += [Seed(scheme, True, fresh[0]), Seed(scheme, False, summed[0])]
    return seeds


SEEDS = make_seeds()
PARMS_IDS = {
    k: b"".join(v.to_bytes(8, "little") for v in he.make_context(p).engine.parms_id)
    for k, p in SCHEMES.items()
}


def set_header(blob: bytearray, *, compr: int | None = None, size: int | None = None) -> None:
    magic, hsize, major, minor, old_compr, reserved, _ = SEAL_HEADER.unpack_from(blob)
    SEAL_HEADER.pack_into(
        blob, 0, magic, hsize, major, minor, old_compr if compr is None else compr, reserved,
        len(blob) if size is None else size,
    )  # fmt: skip


#: Mutations, in-place ones twice as likely (they keep the length the pre-validator expects).
OPS = ("flip", "flip", "byte", "byte", "truncate", "extend", "compr")


@st.composite
def mutated(draw: st.DrawFn) -> Seed:
    """A real ciphertext with 1–8 mutations; the header's size usually kept consistent."""
    seed = draw(st.sampled_from(SEEDS), label="seed")
    blob = bytearray(seed.blob)
    for _ in range(draw(st.integers(1, 8), label="mutations")):
        op = draw(st.sampled_from(OPS), label="op")
        pos = draw(st.integers(0, len(blob) - 1), label="pos")
        if op == "flip":
            blob[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            blob[pos] = draw(st.integers(0, 255))
        elif op == "truncate" and pos > SEAL_HEADER.size:
            del blob[pos:]
        elif op == "extend":
            blob += bytes(draw(st.binary(min_size=1, max_size=64)))
        elif op == "compr":
            set_header(blob, compr=draw(st.sampled_from([0, 1, 2, 3])))
    if len(blob) >= SEAL_HEADER.size and draw(st.integers(0, 3), label="fix_size") > 0:
        set_header(blob)  # mostly keep the declared size honest, so SEAL gets to parse it
    return Seed(seed.scheme, seed.fresh, bytes(blob))


@st.composite
def raw_bodies(draw: st.DrawFn) -> Seed:
    """An uncompressed SEAL blob: our parameter hash, then random bytes, within the size bounds."""
    scheme = draw(st.sampled_from(sorted(SCHEMES)), label="scheme")
    fresh = draw(st.booleans(), label="fresh")
    low, high = he.blob_bounds(SCHEMES[scheme], fresh=fresh)
    length = draw(st.integers(low, high), label="length")
    tag = draw(st.integers(0, 2**32), label="body_seed")
    body = PARMS_IDS[scheme] + DeterministicRandomSource(tag).random_bytes(length)
    blob = bytearray(SEAL_HEADER.pack(SEAL_MAGIC, SEAL_HEADER.size, 4, 1, 0, 0, 0) + body)
    del blob[length:]
    set_header(blob)
    return Seed(scheme, fresh, bytes(blob))


def verdict(worker: Worker, case: Seed, tmp_path: Path) -> str:
    """'pre-rejected', 'accepted' or 'rejected'; fails the test on anything else."""
    try:
        check_blob(SCHEMES[case.scheme], case.blob, fresh=case.fresh)
    except he.InvalidCiphertext:
        return "pre-rejected"
    reply = worker.load(case.scheme, case.fresh, case.blob)
    seconds = reply.get("seconds")
    slow = isinstance(seconds, float) and seconds > MAX_LOAD_S
    if reply["outcome"] not in ("accepted", "rejected") or slow:
        path = tmp_path / f"finding-{reply['outcome']}-{len(case.blob)}.bin"
        path.write_bytes(case.blob)
        pytest.fail(f"TenSEAL load gave {reply} on {path} (scheme {case.scheme})")
    return str(reply["outcome"])


#: Examples per fuzz target: 250 in the PR suite (a few seconds); the nightly job sets
#: SECAGG_FUZZ_EXAMPLES (security.md asks for 10^6 executions per target there).
EXAMPLES = int(os.environ.get("SECAGG_FUZZ_EXAMPLES", "250"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@FUZZ
@given(case=mutated())
def test_mutated_ciphertexts(worker: Worker, case: Seed, tmp_path: Path) -> None:
    verdict(worker, case, tmp_path)


@FUZZ
@given(case=raw_bodies())
def test_raw_bodies_with_our_parameter_hash(worker: Worker, case: Seed, tmp_path: Path) -> None:
    verdict(worker, case, tmp_path)


@settings(max_examples=500, deadline=None)
@given(blob=st.one_of(st.binary(max_size=64), st.builds(bytes, raw_bodies().map(lambda s: s.blob))))
def test_prevalidator_refuses_only_with_invalid_ciphertext(blob: bytes) -> None:
    """check_blob is pure Python and safe on anything: it returns, or raises InvalidCiphertext."""
    for params in SCHEMES.values():
        for fresh in (True, False):
            try:
                check_blob(params, blob, fresh=fresh)
            except he.InvalidCiphertext:
                pass


def test_the_harness_sees_good_and_bad_blobs(worker: Worker, tmp_path: Path) -> None:
    """The seeds load; a corrupted zstd frame of the same length is refused, not accepted."""
    for seed in SEEDS:
        assert verdict(worker, seed, tmp_path) == "accepted"
    broken = bytearray(SEEDS[0].blob)
    broken[SEAL_HEADER.size : SEAL_HEADER.size + 8] = bytes(8)  # the zstd frame's magic
    assert verdict(worker, Seed(0, True, bytes(broken)), tmp_path) == "rejected"
