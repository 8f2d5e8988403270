"""The index's shard blocks: what a worker gets for its images, boxes included."""

from __future__ import annotations

import os
import pickle
import random
import tracemalloc
from pathlib import Path

import pytest

from imagenet_prep.boxes import csv_line, record_box
from imagenet_prep.errors import DataError
from imagenet_prep.labels import load_synsets
from imagenet_prep.manifest import OutputState
from imagenet_prep.sample import BBox, ContainerKind
from imagenet_prep.sources import (
    BoxTable,
    SplitIndex,
    cached_md5,
    indexed_archive,
    record_md5,
)
from imagenet_prep.sources.container import Container

from .test_archive import make_tar

TAR, FILE = ContainerKind.TAR, ContainerKind.FILE


def test_a_block_carries_each_image_with_its_own_boxes() -> None:
    synsets = load_synsets()
    index = SplitIndex("train")
    index.containers.append(Container("/data/ILSVRC2012_img_train.tar", TAR, "n01440764.tar"))
    names = ["n01440764_1.JPEG", "n01440764_2.JPEG", "n01440764_3.JPEG", "n01440764_4.JPEG"]
    for i, name in enumerate(names):
        index.add(name, 0, 512 * (i + 1), 100 + i, 0)
    table = BoxTable()
    two = [BBox(0.1, 0.2, 0.3, 0.4), BBox(0.5, 0.25, 1.0, 0.75)]
    table.add("n01440764_2", two)
    table.add("n01440764_4", [BBox(0.0, 0.0, 1.0, 1.0)])

    assert [table.row(f"n01440764_{i}") for i in range(6)] == [-1, -1, 0, -1, 1, -1]
    assert BoxTable().row("n01440764_1") == -1
    block = pickle.loads(pickle.dumps(index.block([3, 1, 0, 2], synsets, table)))

    refs = list(block)
    assert [r.filename for r in refs] == [names[3], names[1], names[0], names[2]]
    assert [r.boxes for r in refs] == [(BBox(0.0, 0.0, 1.0, 1.0),), tuple(two), (), ()]
    assert [r.offset for r in refs] == [2048, 1024, 512, 1536]
    assert refs[0].origin == "/data/ILSVRC2012_img_train.tar:n01440764.tar:n01440764_4.JPEG"
    assert block[-3] == refs[1] and block[1:3] == refs[1:3]
    # Without a table, no boxes.
    val = SplitIndex("validation", containers=[Container("/v.tar", TAR)])
    val.add("n01440764_2.JPEG", 0, 512, 10, 0)
    assert val.block([0], synsets, None)[0].boxes == ()
    assert val.block([0], synsets, table)[0].boxes == (two[0], two[1])


def test_a_large_block_is_handed_to_a_worker_in_a_file(tmp_path: Path) -> None:
    synsets = load_synsets()
    index = SplitIndex("train", containers=[Container("/t.tar", TAR, "n01440764.tar")])
    for i, name in enumerate(["n01440764_1.JPEG", "n01440764_caf\u00e9.JPEG", "n01440764_2.JPEG"]):
        index.add(name, 0, 512 * i + (1 << 40), 100 + i, 0)
    table = BoxTable()
    table.add("n01440764_2", [BBox(0.1, 0.2, 0.3, 0.4), BBox(0.5, 0.25, 1.0, 0.75)])
    block = index.block([2, 0, 1], synsets, table)
    path = tmp_path / "blocks" / "train-00000-of-00001.block"
    sent = block.spill(path)
    assert len(sent) == 3 and sent.spilled == str(path) and path.is_file()
    assert len(pickle.dumps(sent)) < 1000  # what crosses the pipe: no column
    back = pickle.loads(pickle.dumps(sent)).loaded()
    assert not path.exists() and back.spilled is None
    assert back == block and list(back) == list(block)
    assert back.loaded() is back
    # A file cut short is an error naming it, not a smaller shard.
    block.spill(path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"train-00000-of-00001\.block: unreadable"):
        sent.loaded()


def test_an_md5_is_kept_with_the_index_only_while_the_archive_is_unchanged(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "ILSVRC2012_img_val.tar"
    archive.write_bytes(make_tar([("ILSVRC2012_val_00000001.JPEG", b"x" * 700)]))
    state = OutputState(tmp_path / "out")
    record_md5(state, archive, "0" * 32)  # no index kept yet: nothing to add it to
    assert cached_md5(state, archive) is None

    first = indexed_archive(archive, nested=False, state=state)
    assert first.md5 is None and cached_md5(state, archive) is None
    record_md5(state, archive, "ab" * 16)
    assert cached_md5(state, archive) == "ab" * 16
    again = indexed_archive(archive, nested=False, state=state)  # from the kept index
    assert again.md5 == "ab" * 16 and again.members == first.members

    os.utime(archive, ns=(1, 1))  # a new download of the same size: the kept index is stale
    assert cached_md5(state, archive) is None
    assert indexed_archive(archive, nested=False, state=state).md5 is None


def test_partial_box_tables_merge_into_one_with_their_lines_and_counts() -> None:
    first, second = BoxTable(), BoxTable()
    first.add("n01440764_9", [(0.1, 0.2, 0.3, 0.4)])
    second.add("n01440764_1", [BBox(0.5, 0.5, 1.0, 1.0), (0.0, 0.0, 0.5, 0.5)], "n01440764")
    second.stats.boxes_kept = 2
    whole = BoxTable()
    whole.merge(pickle.loads(pickle.dumps(first)))
    whole.merge(pickle.loads(pickle.dumps(second)))

    assert len(whole) == 2 and whole.stats.boxes_kept == 2
    assert whole.get("n01440764_1") == (BBox(0.5, 0.5, 1.0, 1.0), BBox(0.0, 0.0, 0.5, 0.5))
    assert list(whole.values("n01440764_9")) == [0.1, 0.2, 0.3, 0.4]
    assert whole.get("n01440764_2") == () and len(whole.values("n01440764_2")) == 0
    assert whole.rows(["n01440764_2", "n01440764_1", "n01440764_9"]) == [-1, 1, 0]
    assert whole.file("n01440764_1") == "n01440764/n01440764_1.xml"
    with pytest.raises(KeyError):
        whole.file("n01440764_2")
    # Sorted by image, each image's lines in file order, the values printed as parsed.
    assert whole.csv_bytes() == (
        b"n01440764_1.JPEG,0.5000,0.5000,1.0000,1.0000\n"
        b"n01440764_1.JPEG,0.0000,0.0000,0.5000,0.5000\n"
        b"n01440764_9.JPEG,0.1000,0.2000,0.3000,0.4000\n"
    )
    whole.merge(first)
    with pytest.raises(DataError, match="two box files for the image n01440764_9"):
        whole.check()


def test_the_csv_lines_are_the_reference_scripts_text_of_the_parsed_values() -> None:
    """The CSV is printed from the values the records carry (``record_box``): the same text
    as printing the box as parsed from its XML, whatever the value."""
    rng = random.Random(5)
    raw = [tuple(rng.random() for _ in range(4)) for _ in range(2000)]
    raw += [(1 / 3, 2 / 3, 0.00005, 0.99995), (0.0, -0.00001, 1.0, 0.12345)]
    table = BoxTable()
    for i, box in enumerate(raw):
        table.add(f"n01440764_{i:05d}", [record_box(box)])
    expected = "".join(csv_line(f"n01440764_{i:05d}", box) + "\n" for i, box in enumerate(raw))
    assert table.csv_bytes() == expected.encode()


def test_a_box_table_costs_under_110_bytes_an_image() -> None:
    """550,000 images with boxes (ILSVRC2012's training boxes at full count) kept as columns,
    the lookup included: tracemalloc's peak while the table is filled and searched."""
    n = 100_000
    tracemalloc.start()
    try:
        table = BoxTable()
        for i in range(n):
            table.add(f"n{i // 1000:08d}_{i}", [(0.1, 0.2, 0.3, 0.4)], f"n{i // 1000:08d}")
        assert table.rows(["n00000099_99999", "n00000000_7"]) == [99_999, 7]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak / n < 110, f"{peak / n:.0f} bytes an image"


def test_two_box_files_for_one_image_name_both_files() -> None:
    key = "n01440764_9"
    table = BoxTable("/data/bounding_boxes/")
    table.add(key, [(0.1, 0.2, 0.3, 0.4)], "n01440764")
    table.add(key, [(0.1, 0.2, 0.3, 0.4)], "n01443537")
    with pytest.raises(DataError) as err:
        table.check()
    assert str(err.value) == (
        f"two box files for the image {key}: /data/bounding_boxes/n01440764/{key}.xml and "
        f"/data/bounding_boxes/n01443537/{key}.xml"
    )
    # Across partial tables parsed in workers: the same, from the archive.
    whole, part = BoxTable("bbox.tar.gz:"), BoxTable("bbox.tar.gz:")
    whole.add(key, [(0.1, 0.2, 0.3, 0.4)], "n01440764")
    part.add(key, [(0.1, 0.2, 0.3, 0.4)], "n01443537")
    whole.merge(pickle.loads(pickle.dumps(part)))
    with pytest.raises(DataError) as err:
        whole.values(key)
    assert str(err.value) == (
        f"two box files for the image {key}: bbox.tar.gz:n01440764/{key}.xml and "
        f"bbox.tar.gz:n01443537/{key}.xml"
    )


def test_the_box_csv_is_utf8() -> None:
    table = BoxTable()
    table.add("n01440764_caf\u00e9", [(0.1, 0.2, 0.3, 0.4)])
    table.add("n01440764_cafe", [(0.5, 0.2, 0.3, 0.4)])
    assert (
        table.csv_bytes()
        == (
            "n01440764_cafe.JPEG,0.5000,0.2000,0.3000,0.4000\n"
            "n01440764_caf\u00e9.JPEG,0.1000,0.2000,0.3000,0.4000\n"
        ).encode()
    )


def _sorted_index(names: list[str]) -> SplitIndex:
    index = SplitIndex("train")
    index.containers.append(Container("/t/n01440764", FILE))
    for name in names:
        index.add(name, 0, 0, 1, 0)
    index.sort()
    return index


@pytest.mark.parametrize(
    ("names", "needles"),
    [
        (["n01440764_2,3.JPEG", "n01440764_1.JPEG"], ["/t/n01440764/n01440764_2,3.JPEG", "comma"]),
        (['n01440764_2"3.JPEG'], ['/t/n01440764/n01440764_2"3.JPEG', "a double quote"]),
        (["n01440764_2\n3.JPEG"], ["/t/n01440764/n01440764_2\\n3.JPEG", "a line break"]),
        (["n01440764_2\u20283.JPEG"], ["/t/n01440764/n01440764_2\\u20283.JPEG", "line break"]),
        (
            ["n01440764_1_v2.JPEG", "n01440764_1.v2.JPEG"],
            ["WebDataset key n01440764_1_v2", "/t/n01440764/n01440764_1_v2.JPEG", "1.v2.JPEG"],
        ),
        (
            ["n01440764_1.v2.JPEG", "n01440764_1\\v2.JPEG"],
            ["n01440764_1_v2", "/t/n01440764/n01440764_1.v2.JPEG", "n01440764_1\\v2.JPEG"],
        ),
        # Two names of one length, the second with the longer stem: it is the one refused.
        (
            ["a" * 95 + ".JPEG", "b" * 96 + ".jpg"],
            ["/t/n01440764/" + "b" * 96 + ".jpg", "too long (96 bytes", "holds 95"],
        ),
    ],
)
def test_names_the_outputs_cannot_hold_are_refused_in_one_line(
    names: list[str], needles: list[str]
) -> None:
    with pytest.raises(DataError) as err:
        _sorted_index(names)
    message = str(err.value)
    assert "\n" not in message and "\u2028" not in message
    for needle in needles:
        assert needle in message


def test_names_with_dots_and_backslashes_are_kept_as_they_are() -> None:
    names = [
        "n01440764_1.v2.JPEG",
        "n01440764_1.v3.JPEG",
        "n01440764_1\\v4.JPEG",
        "n01440764_1.JPEG",
    ]
    assert _sorted_index(names).names == sorted(names)


def test_stems_whose_hashes_collide_are_told_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every stem hashed to one number: lookups compare the stems, and two different stems
    are not two box files for one image."""
    from imagenet_prep.sources import boxtable

    monkeypatch.setattr(boxtable.xxhash, "xxh3_64_intdigest", lambda _data: 7)
    table = BoxTable()
    for i in range(5):
        table.add(f"n01440764_{i}", [(0.1 * i, 0.2, 0.3, 0.4)])
    table.check()
    assert table.rows(["n01440764_3", "n01440764_9", "n01440764_0"]) == [3, -1, 0]
    assert [table.row(k) for k in ("n01440764_3", "n01440764_9", "n01440764_0")] == [3, -1, 0]
    assert table.values("n01440764_4")[0] == pytest.approx(0.4)
    table.add("n01440764_2", [(0.0, 0.0, 1.0, 1.0)], "again")
    with pytest.raises(
        DataError, match=r"n01440764_2: n01440764_2\.xml and again/n01440764_2\.xml"
    ):
        table.check()


def test_a_split_is_handed_over_in_a_file_and_taken_back_whole(tmp_path: Path) -> None:
    index = SplitIndex("train", containers=[Container("/t.tar", TAR, "n01440764.tar")])
    for i, name in enumerate(["n01440764_1.JPEG", "n01440764_caf\u00e9.JPEG", "n01440764_2.JPEG"]):
        index.add(name, i - 1, 512 * i + (1 << 40), 100 + i, 0)
    index.requests = 3
    path = tmp_path / "state" / "parts" / "index-train.columns"
    sent = index.spill(path)
    assert len(sent) == 0 and sent.spilled == str(path) and path.is_file()
    assert len(pickle.dumps(sent)) < 1000  # what crosses the pipe: no column
    back = pickle.loads(pickle.dumps(sent)).unspilled()
    assert not path.exists() and back.spilled is None and back.requests == 3
    for column in ("names", "labels", "offsets", "sizes", "where", "containers"):
        assert getattr(back, column) == getattr(index, column), column
    assert back.unspilled() is back
    # A file cut short is an error naming it, not a smaller split.
    index.spill(path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(DataError, match=r"index-train\.columns: unreadable"):
        sent.unspilled()
