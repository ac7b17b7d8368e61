"""Face data: one in-memory dataset type, loaders, verification pairs and FL splits.

Everything ends in a :class:`FaceDataset` of float32 ``(N, C, H, W)`` images in
[0, 1] with dense identity labels, so training, evaluation and the privacy audit
share one shape whatever the source:

- :func:`synthetic_faces`: procedural identities for CI (methods.md §10.3),
  instant and licence-free;
- :func:`load_identity_folder` / :func:`load_orl`: ``root/<identity>/<image>``
  trees such as ORL (shipped in ``shared/data/orl_faces``) or an LFW copy;
- :func:`load_npz`: arrays saved by numpy (e.g. ``orl_faces.npz``);
- :func:`load_dataset`: one string spec for configs and the CLI.

Pairs for verification (methods.md §10.1–10.2) come from :func:`read_pairs`
(LFW ``pairs.txt``) resolved with :func:`pair_indices`, or from :func:`all_pairs`
(every genuine and impostor pair, for TAR@FAR on small sets). Federated splits
come from :func:`partition_identities` (identity-disjoint, optionally skewed).

Only numpy and Pillow are used; nothing is downloaded. Randomness comes from
an explicit ``seed`` through ``np.random.default_rng`` so every split and every
synthetic image is reproducible.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from secagg.errors import ParameterError

__all__ = [
    "DEFAULT_EXTENSIONS",
    "FaceDataset",
    "Pair",
    "all_pairs",
    "default_orl_root",
    "load_dataset",
    "load_identity_folder",
    "load_npz",
    "load_orl",
    "natural_key",
    "pair_indices",
    "parse_ref",
    "partition_identities",
    "read_pairs",
    "synthetic_faces",
]

DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")

#: Above this many index pairs, :func:`all_pairs` samples impostors by rejection
#: instead of listing every pair (which needs O(N²) memory).
_DENSE_PAIR_LIMIT = 4_000_000


# --------------------------------------------------------------------------- dataset


@dataclass(frozen=True, eq=False)
class FaceDataset:
    """Images with identity labels, the one format every face pipeline consumes.

    ``files`` optionally names each row's source as ``"<identity>/<file name>"``;
    it lets :func:`pair_indices` find LFW-style references and is empty for
    generated data. ``eq=False`` because array fields have no single truth value.
    """

    images: np.ndarray  # float32 (N, C, H, W) in [0, 1]
    labels: np.ndarray  # int64 (N,), 0..len(names)-1
    names: tuple[str, ...]
    files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Catch malformed data where it is made, not deep inside training.
        if self.images.ndim != 4 or self.images.dtype != np.float32:
            raise ValueError(
                f"images must be float32 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.ndim != 1 or self.labels.dtype != np.int64:
            raise ValueError(f"labels must be int64 (N,), got {self.labels.dtype}")
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.names)):
            raise ValueError(f"labels must lie in 0..{len(self.names) - 1}")
        if self.files and len(self.files) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.files)} file names")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def identities(self) -> int:
        """Number of identities (``len(names)``); some may have no rows after a split."""
        return len(self.names)

    @property
    def counts(self) -> np.ndarray:
        """Images per identity, int64 ``(identities,)``."""
        return np.bincount(self.labels, minlength=self.identities).astype(np.int64)

    def rows(self, index: np.ndarray) -> FaceDataset:
        """The given rows, keeping labels and names (a same-label-space view)."""
        index = np.asarray(index, dtype=np.int64)
        files = tuple(self.files[i] for i in index) if self.files else ()
        return FaceDataset(self.images[index], self.labels[index], self.names, files)

    def subset(self, identities: Sequence[int]) -> FaceDataset:
        """Only ``identities``, relabelled 0..k-1 in the given order (rows keep their order).

        Relabelling gives each client or held-out set a dense label space for
        its own classifier head; ``names`` still tells who is who.
        """
        ids = np.asarray(list(identities), dtype=np.int64)
        if len(np.unique(ids)) != len(ids):
            raise ValueError("subset identities must be distinct")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.identities):
            raise ValueError(f"subset identities must lie in 0..{self.identities - 1}")
        new_label = np.full(self.identities, -1, dtype=np.int64)
        new_label[ids] = np.arange(len(ids), dtype=np.int64)
        index = np.flatnonzero(new_label[self.labels] >= 0)
        files = tuple(self.files[i] for i in index) if self.files else ()
        return FaceDataset(
            self.images[index],
            new_label[self.labels[index]],
            tuple(self.names[i] for i in ids),
            files,
        )

    def split_images(self, per_identity: int, *, seed: int) -> tuple[FaceDataset, FaceDataset]:
        """Closed-set split: ``per_identity`` random images of each identity go first.

        Both parts keep the full label space, so a model trained on the first
        can be scored on the second. Rows keep their original order in each
        part. Raises if an identity has fewer than ``per_identity`` images,
        rather than silently leaving it out of the second part.
        """
        if per_identity < 0:
            raise ValueError("per_identity must be non-negative")
        counts = self.counts
        short = np.flatnonzero(counts < per_identity)
        if len(short):
            who = ", ".join(f"{self.names[i]} ({counts[i]})" for i in short[:5])
            raise ValueError(f"identities with fewer than {per_identity} images: {who}")
        rng = np.random.default_rng(seed)
        first = np.zeros(len(self), dtype=bool)
        for identity in range(self.identities):
            rows = np.flatnonzero(self.labels == identity)
            first[rng.permutation(rows)[:per_identity]] = True
        return self.rows(np.flatnonzero(first)), self.rows(np.flatnonzero(~first))


def _dataset(
    images: np.ndarray, labels: np.ndarray, names: Iterable[str], files: Iterable[str] = ()
) -> FaceDataset:
    return FaceDataset(
        np.ascontiguousarray(images, dtype=np.float32),
        np.asarray(labels, dtype=np.int64),
        tuple(names),
        tuple(files),
    )


# ------------------------------------------------------------------------- synthetic


def synthetic_faces(
    *,
    identities: int = 100,
    images_per_identity: int = 8,
    size: int | tuple[int, int] = 32,
    seed: int = 0,
    noise: float = 0.05,
    channels: int = 1,
) -> FaceDataset:
    """Procedural face-like identities (methods.md §10.3) for tests and demos.

    Each identity is a smooth prototype drawn from ``default_rng([seed, i])``:
    a soft oval of its own skin tone and shape on a dark background, with eyes,
    nose and mouth (dark Gaussian blobs whose position and size vary by
    identity) and six identity-specific light/dark blobs. The prototype is a
    function of continuous coordinates, so each image renders it exactly under
    its own pose (rotation σ≈4°, scale σ≈3%, shift σ≈2.5% of the half-width),
    expression (σ≈15% feature strength), illumination (gain σ≈5%, a linear
    gradient,
    background level) and Gaussian pixel ``noise``. Identities are therefore
    separable but no two images are equal. Identity ``i`` does not depend on
    how many identities are drawn, so ``identities=10`` gives the first ten of
    ``identities=100`` (same prototypes; images differ only if
    ``images_per_identity`` differs). ``size`` is an int or ``(height, width)``.
    """
    if identities < 1 or images_per_identity < 1:
        raise ValueError("need at least one identity and one image per identity")
    if channels not in (1, 3):
        raise ValueError("channels must be 1 (grey) or 3 (RGB)")
    height, width = (size, size) if isinstance(size, int) else size
    if height < 2 or width < 2:
        raise ValueError("images must be at least 2x2")
    # Pixel centres in [-1, 1]; v grows downwards like image rows.
    v0 = ((np.arange(height) + 0.5) / height * 2 - 1)[:, None]
    u0 = ((np.arange(width) + 0.5) / width * 2 - 1)[None, :]
    k = images_per_identity
    images = np.empty((identities * k, channels, height, width), dtype=np.float32)
    for identity in range(identities):
        rng = np.random.default_rng([seed, identity])
        images[identity * k : (identity + 1) * k] = _render_identity(
            rng, u0, v0, k, channels, noise
        )
    labels = np.repeat(np.arange(identities), k)
    digits = len(str(identities - 1))
    names = [f"synthetic_{i:0{digits}d}" for i in range(identities)]
    return _dataset(images, labels, names)


def _render_identity(
    rng: np.random.Generator,
    u0: np.ndarray,
    v0: np.ndarray,
    k: int,
    channels: int,
    noise: float,
) -> np.ndarray:
    """``k`` images ``(k, C, H, W)`` of one identity drawn from ``rng`` (see synthetic_faces)."""
    # Identity prototype: oval, skin tone, facial features and texture blobs.
    oval_a = 0.62 * (1 + 0.08 * rng.standard_normal())
    oval_b = 0.82 * (1 + 0.06 * rng.standard_normal())
    oval_c = 0.05 + 0.03 * rng.standard_normal()
    tint = np.array([1.0, 0.82, 0.7])[:channels] if channels == 3 else np.ones(1)
    skin = (0.5 + 0.25 * rng.random()) * tint * (1 + 0.06 * rng.standard_normal(channels))
    eye_x = 0.3 + 0.05 * rng.standard_normal()
    eye_y = -0.12 + 0.05 * rng.standard_normal()
    eye_s = 0.09 + 0.02 * rng.random()
    blobs: list[tuple[float, float, float, float, float]] = [  # (x, y, σx, σy, amplitude)
        (-eye_x, eye_y, eye_s * 1.3, eye_s, -0.35),
        (eye_x, eye_y, eye_s * 1.3, eye_s, -0.35),
        (-eye_x, eye_y - 0.16, 0.14, 0.035, -0.2 * rng.random()),  # brows
        (eye_x, eye_y - 0.16, 0.14, 0.035, -0.2 * rng.random()),
        (0.0, 0.15 + 0.05 * rng.standard_normal(), 0.05, 0.12, -0.1),  # nose
        (0.0, 0.45 + 0.05 * rng.standard_normal(), 0.16 + 0.05 * rng.random(), 0.05, -0.3),
    ]
    features = len(blobs)
    for _ in range(6):
        radius, angle = 0.55 * math.sqrt(rng.random()), 2 * math.pi * rng.random()
        blobs.append(
            (
                radius * math.cos(angle) * oval_a / 0.62,
                oval_c + radius * math.sin(angle),
                0.08 + 0.2 * rng.random(),
                0.08 + 0.2 * rng.random(),
                0.3 * (rng.random() - 0.5),
            )
        )
    colour = 1 + 0.1 * rng.standard_normal((len(blobs), channels))

    # Per image: pose, expression and lighting.
    theta = np.radians(4.0) * rng.standard_normal(k)
    scale = 1 + 0.03 * rng.standard_normal(k)
    shift = 0.025 * rng.standard_normal((k, 2))
    expression = 1 + 0.15 * rng.standard_normal((k, features))
    gain = 1 + 0.05 * rng.standard_normal(k)
    gradient = 0.08 * rng.standard_normal((k, 2))
    background = 0.1 + 0.15 * rng.random(k)

    def per_image(a: np.ndarray) -> np.ndarray:
        return a[:, None, None]

    # Inverse pose maps each pixel back to prototype coordinates.
    uc, vc = u0[None] - per_image(shift[:, 0]), v0[None] - per_image(shift[:, 1])
    cos, sin, s = per_image(np.cos(theta)), per_image(np.sin(theta)), per_image(scale)
    u = ((cos * uc + sin * vc) / s).astype(np.float32)
    v = ((-sin * uc + cos * vc) / s).astype(np.float32)
    r = np.sqrt((u / oval_a) ** 2 + ((v - oval_c) / oval_b) ** 2)
    mask = 1 / (1 + np.exp(-(1 - r) / 0.04))
    face = np.broadcast_to(skin[None, :, None, None], (k, channels, *u.shape[1:])).copy()
    for j, (x, y, sx, sy, amplitude) in enumerate(blobs):
        shape = np.exp(-0.5 * (((u - x) / sx) ** 2 + ((v - y) / sy) ** 2))
        if j < features:
            shape *= per_image(expression[:, j])
        face += shape[:, None] * (amplitude * colour[j])[None, :, None, None]
    out = mask[:, None] * face + (1 - mask[:, None]) * background[:, None, None, None]
    light = per_image(gain) * (
        1 + per_image(gradient[:, 0]) * u0[None] + per_image(gradient[:, 1]) * v0[None]
    )
    out *= light[:, None]
    out += noise * rng.standard_normal(out.shape)
    clipped: np.ndarray = np.clip(out, 0.0, 1.0)
    return clipped


# ---------------------------------------------------------------------------- loaders


def natural_key(text: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key that orders embedded numbers by value: ``s2 < s10``, ``2.pgm < 10.pgm``."""
    parts = re.split(r"(\d+)", text)
    key = [(1, int(p)) if i % 2 else (0, p.lower()) for i, p in enumerate(parts)]
    # (0, text) breaks ties, so the order is total (e.g. "a01" vs "a1", "A" vs "a").
    return (*key, (0, text))


def _to_array(image: Image.Image, size: tuple[int, int] | None, grayscale: bool) -> np.ndarray:
    """Decode to float32 ``(C, H, W)`` in [0, 1]; 8-bit sources only (L/RGB after convert)."""
    image = image.convert("L" if grayscale else "RGB")
    if size is not None:
        height, width = size
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / np.float32(255)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def load_identity_folder(
    root: str | Path,
    *,
    size: tuple[int, int] | None = None,
    grayscale: bool = True,
    min_images: int = 1,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
) -> FaceDataset:
    """Read ``root/<identity>/<image>`` (ORL, LFW and most face sets ship this way).

    Identities are the sub-folders in natural order (``s2`` before ``s10``) and
    images within one are in natural order too, so labels and row order do not
    depend on the file system. Folders with fewer than ``min_images`` images
    are skipped (e.g. LFW identities with one photo cannot give genuine pairs).
    ``size`` is ``(height, width)`` for a bilinear Pillow resize; without it all
    images must already share one size. Hidden entries are ignored.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no such dataset folder: {root}")
    wanted = {e.lower() for e in extensions}
    folders = sorted(
        (d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
        key=lambda d: natural_key(d.name),
    )
    arrays: list[np.ndarray] = []
    labels: list[int] = []
    names: list[str] = []
    files: list[str] = []
    for folder in folders:
        paths = sorted(
            (
                p
                for p in folder.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in wanted
            ),
            key=lambda p: natural_key(p.name),
        )
        if len(paths) < max(min_images, 1):
            continue
        for path in paths:
            with Image.open(path) as image:
                arrays.append(_to_array(image, size, grayscale))
            labels.append(len(names))
            files.append(f"{folder.name}/{path.name}")
        names.append(folder.name)
    if not names:
        raise ValueError(f"no identity folder under {root} has {min_images}+ images {extensions}")
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"images under {root} differ in size {sorted(shapes)[:3]}; pass size=")
    return _dataset(np.stack(arrays), np.array(labels), names, files)


def default_orl_root() -> Path:
    """ORL's folder: ``$SECAGG_ORL_DIR``, else ``shared/data/orl_faces`` in or beside the repo."""
    env = os.environ.get("SECAGG_ORL_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    candidates = [repo / "shared/data/orl_faces", repo.parent / "shared/data/orl_faces"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def load_orl(
    root: str | Path | None = None, *, size: tuple[int, int] | None = (56, 46)
) -> FaceDataset:
    """ORL / AT&T faces (40 people × 10 grey 112×92 PGMs) as identities ``s1``..``s40``.

    The default size halves each side (112×92 → 56×46); ``size=None`` keeps the
    native pixels. ``root`` defaults to :func:`default_orl_root`.
    """
    root = default_orl_root() if root is None else Path(root)
    ds = load_identity_folder(root, size=size, grayscale=True, extensions=(".pgm",))
    odd = [n for n in ds.names if not re.fullmatch(r"s\d+", n)]
    if odd:
        raise ValueError(f"{root} does not look like ORL (folders {odd[:3]})")
    return ds


def _resize_array(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of one ``(H, W, C)`` array; uint8 goes through the same path as files."""
    height, width = size
    if image.dtype == np.uint8 and image.shape[2] in (1, 3):
        pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        resized = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
        return resized.reshape(height, width, image.shape[2])
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR
            )
        )
        for c in range(image.shape[2])
    ]
    return np.stack(channels, axis=-1)


def load_npz(path: str | Path, *, size: tuple[int, int] | None = None) -> FaceDataset:
    """Arrays saved by numpy: ``images`` (N, H, W) or (N, H, W, C), ``labels``, opt. ``names``.

    uint8 images are scaled by 1/255; float images must already be in [0, 1].
    Labels may be any integers: they are mapped to 0..k-1 in sorted order, and
    ``names[label]`` (indexed by the original label) names each identity when
    given, else the label itself. An ``image_index`` array (as in
    ``orl_faces.npz``) fills ``files`` as ``"<name>/<index>"`` for pair lookup.
    """
    with np.load(Path(path), allow_pickle=False) as data:
        images = np.asarray(data["images"])
        raw_labels = np.asarray(data["labels"])
        raw_names = np.asarray(data["names"]) if "names" in data else None
        index = np.asarray(data["image_index"]) if "image_index" in data else None
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or raw_labels.shape != (len(images),):
        raise ValueError(f"{path}: need images (N,H,W[,C]) and labels (N,), got {images.shape}")
    if not np.issubdtype(raw_labels.dtype, np.integer):
        raise ValueError(f"{path}: labels must be integers")
    if size is not None:
        images = np.stack([_resize_array(image, size) for image in images])
    if images.dtype == np.uint8:
        pixels = images.astype(np.float32) / np.float32(255)
    elif np.issubdtype(images.dtype, np.floating):
        pixels = images.astype(np.float32)
        if len(pixels) and (pixels.min() < 0 or pixels.max() > 1):
            raise ValueError(f"{path}: float images must lie in [0, 1]")
    else:
        raise ValueError(f"{path}: images must be uint8 or float, got {images.dtype}")
    unique, labels = np.unique(raw_labels, return_inverse=True)
    if raw_names is not None:
        if len(unique) and (unique.min() < 0 or unique.max() >= len(raw_names)):
            raise ValueError(f"{path}: a label has no entry in names")
        names = [str(raw_names[u]) for u in unique]
    else:
        names = [str(u) for u in unique]
    files: list[str] = []
    if index is not None and index.shape == (len(images),):
        files = [f"{names[label]}/{int(i)}" for label, i in zip(labels, index, strict=True)]
    return _dataset(pixels.transpose(0, 3, 1, 2), labels.reshape(-1), names, files)


def load_dataset(spec: str, *, size: tuple[int, int] | None, grayscale: bool = True) -> FaceDataset:
    """Load from a config string, so every entry point accepts the same specs.

    - ``"synthetic"`` or ``"synthetic:IDS:IMGS[:SEED]"``: :func:`synthetic_faces`
      (``size`` defaults to 32×32);
    - ``"orl"``: :func:`load_orl` at the default location;
    - a path to a ``.npz`` file: :func:`load_npz`;
    - a path to a folder: :func:`load_identity_folder` (``size`` required when
      the images differ in size).
    """
    if spec == "synthetic" or spec.startswith("synthetic:"):
        fields = spec.split(":")[1:]
        if len(fields) not in (0, 2, 3) or not all(f.isdigit() for f in fields):
            raise ValueError(f"bad synthetic spec {spec!r}; use synthetic:IDS:IMGS[:SEED]")
        ids, imgs, seed = ([int(f) for f in fields] + [0])[:3] if fields else (100, 8, 0)
        return synthetic_faces(
            identities=ids,
            images_per_identity=imgs,
            seed=seed,
            size=size if size is not None else 32,
            channels=1 if grayscale else 3,
        )
    if spec == "orl":
        return load_orl(size=size)
    path = Path(spec)
    if path.is_file() and path.suffix == ".npz":
        return load_npz(path, size=size)
    if path.is_dir():
        return load_identity_folder(path, size=size, grayscale=grayscale)
    raise FileNotFoundError(f"dataset {spec!r} is neither a known name, an .npz file nor a folder")


# ---------------------------------------------------------------------- verification


@dataclass(frozen=True)
class Pair:
    """One verification pair. ``a``/``b`` are ``"name/index"`` refs (LFW's 1-based index)."""

    a: str
    b: str
    same: bool
    fold: int = 0


def parse_ref(ref: str) -> tuple[str, int]:
    """Split ``"name/index"`` into its parts (the name itself may not contain ``/``)."""
    name, _, index = ref.rpartition("/")
    if not name or not index.isdigit():
        raise ValueError(f"bad image reference {ref!r}; expected name/index")
    return name, int(index)


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse an LFW ``pairs.txt`` (methods.md §10.1).

    The header is ``"folds n"`` (View 2: ``10 300``) or just ``"n"`` (one fold);
    then each fold holds ``n`` same lines ``name i j`` and ``n`` different lines
    ``name1 i name2 j``, which is how the fold of each pair is known. The kind
    is read from each line's field count. Returns refs like ``"Aaron_Peirsol/1"``;
    :func:`pair_indices` maps them to dataset rows.
    """
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    if not lines or not 1 <= len(lines[0]) <= 2 or not all(f.isdigit() for f in lines[0]):
        raise ValueError(f"{path}: first line must be 'folds n' or 'n'")
    folds, per_kind = (
        (int(lines[0][0]), int(lines[0][1])) if len(lines[0]) == 2 else (1, int(lines[0][0]))
    )
    body = lines[1:]
    if len(body) != folds * 2 * per_kind:
        raise ValueError(f"{path}: header promises {folds * 2 * per_kind} pairs, found {len(body)}")
    pairs = []
    for number, fields in enumerate(body):
        fold = number // (2 * per_kind)
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            name, i, j = fields
            pairs.append(Pair(f"{name}/{int(i)}", f"{name}/{int(j)}", True, fold))
        elif len(fields) == 4 and fields[1].isdigit() and fields[3].isdigit():
            name1, i, name2, j = fields
            pairs.append(Pair(f"{name1}/{int(i)}", f"{name2}/{int(j)}", False, fold))
        else:
            raise ValueError(f"{path}: line {number + 2} is not a pair: {' '.join(fields)}")
    return pairs


def pair_indices(
    pairs: Sequence[Pair], ds: FaceDataset
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``a``, ``b`` (int64) and ``same`` (bool) of ``ds`` for each pair.

    ``"name/i"`` resolves to the image of identity ``name`` whose file stem ends
    in the number ``i`` (LFW ``Name/Name_0001.jpg`` → 1, ORL ``s3/7.pgm`` → 7),
    so it survives subsets and splits. Datasets without file names (synthetic)
    use the ``i``-th row of that identity instead (1-based, row order). Raises
    ``KeyError`` naming the first reference that is not in ``ds``.
    """
    lookup: dict[tuple[str, int], int] = {}
    seen = np.zeros(ds.identities, dtype=np.int64)
    for row, label in enumerate(ds.labels):
        name = ds.names[label]
        if ds.files:
            match = re.search(r"(\d+)$", Path(ds.files[row]).stem)
            if match is None:
                continue
            number = int(match.group(1))
        else:
            seen[label] += 1
            number = int(seen[label])
        lookup.setdefault((name, number), row)

    def row_of(ref: str) -> int:
        try:
            return lookup[parse_ref(ref)]
        except KeyError:
            raise KeyError(f"pair image {ref!r} is not in the dataset") from None

    a = np.array([row_of(p.a) for p in pairs], dtype=np.int64)
    b = np.array([row_of(p.b) for p in pairs], dtype=np.int64)
    return a, b, np.array([p.same for p in pairs], dtype=bool)


def all_pairs(
    ds: FaceDataset, *, max_impostor: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every genuine pair and all (or ``max_impostor`` seeded) impostor pairs.

    For TAR@FAR on small sets (methods.md §10.2), which need ≳10/FAR impostor
    pairs. Returns int64 rows ``a < b`` and bool ``same``: genuine pairs first,
    then impostors, each sorted by ``(a, b)``. There are Σ C(n_i, 2) genuine
    and Σ_{i<j} n_i n_j impostor pairs.
    """
    labels = ds.labels
    n = len(labels)
    genuine_a: list[np.ndarray] = []
    genuine_b: list[np.ndarray] = []
    for identity in range(ds.identities):
        rows = np.flatnonzero(labels == identity)
        i, j = np.triu_indices(len(rows), 1)
        genuine_a.append(rows[i])
        genuine_b.append(rows[j])
    ga = np.concatenate(genuine_a) if genuine_a else np.empty(0, np.int64)
    gb = np.concatenate(genuine_b) if genuine_b else np.empty(0, np.int64)
    order = np.lexsort((gb, ga))
    ga, gb = ga[order], gb[order]

    counts = ds.counts
    impostors = (n * n - int(np.sum(counts * counts))) // 2
    if max_impostor is not None and max_impostor < 0:
        raise ValueError("max_impostor must be non-negative")
    rng = np.random.default_rng(seed)
    sparse = n * (n - 1) // 2 > _DENSE_PAIR_LIMIT and max_impostor is not None
    if not sparse or max_impostor is None or 2 * max_impostor > impostors:
        i, j = np.triu_indices(n, 1)
        keep = labels[i] != labels[j]
        ia, ib = i[keep], j[keep]
        if max_impostor is not None and max_impostor < impostors:
            pick = np.sort(rng.choice(len(ia), size=max_impostor, replace=False))
            ia, ib = ia[pick], ib[pick]
    else:
        ia, ib = _sample_impostors(labels, max_impostor, rng)
    ia, ib = ia.astype(np.int64), ib.astype(np.int64)
    same = np.concatenate([np.ones(len(ga), bool), np.zeros(len(ia), bool)])
    return np.concatenate([ga, ia]), np.concatenate([gb, ib]), same


def _sample_impostors(
    labels: np.ndarray, count: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` distinct impostor pairs drawn uniformly without listing all pairs."""
    n = len(labels)
    codes = np.empty(0, dtype=np.int64)
    while len(codes) < count:
        i = rng.integers(0, n, size=2 * count)
        j = rng.integers(0, n, size=2 * count)
        keep = labels[i] != labels[j]
        lo, hi = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
        merged = np.concatenate([codes, lo * n + hi])
        _, first = np.unique(merged, return_index=True)
        codes = merged[np.sort(first)]  # distinct, in draw order
    codes = np.sort(codes[:count])
    return codes // n, codes % n


# ---------------------------------------------------------------------- federated split


def split_for_verification(
    ds: FaceDataset, test_identities: int, seed: int
) -> tuple[FaceDataset, FaceDataset]:
    """Hold out ``test_identities`` identities (seeded) for verification; train on the rest."""
    if not 0 < test_identities < ds.identities:
        raise ParameterError("test_identities must leave identities to train on")
    order = np.random.default_rng(seed).permutation(ds.identities)
    test = sorted(int(i) for i in order[:test_identities])
    train = sorted(int(i) for i in order[test_identities:])
    return ds.subset(train), ds.subset(test)


def partition_identities(
    ds: FaceDataset,
    clients: int,
    *,
    seed: int,
    heterogeneity: float = 0.0,
    vary_images: bool = False,
) -> list[FaceDataset]:
    """Split identities across ``clients`` with no identity on two clients.

    Face FL keeps each person on one client (each client has its own head over
    its own people), so the split is by identity. ``heterogeneity`` 0 gives
    counts that differ by at most one; towards 1 the counts follow a Dirichlet
    draw with concentration ``4(1-h)/h + 0.1`` (very unequal at 1), while every
    client keeps at least one identity. With ``vary_images`` and ``h > 0``,
    each identity also keeps a seeded ``1 - h·U(0, 1)`` share of its images (at
    least 2, or all when it has fewer), to skew client sizes further. Each
    client's dataset is relabelled 0..k-1 (identities in dataset order) and
    keeps the global ``names``. Deterministic given ``seed``.
    """
    total = ds.identities
    if clients < 1 or clients > total:
        raise ValueError(f"cannot give {total} identities to {clients} clients (≥ 1 each)")
    if not 0.0 <= heterogeneity <= 1.0:
        raise ValueError("heterogeneity must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    order = rng.permutation(total)
    if heterogeneity == 0.0:
        sizes = np.full(clients, total // clients, dtype=np.int64)
        sizes[: total % clients] += 1
    else:
        alpha = 4.0 * (1.0 - heterogeneity) / heterogeneity + 0.1
        share = rng.dirichlet(np.full(clients, alpha))
        spare = total - clients
        extra = np.floor(share * spare).astype(np.int64)
        remainder = share * spare - extra
        extra[np.argsort(-remainder, kind="stable")[: spare - int(extra.sum())]] += 1
        sizes = 1 + extra
    parts: list[FaceDataset] = []
    start = 0
    for size in sizes:
        ids = np.sort(order[start : start + size])
        start += int(size)
        part = ds.subset(ids.tolist())
        if vary_images and heterogeneity > 0.0:
            part = _thin_images(part, heterogeneity, rng)
        parts.append(part)
    return parts


def _thin_images(ds: FaceDataset, heterogeneity: float, rng: np.random.Generator) -> FaceDataset:
    """Keep a random ``1 - h·U(0,1)`` share (≥ 2) of each identity's images, in row order."""
    keep = np.zeros(len(ds), dtype=bool)
    for identity in range(ds.identities):
        rows = np.flatnonzero(ds.labels == identity)
        target = round(len(rows) * (1.0 - heterogeneity * rng.random()))
        count = min(len(rows), max(2, target))
        keep[rng.choice(rows, size=count, replace=False)] = True
    return ds.rows(np.flatnonzero(keep))
