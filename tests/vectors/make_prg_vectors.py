"""Write our own (non-published) known-answer vectors. Run by hand, never by the tests.

    cd /work/main && .venv/bin/python tests/vectors/make_prg_vectors.py          # write
    cd /work/main && .venv/bin/python tests/vectors/make_prg_vectors.py --check  # compare only

The tests compare the implementation against the files this script wrote
once. ANY CHANGE TO THESE FILES MUST BE DELIBERATE: a different PRG stream,
Shamir split, KDF output or quantisation changes the wire protocol and breaks
interoperability between clients of different versions. Regenerate only
together with a version bump of the protocol (``secagg/v1``) and say so in
the commit message.

Files written:

- ``prg.json``: the mask PRG. Computed here *without* ``secagg.primitives.prg``,
  straight from the definition: the AES-256-CTR keystream (key = seed,
  counter block starting at zero) read as little-endian words of 8/16/32/64
  bits (the narrowest that holds k) and reduced mod 2^k.
- ``shamir.json``: ``shamir.split`` for a fixed ``DeterministicRandomSource``.
- ``rng.json``: ``DeterministicRandomSource`` streams, ``uniform_below`` and
  ``uniform_floats`` for fixed seeds.
- ``derive_key.json``: ``derive_key``, ``pairwise_seed`` and ``self_mask_seed``.
- ``quantization.json``: ``quantize`` with both roundings.
- ``masking.json``: one client's ``mask_input``.
- ``prg_mod.json``: the mask PRG modulo m (``secagg.primitives.prg.prg_residues``), computed
  here from its definition: AES-256-CTR words of 32 bits (m ≤ 2^32) or 64 bits,
  rejection of words ≥ ⌊2^W/m⌋·m, the rest reduced mod m.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from Crypto.Cipher import AES

from secagg.masking import mask_input, pairwise_seed, self_mask_seed
from secagg.primitives.kdf import derive_key
from secagg.primitives.shamir import shares_to_bytes, split
from secagg.quantization import Quantizer, quantize
from secagg.rng import DeterministicRandomSource, uniform_below, uniform_floats

HERE = Path(__file__).resolve().parent
PRG_BITS = (1, 8, 16, 23, 32, 33, 64)
PRG_WORDS = 16


def _reference_prg(seed: bytes, length: int, bits: int) -> list[int]:
    """The PRG by its definition, independent of secagg.primitives.prg."""
    width = next(w for w in (8, 16, 32, 64) if bits <= w)
    stream = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0).encrypt(
        bytes(length * width // 8)
    )
    step = width // 8
    return [
        int.from_bytes(stream[i * step : (i + 1) * step], "little") % (1 << bits)
        for i in range(length)
    ]


def _reference_prg_mod(seed: bytes, length: int, modulus: int) -> tuple[list[int], int]:
    """The mod-m PRG by its definition, word by word; also returns how many words it rejected."""
    width = 32 if modulus <= 1 << 32 else 64
    limit = ((1 << width) // modulus) * modulus
    cipher = AES.new(seed, AES.MODE_CTR, nonce=b"", initial_value=0)
    out: list[int] = []
    rejected = 0
    while len(out) < length:
        word = int.from_bytes(cipher.encrypt(bytes(width // 8)), "little")
        if word < limit:
            out.append(word % modulus)
        else:
            rejected += 1
    return out, rejected


#: Moduli for prg_mod.json: the BFV plain modulus, small ones, 3·2^30 (a quarter of the
#: words rejected; naive reduction would be badly biased), powers of two (nothing rejected)
#: and moduli that take 64-bit words (3·2^60: a sixteenth rejected).
PRG_MOD_MODULI = (
    1_073_692_673,
    2,
    7,
    3 << 30,
    1 << 32,
    (1 << 32) + 15,
    (1 << 61) - 1,
    3 << 60,
    1 << 62,
)


def prg_mod_vectors() -> dict[str, Any]:
    seeds = [bytes(range(32)), hashlib.sha256(b"secagg/tests/prg-seed-2").digest()]
    cases = []
    for i, seed in enumerate(seeds):
        for modulus in PRG_MOD_MODULI:
            residues, rejected = _reference_prg_mod(seed, 64, modulus)
            cases.append(
                {
                    "id": f"seed{i}-m{modulus}",
                    "seed": seed.hex(),
                    "modulus": modulus,
                    "residues": residues,
                    "rejected_words": rejected,
                }
            )
    return {
        "source": "make_prg_vectors.py (AES-256-CTR keystream, computed from the definition)",
        "description": (
            "First 64 residues of the mask PRG mod m: AES-256-CTR keystream (key = seed, "
            "nonce = b'', initial counter 0) read as little-endian words of W = 32 bits if "
            "m <= 2^32 else 64; a word w is kept iff w < floor(2^W / m) * m and yields w mod m. "
            "`rejected_words` counts the words skipped on the way."
        ),
        "cases": cases,
    }


def prg_vectors() -> dict[str, Any]:
    seeds = [bytes(range(32)), hashlib.sha256(b"secagg/tests/prg-seed-2").digest()]
    cases = [
        {
            "id": f"seed{i}-bits{bits}",
            "seed": seed.hex(),
            "bits": bits,
            "words": _reference_prg(seed, PRG_WORDS, bits),
        }
        for i, seed in enumerate(seeds)
        for bits in PRG_BITS
    ]
    return {
        "source": "make_prg_vectors.py (AES-256-CTR keystream, computed from the definition)",
        "description": (
            "First 16 mask-PRG words for a fixed 32-byte seed: keystream of AES-256-CTR "
            "(key = seed, nonce = b'', initial counter 0), read as little-endian words of "
            "the narrowest of 8/16/32/64 bits that holds `bits`, reduced mod 2^bits."
        ),
        "cases": cases,
    }


def shamir_vectors() -> dict[str, Any]:
    cases = []
    for n, t, seed, secrets in (
        (5, 3, "secagg/tests/shamir-1", [bytes(range(32)), hashlib.sha256(b"s2").digest()]),
        (3, 2, "secagg/tests/shamir-2", [bytes(32)]),
        (4, 1, "secagg/tests/shamir-3", [bytes(range(255, 223, -1))]),
    ):
        shares = split(secrets, n=n, t=t, rng=DeterministicRandomSource(seed))
        cases.append(
            {
                "id": f"n{n}-t{t}",
                "n": n,
                "t": t,
                "rng_seed": seed,
                "secrets": [s.hex() for s in secrets],
                # shares[i][j]: holder i's (x = i + 1) share of secret j, 64 bytes each.
                "shares": [
                    [shares_to_bytes(shares[i, j]).hex() for j in range(len(secrets))]
                    for i in range(n)
                ],
            }
        )
    return {
        "source": "make_prg_vectors.py (secagg.primitives.shamir.split)",
        "description": (
            "split(secrets, n, t, rng=DeterministicRandomSource(rng_seed)); shares[i][j] is "
            "shares_to_bytes(holder i's share of secret j): 16 little-endian uint32 limbs."
        ),
        "cases": cases,
    }


def rng_vectors() -> dict[str, Any]:
    streams = []
    for case_id, seed in (("bytes", bytes(range(16))), ("int", 42), ("str", "secagg")):
        streams.append(
            {
                "id": f"seed-{case_id}",
                "seed_type": case_id,
                "seed": seed.hex() if isinstance(seed, bytes) else seed,
                "output": DeterministicRandomSource(seed).random_bytes(64).hex(),
            }
        )
    parent = DeterministicRandomSource(42)
    forked = parent.fork("client-1")
    derived = [
        {
            "id": "fork",
            "seed": 42,
            "label": "client-1",
            "output": forked.random_bytes(32).hex(),
            "parent_after_fork": parent.random_bytes(16).hex(),
        }
    ]
    below = [
        {
            "id": f"uniform-below-{bound}",
            "seed": 7,
            "bound": bound,
            "values": [int(v) for v in uniform_below(DeterministicRandomSource(7), bound, 16)],
        }
        for bound in (10, 65537, 3 << 30, 1 << 32)
    ]
    floats = [
        {
            "id": "uniform-floats",
            "seed": 7,
            "values": [float(v) for v in uniform_floats(DeterministicRandomSource(7), 8)],
        }
    ]
    return {
        "source": "make_prg_vectors.py (secagg.rng)",
        "description": "DeterministicRandomSource output for fixed seeds, and the samplers on it.",
        "streams": streams,
        "fork": derived,
        "uniform_below": below,
        "uniform_floats": floats,
    }


def kdf_vectors() -> dict[str, Any]:
    secret = bytes(range(32))
    session = hashlib.sha256(b"secagg/tests/session").digest()
    return {
        "source": "make_prg_vectors.py (secagg.primitives.kdf.derive_key, secagg.masking)",
        "description": "Keys derived for a fixed secret and 32-byte session id.",
        "derive_key": [
            {
                "id": f"{label}-{'-'.join(map(str, context)) or 'none'}",
                "secret": secret.hex(),
                "session_id": session.hex(),
                "label": label,
                "context": list(context),
                "length": length,
                "key": derive_key(
                    secret, label=label, session_id=session, context=context, length=length
                ).hex(),
            }
            for label, context, length in (
                ("test", (), 32),
                ("test", (1, 2), 32),
                ("share-encryption", (3, 1, 2), 32),
                ("he-key-transport", (0,), 64),
            )
        ],
        "pairwise_seed": [
            {
                "id": "pair-3-7",
                "secret": secret.hex(),
                "session_id": session.hex(),
                "u": 3,
                "v": 7,
                "seed": pairwise_seed(secret, session_id=session, u=3, v=7).hex(),
            }
        ],
        "self_mask_seed": [
            {
                "id": "owner-5",
                "secret": secret.hex(),
                "session_id": session.hex(),
                "owner": 5,
                "seed": self_mask_seed(secret, session_id=session, owner=5).hex(),
            }
        ],
    }


def quantization_vectors() -> dict[str, Any]:
    x = [-2.0, -1.0, -0.3, 0.0, 0.1, 0.30000000000000004, 0.5, 0.99, 1.0, 7.5]
    q = Quantizer(clip=1.0, levels=257)
    nearest = quantize(np.array(x), q, rng=None, rounding="nearest")
    stochastic = quantize(
        np.array(x), q, rng=DeterministicRandomSource("secagg/tests/quant"), rounding="stochastic"
    )
    return {
        "source": "make_prg_vectors.py (secagg.quantization.quantize)",
        "description": "Levels for fixed inputs; stochastic rounding uses the given rng seed.",
        "cases": [
            {
                "id": "clip1-levels257",
                "clip": 1.0,
                "levels": 257,
                "x": x,
                "nearest": [int(v) for v in nearest],
                "rng_seed": "secagg/tests/quant",
                "stochastic": [int(v) for v in stochastic],
            }
        ],
    }


def masking_vectors() -> dict[str, Any]:
    values = list(range(8))
    self_seed = hashlib.sha256(b"self").digest()
    pair = {1: hashlib.sha256(b"pair-1-2").digest(), 3: hashlib.sha256(b"pair-2-3").digest()}
    y = mask_input(np.array(values, dtype=np.uint64), bits=32, me=2, self_seed=self_seed,
                   pair_seeds=pair)  # fmt: skip
    return {
        "source": "make_prg_vectors.py (secagg.masking.mask_input)",
        "description": (
            "Client `me` masks `values` mod 2^bits with its self seed and pairwise seeds "
            "(peer -> seed); peers below `me` are subtracted, peers above added."
        ),
        "cases": [
            {
                "id": "me2-bits32",
                "bits": 32,
                "me": 2,
                "values": values,
                "self_seed": self_seed.hex(),
                "pair_seeds": {str(k): v.hex() for k, v in pair.items()},
                "masked": [int(v) for v in y],
            }
        ],
    }


def _dump(obj: Any, indent: int = 0) -> str:
    """JSON with one line per list of scalars (readable diffs), two-space indents."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list):
        if all(not isinstance(v, dict | list) for v in obj):
            return "[" + ", ".join(json.dumps(v) for v in obj) + "]"
        items = [inner + _dump(v, indent + 2) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj)


FILES = {
    "prg": prg_vectors,
    "shamir": shamir_vectors,
    "rng": rng_vectors,
    "derive_key": kdf_vectors,
    "quantization": quantization_vectors,
    "masking": masking_vectors,
    "prg_mod": prg_mod_vectors,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on change")
    args = parser.parse_args()
    changed = []
    for name, make in FILES.items():
        path = HERE / f"{name}.json"
        text = _dump(make()) + "\n"
        json.loads(text)  # the writer must emit valid JSON
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old != text:
            changed.append(name)
            if not args.check:
                path.write_text(text, encoding="utf-8")
    for name in changed:
        print(f"{'differs' if args.check else 'wrote'}: tests/vectors/{name}.json")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
