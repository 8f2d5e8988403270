"""WebDataset shards, resized copies and DALI index files, read back without our writers."""

from __future__ import annotations

import io
import json
import re
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests.helpers import records_by_name, run_cli, source_images

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.formats import hfcard
from imagenet_prep.formats.tfrecord.writer import read_examples
from imagenet_prep.labels import load_synsets


@pytest.fixture(scope="module")
def wds_build(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wds") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("webdataset", "tfrecord"),
            train_shards=3,
            validation_shards=2,
            shard_size=7,
            dali_index=True,
            workers=2,
        )
    )
    return out


def test_webdataset_library_reads_every_sample(wds_build: Path, small_download: Path) -> None:
    import webdataset as wds

    synsets = load_synsets()
    source = source_images(small_download)
    records = records_by_name(wds_build)
    manifest = json.loads((wds_build / "manifest.json").read_text())
    seen = {}
    for split in ("train", "validation"):
        shards = sorted(str(p) for p in (wds_build / "webdataset").glob(f"{split}-*.tar"))
        sizes = []
        for shard in shards:
            samples = list(wds.WebDataset(shard, shardshuffle=False))
            sizes.append(len(samples))
            for sample in samples:
                key = sample["__key__"]
                meta = json.loads(sample["json"])
                # The keys the dataset card declares (datasets drops any other).
                assert tuple(sorted(meta)) == hfcard.WEBDATASET_JSON_KEYS
                assert key == Path(meta["filename"]).stem
                assert int(sample["cls"]) == synsets.index(meta["wnid"])
                assert meta["text"] == synsets.text(meta["wnid"])
                record = records[meta["filename"]]
                # Same bytes as the TFRecords carry (quirks fixed), same sizes and boxes.
                assert sample["jpg"] == record["image/encoded"].values[0]
                assert (meta["width"], meta["height"]) == (
                    record["image/width"].values[0],
                    record["image/height"].values[0],
                )
                boxes = list(
                    zip(
                        *(
                            record[f"image/object/bbox/{k}"].values
                            for k in ("xmin", "ymin", "xmax", "ymax")
                        ),
                        strict=True,
                    )
                )
                assert len(meta["boxes"]) == len(boxes)
                for got, want in zip(meta["boxes"], boxes, strict=True):
                    assert got == pytest.approx(list(want), abs=1e-6)
                with Image.open(io.BytesIO(sample["jpg"])) as im:
                    assert im.size == (meta["width"], meta["height"])
                seen[meta["filename"]] = sample["jpg"]
        assert sizes and max(sizes) - min(sizes) <= 1 and max(sizes) <= 7
        assert len(shards) == -(-manifest["splits"][split]["images"] // 7)
    assert set(seen) == set(source)
    passed = [n for n in seen if seen[n] == source[n]]
    assert len(passed) >= len(seen) - 40  # everything but the planted CMYK/PNG files


def test_webdataset_order_follows_the_tfrecord_shuffle(wds_build: Path) -> None:
    def order(paths: list[Path], read: object) -> list[str]:
        names: list[str] = []
        for p in paths:
            names.extend(read(p))  # type: ignore[operator]
        return names

    def wds_names(p: Path) -> list[str]:
        with tarfile.open(p) as tar:
            return [m.name.rsplit(".", 1)[0] for m in tar if m.name.endswith(".jpg")]

    def tf_names(p: Path) -> list[str]:
        return [
            ex["image/filename"].values[0].decode().rsplit(".", 1)[0] for ex in read_examples(p)
        ]

    wds_order = order(sorted((wds_build / "webdataset").glob("train-*.tar")), wds_names)
    tf_order = order(sorted((wds_build / "tfrecord").glob("train-*-of-?????")), tf_names)
    assert wds_order == tf_order


def test_tar_members_are_sorted_and_reproducible(wds_build: Path) -> None:
    with tarfile.open(next((wds_build / "webdataset").glob("train-*.tar"))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    for i in range(0, len(names), 3):
        key = names[i].rsplit(".", 1)[0]
        assert names[i : i + 3] == [f"{key}.cls", f"{key}.jpg", f"{key}.json"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o444)
    }


def _index(out: Path, shard: Path) -> Path:
    """The contract: ``OUT/dali-index/<format>/<shard file>.idx``."""
    return out / "dali-index" / shard.parent.name / (shard.name + ".idx")


def test_shard_globs_find_only_shards(wds_build: Path) -> None:
    # The glob of the inception and TPU ResNet input code (and of webdataset users).
    for split in ("train", "validation"):
        tf = sorted(p.name for p in (wds_build / "tfrecord").glob(f"{split}-*"))
        assert tf and all(re.fullmatch(rf"{split}-\d{{5}}-of-\d{{5}}", n) for n in tf), tf
        wds = sorted(p.name for p in (wds_build / "webdataset").glob(f"{split}-*"))
        assert wds and all(re.fullmatch(rf"{split}-\d{{6}}\.tar", n) for n in wds), wds
        for name in tf:
            assert _index(wds_build, wds_build / "tfrecord" / name).is_file()
        for name in wds:
            assert _index(wds_build, wds_build / "webdataset" / name).is_file()
    assert verify(wds_build).ok
    stray = wds_build / "dali-index" / "tfrecord" / "train-00099-of-00100.idx"
    stray.write_text("0 10\n")
    try:
        assert verify(wds_build).problems == [f"{stray}: not listed in the manifest"]
    finally:
        stray.unlink()


def test_dali_index_files_match_the_shards(wds_build: Path) -> None:
    for shard in sorted((wds_build / "tfrecord").glob("*-of-?????")):
        data = shard.read_bytes()
        expected, offset = [], 0
        while offset < len(data):  # walk the framing by hand: length, crc, data, crc
            (length,) = struct.unpack_from("<Q", data, offset)
            expected.append(f"{offset} {length + 16}")
            offset += length + 16
        assert _index(wds_build, shard).read_text().splitlines() == expected
    for shard in sorted((wds_build / "webdataset").glob("*.tar")):
        lines = _index(wds_build, shard).read_text().splitlines()
        with tarfile.open(shard) as tar:
            members = [m for m in tar if m.isfile()]
        assert lines[0] == f"v1.2 {len(members) // 3}"
        flat = " ".join(lines[1:]).split()
        for i, m in enumerate(members):
            ext, offset, size, name = flat[4 * i : 4 * i + 4]
            assert (ext, int(offset), int(size), name) == (
                m.name.split(".", 1)[1],
                m.offset_data,
                m.size,
                m.name,
            )
    assert verify(wds_build).ok


def test_verify_names_a_damaged_webdataset_shard(wds_build: Path, tmp_path: Path) -> None:
    out = tmp_path / "copy"
    shutil.copytree(wds_build, out)
    shard = sorted((out / "webdataset").glob("train-*.tar"))[1]
    data = bytearray(shard.read_bytes())
    data[100] ^= 0x20  # a member name in the first header
    shard.write_bytes(bytes(data))
    result = verify(out)
    assert not result.ok
    assert all(shard.name in p for p in result.problems)


@pytest.fixture(scope="module")
def resized(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("resized") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "webdataset", "imagefolder"),
            train_shards=2,
            validation_shards=1,
            resize_shorter=128,
            quality=90,
            workers=2,
        )
    )
    return out


def test_resized_outputs_have_the_requested_sizes(resized: Path, small_download: Path) -> None:
    source = source_images(small_download)
    records = records_by_name(resized)
    assert set(records) == set(source)
    for name, ex in records.items():
        data = ex["image/encoded"].values[0]
        width, height = ex["image/width"].values[0], ex["image/height"].values[0]
        with Image.open(io.BytesIO(source[name])) as im:
            w0, h0 = im.size
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # decodes cleanly
            assert im.size == (width, height)
            assert im.format == "JPEG"
        if min(w0, h0) <= 128:
            # Already within the size: untouched (apart from the CMYK/PNG fixes).
            assert (width, height) == (w0, h0)
            continue
        assert abs(min(width, height) - 128) <= 1
        assert abs(width / height - w0 / h0) <= 2 / min(width, height)
    folder = {p.name: p.read_bytes() for p in (resized / "imagefolder").rglob("*.JPEG")}
    for data in folder.values():
        with Image.open(io.BytesIO(data)) as im:
            assert min(im.size) <= 128
    assert verify(resized, decode=True).ok


def test_resize_longer_caps_the_long_side(small_download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            splits=("validation",),
            validation_shards=1,
            resize_longer=100,
            workers=1,
        )
    )
    for ex in records_by_name(out).values():
        assert max(ex["image/width"].values[0], ex["image/height"].values[0]) <= 100


def test_resize_quality_against_pillow_lanczos(resized: Path, small_download: Path) -> None:
    source = source_images(small_download)
    scores = []
    for name, ex in records_by_name(resized).items():
        with Image.open(io.BytesIO(source[name])) as im:
            if im.format != "JPEG" or im.mode not in ("RGB", "L") or min(im.size) <= 128:
                continue
            w, h = ex["image/width"].values[0], ex["image/height"].values[0]
            reference = np.asarray(im.convert("RGB").resize((w, h), Image.LANCZOS), np.float64)
        with Image.open(io.BytesIO(ex["image/encoded"].values[0])) as ours:
            got = np.asarray(ours.convert("RGB"), np.float64)
        mse = float(((got - reference) ** 2).mean())
        scores.append(10 * np.log10(255**2 / max(mse, 1e-9)))
    assert len(scores) > 20
    assert float(np.mean(scores)) >= 30.0, scores


def test_resize_options_from_the_command_line(small_download: Path, tmp_path: Path) -> None:
    def cli(*args: object) -> subprocess.CompletedProcess[str]:
        return run_cli("build", *args)

    both = cli(
        "--source", small_download, "--output", tmp_path / "a",
        "--resize-shorter", "64", "--resize-longer", "64",
    )  # fmt: skip
    assert both.returncode == 2 and "not allowed with" in both.stderr
    bad = cli("--source", small_download, "--output", tmp_path / "b", "--shard-size", "0")
    assert bad.returncode == 2 and "shard-size" in bad.stderr


@pytest.mark.dali
def test_dali_reads_both_kinds_of_shard_with_our_indexes(wds_build: Path) -> None:
    dali = pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    import nvidia.dali.fn as fn
    import nvidia.dali.tfrecord as tfrec

    shard = sorted((wds_build / "tfrecord").glob("train-*-of-?????"))[0]
    tar = sorted((wds_build / "webdataset").glob("train-*.tar"))[0]
    spec = {
        "image/encoded": tfrec.FixedLenFeature((), tfrec.string, ""),
        "image/class/label": tfrec.FixedLenFeature([1], tfrec.int64, -1),
    }

    @dali.pipeline_def(batch_size=2, num_threads=1, device_id=None)  # type: ignore[untyped-decorator]
    def records():  # type: ignore[no-untyped-def]
        inputs = fn.readers.tfrecord(
            path=str(shard), index_path=str(_index(wds_build, shard)), features=spec
        )
        return fn.decoders.image(inputs["image/encoded"], device="cpu"), inputs["image/class/label"]

    @dali.pipeline_def(batch_size=2, num_threads=1, device_id=None)  # type: ignore[untyped-decorator]
    def samples():  # type: ignore[no-untyped-def]
        jpg, cls = fn.readers.webdataset(
            paths=[str(tar)], index_paths=[str(_index(wds_build, tar))], ext=["jpg", "cls"]
        )
        return fn.decoders.image(jpg, device="cpu"), cls

    synsets = load_synsets()
    first_tf = read_examples(shard)[:2]
    pipe = records()
    pipe.build()
    images, labels = pipe.run()
    for i, ex in enumerate(first_tf):
        assert images.at(i).shape[:2] == (ex["image/height"].values[0], ex["image/width"].values[0])
        assert int(labels.at(i)[0]) == ex["image/class/label"].values[0]
    pipe = samples()
    pipe.build()
    images, classes = pipe.run()
    with tarfile.open(tar) as t:
        metas = [json.loads(t.extractfile(m).read()) for m in t if m.name.endswith(".json")][:2]  # type: ignore[union-attr]
    for i, meta in enumerate(metas):
        assert images.at(i).shape[:2] == (meta["height"], meta["width"])
        assert int(bytes(classes.at(i))) == synsets.index(meta["wnid"])
