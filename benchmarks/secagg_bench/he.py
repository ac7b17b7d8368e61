"""`secagg bench he`: the cost of one HE-mode round, to set beside NVIDIA FLARE's HE path.

Same data and weighting as ``benchmarks/peers/nvflare_he_bench.py`` (float32
updates ``base + shift(client)``, base ~ N(0, 0.05²), weights = local steps in
[10, 100]), so ``max_abs_error`` compares directly. Each client uploads
``[w_k·x_k, w_k]`` (D + 1 values): the aggregator learns neither the weights
nor the updates, and the key holders divide the two sums after decrypting.

Schemes: ``ckks`` (CKKS_8192), ``ckks-compact``, ``ckks-nvflare`` (NVFlare's
moduli) and ``bfv`` (BFV_8192 on fixed-point values with the most fractional
bits the cohort allows; ``masked=True`` adds pairwise masks mod t inside the
plaintexts, each client masking with up to 14 ring neighbours, as in the
hybrid mode).

As in the peer script, only ``distinct`` clients (default 10) are really
encrypted unless ``masked``; the others resend those uploads cyclically, and
the reference mean uses the same mapping. The aggregator still loads, checks
and adds all N uploads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
from functools import partial
from typing import Any

import numpy as np

from secagg import he
from secagg.errors import OverflowRisk, ParameterError
from secagg.rng import DeterministicRandomSource, uniform_below
from secagg_bench.timing import timed

SCHEMES: dict[str, he.HEParams] = {
    "ckks": he.CKKS_8192,
    "ckks-compact": he.CKKS_8192_COMPACT,
    "ckks-nvflare": he.CKKS_8192_NVFLARE,
    "bfv": he.BFV_8192,
}
#: BFV inputs are clipped to [−CLIP, CLIP] before fixed-point encoding.
CLIP = 1.0
MAX_WEIGHT = 100
MASK_NEIGHBOURS = 14


def _client_update(base: np.ndarray, cid: int) -> np.ndarray:
    """The peer script's client update (kept identical for comparable errors)."""
    shift = np.float32(((cid * 2654435761) % 1000) / 1000.0 - 0.5) * np.float32(0.02)
    out: np.ndarray = base + shift
    return out


def _fraction_bits(params: he.BfvParams, clients: int) -> int:
    """Most fractional bits f with clients × MAX_WEIGHT × CLIP·2^f inside t/2."""
    for f in range(30, -1, -1):
        try:
            he.check_bfv(params, clients=clients, max_abs=int(MAX_WEIGHT * CLIP * 2**f))
        except OverflowRisk:
            continue
        return f
    raise OverflowRisk("no fixed-point precision fits this cohort")


def _neighbours(k: int, clients: int) -> list[int]:
    h = min(MASK_NEIGHBOURS // 2, clients // 2)
    return sorted({(k + d) % clients for d in range(-h, h + 1)} - {k})


def _mask(k: int, clients: int, length: int, t: int, seed: int) -> np.ndarray:
    """Σ_j ±PRG(s_kj) mod t over k's neighbours; the masks of all clients sum to 0 mod t."""
    total = np.zeros(length, dtype=np.int64)
    for j in _neighbours(k, clients):
        lo, hi = min(k, j), max(k, j)
        pair = hashlib.sha256(f"secagg/bench-he/{seed}/{lo}/{hi}".encode()).digest()
        m = uniform_below(DeterministicRandomSource(pair), t, length).astype(np.int64)
        total += m if k < j else -m
    out: np.ndarray = np.mod(total, t)
    return out


def _encrypt_bfv(
    ctx: he.HEContext, vec: np.ndarray, *, masked: bool, me: int, clients: int, seed: int
) -> list[bytes]:
    """One BFV client: mask expansion (if masked) and encryption, as timed."""
    if not masked:
        return he.encrypt_ints(ctx, vec)
    t = ctx.params.plain_modulus if isinstance(ctx.params, he.BfvParams) else 0
    return he.encrypt_residues(ctx, np.mod(vec + _mask(me, clients, vec.size, t, seed), t))


def run(
    scheme: str,
    clients: int,
    dim: int,
    masked: bool = False,
    *,
    distinct: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """One round at ``clients`` × ``dim``; returns a JSON-ready dict of timings and sizes."""
    if scheme not in SCHEMES:
        raise he.HEParameterError(f"unknown scheme {scheme!r}; use one of {sorted(SCHEMES)}")
    params = SCHEMES[scheme]
    if masked and not isinstance(params, he.BfvParams):
        raise he.HEParameterError("pairwise masks need exact arithmetic: use scheme 'bfv'")
    k = clients if masked else min(distinct or 10, clients)
    rs = np.random.default_rng(seed)
    base = (rs.standard_normal(dim) * 0.05).astype(np.float32)
    weights = [int(w) for w in rs.integers(10, MAX_WEIGHT + 1, size=clients)]
    length = dim + 1

    secret_ctx, keygen_s = timed(lambda: he.make_context(params))
    pub_bytes = he.public_bytes(secret_ctx)
    secret_len = len(he.secret_bytes(secret_ctx))
    server_ctx = he.load_public(pub_bytes, params)

    bfv = isinstance(params, he.BfvParams)
    f = _fraction_bits(params, clients) if isinstance(params, he.BfvParams) else 0
    if isinstance(params, he.CkksParams):
        he.check_ckks(params, clients=clients, max_abs=float(MAX_WEIGHT))

    uploads: list[list[bytes]] = []
    enc_times: list[float] = []
    sent: list[np.ndarray] = []  # the float64 value each distinct client really contributes
    for c in range(k):
        x = _client_update(base, c).astype(np.float64)
        w = weights[c]
        if bfv:
            q = np.rint(np.clip(x, -CLIP, CLIP) * 2.0**f).astype(np.int64)
            sent.append(q / 2.0**f)
            job = partial(
                _encrypt_bfv,
                secret_ctx,
                np.append(w * q, w),
                masked=masked,
                me=c,
                clients=clients,
                seed=seed,
            )
        else:
            sent.append(x)
            job = partial(he.encrypt, secret_ctx, np.append(w * x, float(w)))
        blobs, seconds = timed(job)
        uploads.append(blobs)
        enc_times.append(seconds)
        print(f"  encrypted client {c + 1}/{k}: {seconds:.3f}s", file=sys.stderr, flush=True)

    def aggregate() -> list[bytes]:
        total = he.CiphertextSum(server_ctx, length=length)
        for c in range(clients):
            total.add(uploads[c % k])
        return total.result()

    summed, aggregate_s = timed(aggregate)

    def key_holder() -> np.ndarray:
        if bfv:
            sums = he.decrypt_ints(secret_ctx, summed, length)
            he.check_aggregate(sums, clients=clients, max_abs=MAX_WEIGHT * CLIP * 2**f, atol=0)
            mean: np.ndarray = sums[:dim] / 2.0**f / float(sums[dim])
            return mean
        sums = he.decrypt(secret_ctx, summed, length)
        he.check_aggregate(sums, clients=clients, max_abs=float(MAX_WEIGHT))
        out: np.ndarray = sums[:dim] / sums[dim]
        return out

    got, decrypt_s = timed(key_holder)
    num = np.zeros(dim, dtype=np.float64)
    den = 0
    for c in range(clients):
        src = c % k
        num += _client_update(base, src).astype(np.float64) * weights[src]
        den += weights[src]
    upload_bytes = sum(len(b) for b in uploads[0])
    return {
        "impl": "secagg.he",
        "scheme": scheme,
        "params": repr(params),
        "d": dim,
        "N": clients,
        "masked": masked,
        "distinct_encryptions": k,
        "fraction_bits": f if bfv else None,
        "ciphertexts_per_client": len(uploads[0]),
        "keygen_s": keygen_s,
        "encrypt_s": statistics.median(enc_times),
        "encrypt_s_per_1M": statistics.median(enc_times) * 1e6 / dim,
        "upload_bytes_per_client": upload_bytes,
        "bytes_per_param": upload_bytes / dim,
        "expansion_vs_fp32": upload_bytes / (4 * dim),
        "context_bytes": len(pub_bytes),
        "secret_context_bytes": secret_len,
        "aggregate_s": aggregate_s,
        "aggregate_s_per_client": aggregate_s / clients,
        "agg_bytes_per_param": sum(len(b) for b in summed) / dim,
        "decrypt_s": decrypt_s,
        "max_abs_error": float(np.max(np.abs(got - num / den))),
        # The error of the arithmetic alone (BFV: against the quantised inputs).
        "max_abs_error_vs_inputs_sent": float(
            np.max(np.abs(got - sum(sent[c % k] * weights[c % k] for c in range(clients)) / den))
        ),
    }


def main(argv: list[str] | None = None) -> None:
    """Print one JSON line per configuration (progress on stderr)."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scheme", nargs="+", default=["ckks"], choices=sorted(SCHEMES))
    ap.add_argument("--d", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--N", type=int, nargs="+", default=[10])
    ap.add_argument("--masked", action="store_true")
    ap.add_argument("--distinct", type=int, default=10)
    args = ap.parse_args(argv)
    for scheme in args.scheme:
        for d in args.d:
            for n in args.N:
                print(f"[secagg-he] {scheme} d={d} N={n}", file=sys.stderr, flush=True)
                try:
                    row = run(scheme, n, d, args.masked, distinct=args.distinct)
                except ParameterError as exc:  # a refused configuration is a result too
                    row = {"scheme": scheme, "d": d, "N": n, "refused": str(exc)}
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
