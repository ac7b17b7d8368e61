"""The per-mode drivers (aggregator/drivers.py) and FedAvg's do-nothing method rounds.

The rounds themselves run in test_method_rounds.py, test_he_rounds.py and
test_he_masked_rounds.py through the coordinator; these check each driver's
part on its own: which driver a mode gets, what a stored config decodes to,
who may join an HE cohort, which model is served, how large an upload may be.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aggregator import he_rounds
from aggregator.drivers import (
    BFVMaskedDriver,
    CKKSDriver,
    Driver,
    HEDriver,
    MaskingDriver,
    driver_for,
)
from aggregator.method_state import FedAvgRounds, MethodRounds, method_rounds
from aggregator.settings import AggregatorSettings
from aggregator.store import Store
from protocol.config import MIN_HONEST
from protocol.errors import WrongPhase
from protocol.messages import RoundStart
from protocol.method_messages import bound_model_hash
from secagg.rng import DeterministicRandomSource

DIM = 6
ROSTER = {c: b"" for c in range(1, 6)}


def make(tmp_path: Path, mode: str, **changes: Any) -> Driver[Any, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {"dim": DIM, "state_dir": str(tmp_path), "mode": mode}
    base |= {"insecure": True} if mode == "secagg" else {"pki_dir": str(tmp_path)}
    settings = AggregatorSettings(**{**base, **changes})
    return driver_for(settings, ROSTER, Store(tmp_path / "state.sqlite"), np.ones(DIM, np.float32))


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("secagg", MaskingDriver), ("ckks", CKKSDriver), ("bfv-masked", BFVMaskedDriver)],
)
def test_the_mode_picks_its_driver_and_a_stored_config_reads_back(
    tmp_path: Path, mode: str, kind: type
) -> None:
    driver = make(tmp_path, mode)
    assert type(driver) is kind
    config = driver.config(3, (1, 2, 4), DeterministicRandomSource(b"n"), np.zeros(DIM), None)
    assert config.round == 3 and config.clients == (1, 2, 4)
    assert driver.decode(driver.encode(config)) == config


def test_a_masked_config_announces_the_model_and_the_method_state(tmp_path: Path) -> None:
    driver = make(tmp_path, "secagg", profile="semi-honest")
    model = np.arange(DIM, dtype=np.float32)
    config = driver.config(0, (1, 2, 3), DeterministicRandomSource(b"n"), model, None)
    assert config.model_hash == bound_model_hash(model.astype("<f4").tobytes(), None)
    assert config.nonce == DeterministicRandomSource(b"n").random_bytes(32)


def test_an_he_cohort_is_drawn_from_the_clients_holding_the_model(tmp_path: Path) -> None:
    driver = make(tmp_path, "ckks")
    assert isinstance(driver, HEDriver)
    assert driver.cohort([1, 2, 3, 5], [1, 2, 3, 4, 5], 5) == ([1, 2, 3, 5], [1, 2, 3, 4, 5], 5)
    driver.state = he_rounds.HEState(1, bytes(32), (2, 3, 5))
    assert driver.cohort([1, 2, 3, 5], [1, 2, 3, 4, 5], 5) == ([2, 3, 5], [2, 3, 5], 3)
    masking = make(tmp_path / "m", "secagg")
    assert masking.cohort([1, 3], [1, 2, 3], 3) == ([1, 3], [1, 2, 3], 3)
    assert (masking.fewest, driver.fewest) == (2, MIN_HONEST)
    assert not masking.keeps_late_messages and driver.keeps_late_messages


def test_which_model_is_served(tmp_path: Path) -> None:
    masking = make(tmp_path / "m", "secagg")
    masking.check_model_round(4, 4)
    with pytest.raises(WrongPhase, match="not available"):
        masking.check_model_round(3, 4)
    he = make(tmp_path / "h", "ckks")
    he.check_model_round(0, 4)  # θ₀ only, whatever the round
    with pytest.raises(WrongPhase, match="clients hold the rest"):
        he.check_model_round(4, 4)


def test_upload_caps(tmp_path: Path) -> None:
    assert make(tmp_path / "m", "secagg").max_payload() == (DIM + 1) * 8 + 1024
    assert make(tmp_path / "c", "ckks").max_payload() == (DIM + 1) * 8 + 1024
    cap = make(tmp_path / "b", "bfv-masked").max_payload()
    assert cap == he_rounds.masked_upload_cap(DIM) > (DIM + 1) * 8 + 1024


def test_fedavg_rounds_do_nothing(tmp_path: Path) -> None:
    settings = AggregatorSettings(insecure=True, dim=DIM, state_dir=str(tmp_path))
    rounds = method_rounds(settings, tmp_path)
    assert isinstance(rounds, FedAvgRounds) and rounds.state is None and rounds.releases == {}
    with pytest.raises(WrongPhase, match="runs FedAvg"):
        rounds.check_takes_releases()
    mean = np.arange(3.0)
    assert rounds.finish(0, mean, 2) is mean
    config = make(tmp_path, "secagg").config(
        0, (1, 2), DeterministicRandomSource(b"n"), np.zeros(DIM), None
    )
    start = RoundStart(config)
    assert rounds.bind(start) is start
    rounds.save()
    assert not (tmp_path / "method").exists()
    fedface = AggregatorSettings(
        insecure=True, dim=DIM, state_dir=str(tmp_path), method="fedface", embedding_dim=2
    )
    assert isinstance(method_rounds(fedface, tmp_path), MethodRounds)


def test_method_state_and_he_rounds_do_not_import_the_settings() -> None:
    """The settings import both to check themselves; neither imports them back (no cycle)."""
    code = (
        "import sys, aggregator.method_state, aggregator.he_rounds; "
        "print('aggregator.settings' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_service_mode_of_the_registry_has_a_driver() -> None:
    from aggregator.drivers import HE_DRIVERS
    from protocol.modes import names

    assert {"secagg", *HE_DRIVERS} == set(names("service"))
