#!/usr/bin/env python3
"""Peer benchmark: NVIDIA FLARE's TenSEAL-CKKS secure-aggregation path.

Reproduces, on this machine, the data path of NVFlare's HE recipe
(``FedAvgRecipeWithHE``: ``HEModelEncryptor`` -> FOBS ``CKKSVectorDecomposer``
-> ``HEInTimeAccumulateWeightedAggregator`` -> ``HEModelDecryptor``) for N
clients that each send a d-parameter float32 model split into ``--layers``
tensors:

1. Context: NVFlare's provisioning defaults (``nvflare.lighter.impl.he.HEBuilder``):
   CKKS, poly_modulus_degree=8192, coeff_mod_bit_sizes=[60, 40, 40],
   global scale 2**40, *symmetric* encryption, relinearisation keys only.
   The client context file carries the secret key (shared by every client);
   the server context has no secret key.
2. Client: each layer is weighted by the number of local steps (encryptor
   default ``weigh_by_local_iter=True``) and encrypted with
   ``ts.ckks_vector``; FOBS serialises every CKKSVector as
   ``(vector.serialize(), vector.context().serialize())``.
3. Server: every received vector is recomposed with a fresh context
   (``ts.context_from`` + ``ts.ckks_vector_from``), summed ciphertext-wise
   (``WeightedAggregationHelper`` with ``weigh_by_local_iter=False``) and
   finally multiplied by ``1/sum(weights)`` (plain scalar, one CKKS level).
4. Client: the aggregate is deserialised with the client context and
   decrypted with the shared secret key.

If ``nvflare`` is importable the script uses NVFlare's own ``HEBuilder``,
``CKKSVectorDecomposer`` and ``WeightedAggregationHelper`` objects; otherwise a
faithful TenSEAL-only replica of the same steps runs (``"impl"`` in the output
says which).

Encrypting 100 clients x 1M parameters takes minutes on 2 cores, so only
``--distinct`` clients (default 10) are really encrypted; the other clients
reuse those ciphertext blobs cyclically.  Server work (recompose + add per
client) is still done N times, and the reference average uses the same
client->blob mapping, so ``max_abs_err`` stays exact.

One JSON line per configuration on stdout; progress on stderr.

Example::

    python nvflare_he_bench.py --d 1000000 --N 10 100
    python nvflare_he_bench.py --d 1000000 --N 10 --layers 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

import numpy as np
import tenseal as ts

try:
    import nvflare
    from nvflare.app_common.aggregators.weighted_aggregation_helper import (
        WeightedAggregationHelper,
    )
    from nvflare.app_opt.he.decomposers import CKKSVectorDecomposer
    from nvflare.lighter.impl.he import HEBuilder

    HAVE_NVFLARE = True
    NVFLARE_VERSION = getattr(nvflare, "__version__", "unknown")
except Exception:  # pragma: no cover - optional dependency
    HAVE_NVFLARE = False
    NVFLARE_VERSION = None

# NVFlare HEBuilder defaults (nvflare/lighter/impl/he.py)
POLY_MODULUS_DEGREE = 8192
COEFF_MOD_BIT_SIZES = [60, 40, 40]
SCALE_BITS = 40


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


def json_stdout():
    """TenSEAL's C++ layer prints warnings on fd 1; keep stdout JSON-only.

    The real stdout is duplicated for the JSON rows and fd 1 is pointed at
    stderr so native chatter lands there.
    """
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


# --------------------------------------------------------------------------
# context provisioning
# --------------------------------------------------------------------------
def provision(use_nvflare: bool) -> tuple[bytes, bytes, str]:
    """Return (client_context_bytes, server_context_bytes, impl)."""
    if use_nvflare:
        builder = HEBuilder()  # all defaults
        builder.initialize(None, None)  # does not touch project/ctx
        return (
            builder.get_serialized_context(is_client=True),
            builder.get_serialized_context(is_client=False),
            "nvflare-classes",
        )
    ctx = ts.context(
        ts.SCHEME_TYPE.CKKS,
        poly_modulus_degree=POLY_MODULUS_DEGREE,
        coeff_mod_bit_sizes=COEFF_MOD_BIT_SIZES,
        encryption_type=ts.ENCRYPTION_TYPE.SYMMETRIC,
    )
    ctx.generate_relin_keys()
    ctx.global_scale = 2**SCALE_BITS
    client = ctx.serialize(
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=True
    )
    server = ctx.serialize(
        save_public_key=False, save_secret_key=False, save_galois_keys=False, save_relin_keys=True
    )
    return client, server, "tenseal-replica"


# --------------------------------------------------------------------------
# FOBS (de)composition of a CKKSVector
# --------------------------------------------------------------------------
class Fobs:
    def __init__(self, use_nvflare: bool):
        self.dec = CKKSVectorDecomposer() if use_nvflare else None

    def decompose(self, vec: ts.CKKSVector) -> tuple[bytes, bytes]:
        if self.dec is not None:
            return self.dec.decompose(vec)
        return vec.serialize(), vec.context().serialize()

    def recompose(self, data: tuple[bytes, bytes]) -> ts.CKKSVector:
        if self.dec is not None:
            return self.dec.recompose(data)
        vec_bytes, ctx_bytes = data
        return ts.ckks_vector_from(ts.context_from(ctx_bytes), vec_bytes)


class Accumulator:
    """Weighted in-time accumulation as in HEInTimeAccumulateWeightedAggregator."""

    def __init__(self, use_nvflare: bool):
        self.helper = WeightedAggregationHelper(weigh_by_local_iter=False) if use_nvflare else None
        self.total: dict[str, Any] = {}
        self.count = 0.0

    def add(self, data: dict[str, Any], weight: float, name: str) -> None:
        if self.helper is not None:
            self.helper.add(data, weight, name, 1)
            return
        for k, v in data.items():
            self.total[k] = v if k not in self.total else self.total[k] + v
        self.count += weight

    def result(self) -> dict[str, Any]:
        if self.helper is not None:
            return self.helper.get_result()
        return {k: v * (1.0 / self.count) for k, v in self.total.items()}


# --------------------------------------------------------------------------
def layer_sizes(d: int, layers: int) -> list[int]:
    base, rem = divmod(d, layers)
    return [base + (1 if i < rem else 0) for i in range(layers)]


def client_update(base: np.ndarray, cid: int) -> np.ndarray:
    shift = np.float32(((cid * 2654435761) % 1000) / 1000.0 - 0.5) * np.float32(0.02)
    return base + shift


def run_config(
    d: int, n: int, layers: int, distinct: int, use_nvflare: bool, seed: int
) -> dict[str, Any]:
    rs = np.random.default_rng(seed)
    client_ctx_b, _server_ctx_b, impl = provision(use_nvflare)
    client_ctx = ts.context_from(client_ctx_b)
    fobs = Fobs(use_nvflare)
    sizes = layer_sizes(d, layers)
    names = [f"layer{i}" for i in range(layers)]
    base = (rs.standard_normal(d) * 0.05).astype(np.float32)
    n_iter = {c: int(rs.integers(10, 101)) for c in range(n)}  # local steps = weight
    k = min(distinct, n)

    # ---------------- clients: weigh + encrypt + FOBS decompose
    enc_t, ser_t, blobs = [], [], []
    ct_bytes = ctx_bytes = 0
    for c in range(k):
        x = client_update(base, c)
        params = {}
        off = 0
        for name, sz in zip(names, sizes, strict=True):
            params[name] = x[off : off + sz]
            off += sz
        t0 = time.perf_counter()
        enc = {}
        for name in names:
            values = params[name].ravel() * np.float64(n_iter[c])
            enc[name] = ts.ckks_vector(client_ctx, values)
        enc_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        wire = {name: fobs.decompose(v) for name, v in enc.items()}
        ser_t.append(time.perf_counter() - t0)
        if c == 0:
            ct_bytes = sum(len(v) for v, _ in wire.values())
            ctx_bytes = len(next(iter(wire.values()))[1])
        blobs.append(wire)
        del enc
        log(f"  encrypted client {c + 1}/{k}: {enc_t[-1]:.3f}s")

    # ---------------- server: recompose + accumulate N messages, then scale
    acc = Accumulator(use_nvflare)
    t_recompose = t_add = 0.0
    for c in range(n):
        wire = blobs[c % k]
        t0 = time.perf_counter()
        data = {name: fobs.recompose(wire[name]) for name in names}
        t1 = time.perf_counter()
        # weights of the reused blob are those of its source client
        acc.add(data, float(n_iter[c % k]), f"site-{c}")
        t2 = time.perf_counter()
        t_recompose += t1 - t0
        t_add += t2 - t1
    t0 = time.perf_counter()
    agg = acc.result()
    t_scale = time.perf_counter() - t0
    t0 = time.perf_counter()
    agg_wire = {name: fobs.decompose(v) for name, v in agg.items()}
    t_agg_ser = time.perf_counter() - t0
    agg_bytes = sum(len(v) + len(cx) for v, cx in agg_wire.values())

    # ---------------- client: decrypt the aggregate with the shared secret key
    t0 = time.perf_counter()
    out = []
    sk = client_ctx.secret_key()
    for name in names:
        vec = ts.ckks_vector_from(client_ctx, agg_wire[name][0])
        out.append(np.asarray(vec.decrypt(secret_key=sk), dtype=np.float64))
    t_dec = time.perf_counter() - t0
    got = np.concatenate(out)

    num = np.zeros(d, dtype=np.float64)
    den = 0.0
    for c in range(n):
        src = c % k
        num += client_update(base, src).astype(np.float64) * n_iter[src]
        den += n_iter[src]
    err = float(np.max(np.abs(got - num / den)))

    slots = POLY_MODULUS_DEGREE // 2
    n_ct = sum(-(-sz // slots) for sz in sizes)
    enc_med = statistics.median(enc_t)
    bytes_client = ct_bytes + layers * ctx_bytes
    aggregate_s = t_recompose + t_add + t_scale
    return {
        "peer": "nvflare-he",
        "impl": impl,
        "nvflare_version": NVFLARE_VERSION,
        "tenseal_version": ts.__version__,
        "scheme": "CKKS",
        "poly_modulus_degree": POLY_MODULUS_DEGREE,
        "coeff_mod_bit_sizes": COEFF_MOD_BIT_SIZES,
        "scale_bits": SCALE_BITS,
        "encryption_type": "symmetric (shared secret key on all clients)",
        "d": d,
        "N": n,
        "layers": layers,
        "slots_per_ct": slots,
        "ciphertexts_per_client": n_ct,
        "distinct_encryptions": k,
        "encrypt_s": enc_med,
        "encrypt_s_per_1M": enc_med * 1e6 / d,
        "client_serialize_s": statistics.median(ser_t),
        "ct_bytes_per_client": ct_bytes,
        "ctx_bytes_per_layer": ctx_bytes,
        "bytes_per_client": bytes_client,
        "ct_bytes_per_param": ct_bytes / d,
        "bytes_per_param_incl_ctx": bytes_client / d,
        "expansion_vs_fp32": round(bytes_client / (4 * d), 3),
        "server_recompose_s": t_recompose,
        "server_add_s": t_add,
        "server_scale_s": t_scale,
        "aggregate_s": aggregate_s,
        "aggregate_s_per_client": aggregate_s / n,
        "server_serialize_result_s": t_agg_ser,
        "agg_bytes": agg_bytes,
        "agg_bytes_per_param": agg_bytes / d,
        "decrypt_s": t_dec,
        "decrypt_s_per_1M": t_dec * 1e6 / d,
        "max_abs_err": err,
        "cpus": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--d", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--N", type=int, nargs="+", default=[10, 100])
    ap.add_argument(
        "--layers",
        type=int,
        nargs="+",
        default=[1],
        help="number of tensors the d parameters are split into "
        "(NVFlare encrypts and FOBS-serialises each separately)",
    )
    ap.add_argument(
        "--distinct",
        type=int,
        default=10,
        help="clients actually encrypted; the rest reuse their blobs",
    )
    ap.add_argument("--impl", choices=["auto", "nvflare", "replica"], default="auto")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.impl == "nvflare" and not HAVE_NVFLARE:
        sys.exit("nvflare is not importable; use --impl replica")
    use_nv = HAVE_NVFLARE if args.impl == "auto" else args.impl == "nvflare"
    out = json_stdout()
    for d in args.d:
        for layers in args.layers:
            for n in args.N:
                log(
                    f"[nvflare-he] d={d} N={n} layers={layers} impl="
                    f"{'nvflare' if use_nv else 'replica'}"
                )
                t0 = time.perf_counter()
                row = run_config(d, n, layers, args.distinct, use_nv, args.seed)
                row["wall_s"] = time.perf_counter() - t0
                print(json.dumps(row), file=out, flush=True)


if __name__ == "__main__":
    main()
