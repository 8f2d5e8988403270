"""The PyTorch adapter: DataLoader workers, ranks, batches, resume."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from torch.utils.data import DataLoader  # noqa: E402

from imagenet_prep import BuildConfig, build  # noqa: E402
from imagenet_prep.loaders import iterate  # noqa: E402
from imagenet_prep.loaders.torch import ImageNetDataset, ImageNetLoader, collate  # noqa: E402


@pytest.fixture(scope="module")
def built(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders_torch") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "imagefolder", "webdataset"),
            train_shards=4,
            validation_shards=2,
            shard_size=10,
            workers=1,
        )
    )
    return out


def _digest(image: object) -> str:
    return hashlib.md5(bytes(image.contiguous().numpy())).hexdigest()  # type: ignore[attr-defined]


def reference(out: Path, split: str, fmt: str, size: int) -> Counter[tuple[int, str]]:
    """(label, pixels) of every image with the deterministic eval crop, in HWC."""
    return Counter(
        (label, hashlib.md5(image.tobytes()).hexdigest())
        for image, label, _ in iterate(out, split, format=fmt, transform="eval", image_size=size)
    )


@pytest.mark.parametrize("fmt", ["tfrecord", "webdataset", "imagefolder"])
def test_loader_workers_and_ranks_yield_every_image_once(built: Path, fmt: str) -> None:
    expected = reference(built, "train", fmt, 24)
    for world, workers in [(1, 0), (1, 2), (2, 2)]:
        got: Counter[tuple[int, str]] = Counter()
        batches = 0
        for rank in range(world):
            loader = ImageNetLoader(
                built,
                "train",
                format=fmt,
                batch_size=5,
                num_workers=workers,
                transform="eval",
                image_size=24,
                rank=rank,
                world_size=world,
                layout="HWC",
            )
            n = 0
            for images, labels in loader:
                assert images.dtype == torch.uint8 and labels.dtype == torch.int64
                assert images.shape[1:] == (24, 24, 3)
                got.update((int(lb), _digest(im)) for im, lb in zip(images, labels, strict=True))
                n += 1
            assert n == len(loader)
            batches += n
        assert got == expected, (world, workers)


def test_layouts_and_per_image_mode(built: Path) -> None:
    loader = ImageNetLoader(built, "validation", batch_size=4, transform="eval", image_size=32)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (4,) and labels.dtype == torch.int64
    assert torch.equal(
        images.contiguous().permute(0, 2, 3, 1).contiguous(), images.permute(0, 2, 3, 1)
    )
    dataset = ImageNetDataset(built, "validation", transform="eval", image_size=32)
    assert len(dataset) == 12
    image, label = next(iter(dataset))
    assert image.shape == (3, 32, 32) and isinstance(label, int)
    batches = list(DataLoader(dataset, batch_size=5, num_workers=2, collate_fn=collate))
    assert [b[0].shape[0] for b in batches] == [5, 5, 1, 1]  # each worker batches its 6
    assert all(b[0].shape[1:] == (3, 32, 32) for b in batches)
    got = Counter(
        (int(lb), _digest(im.permute(1, 2, 0))) for b in batches for im, lb in zip(*b, strict=True)
    )
    assert got == reference(built, "validation", "tfrecord", 32)
    hwc = ImageNetDataset(built, "validation", transform="eval", image_size=32, layout="HWC")
    assert next(iter(hwc))[0].shape == (32, 32, 3)
    with pytest.raises(ValueError, match="transform"):
        ImageNetDataset(built, "validation", batch_size=4)


def _run(loader: ImageNetLoader, stop: int | None = None) -> list[tuple[object, object]]:
    out = []
    for images, labels in loader:
        out.append((images.clone(), labels.clone()))
        if stop is not None and len(out) == stop:
            break
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_resumes_exactly(built: Path, workers: int) -> None:
    options = dict(
        format="webdataset",
        batch_size=4,
        num_workers=workers,
        transform="train",
        image_size=24,
        seed=3,
        buffer_size=6,
    )
    full = _run(ImageNetLoader(built, "train", **options))  # type: ignore[arg-type]
    assert len(full) == 12
    for cut in (1, 4, 7):
        loader = ImageNetLoader(built, "train", **options)  # type: ignore[arg-type]
        first = _run(loader, cut)
        state = loader.state_dict()
        resumed = ImageNetLoader(built, "train", **options)  # type: ignore[arg-type]
        resumed.load_state_dict(state)
        resumed.set_epoch(0)  # already in epoch 0: keeps the position
        got = first + _run(resumed)
        assert len(got) == len(full)
        for (a, b), (c, d) in zip(got, full, strict=True):
            assert torch.equal(a, c) and torch.equal(b, d), cut


def test_loader_moves_to_the_next_epoch(built: Path) -> None:
    loader = ImageNetLoader(built, "train", batch_size=16, transform="train", image_size=16)
    first = _run(loader)
    assert loader.epoch == 1
    second = _run(loader)
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(first, second, strict=True))
    loader.set_epoch(0)
    again = _run(loader)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    with pytest.raises(ValueError, match="batch_size"):
        ImageNetLoader(built, "train", batch_size=8, transform="train").load_state_dict(
            loader.state_dict()
        )
