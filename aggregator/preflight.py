"""Refuse, at start, round parameters no round could run with (issue 15, item 5).

Settings checks (aggregator/settings.py) see one value at a time; whether a
round can run also depends on the roster. Without this check a threshold
above the cohort, a negative one, a SecAgg+ degree the graph cannot use or a
threshold every client's policy refuses would start anyway, then fail every
round attempt (a traceback or "only 0 clients answered" each time) forever.

So the round config for the cohort the aggregator waits for (``min_clients``
or the whole roster) is built here exactly as the coordinator will build it,
and checked against the clients' own policy (protocol/policy.py):

- with n_C = 0, the least any client assumes: a refusal there means no
  client would ever join, so the aggregator refuses to start, saying why;
- with the default policy (n_C = a third of the roster): a refusal there is
  a warning naming the rule, since clients configured with a smaller
  ``colluders`` do accept it (small test cohorts do).
"""

from __future__ import annotations

import logging

from aggregator.drivers import round_threshold
from aggregator.settings import AggregatorSettings
from protocol.build import make_config
from protocol.config import RoundConfig
from protocol.dp_round import round_colluders, round_plan
from protocol.policy import ClientPolicy
from secagg.errors import ParameterError

log = logging.getLogger("secagg.aggregator")


def check_round_parameters(s: AggregatorSettings, roster: int) -> list[str]:
    """Raise ParameterError if no round of the ``roster``'s clients can run as configured.

    Returns the warnings it logged. Runs before any state is touched.
    """
    if s.min_clients > roster:
        raise ParameterError(
            f"setting min_clients = {s.min_clients}: the roster holds only {roster} clients"
        )
    if s.mode != "secagg" or roster < 1:
        return []  # HE rounds have no threshold or graph; their config is checked per round
    n = s.min_clients or roster
    if s.threshold > n:
        raise ParameterError(
            f"setting threshold = {s.threshold}: above the cohort of {n} clients "
            f"({'min_clients' if s.min_clients else 'the roster'})"
        )
    if s.degree and s.degree < n - 1 and s.threshold > s.degree + 1:
        raise ParameterError(
            f"setting threshold = {s.threshold}: a SecAgg+ share has only degree + 1 = "
            f"{s.degree + 1} holders"
        )
    config = round_config(s, n, roster)
    if s.profile == "plain":
        return []
    opted = ClientPolicy().with_opt_in(s.profile)
    floor = ClientPolicy(colluders=0, profiles=opted.profiles).check(config, roster_size=roster)
    if floor is not None:
        raise ParameterError(f"no client would join a round of {n}: {floor}")
    default = opted.check(config, roster_size=roster)
    warnings = []
    if default is not None:
        warnings.append(
            f"clients with the default policy (n_C = a third of the roster of {roster}) will "
            f"refuse these rounds: {default}; only clients with a smaller colluders join"
        )
    for line in warnings:
        log.warning("%s", line)
    return warnings


def round_config(s: AggregatorSettings, n: int, roster: int) -> RoundConfig:
    """The config of a round of ``n`` clients as the coordinator builds it; one clear error."""
    try:
        threshold = round_threshold(s, n, roster)
        levels, clip, max_weight = s.levels, s.clip, s.max_weight
        if s.dp_noise_multiplier > 0:
            plan = round_plan(
                dim=s.vector_dim,
                clients=n,
                threshold=threshold,
                l2_clip=s.dp_clip,
                noise_multiplier=s.dp_noise_multiplier,
                colluders=round_colluders(n, s.dp_colluders, sparse=0 < s.degree < n - 1),
            )
            levels, clip, max_weight = plan.levels, plan.quantizer_clip, 1
        return make_config(
            clients=n,
            dim=s.vector_dim,
            threshold=threshold,
            degree=s.degree or None,
            profile=s.profile,
            levels=levels,
            clip=clip,
            max_weight=max_weight,
        )
    except ParameterError as exc:
        raise ParameterError(
            f"no round of {n} clients can run with these settings: {exc}"
        ) from None
