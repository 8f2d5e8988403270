"""Hugging Face's imagenet-1k as downloaded (its tar.gz archives, or its Parquet files) builds
the same records as image-net.org's archives without box archives (the Hub has no boxes);
each form's damage is one line naming the file."""

from __future__ import annotations

import filecmp
import gzip
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from tests.helpers import (
    assert_build_refused,
    build_every_split,
    layout_downloads,
    output_files,
)

from imagenet_prep import gzindex
from imagenet_prep.formats import NAMES
from imagenet_prep.manifest import STATE_DIR
from imagenet_prep.sources import discover, hf

LAYOUTS = ("archives", "hf", "hf-parquet")
SPLITS = ("train", "validation", "test")
# What the Hub does not have: a build from the official archives without these compares.
NOT_ON_THE_HUB = ("ILSVRC2012_bbox_train_v2.tar.gz", "ILSVRC2012_bbox_val_v3.tgz")


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    made = layout_downloads(tmp_path_factory.mktemp("hf_layouts"), LAYOUTS, seed=91)
    for name in NOT_ON_THE_HUB:
        (made["archives"] / name).unlink()
    return made


def test_both_hugging_face_forms_give_the_official_records(
    downloads: dict[str, Path], tmp_path: Path
) -> None:
    outs = {
        layout: build_every_split(src, tmp_path / layout, formats=NAMES, shard_size=20)
        for layout, src in downloads.items()
    }
    files = output_files(outs["archives"])
    assert any(f.startswith("tfrecord/test-") for f in files)
    for layout, out in outs.items():
        assert discover(downloads[layout]).name == layout
        assert output_files(out) == files, layout
        _match, mismatch, errors = filecmp.cmpfiles(outs["archives"], out, files, shallow=False)
        assert not mismatch and not errors, (layout, mismatch, errors)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["source"]["layout"] == layout
    # The Parquet files' images were spilled into OUT while building, and are gone now.
    assert not (outs["hf-parquet"] / STATE_DIR / "spill").exists()


def test_without_room_to_unpack_the_tar_gz_is_read_through_seek_points(
    downloads: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same records whether the archives were unpacked into OUT (room enough) or are read
    by inflating from their seek points."""
    monkeypatch.setattr(hf, "UNPACK_FACTOR", float("inf"))
    reads: list[str] = []
    real = gzindex.read_range

    def counted(*args: Any) -> bytes:
        reads.append(args[-1])
        return real(*args)

    monkeypatch.setattr(gzindex, "read_range", counted)
    seek = build_every_split(downloads["hf"], tmp_path / "seek", workers=1)
    assert len(reads) == 12 * 4 + 3 * 4 + 5  # every image read through a seek point
    monkeypatch.setattr(hf, "UNPACK_FACTOR", 0.0)
    unpacked = build_every_split(downloads["hf"], tmp_path / "unpacked", workers=1)
    assert len(reads) == 12 * 4 + 3 * 4 + 5  # none
    files = output_files(seek)
    assert files == output_files(unpacked)
    _match, mismatch, errors = filecmp.cmpfiles(seek, unpacked, files, shallow=False)
    assert not mismatch and not errors
    assert not (unpacked / STATE_DIR / "spill").exists()  # the unpacked copies are gone


def test_a_parquet_row_without_a_name_is_named_by_split_and_row(
    downloads: dict[str, Path], tmp_path: Path
) -> None:
    src = tmp_path / "src"
    shutil.copytree(downloads["hf-parquet"], src)
    first = sorted(src.rglob("validation-*.parquet"))[0]
    table = pq.read_table(first)
    images = table.column("image").combine_chunks()
    paths = images.field("path").to_pylist()
    paths[0] = None
    renamed = pa.StructArray.from_arrays(
        [images.field("bytes"), pa.array(paths)], ["bytes", "path"]
    )
    pq.write_table(table.set_column(0, "image", renamed), first)
    out = build_every_split(src, tmp_path / "out", formats=("webdataset",), shard_size=100)
    names = set()
    for shard in (out / "webdataset").glob("validation-*.tar"):
        with tarfile.open(shard) as t:
            for member in t.getmembers():
                if member.name.endswith(".json"):
                    data = t.extractfile(member)
                    assert data is not None
                    names.add(json.loads(data.read())["filename"])
    assert "validation_0.JPEG" in names


def _repack(src: Path, dest: Path, rename: dict[str, str]) -> None:
    with (
        tarfile.open(src, "r:gz") as old,
        gzip.open(dest, "wb") as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as new,
    ):
        for member in old.getmembers():
            data = old.extractfile(member)
            member.name = rename.get(member.name, member.name)
            new.addfile(member, data)


def _damage(case: str, downloads: dict[str, Path], src: Path) -> str:
    layout = "hf-parquet" if case.startswith("parquet") else "hf"
    shutil.copytree(downloads[layout], src)
    if case == "parquet-no-label":
        target = sorted(src.rglob("train-*.parquet"))[0]
        pq.write_table(pq.read_table(target).drop_columns(["label"]), target)
        return str(target)
    if case == "parquet-nameless-bad-label":
        target = sorted(src.rglob("train-*.parquet"))[0]
        table = pq.read_table(target)
        images = table.column("image").combine_chunks()
        paths = images.field("path").to_pylist()
        paths[0] = None
        labels = table.column("label").to_pylist()
        labels[0] = 5000
        image = pa.StructArray.from_arrays(
            [images.field("bytes"), pa.array(paths)], ["bytes", "path"]
        )
        table = table.set_column(0, "image", image).set_column(
            1, "label", pa.array(labels, pa.int64())
        )
        pq.write_table(table, target)
        return f"{target}:row 0"
    target = next(src.rglob("val_images.tar.gz"))
    if case == "targz-truncated":
        whole = target.read_bytes()
        target.write_bytes(whole[: len(whole) // 2])
        return str(target)
    if case == "targz-corrupt-block":
        damaged = bytearray(target.read_bytes())
        middle = len(damaged) // 2
        damaged[middle : middle + 64] = bytes(64)
        target.write_bytes(bytes(damaged))
        return str(target)
    with tarfile.open(target, "r:gz") as t:
        first = sorted(t.getnames())[0]
    stem = first.rsplit("_", 1)[0]
    repacked = target.with_suffix(".tmp")
    _repack(target, repacked, {first: f"{stem}_tench.JPEG"})
    os.replace(repacked, target)
    return f"{target}:{stem}_tench.JPEG"


DAMAGE = [
    ("targz-truncated", ""),
    ("targz-corrupt-block", ""),
    ("targz-renamed", "is not a WordNet ID"),
    ("parquet-no-label", "no 'label' column"),
    ("parquet-nameless-bad-label", "label 5000 is not a class number (0..999)"),
]


@pytest.mark.parametrize(("case", "message"), DAMAGE, ids=[c for c, _ in DAMAGE])
def test_each_forms_damage_is_one_line_naming_the_file(
    case: str,
    message: str,
    downloads: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "src"
    named = _damage(case, downloads, src)
    assert_build_refused(src, tmp_path / "out", named, message, capsys)
