"""secagg: the crypto core (no torch, grpc, sqlite, clocks or ambient randomness).

The safe, composed operations are exported here; raw primitives live in
:mod:`secagg.primitives`.
"""

from secagg.encoding import digest, encode
from secagg.errors import (
    DecryptionError,
    InvalidKey,
    InvalidShare,
    InvalidSignature,
    OverflowRisk,
    ParameterError,
    SecAggError,
)
from secagg.masking import mask_input, pairwise_seed, remove_masks, self_mask_seed
from secagg.packing import pack, packed_size, unpack
from secagg.quantization import Quantizer, check_no_wrap, dequantize_sum, quantize
from secagg.rng import DeterministicRandomSource, RandomSource, SystemRandomSource

__all__ = [
    "DecryptionError",
    "DeterministicRandomSource",
    "InvalidKey",
    "InvalidShare",
    "InvalidSignature",
    "OverflowRisk",
    "ParameterError",
    "Quantizer",
    "RandomSource",
    "SecAggError",
    "SystemRandomSource",
    "check_no_wrap",
    "dequantize_sum",
    "digest",
    "encode",
    "mask_input",
    "pack",
    "packed_size",
    "pairwise_seed",
    "quantize",
    "remove_masks",
    "self_mask_seed",
    "unpack",
]
