"""T50: the CKKS magnitude guard, at NVIDIA FLARE's moduli [60, 40, 40] and scale 2^40.

security.md M2 measured silent corruption at 2^20 after one ×0.5 (one rescale).
We never rescale: clients encrypt at the lowest level, where only q0 (60 bits)
is left, so the add-only rule is that every coefficient of the encoded sum
stays below q0/2. Packing two values per slot makes the worst coefficient
√2·Σ|x|·Δ, reached by the vector below; the guard's limit is therefore
≈ q0/(2√2·Δ) ≈ 2^18.5, and these tests show it is tight on both sides.
"""

from __future__ import annotations

import numpy as np
import pytest

from secagg import he
from secagg.errors import OverflowRisk
from tests.unit.conftest import Keys

N = 8192
CLIENTS = 4


def worst_case(c: float) -> np.ndarray:
    """Real parts +c, −c, +c, …; imaginary parts all +c.

    SEAL puts slot k at the root ζ^(3^k) (ζ = e^{iπ/N}); X^(N/4) then evaluates
    to e^{iπ/4} or e^{3iπ/4} alternately, so this input aligns every slot with
    coefficient N/4, which becomes √2·c·Δ per client.
    """
    half = N // 2
    real = np.tile([c, -c], half // 2)
    return np.concatenate([real, np.full(half, c)])


def sum_of(keys: Keys, x: np.ndarray) -> np.ndarray:
    blobs = [he.encrypt(keys.secret, x) for _ in range(CLIENTS)]
    return he.decrypt(keys.secret, he.add_all(keys.public, blobs, length=x.size), x.size)


def test_guard_limit_is_2_to_the_18_5() -> None:
    limit = he.ckks_sum_limit(he.CKKS_8192_NVFLARE, clients=CLIENTS)
    assert 2**18.49 < limit < 2**18.5
    he.check_ckks(he.CKKS_8192_NVFLARE, clients=CLIENTS, max_abs=0.999 * limit / CLIENTS)
    for total in (limit, 2.0**19, 2.0**20):  # 2^19: security.md's 60 − 40 − 1 rule; 2^20: M2
        with pytest.raises(OverflowRisk, match="wrap silently"):
            he.check_ckks(he.CKKS_8192_NVFLARE, clients=CLIENTS, max_abs=total / CLIENTS)


def test_within_the_limit_the_worst_case_decodes(ckks_nvflare: Keys) -> None:
    limit = he.ckks_sum_limit(he.CKKS_8192_NVFLARE, clients=CLIENTS)
    x = worst_case(0.999 * limit / CLIENTS)
    got = sum_of(ckks_nvflare, x)
    assert np.abs(got - CLIENTS * x).max() < 1e-6


def test_beyond_the_limit_the_worst_case_corrupts_silently(ckks_nvflare: Keys) -> None:
    limit = he.ckks_sum_limit(he.CKKS_8192_NVFLARE, clients=CLIENTS)
    x = worst_case(1.001 * limit / CLIENTS)  # each client alone is fine; only the sum overflows
    got = sum_of(ckks_nvflare, x)  # no exception anywhere
    assert np.abs(got - CLIENTS * x).max() > 1e5
    with pytest.raises(OverflowRisk):
        he.check_ckks(he.CKKS_8192_NVFLARE, clients=CLIENTS, max_abs=float(np.abs(x).max()))


def test_a_constant_vector_only_corrupts_at_2_to_the_19(ckks_nvflare: Keys) -> None:
    """Without the √2 alignment the wrap point is q0/(2Δ) ≈ 2^19, as security.md T50 says."""
    inside = np.full(N, 0.99 * 2.0**19 / CLIENTS)
    assert np.abs(sum_of(ckks_nvflare, inside) - CLIENTS * inside).max() < 1e-6
    beyond = np.full(N, 1.01 * 2.0**19 / CLIENTS)
    assert np.abs(sum_of(ckks_nvflare, beyond) - CLIENTS * beyond).max() > 1e5
