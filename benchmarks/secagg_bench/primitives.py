"""`secagg bench primitives`: throughput of the crypto core against its physical limit.

The reference is the raw AES-256-CTR keystream of the same library measured
in the same run, so the ratios hold on any machine, noisy or not.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from secagg.packing import pack
from secagg.primitives import shamir
from secagg.primitives.prg import keystream_into, prg_accumulate, prg_words
from secagg.quantization import Quantizer, quantize
from secagg.rng import DeterministicRandomSource
from secagg_bench.timing import median_seconds


def run(*, dim: int = 1_000_000, repeat: int = 7, bits: int = 32) -> dict[str, Any]:
    """Measure every primitive; returns one JSON-ready dict."""
    seed = os.urandom(32)
    rng = DeterministicRandomSource(seed)
    words = dim / 1e6  # millions of words

    sink = np.empty(dim, dtype=np.uint32)
    raw_s = median_seconds(lambda: keystream_into(seed, sink), repeat=repeat)
    prg_s = median_seconds(lambda: prg_words(seed, dim, bits), repeat=repeat)
    acc = np.zeros(dim, dtype=np.uint32)
    acc_s = median_seconds(lambda: prg_accumulate(acc, seed, bits), repeat=repeat)

    x = np.frombuffer(rng.random_bytes(8 * dim), dtype="<u8") / float(1 << 64) * 2 - 1
    q = Quantizer(clip=1.0, levels=1 << 16)
    qp_s = median_seconds(lambda: pack(quantize(x, q, rng=rng), 23), repeat=repeat)

    result: dict[str, Any] = {
        "dim": dim,
        "prg_bits": bits,
        "aes_ctr_keystream_mwords_per_s": words / raw_s,
        "prg_mwords_per_s": words / prg_s,
        "prg_vs_keystream": raw_s / prg_s,
        "prg_accumulate_mwords_per_s": words / acc_s,
        "prg_accumulate_vs_keystream": raw_s / acc_s,
        "quantize_pack_mwords_per_s": words / qp_s,
        "quantize_pack_s_per_1m": qp_s / words,
        "shamir": [],
    }
    for n, t in ((100, 67), (1000, 667)):
        secrets = [rng.random_bytes(32) for _ in range(1000)]

        # A client deals two secrets (mask key and self-mask seed) to n holders.
        def deal(pair: list[bytes] = secrets[:2], n: int = n, t: int = t) -> None:
            shamir.split(pair, n=n, t=t, rng=rng)

        split_s = median_seconds(deal, repeat=repeat)
        shares = shamir.split(secrets, n=n, t=t, rng=rng)
        xs = list(range(1, t + 1))

        def rebuild(xs: list[int] = xs, shares: np.ndarray = shares[:t], t: int = t) -> None:
            shamir.reconstruct(xs, shares, t=t)

        rec_s = median_seconds(rebuild, repeat=max(3, repeat // 2))
        result["shamir"].append(
            {
                "n": n,
                "t": t,
                "split_two_secrets_s": split_s,
                "split_secrets_per_s": 2 / split_s,
                "reconstruct_1000_secrets_s": rec_s,
                "reconstruct_secrets_per_s": 1000 / rec_s,
            }
        )
    return result
