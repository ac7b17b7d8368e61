"""The real client daemon against a scripted aggregator in bfv-masked rounds (issue 14).

What a client insists on before any secret leaves: its own policy judges the
hybrid as mode "bfv-masked" with SecAgg's cohort and threshold rules; a
refusal is one typed ClientAbort, sent before the model is downloaded, any
training, any key. A start or a later message that does not decode ends the
round with a ClientAbort too, and the daemon goes on. The differencing
ledger admits each attempt and refuses a model it already contributed to,
in the plain ckks path as well.
"""

from __future__ import annotations

import numpy as np
import pytest

from clients.ledger import ContributionLedger
from protocol.he_messages import HEJoin, HEKeyDelivery, HEKeys, HEMaskedConfig, HEMaskedStart
from protocol.he_model import model_sha256
from protocol.messages import AdvertiseKeys, ClientAbort
from protocol.policy import ClientPolicy
from secagg_pb import codec
from secagg_pb.v1 import secagg_pb2 as pb
from tests.unit.clients.test_daemon_policy import (
    DIM,
    MODEL,
    N,
    Scripted,
    _he_start,
    aborts,
    daemon,
    reply,
)

LINEAGE = model_sha256(np.frombuffer(MODEL, "<f4").astype(np.float32))  # θ₀'s


def masked_config(**changes: object) -> HEMaskedConfig:
    base: dict[str, object] = {
        "round": 0,
        "clients": tuple(range(1, N + 1)),
        "threshold": 5,  # the default policy's minimum for n = 7 (n_C = 2 from the roster)
        "dim": DIM,
        "key_holder": 2,
        "clip": 1.0,
        "levels": 1 << 16,
        "max_weight": 1,
        "nonce": bytes(32),
        "model_hash": LINEAGE,
    }
    return HEMaskedConfig(**{**base, **changes})  # type: ignore[arg-type]


def masked_start(config: HEMaskedConfig, epoch: int = 1) -> pb.PollReply:
    return reply(codec.server_to_proto(HEMaskedStart(config)), epoch=epoch)


def keys_sent(transport: Scripted) -> bool:
    return any(isinstance(m, AdvertiseKeys | HEJoin | HEKeyDelivery) for m in transport.sent)


def test_default_policy_joins_a_bfv_masked_round() -> None:
    transport = Scripted([masked_start(masked_config())])
    d, trainer = daemon(transport)
    d.run()
    assert trainer.calls == 1 and transport.downloads == 1 and not aborts(transport)
    assert [type(m) for m in transport.sent] == [HEJoin, AdvertiseKeys]


@pytest.mark.parametrize(
    ("policy", "config", "rule"),
    [
        (ClientPolicy(modes=("secagg",)), masked_config(), "mode 'bfv-masked'"),
        (ClientPolicy(), masked_config(threshold=4), "threshold 4 is below"),
        (ClientPolicy(min_cohort=8), masked_config(), "cohort of 7"),
        (ClientPolicy(colluders=5), masked_config(threshold=7), "n_C = 5"),
    ],
)
def test_a_round_outside_the_policy_is_refused_before_any_key(
    policy: ClientPolicy, config: HEMaskedConfig, rule: str
) -> None:
    transport = Scripted([masked_start(config)])
    d, trainer = daemon(transport, policy)
    d.run()
    assert transport.downloads == 0 and trainer.calls == 0 and not keys_sent(transport)
    (reason,) = aborts(transport)
    assert "policy" in reason and rule in reason
    (abort,) = [m for m in transport.sent if isinstance(m, ClientAbort)]
    assert abort.client == 1 and abort.round == config.round


def test_a_start_that_does_not_decode_is_a_typed_abort_and_the_daemon_goes_on() -> None:
    bad = codec.server_to_proto(HEMaskedStart(masked_config(round=4)))
    bad.he_masked_start.config.threshold = 0  # HEMaskedConfig refuses it when decoding
    transport = Scripted([reply(bad, epoch=1), masked_start(masked_config(), epoch=2)])
    d, trainer = daemon(transport)
    d.run()
    first, *rest = [m for m in transport.sent if isinstance(m, ClientAbort)]
    assert first.round == 4 and "invalid HEMaskedConfig" in first.reason and not rest
    assert trainer.calls == 1 and any(isinstance(m, HEJoin) for m in transport.sent)


def test_a_hostile_message_mid_round_aborts_the_round_cleanly() -> None:
    """A join list that omits this client's key: the machine aborts, nothing escapes."""
    stranger = HEJoin(3, 0, b"k" * 32, b"s" * 64)
    transport = Scripted(
        [
            masked_start(masked_config()),
            reply(codec.server_to_proto(HEKeys((stranger,))), seq=2),
            masked_start(masked_config(nonce=b"\x01" * 32), epoch=2),
        ]
    )
    d, trainer = daemon(transport)
    d.run()
    (abort,) = aborts(transport)
    assert abort and d.stats.rounds_aborted[0][0] == 0
    assert trainer.calls == 2  # the next attempt was joined


def test_an_undecodable_message_mid_round_is_told_to_the_server() -> None:
    broken = codec.server_to_proto(HEMaskedStart(masked_config()))
    broken.he_masked_start.config.nonce = b"short"  # arrives within the same attempt
    transport = Scripted([masked_start(masked_config()), reply(broken, seq=2)])
    d, _ = daemon(transport)
    d.run()
    (reason,) = aborts(transport)
    assert "unusable server message" in reason


def test_the_ledger_refuses_a_lineage_already_contributed_to() -> None:
    ledger = ContributionLedger()
    ledger.contribute(LINEAGE)
    transport = Scripted([masked_start(masked_config())])
    d, trainer = daemon(transport, ledger=ledger)
    d.run()
    (reason,) = aborts(transport)
    assert "differencing" in reason and trainer.calls == 0 and not keys_sent(transport)


def test_the_ledger_caps_attempts_per_lineage_in_both_he_modes() -> None:
    """Each attempt (a fresh nonce) is admitted before any key; the fourth is refused."""
    starts = [masked_start(masked_config(nonce=bytes([i]) * 32), epoch=i + 1) for i in range(4)]
    transport = Scripted(starts)
    d, trainer = daemon(transport)
    d.run()
    (reason,) = aborts(transport)
    assert "3 round attempts" in reason and trainer.calls == 3

    ledger = ContributionLedger()  # plain ckks (an opt-in): the same rule
    ledger.contribute(LINEAGE)  # round 0 announces θ₀'s lineage (FedAvg: no state bound)
    transport = Scripted([_he_start("ckks")])
    d, trainer = daemon(transport, ClientPolicy(colluders=0).with_opt_in("ckks"), ledger)
    d.run()
    (reason,) = aborts(transport)
    assert "differencing" in reason and trainer.calls == 0
    assert not any(isinstance(m, HEJoin) for m in transport.sent)
