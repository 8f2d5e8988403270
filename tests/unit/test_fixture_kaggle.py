"""The fixture's Kaggle layouts (the zip and its tree) and its test-split images.

Every file of Kaggle's download is checked against the official archives the same config
makes: the same images and box files under Kaggle's names, and CSVs that agree with them.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

import pytest

from imagenet_prep import fixture
from imagenet_prep.cli import fixture as fixture_cli
from imagenet_prep.errors import UsageError
from imagenet_prep.fixture import FixtureConfig, FixtureReport, generate
from imagenet_prep.fixture.zipstream import MIN_DEFLATE_GAIN, deflate_gain
from imagenet_prep.labels import load_synsets, shipped_validation_labels

ZIP = "imagenet-object-localization-challenge.zip"
DATA = "ILSVRC/Data/CLS-LOC"
ANNOTATIONS = "ILSVRC/Annotations/CLS-LOC"
TEST_TAR = "ILSVRC2012_img_test_v10102019.tar"
ARCHIVES = {
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_bbox_train_v2.tar.gz",
    "ILSVRC2012_bbox_val_v3.tgz",
    "ILSVRC2012_devkit_t12.tar.gz",
}
LOC_FILES = [
    "LOC_sample_submission.csv",
    "LOC_synset_mapping.txt",
    "LOC_train_solution.csv",
    "LOC_val_solution.csv",
]
TEST_NAME = re.compile(r"^ILSVRC2012_test_(\d{8})\.JPEG$")
GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "download"

# The smallest config of test_fixture.py's main download, with a few test images.
CLASSES, PER_CLASS, VAL_PER_CLASS, SEED, TEST_IMAGES = 3, 6, 2, 7, 5


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
def kaggle(tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("kaggle") / "download"
    return out, generate(_config(out, layout="kaggle"))


@pytest.fixture(scope="module")
def kaggle_tree(tmp_path_factory: pytest.TempPathFactory) -> Made:
    out = tmp_path_factory.mktemp("kaggle_tree") / "download"
    return out, generate(_config(out, layout="kaggle-tree"))


def _members(tar: tarfile.TarFile) -> dict[str, bytes]:
    out = {}
    for m in tar:
        if m.isfile():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
    return out


def _tar(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return _members(tar)


def _train(path: Path) -> dict[str, dict[str, bytes]]:
    """wnid -> {member name: bytes}: the train tar is a tar of class tars."""
    return {
        name.removesuffix(".tar"): _members(tarfile.open(fileobj=io.BytesIO(data)))
        for name, data in _tar(path / "ILSVRC2012_img_train.tar").items()
    }


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _zip(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}


def _under(files: dict[str, bytes], folder: str) -> dict[str, bytes]:
    return {n.removeprefix(folder + "/"): d for n, d in files.items() if n.startswith(folder + "/")}


def _csv(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("ascii"))))


def _boxes(xml: bytes) -> list[list[str]]:
    """Each object of a box file as [name, xmin, ymin, xmax, ymax], texts as written."""
    return [
        [
            o.findtext(k, "")
            for k in ("name", *(f"bndbox/{c}" for c in ("xmin", "ymin", "xmax", "ymax")))
        ]
        for o in ET.fromstring(xml).iter("object")
    ]


def _prediction(text: str) -> list[list[str]]:
    assert text.endswith(" ") and not text.endswith("  "), repr(text)
    words = text.split(" ")[:-1]
    assert len(words) % 5 == 0
    return [words[i : i + 5] for i in range(0, len(words), 5)]


# --------------------------------------------------------------------------- same bytes


def test_zip_and_tree_hold_the_same_bytes(kaggle: Made, kaggle_tree: Made) -> None:
    (zip_root, _), (tree_root, _) = kaggle, kaggle_tree
    assert [p.name for p in zip_root.iterdir()] == [ZIP]
    files = _zip(zip_root / ZIP)
    assert files == _tree(tree_root)
    with zipfile.ZipFile(zip_root / ZIP) as zf:
        folders = {i.filename for i in zf.infolist() if i.is_dir()}
    assert folders == {
        f"{p.relative_to(tree_root).as_posix()}/" for p in tree_root.rglob("*") if p.is_dir()
    }
    assert not [p for p in tree_root.rglob("*") if p.name.startswith(".")]  # no temporary files


def test_images_are_the_archives_images(archives: Made, kaggle: Made) -> None:
    (arch, _), (kag, report) = archives, kaggle
    files = _zip(kag / ZIP)
    train = _under(files, f"{DATA}/train")
    expected = {f"{w}/{n}": d for w, members in _train(arch).items() for n, d in members.items()}
    assert train == expected and len(train) == report.train_images
    val = _under(files, f"{DATA}/val")
    assert val == _tar(arch / "ILSVRC2012_img_val.tar") and len(val) == report.val_images
    assert _under(files, f"{DATA}/test") == _tar(arch / TEST_TAR)


def test_box_files_are_the_archives_box_files(archives: Made, kaggle: Made) -> None:
    (arch, _), (kag, report) = archives, kaggle
    files = _zip(kag / ZIP)
    train = _under(files, f"{ANNOTATIONS}/train")
    assert train == _tar(arch / "ILSVRC2012_bbox_train_v2.tar.gz")
    assert len(train) == report.train_boxes
    val = _under(files, f"{ANNOTATIONS}/val")
    assert {f"val/{n}": d for n, d in val.items()} == _tar(arch / "ILSVRC2012_bbox_val_v3.tgz")


def test_report_is_the_archives_report(archives: Made, kaggle: Made, kaggle_tree: Made) -> None:
    same = ("classes", "train_images", "val_images", "train_boxes", "val_boxes", "quirks")
    same += ("median_jpeg_bytes", "median_jpeg_size", "test_images")
    for _, report in (kaggle, kaggle_tree):
        assert all(getattr(report, f) == getattr(archives[1], f) for f in same)
    assert kaggle[1].total_bytes == (kaggle[0] / ZIP).stat().st_size
    assert kaggle_tree[1].zip_members is None and archives[1].zip_members is None


# --------------------------------------------------------------------------- the LOC files


def test_val_solution_agrees_with_the_box_files_and_labels(kaggle: Made) -> None:
    out, report = kaggle
    files = _zip(out / ZIP)
    rows = _csv(files["LOC_val_solution.csv"])
    assert rows[0] == ["ImageId", "PredictionString"]
    ids = [r[0] for r in rows[1:]]
    assert sorted(ids) == sorted(n.removesuffix(".JPEG") for n in _under(files, f"{DATA}/val"))
    assert ids != sorted(ids) and len(ids) == report.val_images  # shuffled, as Kaggle's
    labels = shipped_validation_labels()
    for image_id, prediction in rows[1:]:
        boxes = _prediction(prediction)
        assert boxes == _boxes(files[f"{ANNOTATIONS}/val/{image_id}.xml"])
        assert {b[0] for b in boxes} == {labels[int(image_id.rsplit("_", 1)[1]) - 1]}


def test_train_solution_agrees_with_the_box_files(kaggle: Made) -> None:
    out, report = kaggle
    files = _zip(out / ZIP)
    rows = _csv(files["LOC_train_solution.csv"])
    assert rows[0] == ["ImageId", "PredictionString"]
    xmls = {
        n.rsplit("/", 1)[1].removesuffix(".xml"): d
        for n, d in _under(files, f"{ANNOTATIONS}/train").items()
    }
    solution = {image_id: _prediction(p) for image_id, p in rows[1:]}
    assert len(solution) == len(rows) - 1 == report.train_boxes
    assert list(solution) != sorted(solution)
    assert solution == {stem: _boxes(xml) for stem, xml in xmls.items()}
    # the planted odd boxes reach the CSV as the XMLs hold them
    for name in report.quirks["box_scottish_deerhound"]:
        assert "Scottish_deerhound" in [b[0] for b in solution[name.removesuffix(".xml")]]
    for name in report.quirks["box_reversed"]:
        boxes = solution[name.removesuffix(".xml")]
        assert any(int(b[1]) > int(b[3]) and int(b[2]) > int(b[4]) for b in boxes)
    for name in report.quirks["box_several_objects"]:
        assert len(solution[name.removesuffix(".xml")]) >= 3


def test_synset_mapping_lists_every_class_sorted(kaggle: Made) -> None:
    text = _zip(kaggle[0] / ZIP)["LOC_synset_mapping.txt"].decode("ascii")
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 1000
    assert lines[0] == "n01440764 tench, Tinca tinca"
    wnids = [line.split(" ", 1)[0] for line in lines]
    assert wnids == sorted(load_synsets().wnids)
    synsets = load_synsets()
    assert all(line == f"{w} {synsets.text(w)}" for w, line in zip(wnids, lines, strict=True))


def test_sample_submission_has_a_row_per_test_image(kaggle: Made) -> None:
    rows = _csv(_zip(kaggle[0] / ZIP)["LOC_sample_submission.csv"])
    assert rows == [
        ["ImageId", "PredictionString"],
        *([f"ILSVRC2012_test_{i:08d}", "n01440764 0 0 0 0"] for i in range(1, TEST_IMAGES + 1)),
    ]


# --------------------------------------------------------------------------- the zip


def test_zip_members_order_kinds_and_metadata(kaggle: Made) -> None:
    out, report = kaggle
    with zipfile.ZipFile(out / ZIP) as zf:
        infos = zf.infolist()
        assert zf.testzip() is None  # every CRC checks
        datas = {i.filename: zf.read(i) for i in infos}
    names = [i.filename for i in infos]
    assert names[:4] == LOC_FILES
    tops = [n.split("/")[1] for n in names[4:] if n.count("/") >= 2]
    assert tops == sorted(tops, key=["Annotations", "Data"].index)  # annotations, then data
    folders = {n for n in names if n.endswith("/")}
    assert {
        "ILSVRC/",
        "ILSVRC/Data/",
        f"{DATA}/",
        f"{DATA}/test/",
        f"{ANNOTATIONS}/val/",
    } <= folders
    assert {f"{DATA}/train/{w}/" for w in report.classes} <= folders
    for i, name in enumerate(names):  # each folder comes before what it holds
        parent = name.rstrip("/").rpartition("/")[0]
        assert not parent or f"{parent}/" in names[:i], name
    assert {i.date_time for i in infos} == {(2019, 10, 1, 0, 0, 0)}
    assert {i.external_attr >> 16 for i in infos if i.is_dir()} == {0o40755}
    assert {i.external_attr >> 16 for i in infos if not i.is_dir()} == {0o100644}
    images = [i for i in infos if i.filename.startswith(f"{DATA}/") and not i.is_dir()]
    stored = [i for i in images if i.compress_type == zipfile.ZIP_STORED]
    deflated = [i for i in images if i.compress_type == zipfile.ZIP_DEFLATED]
    assert stored and deflated and len(stored) + len(deflated) == len(images)
    for info in infos:  # deflated exactly when deflate saves at least MIN_DEFLATE_GAIN
        if not info.is_dir():
            worth = deflate_gain(datas[info.filename]) >= MIN_DEFLATE_GAIN
            assert worth == (info.compress_type == zipfile.ZIP_DEFLATED), info.filename
    assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos[:4])
    zm = report.zip_members
    assert zm is not None
    assert (zm.directories, zm.stored_images, zm.deflated_images) == (
        len(folders),
        len(stored),
        len(deflated),
    )
    assert zm.stored + zm.deflated + zm.directories == len(infos)


def test_same_config_gives_the_same_zip(kaggle: Made, tmp_path: Path) -> None:
    fixture.pool_image.cache_clear()
    fixture.devkit_files.cache_clear()
    generate(_config(tmp_path / "again", layout="kaggle"))
    assert (tmp_path / "again" / ZIP).read_bytes() == (kaggle[0] / ZIP).read_bytes()


# --------------------------------------------------------------------------- test images


def test_test_images_in_the_archives_layout(archives: Made, tmp_path: Path) -> None:
    out, report = archives
    assert {p.name for p in out.iterdir()} == ARCHIVES | {TEST_TAR}
    assert report.test_images == TEST_IMAGES
    with tarfile.open(out / TEST_TAR) as tar:
        members = tar.getmembers()
    assert all(m.isfile() and "/" not in m.name for m in members)  # flat, as the val tar
    numbers = sorted(
        int(m.group(1)) for n in [m.name for m in members] if (m := TEST_NAME.match(n))
    )
    assert numbers == list(range(1, TEST_IMAGES + 1)) and len(members) == TEST_IMAGES
    # the test images change no other byte: the five archives are those of a download without
    without = tmp_path / "without"
    plain = generate(_config(without, test_images=0))
    assert {p.name for p in without.iterdir()} == ARCHIVES and plain.test_images == 0
    for name in ARCHIVES:
        assert (out / name).read_bytes() == (without / name).read_bytes(), name


def test_test_images_in_the_extracted_layout(
    archives: Made, small_extracted: Path, tmp_path: Path
) -> None:
    out = tmp_path / "extracted"
    generate(_config(out, layout="extracted", extension=".jpeg"))
    assert (out / "test").is_dir()
    assert _tree(out / "test") == _tar(archives[0] / TEST_TAR)
    assert not (small_extracted / "test").exists()  # none by default


def test_kaggle_without_test_images(tmp_path: Path) -> None:
    out = tmp_path / "k"
    report = generate(_config(out, layout="kaggle", test_images=0))
    with zipfile.ZipFile(out / ZIP) as zf:
        names = zf.namelist()
        assert zf.read("LOC_sample_submission.csv") == b"ImageId,PredictionString\n"
    assert f"{DATA}/test/" in names  # the folder is there, empty
    assert not [n for n in names if n.startswith(f"{DATA}/test/") and not n.endswith("/")]
    assert report.test_images == 0


def test_default_download_is_still_the_committed_one(tmp_path: Path) -> None:
    """tests/data/golden/download was made before the Kaggle layouts and test images: the
    same options (no test images) make the same archives. Image bytes depend on Pillow's
    encoder, so those are compared by name and order; the rest byte for byte."""
    out = tmp_path / "golden"
    generate(FixtureConfig(out, classes=3, per_class=4, val_per_class=2, seed=0, pool_size=2))
    assert {p.name for p in out.iterdir()} == {p.name for p in GOLDEN.iterdir()} == ARCHIVES
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        with tarfile.open(out / name) as new, tarfile.open(GOLDEN / name) as old:
            assert new.getnames() == old.getnames(), name
    assert _train(out).keys() == _train(GOLDEN).keys()
    assert all(list(v) == list(_train(GOLDEN)[k]) for k, v in _train(out).items())
    for name in ("ILSVRC2012_bbox_train_v2.tar.gz", "ILSVRC2012_bbox_val_v3.tgz"):
        assert _tar(out / name) == _tar(GOLDEN / name), name
    new, old = (
        _tar(out / "ILSVRC2012_devkit_t12.tar.gz"),
        _tar(GOLDEN / "ILSVRC2012_devkit_t12.tar.gz"),
    )
    assert new.keys() == old.keys()
    assert all(new[n] == old[n] for n in new if not n.endswith(".mat"))  # scipy writes .mat


# --------------------------------------------------------------------------- options and CLI


@pytest.mark.parametrize(
    "options",
    [
        {"test_images": -1},
        {"test_images": 100_001},
        {"test_images": True},
        {"test_images": 2.0},
        {"layout": "kaggle", "extension": ".jpeg"},
        {"layout": "kaggle-tree", "extension": ".jpeg"},
    ],
)
def test_bad_options_raise_usage_error(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        _config(tmp_path, **options)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fixture_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


@pytest.mark.parametrize("layout", ["kaggle", "kaggle-tree"])
def test_cli_writes_kaggle_and_reports(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], layout: str
) -> None:
    out = tmp_path / "cli"
    args = _parse(
        [
            *("fixture", str(out), "--classes", "2", "--per-class", "5", "--val-per-class", "1"),
            *("--seed", "3", "--pool-size", "4", "--layout", layout, "--test-images", "2"),
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert f"({layout} layout)" in text and "2 test images" in text
    assert ("zip members:" in text) == (layout == "kaggle")
    expected = {ZIP} if layout == "kaggle" else {"ILSVRC", *LOC_FILES}
    assert {p.name for p in out.iterdir()} == expected
