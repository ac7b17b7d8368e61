#!/usr/bin/env python3
"""Reference point for the peer numbers: cost of mask expansion (PRG) per 1M entries.

Compares Flower's ``pseudo_rand_gen`` (32-bit folded seed -> numpy MT19937,
int64 output) with cryptographically sound expansions of a full 256-bit seed:

* AES-256-CTR keystream (``cryptography``; AES-NI when available)
* ChaCha20 keystream (``cryptography``)
* SHAKE-256 XOF (hashlib)

Each row is one JSON line: seconds to produce ``d`` mask words in [0, 2^32).
Run inside the peer venv (needs flwr for the first row; others only need
``cryptography``/``numpy``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import time

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def t_median(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def aes_ctr_words(seed: bytes, d: int) -> np.ndarray:
    enc = Cipher(algorithms.AES(seed), modes.CTR(b"\x00" * 16)).encryptor()
    return np.frombuffer(enc.update(bytes(4 * d)), dtype="<u4")


def chacha_words(seed: bytes, d: int) -> np.ndarray:
    enc = Cipher(algorithms.ChaCha20(seed, b"\x00" * 16), mode=None).encryptor()
    return np.frombuffer(enc.update(bytes(4 * d)), dtype="<u4")


def shake_words(seed: bytes, d: int) -> np.ndarray:
    return np.frombuffer(hashlib.shake_256(seed).digest(4 * d), dtype="<u4")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    seed = os.urandom(32)
    rows = []
    try:
        from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

        rows.append(
            (
                "flwr pseudo_rand_gen (MT19937, 32-bit seed, int64 out)",
                lambda d: pseudo_rand_gen(seed, 1 << 32, [(d,)]),
            )
        )
    except ImportError:
        pass
    rows += [
        ("AES-256-CTR (cryptography)", lambda d: aes_ctr_words(seed, d)),
        ("ChaCha20 (cryptography)", lambda d: chacha_words(seed, d)),
        ("SHAKE-256 (hashlib)", lambda d: shake_words(seed, d)),
    ]
    for d in args.d:
        for name, fn in rows:
            fn(d)  # warm-up
            s = t_median(lambda fn=fn, d=d: fn(d), args.reps)
            print(
                json.dumps({"prg": name, "d": d, "seconds": s, "seconds_per_1M": s * 1e6 / d}),
                flush=True,
            )


if __name__ == "__main__":
    main()
