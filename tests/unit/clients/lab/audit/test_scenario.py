"""The audit's data split keeps the private images out of the gallery and the public set."""

from __future__ import annotations

import numpy as np
import pytest

from clients.lab.audit.scenario import client_projector, split_for_audit
from clients.training.data import synthetic_faces


def test_split_keeps_private_images_out_of_gallery_and_public_set() -> None:
    ds = synthetic_faces(identities=12, images_per_identity=5, size=8, seed=0)
    split = split_for_audit(ds, needed=10, seed=1)
    assert len(split.private) == 10
    assert len(split.private) + len(split.gallery) == len(ds)
    private_ids = set(split.private.labels.tolist())
    assert private_ids <= set(split.victims)
    assert not private_ids & set(split.public.labels.tolist())
    # Round-robin: the first len(victims) private images are distinct people.
    first = split.private.labels[: len(split.victims)]
    assert len(set(first.tolist())) == len(first)
    # No private image reappears in the gallery (compare pixels).
    for image in split.private.images:
        assert not np.any(np.all(split.gallery.images == image, axis=(1, 2, 3)))
    # Every victim keeps at least two gallery images.
    assert split.gallery.counts[list(split.victims)].min() >= 2


def test_split_refuses_more_private_images_than_the_data_allows() -> None:
    ds = synthetic_faces(identities=8, images_per_identity=3, size=8, seed=0)
    with pytest.raises(ValueError, match="use fewer clients"):
        split_for_audit(ds, needed=10, seed=0)


def test_projectors_are_private_orthogonal_and_optional() -> None:
    assert client_projector("none", 8, seed=0, client=1) is None
    p1 = client_projector("known", 8, seed=0, client=1)
    p2 = client_projector("unknown", 8, seed=0, client=2)
    assert p1 is not None and p2 is not None
    assert np.allclose((p1 @ p1.T).numpy(), np.eye(8), atol=1e-5)
    assert not np.allclose(p1.numpy(), p2.numpy())
    with pytest.raises(ValueError, match="projector must be one of"):
        client_projector("maybe", 8, seed=0, client=1)
