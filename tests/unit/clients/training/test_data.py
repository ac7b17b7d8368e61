"""The face data layer: synthetic identities, loaders, pairs and federated splits."""

from __future__ import annotations

import hashlib
from math import comb
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clients.training import data
from clients.training.data import (
    FaceDataset,
    Pair,
    all_pairs,
    default_orl_root,
    load_dataset,
    load_identity_folder,
    load_npz,
    load_orl,
    natural_key,
    pair_indices,
    partition_identities,
    read_pairs,
    synthetic_faces,
)

ORL = default_orl_root()
needs_orl = pytest.mark.skipif(
    not (ORL / "s40").is_dir() or not (ORL / "orl_faces.npz").is_file(),
    reason=f"ORL faces not found at {ORL} (set SECAGG_ORL_DIR to shared/data/orl_faces)",
)


def small(ids: int = 12, imgs: int = 6, seed: int = 0) -> FaceDataset:
    return synthetic_faces(identities=ids, images_per_identity=imgs, size=16, seed=seed)


def row_digests(ds: FaceDataset) -> list[bytes]:
    return [hashlib.sha256(image.tobytes()).digest() for image in ds.images]


def nearest_mean_accuracy(train: FaceDataset, test: FaceDataset) -> float:
    X = train.images.reshape(len(train), -1)
    Y = test.images.reshape(len(test), -1)
    means = np.stack([X[train.labels == i].mean(0) for i in range(train.identities)])
    d = ((Y[:, None, :] - means[None]) ** 2).sum(-1)
    return float((d.argmin(1) == test.labels).mean())


# ----------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic_per_seed() -> None:
    a, b, c = small(seed=3), small(seed=3), small(seed=4)
    assert a.images.tobytes() == b.images.tobytes()
    assert not np.array_equal(a.images, c.images)
    assert a.names == b.names and np.array_equal(a.labels, b.labels)


def test_synthetic_shapes_dtypes_range() -> None:
    ds = synthetic_faces(identities=5, images_per_identity=3, size=(20, 16), channels=3)
    assert ds.images.shape == (15, 3, 20, 16) and ds.images.dtype == np.float32
    assert ds.labels.dtype == np.int64 and ds.labels.tolist() == [i // 3 for i in range(15)]
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    assert ds.images.std() > 0.05  # not a blank image
    assert len(ds) == 15 and ds.identities == 5 and len(set(ds.names)) == 5
    assert ds.counts.tolist() == [3] * 5
    grey = synthetic_faces(identities=2, images_per_identity=2)
    assert grey.images.shape == (4, 1, 32, 32)


def test_synthetic_identity_does_not_depend_on_how_many_are_drawn() -> None:
    few, many = small(ids=3), small(ids=10)
    assert np.array_equal(few.images, many.images[: len(few)])


def test_synthetic_identities_are_separable_but_images_vary() -> None:
    ds = synthetic_faces(identities=50, images_per_identity=8, size=24)
    train, test = ds.split_images(4, seed=0)
    accuracy = nearest_mean_accuracy(train, test)
    assert accuracy > 0.3  # chance is 0.02
    assert accuracy < 1.0  # pose and lighting make it a real task
    assert len(set(row_digests(ds))) == len(ds)
    same = np.abs(ds.images[0] - ds.images[1]).mean()
    assert same > 0.02  # well beyond float noise
    other = np.abs(ds.images[0] - ds.images[8]).mean()
    assert other > same  # yet closer to its own identity than to the next


def test_synthetic_noise_parameter() -> None:
    def roughness(noise: float) -> float:
        images = synthetic_faces(identities=3, images_per_identity=2, noise=noise).images
        return float(np.abs(np.diff(images, axis=-1)).mean())

    assert roughness(0.0) < 0.04  # the clean prototype is smooth
    assert roughness(0.05) > 2 * roughness(0.0)


def test_synthetic_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="channels"):
        synthetic_faces(identities=2, channels=2)
    with pytest.raises(ValueError, match="at least one"):
        synthetic_faces(identities=0)


# ------------------------------------------------------------------- dataset methods


def test_subset_relabels_in_given_order() -> None:
    ds = small(ids=6, imgs=3)
    sub = ds.subset([4, 1])
    assert sub.names == (ds.names[4], ds.names[1])
    assert sub.labels.tolist() == [1, 1, 1, 0, 0, 0]  # rows keep their order
    assert np.array_equal(sub.images[:3], ds.images[3:6])
    assert np.array_equal(sub.images[3:], ds.images[12:15])
    with pytest.raises(ValueError, match="distinct"):
        ds.subset([1, 1])
    with pytest.raises(ValueError, match="lie in"):
        ds.subset([6])


def test_split_images_per_identity() -> None:
    ds = small(ids=7, imgs=5)
    first, second = ds.split_images(2, seed=1)
    assert first.counts.tolist() == [2] * 7 and second.counts.tolist() == [3] * 7
    assert first.names == second.names == ds.names
    assert sorted(row_digests(first) + row_digests(second)) == sorted(row_digests(ds))
    again, _ = ds.split_images(2, seed=1)
    other, _ = ds.split_images(2, seed=2)
    assert np.array_equal(again.images, first.images)
    assert not np.array_equal(other.images, first.images)
    with pytest.raises(ValueError, match="fewer than 6"):
        ds.split_images(6, seed=0)


def test_dataset_validates_fields() -> None:
    images = np.zeros((2, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="labels must lie"):
        FaceDataset(images, np.array([0, 1]), ("a",))
    with pytest.raises(ValueError, match="float32"):
        FaceDataset(images.astype(np.float64), np.array([0, 0]), ("a",))


# --------------------------------------------------------------------------- loaders


def write_image(path: Path, value: int, size: tuple[int, int] = (6, 8), mode: str = "L") -> None:
    """A ``size`` = (height, width) image whose pixels encode ``value`` (and a gradient)."""
    height, width = size
    pixels = (value + np.arange(width)[None, :] + 0 * np.arange(height)[:, None]).astype(np.uint8)
    if mode == "RGB":
        pixels = np.stack([pixels, pixels // 2, 255 - pixels], axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def faces_folder(tmp_path: Path) -> Path:
    root = tmp_path / "faces"
    for person, count in (("s10", 3), ("s2", 2), ("s1", 1)):
        for i in range(count, 0, -1):  # written in reverse to show the order is sorted
            write_image(root / person / f"{i}.pgm", 10 * int(person[1:]) + i)
    write_image(root / "s2" / "10.png", 200)  # natural order puts 10 after 2
    (root / "s2" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return root


def test_load_identity_folder_natural_order(faces_folder: Path) -> None:
    ds = load_identity_folder(faces_folder)
    assert ds.names == ("s1", "s2", "s10")
    assert ds.files == (
        "s1/1.pgm",
        "s2/1.pgm",
        "s2/2.pgm",
        "s2/10.png",
        "s10/1.pgm",
        "s10/2.pgm",
        "s10/3.pgm",
    )
    assert ds.labels.tolist() == [0, 1, 1, 1, 2, 2, 2]
    assert ds.images.shape == (7, 1, 6, 8) and ds.images.dtype == np.float32
    first_pixels = np.rint(ds.images[:, 0, 0, 0] * 255).astype(int).tolist()
    assert first_pixels == [11, 21, 22, 200, 101, 102, 103]


def test_load_identity_folder_resize_colour_and_filter(faces_folder: Path) -> None:
    ds = load_identity_folder(faces_folder, size=(3, 5), min_images=2)
    assert ds.names == ("s2", "s10") and ds.images.shape == (6, 1, 3, 5)
    rgb = load_identity_folder(faces_folder, grayscale=False, min_images=3)
    assert rgb.images.shape == (6, 3, 6, 8)
    assert np.array_equal(rgb.images[:, 0], rgb.images[:, 2])  # grey source: equal channels
    only_png = load_identity_folder(faces_folder, extensions=(".PNG",))
    assert only_png.names == ("s2",) and only_png.files == ("s2/10.png",)
    with pytest.raises(ValueError, match="no identity folder"):
        load_identity_folder(faces_folder, min_images=5)


def test_load_identity_folder_colour_and_mixed_sizes(tmp_path: Path) -> None:
    write_image(tmp_path / "a" / "x.png", 40, mode="RGB")
    write_image(tmp_path / "a" / "y.jpg", 40, size=(9, 9), mode="RGB")
    with pytest.raises(ValueError, match="pass size"):
        load_identity_folder(tmp_path)
    ds = load_identity_folder(tmp_path, size=(4, 4), grayscale=False)
    assert ds.images.shape == (2, 3, 4, 4)
    assert ds.images[0, 2].mean() > ds.images[0, 0].mean()  # channel order kept (B = 255 - R)


@needs_orl
def test_load_orl_matches_the_npz_pixel_exactly() -> None:
    ds = load_orl(size=None)
    assert ds.images.shape == (400, 1, 112, 92)
    assert ds.names == tuple(f"s{i}" for i in range(1, 41))
    assert ds.counts.tolist() == [10] * 40
    assert ds.files[:2] == ("s1/1.pgm", "s1/2.pgm") and ds.files[-1] == "s40/10.pgm"
    with np.load(ORL / "orl_faces.npz") as arrays:
        reference, labels = arrays["images"], arrays["labels"]
    assert np.array_equal(ds.labels, labels)
    assert np.array_equal(np.rint(ds.images[:, 0] * 255).astype(np.uint8), reference)
    assert np.array_equal(ds.images[:, 0], reference.astype(np.float32) / np.float32(255))


@needs_orl
def test_load_orl_default_size_and_npz_resize_agree() -> None:
    ds = load_orl()
    assert ds.images.shape == (400, 1, 56, 46)
    npz = load_npz(ORL / "orl_faces.npz", size=(56, 46))
    assert np.array_equal(npz.images, ds.images)  # same Pillow path for files and arrays
    assert npz.files[:2] == ("0/1", "0/2")  # from image_index


def test_load_npz(tmp_path: Path) -> None:
    images = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    path = tmp_path / "faces.npz"
    np.savez(
        path,
        images=images,
        labels=np.array([7, 3, 7, 3]),
        names=np.array(["x"] * 3 + ["c"] + ["x"] * 3 + ["g"]),
    )
    ds = load_npz(path)
    assert ds.images.shape == (4, 1, 5, 6)
    assert np.array_equal(ds.images[:, 0], images / np.float32(255))
    assert ds.labels.tolist() == [1, 0, 1, 0] and ds.names == ("c", "g")
    assert load_npz(path, size=(2, 3)).images.shape == (4, 1, 2, 3)

    colour = tmp_path / "colour.npz"
    floats = np.linspace(0, 1, 2 * 4 * 4 * 3, dtype=np.float64).reshape(2, 4, 4, 3)
    np.savez(colour, images=floats, labels=np.array([0, 1]))
    ds = load_npz(colour, size=(2, 2))
    assert ds.images.shape == (2, 3, 2, 2) and ds.names == ("0", "1")
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
    np.savez(colour, images=floats * 255, labels=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        load_npz(colour)


def test_load_dataset_specs(faces_folder: Path, tmp_path: Path) -> None:
    ds = load_dataset("synthetic:4:3", size=(8, 8))
    assert ds.images.shape == (12, 1, 8, 8)
    assert load_dataset("synthetic", size=None).images.shape == (800, 1, 32, 32)
    seeded = load_dataset("synthetic:4:3:5", size=(8, 8))
    assert np.array_equal(
        seeded.images, synthetic_faces(identities=4, images_per_identity=3, size=8, seed=5).images
    )
    assert load_dataset(str(faces_folder), size=(4, 4)).names == ("s1", "s2", "s10")
    path = tmp_path / "x.npz"
    np.savez(path, images=np.zeros((2, 3, 3), np.uint8), labels=np.array([0, 1]))
    assert len(load_dataset(str(path), size=None)) == 2
    with pytest.raises(ValueError, match="synthetic"):
        load_dataset("synthetic:4", size=None)
    with pytest.raises(FileNotFoundError):
        load_dataset(str(tmp_path / "missing"), size=None)


def test_natural_key() -> None:
    names = ["s10", "s2", "S1", "s1", "a01", "a1", "b"]
    assert sorted(names, key=natural_key) == ["a01", "a1", "b", "S1", "s1", "s2", "s10"]


# ------------------------------------------------------------------------------ pairs


PAIRS_TXT = """2 2
Alice 1 2
Bob 1 3
Alice 1 Bob 2
Bob 3 Carol 1
Carol 1 2
Alice 2 3
Alice 3 Carol 2
Bob 2 Alice 1
"""


def test_read_pairs_lfw_format(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text(PAIRS_TXT)
    pairs = read_pairs(path)
    assert len(pairs) == 8
    assert pairs[0] == Pair("Alice/1", "Alice/2", True, 0)
    assert pairs[2] == Pair("Alice/1", "Bob/2", False, 0)
    assert pairs[4] == Pair("Carol/1", "Carol/2", True, 1)
    assert [p.same for p in pairs] == [True, True, False, False] * 2
    assert [p.fold for p in pairs] == [0] * 4 + [1] * 4

    one_fold = tmp_path / "dev.txt"
    one_fold.write_text("1\nAlice 1 2\nAlice 1 Bob 1\n")
    assert [p.fold for p in read_pairs(one_fold)] == [0, 0]
    path.write_text(PAIRS_TXT.rsplit("\n", 2)[0] + "\n")  # drop the last pair
    with pytest.raises(ValueError, match="promises 8"):
        read_pairs(path)
    path.write_text("1 1\nAlice 1 2\nAlice x Bob 1\n")
    with pytest.raises(ValueError, match="not a pair"):
        read_pairs(path)


def test_pair_indices_resolve_lfw_file_names(tmp_path: Path) -> None:
    root = tmp_path / "lfw"
    for name, count in (("Alice", 3), ("Bob", 3), ("Carol", 2)):
        for i in range(1, count + 1):
            write_image(root / name / f"{name}_{i:04d}.jpg", 30 * i)
    (tmp_path / "pairs.txt").write_text(PAIRS_TXT)
    ds = load_identity_folder(root)
    pairs = read_pairs(tmp_path / "pairs.txt")
    a, b, same = pair_indices(pairs, ds)
    refs = [(ds.files[i], ds.files[j]) for i, j in zip(a, b, strict=True)]
    assert refs[:4] == [
        ("Alice/Alice_0001.jpg", "Alice/Alice_0002.jpg"),
        ("Bob/Bob_0001.jpg", "Bob/Bob_0003.jpg"),
        ("Alice/Alice_0001.jpg", "Bob/Bob_0002.jpg"),
        ("Bob/Bob_0003.jpg", "Carol/Carol_0001.jpg"),
    ]
    assert np.array_equal(same, [p.same for p in pairs])
    assert np.array_equal(ds.labels[a] == ds.labels[b], same)

    # Refs follow file numbers, not positions, so they survive a subset.
    sub = ds.subset([2, 0])
    a2, b2, _ = pair_indices([Pair("Carol/2", "Alice/3", False)], sub)
    assert (sub.files[a2[0]], sub.files[b2[0]]) == ("Carol/Carol_0002.jpg", "Alice/Alice_0003.jpg")
    with pytest.raises(KeyError, match="Bob/1"):
        pair_indices([Pair("Bob/1", "Alice/1", False)], sub)


def test_pair_indices_without_files_use_positions() -> None:
    ds = small(ids=3, imgs=4)
    a, b, same = pair_indices([Pair(f"{ds.names[1]}/1", f"{ds.names[2]}/4", False)], ds)
    assert (a.tolist(), b.tolist(), same.tolist()) == ([4], [11], [False])


def test_all_pairs_counts() -> None:
    sizes = [3, 5, 1, 4]
    labels = np.repeat(np.arange(4), sizes)
    ds = FaceDataset(np.zeros((len(labels), 1, 2, 2), np.float32), labels, tuple("abcd"))
    a, b, same = all_pairs(ds)
    genuine = sum(comb(n, 2) for n in sizes)
    impostor = sum(sizes[i] * sizes[j] for i in range(4) for j in range(i + 1, 4))
    assert same.sum() == genuine and (~same).sum() == impostor
    assert np.array_equal(labels[a] == labels[b], same)
    assert (a < b).all() and len({(x, y) for x, y in zip(a, b, strict=True)}) == len(a)

    a2, b2, same2 = all_pairs(ds, max_impostor=10, seed=1)
    assert same2.sum() == genuine and (~same2).sum() == 10
    pairs = set(zip(a.tolist(), b.tolist(), strict=True))
    sampled = set(zip(a2.tolist(), b2.tolist(), strict=True))
    assert sampled <= pairs and len(sampled) == len(a2)
    assert np.array_equal(all_pairs(ds, max_impostor=10, seed=1)[0], a2)
    assert not np.array_equal(all_pairs(ds, max_impostor=10, seed=2)[0], a2)


def test_all_pairs_sparse_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "_DENSE_PAIR_LIMIT", 10)
    labels = np.repeat(np.arange(20), 5)
    ds = FaceDataset(np.zeros((100, 1, 2, 2), np.float32), labels, tuple(map(str, range(20))))
    a, b, same = all_pairs(ds, max_impostor=300, seed=0)
    impostor = ~same
    assert impostor.sum() == 300 and same.sum() == 20 * comb(5, 2)
    assert (labels[a[impostor]] != labels[b[impostor]]).all() and (a < b).all()
    assert len(set(zip(a[impostor].tolist(), b[impostor].tolist(), strict=True))) == 300
    assert np.array_equal(all_pairs(ds, max_impostor=300, seed=0)[1], b)


@needs_orl
def test_orl_held_out_pair_counts_match_methods() -> None:
    _, _, same = all_pairs(load_orl(size=(8, 8)).subset(range(30, 40)))
    assert (same.sum(), (~same).sum()) == (450, 4500)  # methods.md §10.2


# ------------------------------------------------------------------ federated partition


def test_partition_is_disjoint_covering_and_deterministic() -> None:
    ds = small(ids=23, imgs=3)
    parts = partition_identities(ds, 5, seed=0)
    assert [p.identities for p in parts] == [5, 5, 5, 4, 4]
    names = [n for p in parts for n in p.names]
    assert sorted(names) == sorted(ds.names)  # disjoint and covering
    assert sum(len(p) for p in parts) == len(ds)
    for part in parts:
        assert part.labels.max() == part.identities - 1  # local labels
        original = ds.names.index(part.names[0])
        assert np.array_equal(part.images[:3], ds.images[3 * original : 3 * original + 3])
    again = partition_identities(ds, 5, seed=0)
    assert [p.names for p in again] == [p.names for p in parts]
    assert [p.names for p in partition_identities(ds, 5, seed=1)] != [p.names for p in parts]


def test_partition_heterogeneity_changes_sizes() -> None:
    ds = small(ids=60, imgs=2)
    spreads = []
    for seed in range(5):
        parts = partition_identities(ds, 6, seed=seed, heterogeneity=0.9)
        sizes = [p.identities for p in parts]
        assert sum(sizes) == 60 and min(sizes) >= 1
        assert sorted(n for p in parts for n in p.names) == sorted(ds.names)
        spreads.append(max(sizes) - min(sizes))
    assert max(spreads) > 5  # equal split would differ by at most 0
    assert all(p.identities == 10 for p in partition_identities(ds, 6, seed=0))
    with pytest.raises(ValueError, match="clients"):
        partition_identities(ds, 61, seed=0)
    with pytest.raises(ValueError, match="heterogeneity"):
        partition_identities(ds, 3, seed=0, heterogeneity=1.5)


def test_partition_can_vary_images_per_identity() -> None:
    ds = small(ids=20, imgs=10)
    parts = partition_identities(ds, 4, seed=3, heterogeneity=0.8, vary_images=True)
    counts = np.concatenate([p.counts for p in parts])
    assert counts.min() >= 2 and counts.max() <= 10 and len(set(counts.tolist())) > 2
    assert sorted(n for p in parts for n in p.names) == sorted(ds.names)
    kept = {d for p in parts for d in row_digests(p)}
    assert kept <= set(row_digests(ds))
    untouched = partition_identities(ds, 4, seed=3, heterogeneity=0.8)
    assert all((p.counts == 10).all() for p in untouched)
