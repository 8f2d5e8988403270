"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep.fixture import FixtureConfig, generate
from tests.raycluster import ray_head, use_loopback

# Every Ray process the tests start, and every driver, stays on 127.0.0.1 (tests/raycluster.py).
use_loopback()

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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """The address of a real two-CPU Ray head on 127.0.0.1, started once for the tests that
    ask for it and killed, every process of it, when they end."""
    with ray_head(cpus=2) as (address, _sid):
        yield address


# The S3 servers of the object-storage tests (tests/s3server.py), imported beside their fixtures.
from tests.s3server import S3Endpoint, moto_server  # noqa: E402

#: The test files that start or look for Ray processes: they run on one worker, one after
#: the other (a test asking that no Ray task of its build is left would see another's).
RAY_FILES = frozenset({"test_ray.py", "test_ray_executor.py"})

#: The test files that run MosaicML streaming's ``StreamingDataset``: it picks its
#: shared-memory prefix by looking for the first free one, so two readers started at once
#: on two workers can pick the same and one fails ("File exists: '/000177_locals'").
STREAMING_FILES = frozenset({"test_mds.py", "test_test_split.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``make test`` runs ``-n 2 --dist loadgroup``), a file's tests run
    on one worker, so that its module fixtures (a download, a build) are made once; the tests
    that use Ray share one worker, and so do those that run MosaicML streaming's reader."""
    for item in items:
        name = item.path.name
        uses_ray = name in RAY_FILES or (name.startswith("test_s3") and "ray" in item.name)
        if uses_ray:
            group = "ray"
        elif name in STREAMING_FILES:
            group = "streaming"
        else:
            group = str(item.path)
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Endpoint]:
    """A real moto S3 server on 127.0.0.1 without IAM checks (any keys do), started once for
    the tests that ask for it and killed, every process of it, when they end. The tests share
    it, so each makes buckets of names of its own."""
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3_iam() -> Iterator[S3Endpoint]:
    """A moto S3 server that checks signatures and IAM policies: ``env`` holds the keys of
    an admin user; :func:`tests.s3server.add_user` makes users confined to some buckets."""
    with moto_server(iam=True) as endpoint:
        yield endpoint
