"""Homomorphic-encryption primitives (TenSEAL CKKS and BFV) for HE-mode aggregation.

The only package that imports TenSEAL. Clients hold the secret key
(:func:`make_context`, :func:`secret_bytes`); the aggregator holds a public
context (:func:`public_bytes`, :func:`load_public`) that can add but neither
decrypt nor encrypt. Uploads are checked before and after deserialising
(:mod:`secagg.he.validate`), and decrypted sums are checked against the input
bound (:func:`check_aggregate`). Parameters are validated at construction and
against the cohort (:func:`check_ckks`, :func:`check_bfv`).
"""

from secagg.errors import HEParameterError
from secagg.he.context import (
    HEContext,
    load_public,
    load_secret,
    make_context,
    public_bytes,
    secret_bytes,
)
from secagg.he.params import (
    BFV_8192,
    CKKS_8192,
    CKKS_8192_COMPACT,
    CKKS_8192_NVFLARE,
    MAX_COEFF_MOD_BITS,
    BfvParams,
    CkksParams,
    HEParams,
    check_bfv,
    check_ckks,
    ckks_sum_limit,
    most_bfv_levels,
)
from secagg.he.validate import InvalidCiphertext, blob_bounds, check_aggregate, check_blob
from secagg.he.vectors import (
    CiphertextSum,
    add_all,
    chunk_count,
    decrypt,
    decrypt_ints,
    encrypt,
    encrypt_ints,
    encrypt_residues,
)

__all__ = [
    "BFV_8192",
    "CKKS_8192",
    "CKKS_8192_COMPACT",
    "CKKS_8192_NVFLARE",
    "MAX_COEFF_MOD_BITS",
    "BfvParams",
    "CiphertextSum",
    "CkksParams",
    "HEContext",
    "HEParameterError",
    "HEParams",
    "InvalidCiphertext",
    "add_all",
    "blob_bounds",
    "check_aggregate",
    "check_bfv",
    "check_blob",
    "check_ckks",
    "chunk_count",
    "ckks_sum_limit",
    "decrypt",
    "decrypt_ints",
    "encrypt",
    "encrypt_ints",
    "encrypt_residues",
    "load_public",
    "load_secret",
    "make_context",
    "most_bfv_levels",
    "public_bytes",
    "secret_bytes",
]
