"""Options of the commands as frozen dataclasses, validated when made."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPLITS = ("train", "validation")
FORMATS = ("tfrecord", "imagefolder")
DEFAULT_SEED = 12345  # the seed's build_imagenet_data.py shuffles with random.seed(12345)


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
    splits: tuple[str, ...] = SPLITS
    train_shards: int = 1024
    validation_shards: int = 128
    workers: int = field(default_factory=default_workers)
    label_offset: int = 1
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        object.__setattr__(self, "source", Path(self.source))
        object.__setattr__(self, "output", Path(self.output))
        object.__setattr__(self, "formats", _as_tuple(self.formats))
        object.__setattr__(self, "splits", _as_tuple(self.splits))
        if not self.formats:
            raise ValueError("formats: at least one output format is needed")
        for fmt in self.formats:
            if fmt not in FORMATS:
                raise ValueError(f"formats: unknown format {fmt!r} (known: {', '.join(FORMATS)})")
        if len(set(self.formats)) != len(self.formats):
            raise ValueError(f"formats: {', '.join(self.formats)} names a format twice")
        if not self.splits:
            raise ValueError("splits: at least one split is needed")
        for split in self.splits:
            if split not in SPLITS:
                raise ValueError(f"splits: unknown split {split!r} (known: {', '.join(SPLITS)})")
        if len(set(self.splits)) != len(self.splits):
            raise ValueError(f"splits: {', '.join(self.splits)} names a split twice")
        if self.train_shards < 1 or self.validation_shards < 1:
            raise ValueError("train-shards and validation-shards must be at least 1")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if not -(2**31) <= self.label_offset < 2**31 - 1000:
            raise ValueError(f"label-offset {self.label_offset} is out of range")

    def shards(self, split: str) -> int:
        return self.train_shards if split == "train" else self.validation_shards

    def output_options(self) -> dict[str, Any]:
        """The options that decide the output's bytes (not workers, not paths)."""
        return {
            "formats": list(self.formats),
            "splits": list(self.splits),
            "train_shards": self.train_shards,
            "validation_shards": self.validation_shards,
            "label_offset": self.label_offset,
            "seed": self.seed,
        }


def _as_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return tuple(str(v) for v in value)  # type: ignore[attr-defined]
