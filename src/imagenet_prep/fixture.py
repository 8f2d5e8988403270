"""Generate ILSVRC2012-shaped downloads of any size for the demo, the tests and the benchmarks.

The real download cannot be fetched here, so :func:`generate` writes one that copies its
structure: the five archives with their real names (or the extracted tree the seed scripts
read), real WordNet IDs, validation images numbered so the real validation labels fit them,
PASCAL VOC box files and a devkit whose ``meta.mat`` numbers the classes in a non-sorted
order. The known quirks of the real data are planted whatever the size: CMYK and grayscale
JPEGs, PNG files named ``.JPEG``, progressive and EXIF-rotated JPEGs, tiny and large images,
and odd boxes. Pixels are photo-like (smooth random fields at several scales, shapes,
grain), encoded once into a pool reused under many names, so a few hundred encodes make
tens of thousands of files. Everything is derived from the seed: the same config gives
byte-identical archives.
"""

from __future__ import annotations

import gzip
import io
import logging
import re
import tarfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .errors import UsageError
from .fsutil import atomic_open, write_bytes_atomic
from .labels import (
    DEVKIT_GROUND_TRUTH,
    DEVKIT_META,
    NUM_CLASSES,
    all_synset_texts,
    load_synsets,
    shipped_validation_labels,
)

__all__ = [
    "BOX_QUIRKS",
    "IMAGE_QUIRKS",
    "LAYOUTS",
    "FixtureConfig",
    "FixtureReport",
    "choose_classes",
    "generate",
    "validation_numbers",
]

logger = logging.getLogger(__name__)

Layout = Literal["archives", "extracted"]
LAYOUTS: tuple[Layout, ...] = ("archives", "extracted")

TRAIN_TAR = "ILSVRC2012_img_train.tar"
VAL_TAR = "ILSVRC2012_img_val.tar"
BBOX_TRAIN_TGZ = "ILSVRC2012_bbox_train_v2.tar.gz"
BBOX_VAL_TGZ = "ILSVRC2012_bbox_val_v3.tgz"
DEVKIT_TGZ = "ILSVRC2012_devkit_t12.tar.gz"

# Real file names of known quirks: the PNG named .JPEG, the CMYK training JPEGs and the
# CMYK validation JPEG. They are used whenever their class is in the fixture.
REAL_PNG = "n02105855_2933"
REAL_CMYK_TRAIN = (
    "n01739381_1309",
    "n02077923_14822",
    "n02447366_23489",
    "n02492035_15739",
    "n02747177_10752",
    "n03018349_4028",
    "n03062245_4620",
    "n03347037_9675",
    "n03467068_12171",
    "n03529860_11437",
    "n03544143_17228",
    "n03633091_5218",
    "n03710637_5125",
    "n03961711_5286",
    "n04033995_2932",
    "n04258138_17003",
    "n04264628_27969",
    "n04336792_7448",
    "n04371774_5854",
    "n04596742_4225",
    "n07583066_647",
    "n13037406_4650",
)
REAL_CMYK_VAL = 19877

IMAGE_QUIRKS = (
    "cmyk",
    "png_rgb",
    "png_rgba",
    "grayscale",
    "progressive",
    "exif_rotated",
    "tiny",
    "large",
)
BOX_QUIRKS = (
    "box_several_objects",
    "box_reversed",
    "box_outside_image",
    "box_zero_area",
    "box_scottish_deerhound",
    "box_other_synset",
    "box_filename_placeholder",
    "box_size_mismatch",
)
# Quirks planted at a rate (at least once); cmyk, png_rgb and png_rgba are placed apart.
_TRAIN_QUIRK_RATES = {
    "grayscale": 1 / 200,
    "progressive": 1 / 200,
    "exif_rotated": 1 / 2000,
    "tiny": 1 / 2000,
    "large": 1 / 2000,
}
_VAL_GRAYSCALE_RATE = 1 / 200
_BOX_QUIRK_RATES = {q: 1 / 500 for q in BOX_QUIRKS} | {"box_several_objects": 1 / 10}
_OBJECT_QUIRKS = (
    "box_reversed",
    "box_outside_image",
    "box_zero_area",
    "box_scottish_deerhound",
    "box_other_synset",
)

TINY_SIZE = (40, 30)
LARGE_SIZE = (2000, 1500)
EXIF_SIZE = (500, 375)
EXIF_ORIENTATION = 6
JPEG_QUALITY = 90
MAX_VAL_PER_CLASS = 50
# Image sizes with the weights they have among ImageNet photos (roughly); "other" is drawn.
_SIZES = ((500, 375), (375, 500), (500, 333), (333, 500), (500, 500), (500, 400), (400, 500))
_SIZE_WEIGHTS = (0.42, 0.14, 0.14, 0.07, 0.05, 0.04, 0.03)  # the rest: another size

_MTIME = 1_335_830_400  # 2012-05-01 00:00:00 UTC
_MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: GLNXA64, Created on: Tue May  1 00:00:00 2012"
_META_FIELDS = (
    "ILSVRC2012_ID",
    "WNID",
    "words",
    "gloss",
    "num_children",
    "children",
    "wordnet_height",
    "num_train_images",
)
NUM_INNER_SYNSETS = 860  # the real meta.mat has 1860 entries: 1000 leaves and 860 inner nodes

Files = Sequence[tuple[str, bytes]]  # (name, bytes) pairs of one folder or archive

_EXTENSION_RE = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class FixtureConfig:
    """What to generate: where, how many classes and images, which seed and layout.

    ``extension`` names the training images of the extracted layout (the archives always
    use ``.JPEG``, as the real download). ``pool_size`` is how many distinct images are
    encoded and reused under the generated names.
    """

    out: Path
    classes: int = 10
    per_class: int = 50
    val_per_class: int = 10
    seed: int = 0
    layout: Layout = "archives"
    extension: str = ".JPEG"
    pool_size: int = 256

    def __post_init__(self) -> None:
        if not isinstance(self.out, Path):
            object.__setattr__(self, "out", Path(self.out))
        for name in ("classes", "per_class", "val_per_class", "seed", "pool_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, not {value!r}")
        if not 1 <= self.classes <= NUM_CLASSES:
            raise ValueError(f"classes must be between 1 and {NUM_CLASSES}, not {self.classes}")
        if self.per_class < 1:
            raise ValueError(f"per_class must be at least 1, not {self.per_class}")
        if not 1 <= self.val_per_class <= MAX_VAL_PER_CLASS:
            raise ValueError(
                f"val_per_class must be between 1 and {MAX_VAL_PER_CLASS} (the real data has "
                f"{MAX_VAL_PER_CLASS} validation images per class), not {self.val_per_class}"
            )
        if self.seed < 0:
            raise ValueError(f"seed must be non-negative, not {self.seed}")
        if self.pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {self.pool_size}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if not _EXTENSION_RE.match(self.extension):
            raise ValueError(f"extension must look like '.JPEG', not {self.extension!r}")
        if self.layout == "archives" and self.extension != ".JPEG":
            raise ValueError("extension applies to the extracted layout only (archives use .JPEG)")
        needed = _min_train_images(choose_classes(self.classes))
        if self.classes * self.per_class < needed:
            raise ValueError(
                f"{self.classes} classes x {self.per_class} training images are too few to plant "
                f"every quirk: at least {needed} training images are needed"
            )
        if self.classes * self.val_per_class < 2:
            raise ValueError("at least 2 validation images are needed to plant CMYK and grayscale")


@dataclass(frozen=True)
class FixtureReport:
    """What :func:`generate` wrote: counts, sizes, planted quirks and the time it took.

    ``quirks`` maps each quirk to the file names (image or box XML base names) carrying it.
    ``median_jpeg_bytes`` and ``median_jpeg_size`` (width, height) describe the median
    JPEG file among the training and validation images.
    """

    out: Path
    layout: Layout
    classes: tuple[str, ...]
    train_images: int
    val_images: int
    train_boxes: int
    val_boxes: int
    total_bytes: int
    median_jpeg_bytes: int
    median_jpeg_size: tuple[int, int]
    quirks: Mapping[str, tuple[str, ...]]
    seconds: float


# --------------------------------------------------------------------------- classes and numbers


def _stem_wnid(stem: str) -> str:
    return stem.split("_", 1)[0]


def choose_classes(n: int) -> tuple[str, ...]:
    """Pick ``n`` real challenge synsets: the known quirk files' classes first, then spread.

    >>> choose_classes(3)
    ('n02105855', 'n01739381', 'n02077923')
    >>> len(set(choose_classes(1000)))
    1000
    """
    if not 1 <= n <= NUM_CLASSES:
        raise ValueError(f"the number of classes must be between 1 and {NUM_CLASSES}, not {n}")
    val_cmyk = shipped_validation_labels()[REAL_CMYK_VAL - 1]
    first = [_stem_wnid(s) for s in (REAL_PNG, *REAL_CMYK_TRAIN)] + [val_cmyk]
    chosen = list(dict.fromkeys(first))[:n]
    rest = [w for w in load_synsets().wnids if w not in chosen]
    wanted = n - len(chosen)
    chosen += [rest[i * len(rest) // wanted] for i in range(wanted)]
    return tuple(chosen)


def validation_numbers(wnids: Iterable[str], per_class: int) -> dict[str, tuple[int, ...]]:
    """Validation image numbers per class: the first ``per_class`` the real labels give it.

    The real CMYK validation file (``ILSVRC2012_val_00019877``) replaces the last number
    of its class when it is not among the first, so it is present whenever its class is.

    >>> validation_numbers(["n01751748"], 2)
    {'n01751748': (1, 324)}
    """
    labels = shipped_validation_labels()
    wanted = set(wnids)
    found: dict[str, list[int]] = {w: [] for w in wanted}
    for number, wnid in enumerate(labels, start=1):
        if wnid in wanted and len(found[wnid]) < per_class:
            found[wnid].append(number)
    cmyk_wnid = labels[REAL_CMYK_VAL - 1]
    if cmyk_wnid in found and REAL_CMYK_VAL not in found[cmyk_wnid]:
        found[cmyk_wnid][-1] = REAL_CMYK_VAL
    return {w: tuple(found[w]) for w in sorted(found)}


def _rng(seed: int, *purpose: str) -> np.random.Generator:
    """An independent generator for one purpose, stable across runs and processes."""
    keys = [zlib.crc32(p.encode()) for p in purpose]
    return np.random.default_rng([seed, *keys])


# --------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class _Image:
    """One image file to write: its name, class, source pixels (a pool index) and quirk."""

    name: str
    wnid: str
    pool: int
    quirk: str | None = None

    @property
    def stem(self) -> str:
        return self.name.rsplit(".", 1)[0]


@dataclass(frozen=True)
class _Plan:
    """Every name, class, quirk and box decision, made before a byte is written."""

    classes: tuple[str, ...]
    train: Mapping[str, tuple[_Image, ...]]  # by wnid, members in archive order
    train_order: tuple[str, ...]  # class tars in archive order
    val: tuple[_Image, ...]  # in archive order
    boxes: Mapping[str, tuple[str, ...]]  # annotated training stem -> its box quirks


def _real_train_quirks(classes: Sequence[str]) -> dict[str, str]:
    """stem -> quirk for the real quirk files whose classes are chosen."""
    out = {s: "cmyk" for s in REAL_CMYK_TRAIN if _stem_wnid(s) in classes}
    if _stem_wnid(REAL_PNG) in classes:
        out[REAL_PNG] = "png_rgb"
    return out


def _train_quirk_counts(classes: Sequence[str], n_images: int) -> dict[str, int]:
    """How many generated (not real-named) training images get each quirk."""
    real = set(_real_train_quirks(classes).values())
    counts = {q: 1 for q in ("cmyk", "png_rgb") if q not in real}
    counts["png_rgba"] = 1
    counts |= {q: max(1, int(n_images * r)) for q, r in _TRAIN_QUIRK_RATES.items()}
    return counts


def _min_train_images(classes: Sequence[str]) -> int:
    return len(_real_train_quirks(classes)) + sum(_train_quirk_counts(classes, 0).values())


def _spread(images: Sequence[_Image], rng: np.random.Generator) -> list[_Image]:
    """Shuffle, then order round-robin over classes so quirks land in many classes."""
    shuffled = [images[i] for i in rng.permutation(len(images))]
    seen: dict[str, int] = {}
    rank = []
    for img in shuffled:
        rank.append(seen.get(img.wnid, 0))
        seen[img.wnid] = rank[-1] + 1
    return [img for _, img in sorted(zip(rank, shuffled, strict=True), key=lambda p: p[0])]


def _assign(
    images: Sequence[_Image], counts: Mapping[str, int], rng: np.random.Generator
) -> list[_Image]:
    """Give ``counts[q]`` images without a quirk the quirk ``q``, spread over classes."""
    free = _spread([img for img in images if img.quirk is None], rng)
    given: dict[str, str] = {}
    for quirk, count in counts.items():
        for _ in range(count):
            given[free.pop(0).name] = quirk
    return [_Image(i.name, i.wnid, i.pool, given[i.name]) if i.name in given else i for i in images]


def _train_numbers(wnid: str, count: int, reserved: Sequence[int], seed: int) -> list[int]:
    """``count`` distinct positive, non-consecutive image numbers including ``reserved``."""
    rng = _rng(seed, "train-numbers", wnid)
    top = max(50_000, 4 * count)
    drawn = (rng.choice(top - 1, size=count + len(reserved), replace=False) + 1).tolist()
    return list(reserved) + [n for n in drawn if n not in reserved][: count - len(reserved)]


def _plan(config: FixtureConfig) -> _Plan:
    classes = tuple(sorted(choose_classes(config.classes)))
    seed = config.seed
    n_train = config.classes * config.per_class
    n_val = config.classes * config.val_per_class
    pool_size = min(config.pool_size, n_train + n_val)
    pool_rng = _rng(seed, "pool-choice")
    ext = config.extension if config.layout == "extracted" else ".JPEG"

    real = _real_train_quirks(classes)
    train: list[_Image] = []
    for wnid in classes:
        reserved = [int(s.split("_")[1]) for s in real if _stem_wnid(s) == wnid]
        for n in _train_numbers(wnid, config.per_class, reserved, seed):
            stem = f"{wnid}_{n}"
            pool = int(pool_rng.integers(pool_size))
            train.append(_Image(f"{stem}{ext}", wnid, pool, real.get(stem)))
    counts = _train_quirk_counts(classes, n_train)
    train = _assign(train, counts, _rng(seed, "train-quirks"))

    val: list[_Image] = []
    for wnid, numbers in validation_numbers(classes, config.val_per_class).items():
        for n in numbers:
            quirk = "cmyk" if n == REAL_CMYK_VAL else None
            pool = int(pool_rng.integers(pool_size))
            val.append(_Image(f"ILSVRC2012_val_{n:08d}.JPEG", wnid, pool, quirk))
    val_counts = {"grayscale": max(1, int(n_val * _VAL_GRAYSCALE_RATE))}
    if not any(i.quirk == "cmyk" for i in val):
        val_counts["cmyk"] = 1
    val = _assign(val, val_counts, _rng(seed, "val-quirks"))

    by_class: dict[str, list[_Image]] = {w: [] for w in classes}
    for img in train:
        by_class[img.wnid].append(img)
    ordered = {
        w: tuple(imgs[i] for i in _rng(seed, "member-order", w).permutation(len(imgs)))
        for w, imgs in by_class.items()
    }
    class_order = tuple(classes[i] for i in _rng(seed, "class-order").permutation(len(classes)))
    val_order = tuple(val[i] for i in _rng(seed, "val-order").permutation(len(val)))
    return _Plan(
        classes=classes,
        train=ordered,
        train_order=class_order,
        val=val_order,
        boxes=_plan_boxes(train, seed),
    )


def _plan_boxes(train: Sequence[_Image], seed: int) -> dict[str, tuple[str, ...]]:
    """Choose about half of the training images to annotate and plant the box quirks."""
    rng = _rng(seed, "boxes")
    n = max(1, round(len(train) / 2))
    annotated = [train[i].stem for i in sorted(rng.choice(len(train), size=n, replace=False))]
    order = [annotated[i] for i in rng.permutation(n)]
    quirks: dict[str, list[str]] = {stem: [] for stem in annotated}
    slot = 0
    for quirk in BOX_QUIRKS:
        for _ in range(min(n, max(1, int(n * _BOX_QUIRK_RATES[quirk])))):
            quirks[order[slot % n]].append(quirk)
            slot += 1
    return {stem: tuple(q) for stem, q in quirks.items()}


# --------------------------------------------------------------------------- pixels


def _field(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """A smooth random RGB field: Gaussian noise on a coarse grid, upsampled bicubically."""
    coarse = rng.standard_normal((3, h // cell + 3, w // cell + 3), dtype=np.float32)
    planes = [
        np.asarray(Image.fromarray(c).resize((w, h), Image.Resampling.BICUBIC)) for c in coarse
    ]
    return np.stack(planes, axis=-1)


def _palette(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A base colour and a channel-mixing matrix, so channels are correlated as in photos."""
    base = rng.uniform(30, 220, 3).astype(np.float32)
    mix = rng.normal(0, 0.25, (3, 3)) + 0.5 + np.eye(3) * 0.4
    return base, (mix * 26).astype(np.float32)


def _photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: textured ground and sky, a few shaded shapes, sensor grain."""
    h, w = height, width
    detail = float(rng.uniform(0.4, 2.0))  # how much fine texture: spreads the JPEG sizes
    tex = _field(rng, h, w, 96) + 0.6 * _field(rng, h, w, 24)
    tex += (0.35 * detail) * _field(rng, h, w, 6)
    tex += (0.45 * detail) * rng.standard_normal((h, w, 3), dtype=np.float32)
    base, mix = _palette(rng)
    img = base + tex @ mix.T
    walk = np.convolve(np.cumsum(rng.normal(0, 1.5, w)), np.ones(9) / 9, mode="same")
    horizon = (rng.uniform(0.3, 0.7) * h + walk).astype(np.float32)
    below = (np.arange(h, dtype=np.float32)[:, None] > horizon[None, :])[..., None]
    base2, mix2 = _palette(rng)
    img = np.where(below, base2 + tex[::-1] @ mix2.T, img)
    variants = (tex[:, ::-1], tex[::-1, ::-1], tex[:, :, ::-1])
    for k in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(0.05, 0.35) * w, rng.uniform(0.05, 0.35) * h
        mask = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(mask)
        if rng.random() < 0.5:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=255)
        else:
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 8))))
            draw.polygon([(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles], fill=255)
        box = mask.getbbox()
        if box is None:
            continue
        x0, y0, x1, y1 = box
        x0, y0, x1, y1 = max(0, x0 - 4), max(0, y0 - 4), min(w, x1 + 4), min(h, y1 + 4)
        blurred = mask.crop((x0, y0, x1, y1)).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2)))
        alpha = np.asarray(blurred, np.float32)[..., None] / 255
        base3, mix3 = _palette(rng)
        ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(1.0, 1.4), y1 - y0, dtype=np.float32)
        obj = (base3 + variants[k % 3][y0:y1, x0:x1] @ mix3.T) * ramp[:, None, None]
        img[y0:y1, x0:x1] += (obj - img[y0:y1, x0:x1]) * alpha
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


class _Encoded(NamedTuple):
    data: bytes
    width: int
    height: int


def _jpeg(image: Image.Image, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=JPEG_QUALITY, **options)
    return buf.getvalue()


def _draw_size(rng: np.random.Generator) -> tuple[int, int]:
    pick = rng.random()
    for size, weight in zip(_SIZES, _SIZE_WEIGHTS, strict=True):
        if pick < weight:
            return size
        pick -= weight
    short = int(rng.integers(250, 500))
    return (500, short) if rng.random() < 0.6 else (short, 500)


@lru_cache(maxsize=2048)
def _pool_image(seed: int, index: int) -> _Encoded:
    """Pool image ``index``: a baseline RGB JPEG, reused under many names (cached)."""
    rng = _rng(seed, "pool", str(index))
    width, height = _draw_size(rng)
    return _Encoded(_jpeg(_photo(rng, width, height)), width, height)


def _quirk_image(img: _Image, seed: int) -> _Encoded:
    """Encode an image with its quirk from the pixels of its pool image."""
    source = Image.open(io.BytesIO(_pool_image(seed, img.pool).data)).convert("RGB")
    quirk = img.quirk
    if quirk == "cmyk":  # Pillow writes 4 components and the Adobe marker, as Photoshop does
        out = source.convert("CMYK")
        return _Encoded(_jpeg(out), *out.size)
    if quirk == "grayscale":
        return _Encoded(_jpeg(source.convert("L")), *source.size)
    if quirk == "progressive":
        return _Encoded(_jpeg(source, progressive=True), *source.size)
    if quirk in ("png_rgb", "png_rgba"):
        out = source
        if quirk == "png_rgba":
            w, h = source.size
            alpha = np.linspace(255, 64, w, dtype=np.float32)[None, :].repeat(h, 0)
            out = source.copy()
            out.putalpha(Image.fromarray(alpha.astype(np.uint8)))
        buf = io.BytesIO()
        out.save(buf, "PNG")
        return _Encoded(buf.getvalue(), *out.size)
    if quirk == "exif_rotated":  # stored landscape; orientation 6 turns it upright (portrait)
        upright = source.resize(EXIF_SIZE[::-1], Image.Resampling.BICUBIC)
        stored = upright.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[0x0112] = EXIF_ORIENTATION
        return _Encoded(_jpeg(stored, exif=exif.tobytes()), *stored.size)
    if quirk == "tiny":
        return _Encoded(_jpeg(source.resize(TINY_SIZE, Image.Resampling.LANCZOS)), *TINY_SIZE)
    if quirk == "large":
        big = np.asarray(source.resize(LARGE_SIZE, Image.Resampling.BICUBIC), np.float32)
        grain = _rng(seed, "grain", img.name).standard_normal(big.shape[:2], dtype=np.float32)
        big = np.clip(big + 3 * grain[..., None], 0, 255).astype(np.uint8)
        return _Encoded(_jpeg(Image.fromarray(big)), *LARGE_SIZE)
    raise AssertionError(f"unknown image quirk {quirk!r}")  # pragma: no cover


def _image_size(img: _Image, seed: int) -> tuple[int, int]:
    """The pixel grid an image is stored with, without encoding it."""
    fixed = {"tiny": TINY_SIZE, "large": LARGE_SIZE, "exif_rotated": EXIF_SIZE}
    if img.quirk in fixed:
        return fixed[img.quirk]
    pool = _pool_image(seed, img.pool)
    return pool.width, pool.height


# --------------------------------------------------------------------------- boxes


class _Box(NamedTuple):
    name: str
    xmin: int
    ymin: int
    xmax: int
    ymax: int


def _random_box(rng: np.random.Generator, name: str, w: int, h: int) -> _Box:
    bw = max(1, int(rng.uniform(0.25, 0.95) * w))
    bh = max(1, int(rng.uniform(0.25, 0.95) * h))
    x0 = int(rng.integers(0, w - bw + 1))
    y0 = int(rng.integers(0, h - bh + 1))
    return _Box(name, x0, y0, min(w - 1, x0 + bw), min(h - 1, y0 + bh))


def _quirky_box(box: _Box, quirk: str, rng: np.random.Generator, w: int, h: int) -> _Box:
    if quirk == "box_reversed":
        return box._replace(xmin=box.xmax, xmax=box.xmin, ymin=box.ymax, ymax=box.ymin)
    if quirk == "box_outside_image":
        return box._replace(xmax=w + int(rng.integers(1, 40)), ymax=h + int(rng.integers(1, 40)))
    if quirk == "box_zero_area":
        return box._replace(xmax=box.xmin)
    if quirk == "box_scottish_deerhound":
        return box._replace(name="Scottish_deerhound")
    if quirk == "box_other_synset":
        others = [s for s in load_synsets().wnids if s != box.name]
        return box._replace(name=others[int(rng.integers(len(others)))])
    raise AssertionError(f"unknown box quirk {quirk!r}")  # pragma: no cover


def _box_xml(folder: str, filename: str, size: tuple[int, int], boxes: Sequence[_Box]) -> bytes:
    """A PASCAL VOC annotation laid out as ImageNet's files are (tab-indented)."""
    lines = [
        "<annotation>",
        f"\t<folder>{folder}</folder>",
        f"\t<filename>{filename}</filename>",
        "\t<source>",
        "\t\t<database>ILSVRC_2012</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{size[0]}</width>",
        f"\t\t<height>{size[1]}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for b in boxes:
        lines += [
            "\t<object>",
            f"\t\t<name>{b.name}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{b.xmin}</xmin>",
            f"\t\t\t<ymin>{b.ymin}</ymin>",
            f"\t\t\t<xmax>{b.xmax}</xmax>",
            f"\t\t\t<ymax>{b.ymax}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return ("\n".join(lines) + "\n").encode("ascii")


def _train_box_xml(img: _Image, quirks: Sequence[str], seed: int) -> bytes:
    """The box file of a training image, with its planted quirks."""
    rng = _rng(seed, "box", img.stem)
    w, h = _image_size(img, seed)
    boxes = [_random_box(rng, img.wnid, w, h)]
    object_quirks = [q for q in quirks if q in _OBJECT_QUIRKS]
    for i, quirk in enumerate(object_quirks):
        base = boxes[0] if i == 0 else _random_box(rng, img.wnid, w, h)
        quirky = _quirky_box(base, quirk, rng, w, h)
        if i == 0:
            boxes[0] = quirky
        else:
            boxes.append(quirky)
    if "box_several_objects" in quirks:
        boxes += [_random_box(rng, img.wnid, w, h) for _ in range(int(rng.integers(2, 5)))]
    size = (w, h)
    if "box_size_mismatch" in quirks:  # annotators saw a resized image: its size and frame
        scale = float(rng.choice([0.5, 0.64, 1.6, 2.0]))
        size = (round(w * scale), round(h * scale))
        boxes = [
            b._replace(
                xmin=round(b.xmin * scale),
                ymin=round(b.ymin * scale),
                xmax=round(b.xmax * scale),
                ymax=round(b.ymax * scale),
            )
            for b in boxes
        ]
    filename = "%s" if "box_filename_placeholder" in quirks else img.stem
    return _box_xml(img.wnid, filename, size, boxes)


def _val_box_xml(img: _Image, seed: int) -> bytes:
    rng = _rng(seed, "box", img.stem)
    w, h = _image_size(img, seed)
    boxes = [_random_box(rng, img.wnid, w, h) for _ in range(1 + int(rng.random() < 0.2))]
    return _box_xml("val", img.stem, (w, h), boxes)


# --------------------------------------------------------------------------- devkit


def _meta_entries(
    seed: int, train_counts: Mapping[str, int]
) -> tuple[list[tuple[object, ...]], dict[str, int]]:
    """meta.mat rows and the leaf IDs: the 1000 leaves (IDs 1-1000 in a seeded order) and
    a tree of 860 inner nodes (real non-challenge WordNet IDs) above them."""
    rng = _rng(seed, "devkit")
    texts = all_synset_texts()
    leaves = load_synsets().wnids
    leaf_ids = {leaves[int(i)]: k for k, i in enumerate(rng.permutation(len(leaves)), start=1)}
    others = sorted(set(texts) - set(leaves))
    inner_wnids = [others[i] for i in rng.choice(len(others), NUM_INNER_SYNSETS, replace=False)]
    # Merge runs of neighbouring roots (in wnid order) under new parents until one remains;
    # the child counts sum to the number of edges of a tree with 1860 nodes.
    fanout = rng.multinomial(len(leaves) - 1, [1 / NUM_INNER_SYNSETS] * NUM_INNER_SYNSETS) + 1
    roots = [leaf_ids[w] for w in leaves]
    height = dict.fromkeys(roots, 0)
    count = {leaf_ids[w]: train_counts.get(w, 0) for w in leaves}
    children: dict[int, list[int]] = {}
    last_id = len(leaves) + NUM_INNER_SYNSETS
    for made, k in enumerate(fanout):
        start = int(rng.integers(0, len(roots) - k + 1))
        node = last_id - made  # the root, made last, gets the first inner ID
        children[node] = roots[start : start + k]
        roots[start : start + k] = [node]
        height[node] = 1 + max(height[c] for c in children[node])
        count[node] = sum(count[c] for c in children[node])
    wnid_of = {i: w for w, i in leaf_ids.items()}
    wnid_of |= {len(leaves) + 1 + j: w for j, w in enumerate(inner_wnids)}
    rows: list[tuple[object, ...]] = []
    for ident in range(1, last_id + 1):
        wnid = wnid_of[ident]
        kids = children.get(ident, [])
        rows.append(
            (
                np.array([[ident]], np.uint16),
                wnid,
                texts[wnid],
                f"{texts[wnid]} (a generated stand-in for the WordNet gloss)",
                np.array([[len(kids)]], np.uint16),
                np.array([kids], np.uint16) if kids else np.zeros((0, 0)),
                np.array([[height[ident]]], np.uint16),
                np.array([[count[ident]]], np.uint32),
            )
        )
    return rows, leaf_ids


def _meta_mat(rows: Sequence[tuple[object, ...]]) -> bytes:
    """``meta.mat`` bytes: a (N, 1) struct array ``synsets`` with the real field order."""
    from scipy.io import savemat

    table = np.empty((len(rows), 1), dtype=[(f, object) for f in _META_FIELDS])
    for i, row in enumerate(rows):
        table[i, 0] = row
    buf = io.BytesIO()
    savemat(buf, {"synsets": table}, format="5", do_compression=True)
    data = bytearray(buf.getvalue())
    data[:116] = _MAT_HEADER.ljust(116)  # the header text holds the time: make it fixed
    return bytes(data)


@lru_cache(maxsize=8)
def _devkit_files(seed: int, train_counts: tuple[tuple[str, int], ...]) -> Files:
    """The devkit's files (cached: writing meta.mat takes scipy half a second)."""
    rows, leaf_id = _meta_entries(seed, dict(train_counts))
    truth = "".join(f"{leaf_id[w]}\n" for w in shipped_validation_labels())
    readme = (
        "Generated by imagenet-prep: an ILSVRC2012-shaped development kit for tests.\n"
        "data/meta.mat and data/ILSVRC2012_validation_ground_truth.txt follow the real\n"
        "formats; the ILSVRC2012_IDs and the tree of inner synsets are made up.\n"
    )
    return (
        (DEVKIT_META, _meta_mat(rows)),
        (DEVKIT_GROUND_TRUTH, truth.encode("ascii")),
        ("ILSVRC2012_devkit_t12/readme.txt", readme.encode("ascii")),
    )


# --------------------------------------------------------------------------- tar streaming


@dataclass(frozen=True)
class _TarEntry:
    """One tar member: its bytes come from ``chunks`` (exactly ``size`` of them)."""

    name: str
    size: int = 0
    chunks: Iterable[bytes] = ()
    directory: bool = False


def _tar_header(entry: _TarEntry) -> bytes:
    info = tarfile.TarInfo(entry.name + "/" if entry.directory else entry.name)
    info.type = tarfile.DIRTYPE if entry.directory else tarfile.REGTYPE
    info.mode = 0o755 if entry.directory else 0o644
    info.size = entry.size
    info.mtime = _MTIME
    return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")


def _padding(n: int, unit: int) -> int:
    return -n % unit


def _tar_end(written: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, as tar and ``tarfile`` end archives."""
    end = 2 * tarfile.BLOCKSIZE
    return bytes(end + _padding(written + end, tarfile.RECORDSIZE))


def _tar_size(entries: Sequence[_TarEntry]) -> int:
    """The length of the tar that :func:`_tar_chunks` makes of ``entries``."""
    n = sum(len(_tar_header(e)) + e.size + _padding(e.size, tarfile.BLOCKSIZE) for e in entries)
    return n + len(_tar_end(n))


def _tar_chunks(entries: Iterable[_TarEntry]) -> Iterator[bytes]:
    """A tar archive's bytes, streamed: members are never copied into one buffer."""
    written = 0
    for entry in entries:
        header = _tar_header(entry)
        yield header
        size = 0
        for chunk in entry.chunks:
            size += len(chunk)
            yield chunk
        if size != entry.size:  # pragma: no cover - a bug here would corrupt the archive
            raise RuntimeError(f"{entry.name}: announced {entry.size} bytes, wrote {size}")
        pad = _padding(size, tarfile.BLOCKSIZE)
        yield bytes(pad)
        written += len(header) + size + pad
    yield _tar_end(written)


def _file_entries(prefix: str, files: Iterable[tuple[str, bytes]]) -> Iterator[_TarEntry]:
    for name, data in files:
        yield _TarEntry(f"{prefix}{name}", len(data), (data,))


# --------------------------------------------------------------------------- writing


Group = tuple[str, Files]  # a folder (a class tar when nested) and its files


@dataclass(frozen=True)
class _Part:
    """One archive of the download and where its contents go in the extracted layout."""

    archive: str
    tree: str
    nested: bool = False


_PARTS = {
    "train": _Part(TRAIN_TAR, "train", nested=True),
    "val": _Part(VAL_TAR, "val"),
    "train_boxes": _Part(BBOX_TRAIN_TGZ, "bounding_boxes"),
    "val_boxes": _Part(BBOX_VAL_TGZ, "bounding_boxes"),
    "devkit": _Part(DEVKIT_TGZ, ""),
}


def _archive_entries(part: _Part, groups: Iterable[Group]) -> Iterator[_TarEntry]:
    made: set[str] = set()
    for folder, files in groups:
        if part.nested:
            inner = list(_file_entries("", files))
            yield _TarEntry(f"{folder}.tar", _tar_size(inner), _tar_chunks(inner))
            continue
        parts = folder.split("/") if folder else []
        for depth in range(1, len(parts) + 1):
            name = "/".join(parts[:depth])
            if name not in made:
                made.add(name)
                yield _TarEntry(name, directory=True)
        yield from _file_entries(f"{folder}/" if folder else "", files)


def _write_archive(path: Path, part: _Part, groups: Iterable[Group]) -> None:
    with atomic_open(path) as f:
        if path.name.endswith((".gz", ".tgz")):
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=f, mtime=0) as gz:
                for chunk in _tar_chunks(_archive_entries(part, groups)):
                    gz.write(chunk)
        else:
            for chunk in _tar_chunks(_archive_entries(part, groups)):
                f.write(chunk)


def _write_tree(root: Path, part: _Part, groups: Iterable[Group]) -> None:
    for folder, files in groups:
        directory = root / part.tree / folder
        for name, data in files:
            write_bytes_atomic(directory / name, data)


@dataclass
class _Writer:
    """Turns the plan into bytes, group by group, and keeps what the report needs."""

    plan: _Plan
    seed: int
    jpegs: list[tuple[int, int, int]] = field(default_factory=list)  # size, width, height

    def _encode(self, img: _Image) -> bytes:
        enc = _quirk_image(img, self.seed) if img.quirk else _pool_image(self.seed, img.pool)
        if not (img.quirk or "").startswith("png"):
            self.jpegs.append((len(enc.data), enc.width, enc.height))
        return enc.data

    def train(self) -> Iterator[Group]:
        for wnid in self.plan.train_order:
            yield wnid, [(img.name, self._encode(img)) for img in self.plan.train[wnid]]

    def val(self) -> Iterator[Group]:
        yield "", [(img.name, self._encode(img)) for img in self.plan.val]

    def train_boxes(self) -> Iterator[Group]:
        for wnid in self.plan.train_order:
            yield (
                wnid,
                [
                    (f"{img.stem}.xml", _train_box_xml(img, self.plan.boxes[img.stem], self.seed))
                    for img in self.plan.train[wnid]
                    if img.stem in self.plan.boxes
                ],
            )

    def val_boxes(self) -> Iterator[Group]:
        yield "val", [(f"{img.stem}.xml", _val_box_xml(img, self.seed)) for img in self.plan.val]

    def devkit(self) -> Iterator[Group]:
        counts = tuple((w, len(imgs)) for w, imgs in self.plan.train.items())
        files = _devkit_files(self.seed, counts)
        for folder in sorted({name.rpartition("/")[0] for name, _ in files}):
            yield (
                folder,
                [(n.rpartition("/")[2], d) for n, d in files if n.rpartition("/")[0] == folder],
            )


def _quirk_table(plan: _Plan) -> dict[str, tuple[str, ...]]:
    table: dict[str, list[str]] = {q: [] for q in (*IMAGE_QUIRKS, *BOX_QUIRKS)}
    for imgs in (*plan.train.values(), plan.val):
        for img in imgs:
            if img.quirk:
                table[img.quirk].append(img.name)
    for stem, quirks in plan.boxes.items():
        for quirk in quirks:
            table[quirk].append(f"{stem}.xml")
    return {q: tuple(sorted(names)) for q, names in table.items()}


def _check_output(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"{out}: exists and is not an empty directory; choose a new output path")


def generate(config: FixtureConfig) -> FixtureReport:
    """Write the download ``config`` describes into ``config.out`` and report on it."""
    started = time.perf_counter()
    _check_output(config.out)
    plan = _plan(config)
    writer = _Writer(plan, config.seed)
    logger.info(
        "generating an ILSVRC2012-shaped download (%s layout) in %s: %d classes, %d training "
        "and %d validation images",
        config.layout,
        config.out,
        len(plan.classes),
        sum(len(v) for v in plan.train.values()),
        len(plan.val),
    )
    config.out.mkdir(parents=True, exist_ok=True)
    sources = {
        "train": writer.train,
        "val": writer.val,
        "train_boxes": writer.train_boxes,
        "val_boxes": writer.val_boxes,
        "devkit": writer.devkit,
    }
    for key, part in _PARTS.items():
        part_started = time.perf_counter()
        if config.layout == "archives":
            _write_archive(config.out / part.archive, part, sources[key]())
        else:
            _write_tree(config.out, part, sources[key]())
        logger.debug("%s written in %.1f s", key, time.perf_counter() - part_started)
    size, width, height = sorted(writer.jpegs)[(len(writer.jpegs) - 1) // 2]
    total = sum(p.stat().st_size for p in config.out.rglob("*") if p.is_file())
    report = FixtureReport(
        out=config.out,
        layout=config.layout,
        classes=plan.classes,
        train_images=sum(len(v) for v in plan.train.values()),
        val_images=len(plan.val),
        train_boxes=len(plan.boxes),
        val_boxes=len(plan.val),
        total_bytes=total,
        median_jpeg_bytes=size,
        median_jpeg_size=(width, height),
        quirks=_quirk_table(plan),
        seconds=time.perf_counter() - started,
    )
    logger.info("done in %.1f s", report.seconds)
    return report
