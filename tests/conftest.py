"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.fixture import FixtureConfig, generate

# The real-client scripts run in their own interpreters (TensorFlow and torch crash when
# imported into one process); doctest collection must not import them here.
collect_ignore = ["clients"]

# The generated downloads below: 4 classes x 12 training images, 3 validation images per class.
SMALL_CLASSES = 4
SMALL_PER_CLASS = 12
SMALL_VAL_PER_CLASS = 3
SMALL_SEED = 1234


def _small(out: Path, **options: Any) -> Path:
    generate(
        FixtureConfig(
            out=out,
            classes=SMALL_CLASSES,
            per_class=SMALL_PER_CLASS,
            val_per_class=SMALL_VAL_PER_CLASS,
            seed=SMALL_SEED,
            pool_size=16,
            **options,
        )
    )
    return out


@pytest.fixture(scope="session")
def small_download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated archives-layout ILSVRC2012 download (the five archives), read-only."""
    return _small(tmp_path_factory.mktemp("small_download") / "download")


@pytest.fixture(scope="session")
def small_extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same download in the extracted layout, training images named ``.jpeg``."""
    return _small(
        tmp_path_factory.mktemp("small_extracted") / "raw", layout="extracted", extension=".jpeg"
    )
