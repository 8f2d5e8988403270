"""Options of the commands as frozen dataclasses, validated when made.

A bad option raises :class:`~imagenet_prep.errors.UsageError` (a ``ValueError``), which the
CLI prints as one line and exits 2 on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .formats import NAMES
from .imagefix import MAX_PIXELS
from .sources.layout import LAYOUTS
from .storage import as_location

SPLITS = ("train", "validation", "test")
DEFAULT_SPLITS = ("train", "validation")  # the test split has no labels: only when asked
FORMATS = NAMES  # the registry's: imagenet_prep.formats
ON_ERROR = ("raise", "skip")
EXECUTORS = ("local", "ray")  # where the shard tasks run (imagenet_prep.executors)
OUTPUT_LAYOUT = 2  # see BuildConfig.output_options
DEFAULT_SEED = 12345  # what the reference scripts' build_imagenet_data.py shuffles with
WEBDATASET_SHARD_BYTES = 10**9


@dataclass(frozen=True)
class KnownArchive:
    """A published archive: its name, size and MD5, and what it holds."""

    name: str
    size: int
    md5: str
    images: int
    classes: int


# The official ILSVRC2012 downloads (image-net.org). Their box archive holds 544,546 XML files.
OFFICIAL_ARCHIVES = (
    KnownArchive(
        name="ILSVRC2012_img_train.tar",
        size=147_897_477_120,
        md5="1d675b47d978889d74fa0da5fadfb00e",
        images=1_281_167,
        classes=1000,
    ),
    KnownArchive(
        name="ILSVRC2012_img_val.tar",
        size=6_744_924_160,
        md5="29b22e2961454d5413ddabcf34fc5622",
        images=50_000,
        classes=1000,
    ),
)
OFFICIAL_BOX_FILES = 544_546


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


@dataclass(frozen=True)
class BuildConfig:
    """Everything ``build`` needs; the CLI only fills this in.

    ``output_options()`` lists the options that change output bytes; they are recorded
    in the output folder so that a rerun can tell a resume from a different build.
    """

    source: Path
    output: Path
    formats: tuple[str, ...] = ("tfrecord",)
    splits: tuple[str, ...] = DEFAULT_SPLITS
    train_shards: int = 1024
    validation_shards: int = 128
    test_shards: int = 256
    layout: str | None = None  # the source layout, found in SRC when None
    validation_boxes: bool = False
    workers: int = field(default_factory=default_workers)
    # Where the shard tasks run: "local" processes, or "ray" (a local Ray instance of
    # ``workers`` CPUs, or the cluster at ``ray_address`` / RAY_ADDRESS). Not an output option:
    # the bytes are the same, and a build started on one may be resumed on the other.
    executor: str = "local"
    ray_address: str | None = None
    label_offset: int = 1
    seed: int = DEFAULT_SEED
    on_error: str = "raise"
    decode_check: bool = False
    max_pixels: int = MAX_PIXELS  # Pillow's own limit: more is refused as a decompression bomb
    check_md5: bool = True
    force: bool = False
    overwrite: bool = False
    link: bool = False
    shard_size: int | None = None
    resize_shorter: int | None = None
    resize_longer: int | None = None
    quality: int = 90
    dali_index: bool = False
    known_archives: tuple[KnownArchive, ...] = OFFICIAL_ARCHIVES

    def __post_init__(self) -> None:
        # A URL (s3://...) stays one: a path object of its store (storage.as_location).
        object.__setattr__(self, "source", as_location(self.source))
        object.__setattr__(self, "output", as_location(self.output))
        object.__setattr__(self, "formats", _as_tuple(self.formats))
        object.__setattr__(self, "splits", _as_tuple(self.splits))
        if not self.formats:
            raise UsageError("formats: at least one output format is needed")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise UsageError(f"formats: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        if len(set(self.formats)) != len(self.formats):
            raise UsageError(f"formats: {', '.join(self.formats)} names a format twice")
        if not self.splits:
            raise UsageError("splits: at least one split is needed")
        for split in self.splits:
            if split not in SPLITS:
                raise UsageError(f"splits: unknown split {split!r} (known: {', '.join(SPLITS)})")
        if len(set(self.splits)) != len(self.splits):
            raise UsageError(f"splits: {', '.join(self.splits)} names a split twice")
        if min(self.train_shards, self.validation_shards, self.test_shards) < 1:
            raise UsageError("train-shards, validation-shards and test-shards must be at least 1")
        if self.layout is not None and self.layout not in LAYOUTS:
            raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, not {self.layout!r}")
        if self.workers < 1:
            raise UsageError(f"workers must be at least 1, not {self.workers}")
        if self.executor not in EXECUTORS:
            raise UsageError(
                f"executor must be one of {', '.join(EXECUTORS)}, not {self.executor!r}"
            )
        if self.ray_address is not None and self.executor != "ray":
            raise UsageError("ray-address is for --executor ray")
        if self.on_error not in ON_ERROR:
            raise UsageError(
                f"on-error must be one of {', '.join(ON_ERROR)}, not {self.on_error!r}"
            )
        if self.max_pixels < 1:
            raise UsageError(f"max-pixels must be at least 1, not {self.max_pixels}")
        if self.shard_size is not None and self.shard_size < 1:
            raise UsageError(f"shard-size must be at least 1, not {self.shard_size}")
        if self.resize_shorter is not None and self.resize_longer is not None:
            raise UsageError("give resize-shorter or resize-longer, not both")
        for name in ("resize_shorter", "resize_longer"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UsageError(f"{name.replace('_', '-')} must be at least 1, not {value}")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"quality must be between 1 and 100, not {self.quality}")
        if not -(2**31) <= self.label_offset < 2**31 - 1000:
            raise UsageError(f"label-offset {self.label_offset} is out of range")

    def shards(self, split: str) -> int:
        if split == "test":
            return self.test_shards
        return self.train_shards if split == "train" else self.validation_shards

    def known_archive(self, name: str, size: int) -> KnownArchive | None:
        """The published archive this file claims to be (same name and size), if any."""
        for known in self.known_archives:
            if known.name == name and known.size == size:
                return known
        return None

    def output_options(self) -> dict[str, Any]:
        """The options that decide the output's bytes (not workers, checks, or paths).

        ``on_error`` is left out on purpose: shards finished under ``raise`` are exactly
        what ``skip`` writes for them, so a failed strict run may be resumed with ``skip``.
        So are ``decode_check`` and ``max_pixels``, checks for the same reason: they only
        refuse images, and an image written is the same bytes whatever they say (a skip is
        listed in the manifest); a rerun with a raised limit may finish a failed build.
        """
        return {
            # The version of the output's layout and bytes: a build of another is not resumed.
            # 2: DALI indexes in OUT/dali-index/, dataset cards and metadata beside the
            # shards, resized copies keep the EXIF Orientation tag.
            "layout": OUTPUT_LAYOUT,
            "formats": list(self.formats),
            "splits": list(self.splits),
            "train_shards": self.train_shards,
            "validation_shards": self.validation_shards,
            "label_offset": self.label_offset,
            "seed": self.seed,
            "shard_size": self.shard_size,
            "resize_shorter": self.resize_shorter,
            "resize_longer": self.resize_longer,
            "quality": self.quality if self.resizes else None,
            "dali_index": self.dali_index,
            # Recorded only when they change the output, so that earlier builds still resume.
            **({"test_shards": self.test_shards} if "test" in self.splits else {}),
            **({"validation_boxes": True} if self.validation_boxes else {}),
        }

    @property
    def resizes(self) -> bool:
        return self.resize_shorter is not None or self.resize_longer is not None

    def shards_by_size(
        self, images: int, nbytes: int, shard_bytes: int = WEBDATASET_SHARD_BYTES
    ) -> int:
        """The shards of a split of a format that counts them by size: ``shard_size`` images
        each, or about ``shard_bytes`` of input each (the format's default).

        >>> BuildConfig(source=".", output="o", shard_size=10).shards_by_size(95, 0)
        10
        >>> BuildConfig(source=".", output="o").shards_by_size(1000, 2 * 10**9)
        2
        >>> BuildConfig(source=".", output="o").shards_by_size(1000, 2 * 10**9, 64 << 20)
        30
        """
        if images == 0:
            return 1
        size = self.shard_size or max(1, round(shard_bytes * images / max(nbytes, 1)))
        return -(-images // size)


def _as_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]
