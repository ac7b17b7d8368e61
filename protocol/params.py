"""SecAgg+ parameters: neighbour count k and Shamir threshold t for a cohort.

SecAgg+ (Bell et al., CCS 2020) replaces the complete "who shares with whom"
graph with a random k-regular Harary graph (see :mod:`protocol.graph`). This
module picks k and t the way FCP's graph parameter finder does, so that our
values reproduce FCP's published table exactly.

Threat model. Of the n clients at most ⌊γn⌋ are corrupt (they collude with the
server) and at most ⌊δn⌋ drop out. The server is ``"curious"`` (follows the
protocol, reads everything) or ``"semi-malicious"`` (may also lie about who
dropped out, to ask some neighbours for self-mask shares and others for
key shares of the same client). The only randomness the analysis relies on is
the uniformly random placement of clients on the Harary ring, so the graph
seed must not be under the adversary's control (see :mod:`protocol.graph`).

Degree convention. ``k`` counts a client's neighbours *other than itself*; it
is the "degree"/"number of neighbours" returned by FCP's finder. FCP's graph
object adds a self edge and so reports k + 1; Flower's ``num_shares`` is also
k + 1. Each client's Shamir shares go to k + 1 holders (its neighbours and
itself), any t of which reconstruct; the finder guarantees t ≤ k, so the
neighbours alone always suffice.

What a Harary answer promises, for σ = ``security_parameter`` and
η = ``correctness_parameter``, with ε_s = 2^-(σ+1) split across the two bad
events below and X, Z the numbers of corrupt and surviving neighbours of one
client (hypergeometric: k draws from n):

- connectivity: a union bound over pairs of ring gaps of k/2 consecutive bad
  (corrupt or dropped) clients keeps P[honest survivors are split] < ε_s;
- privacy: P[X ≥ t] < ε_s / n for curious; for semi-malicious, where corrupt
  neighbours count towards both kinds of shares, P[X ≥ 2t − k] < ε_s / n;
- correctness: P[Z < t] < 2^-η / n (a union bound over all n clients).

When no even k < n − 1 satisfies all three, the cohort is too small for
SecAgg+ to help and :func:`find_parameters` falls back to the complete graph
(as FCP does), with the deterministic threshold of
:func:`complete_graph_threshold`.

One deliberate difference from FCP: Shamir needs t ≥ 2, and FCP raises t to 2
*after* checking correctness for t1 + 1. When no neighbour is corrupt w.h.p.
(t1 = 0) FCP can therefore return t = 2 without P[Z < 2] being small (n = 10,
δ = 0.33, curious: FCP says k = 4, t = 2, and P[Z < 2] = 1/30). We check the
threshold we return, so there we pick a larger k (6). Every row of the golden
table in security.md §2.2 is unaffected and matches FCP exactly.

A second difference, for semi-malicious servers: a client's shares sit with
k + 1 holders (itself included), and we count all of them
(:func:`_both_kinds_bound`); FCP's 2t − k counts k and is one short whenever
the corrupt bound plus k is odd. Those rows give a threshold one higher.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, get_args

import numpy as np

from secagg.errors import ParameterError

AdversaryClass = Literal["curious", "semi-malicious"]
ADVERSARY_CLASSES: tuple[str, ...] = get_args(AdversaryClass)

MAX_CLIENTS = 1_000_000
"""FCP's validated range; nothing breaks beyond it, but it is untested there."""

FEASIBILITY_LIMIT = Fraction(9, 10)
"""γ + δ (curious) or γ + 2δ (semi-malicious) above this has no useful k."""

_LN2 = math.log(2.0)
# Extra nats of slack when truncating a distribution to a window: the mass
# left out is below e^-40 times the quantile sought, i.e. invisible in float64.
_TRUNCATION_NATS = 40.0


@dataclass(frozen=True, slots=True)
class GraphParameters:
    """A neighbour count and threshold for one cohort.

    ``k`` neighbours per client besides itself (``n - 1`` when ``complete``),
    Shamir threshold ``t`` out of the ``k + 1`` holders. ``security_bits`` and
    ``correctness_bits`` are the promised failure probabilities as -log2; the
    complete-graph fallback is deterministic under the stated rates, so both
    are ``inf`` there.
    """

    n: int
    k: int
    t: int
    complete: bool
    security_bits: float
    correctness_bits: float

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n - 1:
            raise ParameterError(f"need 1 <= k <= n - 1, got k={self.k}, n={self.n}")
        if self.complete and self.k != self.n - 1:
            raise ParameterError("a complete graph has k = n - 1")
        if not 2 <= self.t <= self.k + 1:
            raise ParameterError(f"need 2 <= t <= k + 1, got t={self.t}, k={self.k}")

    @property
    def holders(self) -> int:
        """How many clients hold shares of one client's secrets (k + 1, itself included)."""
        return self.k + 1

    @property
    def graph_degree(self) -> int | None:
        """What to pass to :func:`protocol.graph.graph_from_seed`: ``None`` means complete."""
        return None if self.complete else self.k


def _exact_rate(rate: float, name: str) -> Fraction:
    """The rate as the decimal the caller wrote (0.07 is 7/100, not 0.0700…0666)."""
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ParameterError(f"{name} must be a number, got {rate!r}")
    value = float(rate)
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ParameterError(f"{name} must be in [0, 1), got {rate!r}")
    return Fraction(str(value))


def _check_n(n: int, *, upper: int | None) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise ParameterError(f"the number of clients must be an int, got {n!r}")
    if n < 1:
        raise ParameterError(f"the number of clients must be positive, got {n}")
    if upper is not None and n > upper:
        raise ParameterError(
            f"at most {upper} clients are supported (the range FCP validated), got {n}"
        )


def _check_bits(value: int, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ParameterError(f"{name} must be a positive int, got {value!r}")


def _check_adversary(adversary: str) -> None:
    if adversary not in ADVERSARY_CLASSES:
        raise ParameterError(f"adversary must be one of {ADVERSARY_CLASSES}, got {adversary!r}")


def complete_graph_threshold(
    n: int, *, adversarial_rate: float, dropout_rate: float, adversary: AdversaryClass
) -> int:
    """The smallest safe Shamir threshold t for full-graph SecAgg with n clients.

    Safe means, with at most ⌈γn⌉ corrupt clients: curious, t > ⌈γn⌉ (the
    corrupt clients never hold t shares); semi-malicious, t > ⌈(n + γn)/2⌉ (the
    server cannot collect t shares of both kinds for one client). The smallest
    such t is returned because it tolerates the most dropouts; it must still
    leave room for ⌈δn⌉ dropouts (n − t ≥ ⌈δn⌉), and t ≥ 2.

    Raises ParameterError when no threshold satisfies all of these, or when an
    argument is out of range. Unlike :func:`find_parameters` this does not
    apply the 0.9 feasibility limits: the full graph has no probabilistic part.
    """
    _check_n(n, upper=None)
    _check_adversary(adversary)
    gamma = _exact_rate(adversarial_rate, "adversarial_rate")
    delta = _exact_rate(dropout_rate, "dropout_rate")
    if adversary == "curious":
        bound = math.ceil(gamma * n)
    else:
        bound = math.ceil((n + gamma * n) / 2)
    t = max(2, bound + 1)
    dropouts = math.ceil(delta * n)
    if t > n or n - t < dropouts:
        raise ParameterError(
            f"no full-graph threshold for n={n}, {adversary} server, adversarial rate "
            f"{adversarial_rate}, dropout rate {dropout_rate}: security needs t >= {t}, "
            f"tolerating {dropouts} dropouts needs t <= {n - dropouts}"
        )
    return t


def find_parameters(
    n: int,
    *,
    adversarial_rate: float,
    dropout_rate: float,
    adversary: AdversaryClass = "semi-malicious",
    security_parameter: int = 40,
    correctness_parameter: int = 20,
) -> GraphParameters:
    """SecAgg+ neighbour count k and threshold t for n clients (FCP's method).

    Tries k = 2, 4, … < n − 1 and returns the first k for which the three
    conditions in the module docstring hold, with the smallest secure t (which
    also tolerates the most dropouts). With the defaults σ = 40, η = 20, k
    equals FCP's (bar the t ≥ 2 case in the module docstring) and t is never
    larger. If no such k exists the result
    is the complete graph (``complete=True``, ``k = n - 1``) with the
    threshold of :func:`complete_graph_threshold`.

    Raises ParameterError for n outside [1, 10^6], rates outside [0, 1),
    γ + δ > 0.9 (curious) or γ + 2δ > 0.9 (semi-malicious), non-positive
    security or correctness parameters, and when even the complete graph
    has no valid threshold.
    """
    _check_n(n, upper=MAX_CLIENTS)
    _check_adversary(adversary)
    gamma = _exact_rate(adversarial_rate, "adversarial_rate")
    delta = _exact_rate(dropout_rate, "dropout_rate")
    _check_bits(security_parameter, "security_parameter")
    _check_bits(correctness_parameter, "correctness_parameter")
    load = gamma + delta if adversary == "curious" else gamma + 2 * delta
    if load > FEASIBILITY_LIMIT:
        formula = "γ + δ" if adversary == "curious" else "γ + 2δ"
        raise ParameterError(
            f"infeasible for a {adversary} server: {formula} = {float(load):.3g} > 0.9 "
            f"(adversarial rate {adversarial_rate}, dropout rate {dropout_rate})"
        )

    corrupt = math.floor(gamma * n)
    dropped = math.floor(delta * n)
    found = _search_degree(
        n,
        corrupt=corrupt,
        survivors=n - dropped,
        semi_malicious=adversary == "semi-malicious",
        security_parameter=security_parameter,
        correctness_parameter=correctness_parameter,
    )
    if found is not None:
        k, t = found
        return GraphParameters(
            n=n,
            k=k,
            t=t,
            complete=False,
            security_bits=float(security_parameter),
            correctness_bits=float(correctness_parameter),
        )
    t = complete_graph_threshold(
        n, adversarial_rate=adversarial_rate, dropout_rate=dropout_rate, adversary=adversary
    )
    return GraphParameters(
        n=n, k=n - 1, t=t, complete=True, security_bits=math.inf, correctness_bits=math.inf
    )


def _search_degree(
    n: int,
    *,
    corrupt: int,
    survivors: int,
    semi_malicious: bool,
    security_parameter: int,
    correctness_parameter: int,
) -> tuple[int, int] | None:
    """First even k < n − 1 meeting all three conditions, with its threshold."""
    # σ + 1: the security budget 2^-σ is split evenly between the two bad events.
    log_eps_security = -(security_parameter + 1) * _LN2
    log_q_privacy = log_eps_security - math.log(n)
    log_q_correct = -correctness_parameter * _LN2 - math.log(n)
    bad = corrupt + (n - survivors)
    for k in range(2, n - 1, 2):
        if _log_disconnection_bound(n, k, bad) >= log_eps_security:
            continue
        # t1: w.h.p. no client has more than t1 corrupt neighbours.
        t1 = _upper_quantile(n, corrupt, k, log_q_privacy)
        if semi_malicious:
            t1 = _both_kinds_bound(t1, k)
        # Shamir needs t >= 2. FCP applies this floor only after its t1 < t2
        # test, so when t1 = 0 it can return t = 2 that survivors do not reach
        # w.h.p.; we test the threshold actually returned (see module notes).
        t = max(t1 + 1, 2)
        # t2: the most surviving neighbours we can count on, w.h.p.
        t2 = _lower_quantile(n, survivors, k, log_q_correct)
        if t <= t2:
            return k, t
    return None


def _log_disconnection_bound(n: int, k: int, bad: int) -> float:
    """Log of a union bound on P[removing the bad clients disconnects the ring].

    Cutting a Harary graph of degree k needs two disjoint runs of k/2
    consecutive removed clients. There are n(n − k − 1)/2 such pairs (k
    positions in all) and each run of k specific clients is all bad with
    probability bad!(n − k)! / ((bad − k)! n!).
    """
    if k > bad:
        return -math.inf
    pairs = math.log(n) + math.log(n - k - 1) - _LN2
    return (
        pairs
        + math.lgamma(bad + 1)
        + math.lgamma(n - k + 1)
        - math.lgamma(n + 1)
        - math.lgamma(bad - k + 1)
    )


def _support(total: int, marked: int, draws: int) -> tuple[int, int]:
    return max(0, draws - (total - marked)), min(draws, marked)


def _log_pmf(total: int, marked: int, draws: int, first: int, last: int) -> np.ndarray:
    """log P[H = x] for x = first..last, H ~ Hypergeometric(total, marked, draws).

    One point from log-gamma, the rest by the ratio P[x+1]/P[x], summed in log
    space: vectorised, and accurate far into the tails where the pmf underflows.
    """
    x = np.arange(first, last, dtype=np.float64)
    step = (
        np.log(marked - x)
        + np.log(draws - x)
        - np.log(x + 1.0)
        - np.log(total - marked - draws + x + 1.0)
    )
    anchor = _log_comb(marked, first) + _log_comb(total - marked, draws - first)
    anchor -= _log_comb(total, draws)
    out = np.empty(last - first + 1, dtype=np.float64)
    out[0] = anchor
    np.cumsum(step, out=out[1:])
    out[1:] += anchor
    return out


def _log_comb(a: int, b: int) -> float:
    return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)


def _hoeffding_width(draws: int, log_q: float) -> float:
    """Distance from the mean beyond which the tail mass is below q·e^-40."""
    return math.sqrt(draws * (_TRUNCATION_NATS - log_q) / 2.0)


def _upper_quantile(total: int, marked: int, draws: int, log_q: float) -> int:
    """Smallest t with P[H > t] < q, H ~ Hypergeometric(total, marked, draws)."""
    lo, hi = _support(total, marked, draws)
    mean = draws * marked / total
    first = max(lo, math.floor(mean) - 1)
    last = min(hi, math.ceil(mean + _hoeffding_width(draws, log_q)))
    for window in ((first, last), (lo, hi)):
        a, b = window
        tail = np.logaddexp.accumulate(_log_pmf(total, marked, draws, a, b)[::-1])[::-1]
        small = np.flatnonzero(tail < log_q)  # tail[i] = log P[a + i <= H <= b]
        x = a + int(small[0]) if small.size else b + 1  # first x with P[H >= x] < q
        if (x > a or a == lo) and (small.size or b == hi):
            return x - 1
    raise AssertionError("unreachable: the full support always decides")  # pragma: no cover


def _lower_quantile(total: int, marked: int, draws: int, log_q: float) -> int:
    """Smallest r with P[H <= r] >= q, H ~ Hypergeometric(total, marked, draws)."""
    lo, hi = _support(total, marked, draws)
    mean = draws * marked / total
    first = max(lo, math.floor(mean - _hoeffding_width(draws, log_q)))
    last = min(hi, math.ceil(mean) + 1)
    for window in ((first, last), (lo, hi)):
        a, b = window
        cdf = np.logaddexp.accumulate(_log_pmf(total, marked, draws, a, b))
        enough = np.flatnonzero(cdf >= log_q)  # cdf[i] = log P[a <= H <= a + i]
        if enough.size and (enough[0] > 0 or a == lo):
            return a + int(enough[0])
    raise AssertionError("unreachable: the full support always decides")  # pragma: no cover


def secure_threshold(
    n: int,
    k: int,
    *,
    colluders: int,
    adversary: AdversaryClass,
    security_parameter: int = 40,
) -> int:
    """Smallest t that keeps honest inputs private on a random k-neighbour graph.

    The privacy half of :func:`find_parameters` for a given k: with
    ``colluders`` corrupt clients placed at random, no client has more than
    t1 corrupt neighbours except with probability 2^-(σ+1) (union bound over
    the n clients); a semi-malicious server also needs 2t − k > t1. The result
    may exceed k + 1, meaning k is too small for that many colluders.
    """
    _check_n(n, upper=MAX_CLIENTS)
    _check_adversary(adversary)
    if not 1 <= k <= n - 1:
        raise ParameterError(f"need 1 <= k <= n - 1, got k={k}, n={n}")
    if not 0 <= colluders <= n:
        raise ParameterError("colluders must be in [0, n]")
    log_q = -(security_parameter + 1) * _LN2 - math.log(n)
    t1 = _upper_quantile(n, colluders, k, log_q)
    if adversary == "semi-malicious":
        t1 = _both_kinds_bound(t1, k)
    return max(t1 + 1, 2)


def _both_kinds_bound(corrupt: int, k: int) -> int:
    """Largest t a semi-malicious server reaches in both kinds of shares of one client.

    A client's shares sit with k + 1 holders: its k neighbours and itself.
    Corrupt neighbours hand the server both kinds, each honest holder one
    kind, so X corrupt holders give t of both kinds once 2t ≤ X + (k + 1).
    Hence the threshold must exceed (X + k + 1) / 2. Counting k holders instead
    (as FCP's finder does) is one short whenever X + k is odd: with k = 8 and
    X = 1 it gives t = 5, and one colluding neighbour then reaches 5 of both.
    """
    return (corrupt + k + 1) // 2
