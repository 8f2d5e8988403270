"""The ImageFolder format's class totals: kept per shard in the bookkeeping folder (not in
the shard's result, which the build holds for every shard until the manifest), joined by
``finalize``; a result of an earlier version, with the totals in it, still joins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_prep.errors import DataError
from imagenet_prep.formats.base import SinkOptions
from imagenet_prep.formats.imagefolder.writer import (
    DIRNAME,
    ClassTotals,
    ImageFolderSink,
    classes_part,
)
from imagenet_prep.manifest import OutputState, ShardResult
from imagenet_prep.pipeline.resume import output_bytes, output_files


def _shard(out: Path, name: str, classes: dict[str, tuple[int, int, int]]) -> dict[str, object]:
    """What a worker leaves for one shard: its metadata lines and its class totals."""
    part = OutputState(out).part_file(DIRNAME, f"{name}.jsonl")
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(b"")
    totals = ClassTotals()
    for folder, (count, nbytes, digest) in classes.items():
        totals.merge(folder, count, nbytes, f"{digest:032x}")
    classes_part(part).write_text(json.dumps(totals.as_dict()))
    return {"part": part.name, "files": sum(c[0] for c in classes.values()),
            "bytes": sum(c[1] for c in classes.values())}  # fmt: skip


def test_class_totals_join_from_the_parts_and_from_older_results(tmp_path: Path) -> None:
    sink = ImageFolderSink(SinkOptions(out=tmp_path))
    first = _shard(
        tmp_path, "train-00000-of-00002", {"train/n1": (2, 10, 5), "train/n2": (1, 4, 1)}
    )
    second = _shard(tmp_path, "train-00001-of-00002", {"train/n1": (1, 3, (1 << 128) - 2)})
    assert "classes" not in first  # the result stays small
    older = {"classes": {"train/n2": {"count": 1, "bytes": 6, "digest": f"{7:032x}"}},
             "part": "train-00001-of-00002.jsonl"}  # fmt: skip
    section = sink.finalize([first, second, older])
    assert section["classes"] == {
        "train/n1": {"count": 3, "bytes": 13, "digest": f"{3:032x}"},  # digests add mod 2**128
        "train/n2": {"count": 2, "bytes": 10, "digest": f"{8:032x}"},
    }
    assert section["files"] == 5 and section["bytes"] == 23
    # The resume's counts read the totals from either shape.
    new = ShardResult("s", "train", 3, 14, [], [], {"imagefolder": first})
    old = ShardResult("s", "train", 1, 6, [], [], {"imagefolder": older})
    assert (output_files(new), output_bytes(new)) == (3, 14)
    assert (output_files(old), output_bytes(old)) == (1, 6)


def test_a_missing_or_damaged_class_totals_part_is_named(tmp_path: Path) -> None:
    sink = ImageFolderSink(SinkOptions(out=tmp_path))
    result = _shard(tmp_path, "train-00000-of-00001", {"train/n1": (1, 1, 1)})
    path = classes_part(OutputState(tmp_path).part_file(DIRNAME, "train-00000-of-00001.jsonl"))
    path.write_text("[1, 2]")
    with pytest.raises(DataError, match=r"classes\.json: not a shard's class totals"):
        sink.finalize([result])
    path.unlink()
    with pytest.raises(DataError, match=r"classes\.json: missing"):
        sink.finalize([result])


def test_the_readers_box_table_comes_from_the_csv(tmp_path: Path) -> None:
    from imagenet_prep.formats.imagefolder.reader import _boxes_of, load_boxes

    csv = tmp_path / "boxes.csv"
    csv.write_text(
        "n1_1.JPEG,0.1000,0.2000,0.3000,0.4000\n"
        "n1_1.JPEG,0.5000,0.5000,1.0000,1.0000\n"
        "n1_2.JPEG,0.0000,0.0000,1.0000,1.0000\n"
    )
    table = load_boxes(csv)
    assert _boxes_of(table, "n1_1") == ((0.1, 0.2, 0.3, 0.4), (0.5, 0.5, 1.0, 1.0))
    assert _boxes_of(table, "n1_2") == ((0.0, 0.0, 1.0, 1.0),)
    assert _boxes_of(table, "n1_3") == () and _boxes_of(load_boxes(tmp_path / "none"), "x") == ()
    csv.write_text(csv.read_text() + "n1_1.JPEG,0.1000,0.2000,0.3000,0.4000\n")
    with pytest.raises(DataError, match=r"boxes\.csv: the lines of an image are not all together"):
        load_boxes(csv)
    csv.write_text("n1_1.JPEG,0.1\n")
    with pytest.raises(DataError, match=r"boxes\.csv: line 1 is not name,xmin,ymin,xmax,ymax"):
        load_boxes(csv)
