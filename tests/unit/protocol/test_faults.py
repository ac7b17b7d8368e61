"""Fault points (protocol.faults): which passage of which point fires, from the spec alone."""

from __future__ import annotations

import pytest

from protocol.faults import FaultCounter, FaultSpec


def test_spec_parts_default_to_any_round_and_the_first_hit() -> None:
    assert FaultSpec.parse("before_commit") == FaultSpec("before_commit", None, 1)
    assert FaultSpec.parse("before_send_MaskedInput@1#3") == FaultSpec(
        "before_send_MaskedInput", 1, 3
    )


def test_no_spec_never_fires() -> None:
    counter = FaultCounter()
    assert not counter.fires(None, "before_commit")
    assert not counter.fires("", "before_commit")
    assert counter.hits == {}


def test_only_the_named_point_in_its_round_on_its_hit_fires() -> None:
    counter = FaultCounter()
    spec = "before_send_MaskedInput@2#2"
    assert not counter.fires(spec, "before_send_ShareKeys", 2)
    assert not counter.fires(spec, "before_send_MaskedInput", 1)  # another round: no hit
    assert not counter.fires(spec, "before_send_MaskedInput", 2)  # first hit
    assert counter.fires(spec, "before_send_MaskedInput", 2)  # second hit
    assert not counter.fires(spec, "before_send_MaskedInput", 2)  # fires once
    assert counter.hits == {"before_send_MaskedInput": 3}


def test_a_point_without_a_round_counts_in_any_round() -> None:
    counter = FaultCounter()
    assert counter.fires("after_commit_before_ack@5", "after_commit_before_ack")


def test_a_malformed_spec_for_this_point_is_a_clear_error() -> None:
    counter = FaultCounter()
    assert not counter.fires("other@x", "before_commit")  # not this point: ignored
    with pytest.raises(ValueError, match=r"NAME\[@ROUND\]\[#HIT\]"):
        counter.fires("before_commit@x", "before_commit")
