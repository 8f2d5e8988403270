"""The fixture's Hugging Face layouts: ``hf`` (the Hub's tar.gz files) and ``hf-parquet``.

Every image of both is checked against the official archives the same config makes: the same
bytes under the Hub's names ``<stem>_<wnid>.JPEG``, with the true class in the suffix and, in
the Parquet files, in the ``label`` column.
"""

from __future__ import annotations

import argparse
import gzip
import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from imagenet_prep import fixture
from imagenet_prep.cli import fixture as fixture_cli
from imagenet_prep.errors import UsageError
from imagenet_prep.fixture import FixtureConfig, FixtureReport, generate
from imagenet_prep.labels import load_synsets, shipped_validation_labels

TRAIN_TGZ = [f"train_images_{k}.tar.gz" for k in range(5)]
VAL_TGZ = "val_images.tar.gz"
TEST_TGZ = "test_images.tar.gz"
TEST_TAR = "ILSVRC2012_img_test_v10102019.tar"
HF_NAME = re.compile(r"^(.+)_(n\d{8})\.JPEG$")
PARQUET_NAME = re.compile(r"^(train|validation|test)-(\d{5})-of-(\d{5})\.parquet$")

# The smallest config of test_fixture.py's main download, with a few test images; the Parquet
# files are cut small so that each split has several files and each file several row groups.
CLASSES, PER_CLASS, VAL_PER_CLASS, SEED, TEST_IMAGES = 3, 6, 2, 7, 5
PARQUET = {"hf_rows_per_file": 5, "hf_rows_per_group": 2}


def _config(out: Path, **options: Any) -> FixtureConfig:
    values: dict[str, Any] = {
        "classes": CLASSES,
        "per_class": PER_CLASS,
        "val_per_class": VAL_PER_CLASS,
        "seed": SEED,
        "pool_size": 12,
        "test_images": TEST_IMAGES,
    }
    values.update(options)
    return FixtureConfig(out=out, **values)


Made = tuple[Path, FixtureReport]


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("archives") / "download"
    return out, generate(_config(out))


@pytest.fixture(scope="module")
def hf(tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("hf") / "download"
    return out, generate(_config(out, layout="hf"))


@pytest.fixture(scope="module")
def parquet(tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("parquet") / "download"
    return out, generate(_config(out, layout="hf-parquet", **PARQUET))


def _members(tar: tarfile.TarFile) -> dict[str, bytes]:
    out = {}
    for m in tar:
        assert m.isfile(), m.name
        f = tar.extractfile(m)
        assert f is not None
        out[m.name] = f.read()
    return out


def _tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return _members(tar)


def _official(root: Path) -> dict[str, dict[str, bytes]]:
    """The archives layout's images by split, renamed as the Hub names them: the train tar is
    a tar of class tars, the validation images' class is the shipped label of their number."""
    truth = shipped_validation_labels()
    train = {}
    for name, data in _tar(root / "ILSVRC2012_img_train.tar").items():
        wnid = name.removesuffix(".tar")
        with tarfile.open(fileobj=io.BytesIO(data)) as inner:
            for member, image in _members(inner).items():
                train[f"{member.removesuffix('.JPEG')}_{wnid}.JPEG"] = image
    val = {
        f"{n.removesuffix('.JPEG')}_{truth[int(n[-13:-5]) - 1]}.JPEG": d
        for n, d in _tar(root / "ILSVRC2012_img_val.tar").items()
    }
    return {"train": train, "validation": val, "test": _tar(root / TEST_TAR)}


def _rows(path: Path) -> Iterator[tuple[bytes, str | None, int]]:
    for r in pq.read_table(path).to_pylist():
        yield r["image"]["bytes"], r["image"]["path"], r["label"]


def _parquet_files(root: Path) -> dict[str, list[Path]]:
    """The Parquet files of each split, in name order, checking their names."""
    files: dict[str, list[Path]] = {}
    for path in sorted((root / "data").iterdir()):
        m = PARQUET_NAME.match(path.name)
        assert m, path.name
        files.setdefault(m.group(1), []).append(path)
    for split, paths in files.items():
        assert [p.name for p in paths] == [
            f"{split}-{k:05d}-of-{len(paths):05d}.parquet" for k in range(len(paths))
        ]
    return files


def _split_rows(root: Path) -> dict[str, list[tuple[bytes, str | None, int]]]:
    return {
        split: [row for path in paths for row in _rows(path)]
        for split, paths in _parquet_files(root).items()
    }


# --------------------------------------------------------------------------- the tar.gz form


def test_hf_holds_the_hubs_files(hf: Made) -> None:
    out, report = hf
    assert {p.name for p in out.iterdir()} == {"README.md", "data"}
    assert sorted(p.name for p in (out / "data").iterdir()) == sorted(
        [*TRAIN_TGZ, VAL_TGZ, TEST_TGZ]
    )
    assert report.hf_files == {"train": 5, "validation": 1, "test": 1}
    assert "generated" in (out / "README.md").read_text(encoding="utf-8")
    for path in (out / "data").iterdir():
        header = path.read_bytes()[:10]
        # gzip, deflate, no flags (no file name), mtime 0
        assert header[:4] == b"\x1f\x8b\x08\x00" and header[4:8] == bytes(4), path.name
        with gzip.open(path) as gz:
            gz.read()  # one whole gzip stream, its CRC checked
        with tarfile.open(path) as tar:
            assert all(m.isfile() and "/" not in m.name for m in tar), path.name  # flat


def test_hf_images_are_the_archives_images(archives: Made, hf: Made) -> None:
    official = _official(archives[0])
    data = hf[0] / "data"
    train: dict[str, bytes] = {}
    for name in TRAIN_TGZ:
        members = _tar(data / name)
        assert members and not train.keys() & members.keys()
        train.update(members)
    assert train == official["train"] and len(train) == hf[1].train_images
    assert _tar(data / VAL_TGZ) == official["validation"]
    assert _tar(data / TEST_TGZ) == official["test"]
    assert all(not HF_NAME.match(n) for n in official["test"])  # test images keep their name


def test_hf_suffix_is_the_true_class(archives: Made, hf: Made) -> None:
    truth = shipped_validation_labels()
    data = hf[0] / "data"
    for name in TRAIN_TGZ:
        for member in _tar(data / name):
            m = HF_NAME.match(member)
            assert m and m.group(1).startswith(m.group(2) + "_"), member
    for member in _tar(data / VAL_TGZ):
        m = HF_NAME.match(member)
        assert m, member
        assert m.group(2) == truth[int(m.group(1).rsplit("_", 1)[1]) - 1]
    # the PNG named .JPEG keeps .JPEG: only its stem is renamed
    png = hf[1].quirks["png_rgb"] + hf[1].quirks["png_rgba"]
    names = {n for t in TRAIN_TGZ for n in _tar(data / t)}
    assert png and all(f"{n.removesuffix('.JPEG')}_{n[:9]}.JPEG" in names for n in png)


def test_hf_train_is_cut_in_five_even_runs_in_class_order(archives: Made, hf: Made) -> None:
    data = hf[0] / "data"
    runs = [list(_tar(data / name)) for name in TRAIN_TGZ]
    sizes = [len(r) for r in runs]
    assert sum(sizes) == CLASSES * PER_CLASS and max(sizes) - min(sizes) <= 1
    names = [n for run in runs for n in run]
    wnids = [HF_NAME.match(n).group(2) for n in names]  # type: ignore[union-attr]
    assert wnids == sorted(wnids)  # classes in order, each class's members in its tar's order
    order = {}
    for name, class_tar in _tar(archives[0] / "ILSVRC2012_img_train.tar").items():
        with tarfile.open(fileobj=io.BytesIO(class_tar)) as inner:
            order[name.removesuffix(".tar")] = inner.getnames()
    assert names == [f"{n.removesuffix('.JPEG')}_{w}.JPEG" for w in sorted(order) for n in order[w]]


def test_hf_report_is_the_archives_report_without_boxes(archives: Made, hf: Made) -> None:
    same = ["classes", "train_images", "val_images", "test_images", "median_jpeg_bytes"]
    same += ["median_jpeg_size"]
    assert all(getattr(hf[1], f) == getattr(archives[1], f) for f in same)
    assert (hf[1].train_boxes, hf[1].val_boxes) == (0, 0)
    for quirk, names in hf[1].quirks.items():
        assert names == (archives[1].quirks[quirk] if not quirk.startswith("box_") else ())
    assert archives[1].hf_files is None and hf[1].blank_paths == ()


# --------------------------------------------------------------------------- the Parquet form


def test_parquet_images_are_the_archives_images(archives: Made, parquet: Made) -> None:
    official = _official(archives[0])
    rows = _split_rows(parquet[0])
    assert rows.keys() == official.keys()
    synsets = load_synsets()
    for split, split_rows in rows.items():
        assert {path: data for data, path, _ in split_rows} == official[split]
        assert len({path for _, path, _ in split_rows}) == len(split_rows)
        for _, path, label in split_rows:
            assert path is not None
            m = HF_NAME.match(path)
            assert label == (synsets.index(m.group(2)) if m and split != "test" else -1), path
        # shuffled, not in the tar.gz form's order
        assert [p for _, p, _ in split_rows] != list(official[split]), split


def test_parquet_files_row_groups_and_schema(parquet: Made) -> None:
    out, report = parquet
    assert {p.name for p in out.iterdir()} == {"README.md", "data"}
    files = _parquet_files(out)
    assert report.hf_files == {split: len(paths) for split, paths in files.items()}
    total = {"train": CLASSES * PER_CLASS, "validation": CLASSES * VAL_PER_CLASS}
    total["test"] = TEST_IMAGES
    for split, paths in files.items():
        metas = [pq.ParquetFile(p).metadata for p in paths]
        assert sum(m.num_rows for m in metas) == total[split]
        assert len(paths) == -(-total[split] // PARQUET["hf_rows_per_file"])
        for meta in metas:
            groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
            assert max(groups) <= PARQUET["hf_rows_per_group"]
    assert len(files["train"]) > 1 and pq.ParquetFile(files["train"][0]).num_row_groups > 1
    schema = pq.read_schema(files["train"][0])
    assert str(schema.field("image").type) == "struct<bytes: binary, path: string>"
    assert str(schema.field("label").type) == "int64"
    assert b"huggingface" in (schema.metadata or {})


def test_parquet_default_sizes(tmp_path: Path) -> None:
    """500 rows a file by default: one file per split here; no test file without test images."""
    out = tmp_path / "p"
    report = generate(_config(out, layout="hf-parquet", test_images=0))
    assert sorted(p.name for p in (out / "data").iterdir()) == [
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert report.hf_files == {"train": 1, "validation": 1} and report.test_images == 0


def test_parquet_rows_without_a_path(parquet: Made, tmp_path: Path) -> None:
    out = tmp_path / "blank"
    report = generate(_config(out, layout="hf-parquet", hf_empty_paths=4, **PARQUET))
    assert len(report.blank_paths) == 4
    assert [b.path for b in report.blank_paths] == [None, "", None, ""]
    rows = _split_rows(out)
    named = _split_rows(parquet[0])
    for blank in report.blank_paths:
        in_file = list(_rows(out / blank.file))
        assert in_file[blank.row][1] == blank.path
        assert rows[blank.split][blank.split_row][1] == blank.path
        assert named[blank.split][blank.split_row][1] == blank.name
    # everything else is the same as without blank paths
    for split, split_rows in rows.items():
        blanks = {b.split_row for b in report.blank_paths if b.split == split}
        for i, (row, other) in enumerate(zip(split_rows, named[split], strict=True)):
            assert row == other if i not in blanks else (row[0], row[2]) == (other[0], other[2])


def test_parquet_is_read_by_hugging_face_datasets(parquet: Made) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("parquet", data_dir=str(parquet[0] / "data"))
    assert {split: ds[split].num_rows for split in ds} == {
        "train": CLASSES * PER_CLASS,
        "validation": CLASSES * VAL_PER_CLASS,
        "test": TEST_IMAGES,
    }
    assert type(ds["train"].features["image"]).__name__ == "Image"
    assert ds["train"][0]["image"].size[0] > 0 and ds["test"][0]["label"] == -1


# --------------------------------------------------------------------------- both


@pytest.mark.parametrize("layout", ["hf", "hf-parquet"])
def test_same_config_gives_the_same_files(
    hf: Made, parquet: Made, tmp_path: Path, layout: str
) -> None:
    made, options = (hf, {}) if layout == "hf" else (parquet, PARQUET)
    fixture.pool_image.cache_clear()
    again = tmp_path / "again"
    generate(_config(again, layout=layout, **options))
    files = sorted(p.relative_to(made[0]) for p in made[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (again / name).read_bytes() == (made[0] / name).read_bytes(), name


def test_archives_are_unchanged_by_the_hf_layouts(archives: Made, hf: Made, tmp_path: Path) -> None:
    """Writing the Hugging Face layouts (before, in this module) leaves the archives layout as
    it was: the same config, made again now, gives the same bytes."""
    again = tmp_path / "again"
    generate(_config(again))
    for path in archives[0].iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize(
    "options",
    [
        {"layout": "hf", "extension": ".jpeg"},
        {"layout": "hf", "hf_empty_paths": 1},
        {"layout": "archives", "hf_rows_per_file": 10},
        {"layout": "hf", "hf_rows_per_group": 10},
        {"layout": "hf-parquet", "hf_rows_per_file": 0},
        {"layout": "hf-parquet", "hf_rows_per_group": 0},
        {"layout": "hf-parquet", "hf_empty_paths": -1},
        {"layout": "hf-parquet", "hf_empty_paths": 10_000},
        {"layout": "hf-parquet", "hf_empty_paths": 1.0},
        {"layout": "hf-parquet", "hf_rows_per_file": True},
    ],
)
def test_bad_options_raise_usage_error(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        _config(tmp_path, **options)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fixture_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("layout", "extra", "expected"),
    [
        ("hf", [], "tar.gz archives in data/: train 5, validation 1, test 1"),
        (
            "hf-parquet",
            ["--hf-rows-per-file", "4", "--hf-rows-per-group", "2", "--hf-empty-paths", "1"],
            "Parquet files in data/: train 3, validation 1, test 1; 1 rows without a path",
        ),
    ],
)
def test_cli_writes_hf_and_reports(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    layout: str,
    extra: list[str],
    expected: str,
) -> None:
    out = tmp_path / "cli"
    args = _parse(
        [
            *("fixture", str(out), "--classes", "2", "--per-class", "5", "--val-per-class", "1"),
            *("--seed", "3", "--pool-size", "4", "--layout", layout, "--test-images", "2"),
            *extra,
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert f"({layout} layout)" in text and "2 test images" in text
    assert expected in text and "with boxes" not in text and "box_" not in text
    assert {p.name for p in out.iterdir()} == {"README.md", "data"}
