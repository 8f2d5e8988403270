"""Which layout SRC holds (sources.discover), and Kaggle's label files (labels.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imagenet_prep.errors import DataError, UsageError
from imagenet_prep.labels import (
    check_synset_mapping,
    kaggle_validation_labels,
    load_synsets,
    shipped_validation_labels,
)
from imagenet_prep.sources import KAGGLE_ZIP, discover


def _touch(path: Path, data: bytes = b"") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_the_official_archives_and_tree_are_one_family_the_archive_winning(
    tmp_path: Path,
) -> None:
    train = _touch(tmp_path / "ILSVRC2012_img_train.tar")
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    found = discover(tmp_path)
    assert found.name == "archives+extracted"
    assert found.images("train") == train and found.images("validation") == tmp_path / "val"
    assert found.images("test") is None
    forced = discover(tmp_path, "extracted")
    assert forced.name == "extracted" and forced.images("train") == tmp_path / "train"
    only = discover(tmp_path, "archives")
    assert only.name == "archives" and only.images("validation") is None


def test_kaggle_layouts_are_found_and_a_second_layout_is_an_error(tmp_path: Path) -> None:
    zipped = _touch(tmp_path / KAGGLE_ZIP)
    found = discover(tmp_path)
    assert found.name == "kaggle" and set(found.splits) == {"train", "validation", "test"}
    (tmp_path / "ILSVRC/Data/CLS-LOC/train").mkdir(parents=True)
    _touch(tmp_path / "LOC_val_solution.csv")
    with pytest.raises(DataError) as err:
        discover(tmp_path)
    assert str(err.value) == (
        f"{tmp_path}: holds two layouts, kaggle ({KAGGLE_ZIP}) and kaggle-tree "
        "(ILSVRC/Data/CLS-LOC/train); pass --layout to pick one"
    )
    tree = discover(tmp_path, "kaggle-tree")
    assert tree.name == "kaggle-tree" and set(tree.splits) == {"train"}
    assert tree.labels == {"LOC_val_solution.csv": tmp_path / "LOC_val_solution.csv"}
    assert discover(tmp_path, "kaggle").images("train") == zipped


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        (None, "holds no ImageNet download"),
        ("kaggle", "holds no download in the kaggle layout"),
        ("archives", "holds no download in the archives layout"),
    ],
)
def test_an_empty_source_says_what_was_expected(
    tmp_path: Path, layout: str | None, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        discover(tmp_path, layout)


def test_an_unknown_layout_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="layout must be one of archives, extracted, kaggle"):
        discover(tmp_path, "imagenet-21k")


def _solution(*rows: str) -> bytes:
    return ("ImageId,PredictionString\n" + "".join(r + "\n" for r in rows)).encode()


def test_kaggle_validation_labels_are_the_first_synset_of_each_row() -> None:
    shipped = shipped_validation_labels()
    labels = kaggle_validation_labels(
        _solution(
            f"ILSVRC2012_val_00000002,{shipped[1]} 1 2 3 4 {shipped[1]} 5 6 7 8 ",
            f"ILSVRC2012_val_00000001,{shipped[0]} 1 2 3 4 ",
        ),
        "LOC_val_solution.csv",
    )
    assert labels[:3] == (shipped[0], shipped[1], "") and len(labels) == len(shipped)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("ILSVRC2012_val_00000001,n01440764 1 2 3 4", "line 2: validation image 1 is n01440764"),
        ("ILSVRC2012_val_00050001,n01440764 1 2 3 4", "line 2: validation image number 50001"),
        ("ILSVRC2012_val_1,n01440764", "line 2: expected ILSVRC2012_val_<number>,<wnid>"),
        ("ILSVRC2012_val_00000001", "line 2: expected"),
        ("ILSVRC2012_val_00000001,tench 1 2 3 4", "line 2: expected"),
    ],
)
def test_a_bad_kaggle_validation_row_is_an_error_naming_the_line(row: str, message: str) -> None:
    with pytest.raises(DataError) as err:
        kaggle_validation_labels(_solution(row), "x/LOC_val_solution.csv")
    assert str(err.value).startswith("x/LOC_val_solution.csv: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_repeated_row_or_a_missing_header_is_an_error() -> None:
    first = shipped_validation_labels()[0]
    row = f"ILSVRC2012_val_00000001,{first} 1 2 3 4"
    with pytest.raises(DataError, match="line 3: a second row for ILSVRC2012_val_00000001"):
        kaggle_validation_labels(_solution(row, row), "s.csv")
    with pytest.raises(DataError, match="no ImageId,PredictionString header"):
        kaggle_validation_labels(row.encode(), "s.csv")


def test_the_synset_mapping_must_list_the_classes_in_order() -> None:
    synsets = load_synsets()
    lines = [f"{w} {synsets.text(w)}\n" for w in synsets.wnids]
    check_synset_mapping("".join(lines).encode(), "m.txt", synsets)
    with pytest.raises(DataError, match=r"m\.txt: 999 classes, ILSVRC2012 has 1000"):
        check_synset_mapping("".join(lines[:-1]).encode(), "m.txt", synsets)
    swapped = [lines[1], lines[0], *lines[2:]]
    with pytest.raises(DataError, match=rf"m\.txt: line 1: {synsets.wnids[1]}, where"):
        check_synset_mapping("".join(swapped).encode(), "m.txt", synsets)


def test_hugging_face_files_are_found_and_a_missing_one_is_named(tmp_path: Path) -> None:
    for i in (0, 1, 2, 4):
        _touch(tmp_path / "data" / f"train_images_{i}.tar.gz")
    _touch(tmp_path / "data" / "val_images.tar.gz")
    found = discover(tmp_path)
    assert found.name == "hf" and found.images("train") == tmp_path / "data"
    assert [p.name for p in found.files("train")] == [
        f"train_images_{i}.tar.gz" for i in (0, 1, 2, 4)
    ]
    assert found.warnings == (
        f"{tmp_path}: the train split lacks train_images_3.tar.gz of the Hub's 5 files: their "
        "images are not in this build",
    )
    parquet = tmp_path / "pq"
    for i in (0, 2):
        _touch(parquet / f"validation-{i:05d}-of-00004.parquet")
    found = discover(parquet)
    assert found.name == "hf-parquet" and set(found.splits) == {"validation"}
    assert found.warnings == (
        f"{parquet}: the validation split lacks validation-00001-of-00004.parquet and 1 more of "
        "the Hub's 4 files: their images are not in this build",
    )
