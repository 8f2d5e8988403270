"""The framework-free loader on a real build of every format."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from imagenet_prep import BuildConfig, build
from imagenet_prep.errors import DataError
from imagenet_prep.labels import load_synsets
from imagenet_prep.loaders import FORMATS, detect_format, iterate

FORMAT_LIST = list(FORMATS)


@pytest.fixture(scope="module")
def built(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=tuple(FORMATS),  # every format in the registry
            train_shards=4,
            validation_shards=2,
            shard_size=10,
            workers=1,
            label_offset=1,
        )
    )
    return out


def truth(out: Path, split: str) -> dict[str, int]:
    """key -> 0-based label, from the ImageFolder tree's class folders."""
    synsets = load_synsets()
    folder = out / "imagefolder" / {"train": "train", "validation": "val"}[split]
    return {f.stem: synsets.index(f.parent.name) for f in folder.glob("*/*")}


def keys_of(out: Path, split: str, **options: object) -> list[str]:
    return [key for _, _, key in iterate(out, split, decoder="pillow", **options)]  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMAT_LIST)
@pytest.mark.parametrize("split", ["train", "validation"])
def test_one_epoch_yields_every_image_once_with_its_label(
    built: Path, fmt: str, split: str
) -> None:
    expected = truth(built, split)
    assert len(expected) == (48 if split == "train" else 12)
    for world, workers in [(1, 1), (2, 1), (1, 3), (3, 2), (4, 4)]:
        got: dict[str, int] = {}
        seen = 0
        for rank in range(world):
            for worker in range(workers):
                it = iterate(
                    built,
                    split,
                    format=fmt,
                    transform="eval",
                    image_size=16,
                    rank=rank,
                    world_size=world,
                    worker=worker,
                    num_workers=workers,
                    epoch=2,
                )
                n = 0
                for image, label, key in it:
                    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
                    got[key] = label
                    n += 1
                assert n == len(it)
                seen += n
        assert seen == len(expected), (world, workers)
        assert got == expected, (world, workers)


@pytest.mark.parametrize("fmt", FORMAT_LIST)
def test_order_depends_on_seed_and_epoch_only(built: Path, fmt: str) -> None:
    a = keys_of(built, "train", format=fmt, seed=3, epoch=1)
    assert a == keys_of(built, "train", format=fmt, seed=3, epoch=1)
    assert a != keys_of(built, "train", format=fmt, seed=3, epoch=2)
    assert a != keys_of(built, "train", format=fmt, seed=4, epoch=1)
    # Validation is not shuffled by default: the files' own order, every epoch.
    v = keys_of(built, "validation", format=fmt, epoch=0)
    assert v == keys_of(built, "validation", format=fmt, epoch=5)
    assert v != keys_of(built, "validation", format=fmt, shuffle=True)


def test_tfrecord_and_webdataset_keep_the_builds_order_unshuffled(built: Path) -> None:
    # Both formats hold the build's one shuffled order, cut differently into shards.
    tf = keys_of(built, "train", format="tfrecord", shuffle=False)
    wds = keys_of(built, "train", format="webdataset", shuffle=False)
    assert tf == wds
    assert keys_of(built, "train", format="imagefolder", shuffle=False) == sorted(tf)


@pytest.mark.parametrize("fmt", FORMAT_LIST)
def test_a_resumed_iterator_continues_exactly(built: Path, fmt: str) -> None:
    options = dict(format=fmt, transform="train", image_size=24, seed=7, epoch=3, buffer_size=8)
    full = [(key, image.tobytes()) for image, _, key in iterate(built, "train", **options)]  # type: ignore[arg-type]
    assert len(full) == 48
    for cut in (0, 1, 9, 30, 47, 48):
        it = iterate(built, "train", **options)  # type: ignore[arg-type]
        first = []
        for _ in range(cut):
            image, _, key = next(it)
            first.append((key, image.tobytes()))
        state = it.state_dict()
        resumed = iterate(built, "train", **options)  # type: ignore[arg-type]
        resumed.load_state_dict(state)
        rest = [(key, image.tobytes()) for image, _, key in resumed]
        assert first + rest == full, cut


def test_state_of_another_configuration_is_refused(built: Path) -> None:
    state = iterate(built, "train", format="tfrecord", seed=1).state_dict()
    with pytest.raises(ValueError, match="seed"):
        iterate(built, "train", format="tfrecord", seed=2).load_state_dict(state)
    with pytest.raises(ValueError, match="world_size"):
        iterate(built, "train", format="tfrecord", seed=1, world_size=2).load_state_dict(state)


@pytest.mark.parametrize("fmt", FORMAT_LIST)
def test_balance_pads_or_drops_to_equal_ranks(built: Path, fmt: str) -> None:
    # 12 validation images over 5 ranks: 3 (pad, 15 in all) or 2 (drop, 10 in all).
    for balance, per_rank in (("pad", 3), ("drop", 2)):
        keys: list[str] = []
        for rank in range(5):
            got = keys_of(built, "validation", format=fmt, world_size=5, rank=rank, balance=balance)
            assert len(got) == per_rank
            keys.extend(got)
        counts = Counter(keys)
        if balance == "pad":
            assert set(counts) == set(truth(built, "validation"))
            assert sum(counts.values()) == 15
        else:
            assert max(counts.values()) == 1 and len(counts) == 10


@pytest.mark.parametrize("fmt", FORMAT_LIST)
def test_transforms_give_the_requested_shapes(built: Path, fmt: str) -> None:
    decoded = {key: image.shape for image, _, key in iterate(built, "train", format=fmt)}
    assert all(len(s) == 3 and s[2] == 3 for s in decoded.values())
    assert len({s[:2] for s in decoded.values()}) > 1  # images of several sizes
    for transform in ("train", "train-inception", "eval"):
        for image, _, _ in iterate(built, "train", format=fmt, transform=transform, image_size=40):
            assert image.shape == (40, 40, 3) and image.dtype == np.uint8


def test_formats_decode_to_the_same_pixels(built: Path) -> None:
    images = {
        fmt: {key: image for image, _, key in iterate(built, "validation", format=fmt)}
        for fmt in FORMAT_LIST
    }
    assert images["tfrecord"].keys() == images["imagefolder"].keys()
    for key, image in images["tfrecord"].items():
        assert np.array_equal(image, images["webdataset"][key])
        # ImageFolder keeps the original bytes (CMYK JPEGs, PNGs); the records re-encoded them.
        assert image.shape == images["imagefolder"][key].shape
        diff = np.abs(image.astype(int) - images["imagefolder"][key].astype(int)).mean()
        assert diff < 3, key


def test_labels_do_not_depend_on_the_label_offset(
    small_download: Path, tmp_path: Path, built: Path
) -> None:
    out = tmp_path / "offset0"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord",),
            splits=("validation",),
            validation_shards=2,
            workers=1,
            label_offset=0,
        )
    )
    got = {key: label for _, label, key in iterate(out, "validation", decoder="pillow")}
    assert got == truth(built, "validation")


def test_format_detection_and_errors(built: Path, tmp_path: Path) -> None:
    assert detect_format(built) == "tfrecord"
    with pytest.raises(ValueError, match="split"):
        iterate(built, "holdout")
    with pytest.raises(DataError, match="has no test split"):  # a split the build left out
        iterate(built, "test")
    with pytest.raises(ValueError, match="format"):
        iterate(built, "train", format="lmdb")
    with pytest.raises(ValueError, match="transform"):
        iterate(built, "train", transform="random")
    with pytest.raises(DataError, match="manifest"):
        iterate(tmp_path, "train")


def test_a_damaged_record_is_named(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(built, copy)
    shard = sorted((copy / "tfrecord").glob("validation-*"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match=shard.name):
        list(iterate(copy, "validation", format="tfrecord"))


def test_the_fast_example_parser_agrees_with_the_codec(built: Path) -> None:
    from imagenet_prep.formats.tfrecord import spec as tfrecord_io
    from imagenet_prep.formats.tfrecord.reader import FIELDS

    boxes = 0
    for shard in sorted((built / "tfrecord").glob("train-*")):
        for _, data in tfrecord_io.iter_records(shard):
            fields = tfrecord_io.example_fields(data, FIELDS)
            assert fields is not None
            example = tfrecord_io.decode_example(data)
            for key, values in fields.items():
                assert list(values) == list(example[key].values), key
            boxes += len(fields[tfrecord_io.XMIN])
    assert boxes > 0
    # Laid out otherwise (a feature missing): the fast parser declines.
    assert tfrecord_io.example_fields(tfrecord_io.encode_example({}), FIELDS) is None


def _damaged_copy(built: Path, tmp_path: Path, fmt: str, damage: str) -> Path:
    """A copy of the build whose first training shard of ``fmt`` is damaged."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(built, out)
    shard = sorted((out / fmt).glob("train-*"))[0]
    data = bytearray(shard.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x40  # inside some image's bytes
    else:
        del data[len(data) * 2 // 3 :]
    shard.write_bytes(bytes(data))
    return out


@pytest.mark.parametrize("damage", ["flip", "cut"])
def test_a_damaged_tfrecord_shard_is_an_error_naming_it(
    built: Path, tmp_path: Path, damage: str
) -> None:
    out = _damaged_copy(built, tmp_path, "tfrecord", damage)
    with pytest.raises(
        DataError, match=r"tfrecord/train-00000-of-00004: .*(CRC|truncated|manifest says)"
    ):
        for _ in iterate(out, "train", format="tfrecord", decoder="pillow", shuffle=False):
            pass


def test_a_cut_webdataset_shard_is_an_error_naming_it(built: Path, tmp_path: Path) -> None:
    out = _damaged_copy(built, tmp_path, "webdataset", "cut")
    with pytest.raises(DataError, match=r"webdataset/train-000000\.tar"):
        for _ in iterate(out, "train", format="webdataset", decoder="pillow", shuffle=False):
            pass
