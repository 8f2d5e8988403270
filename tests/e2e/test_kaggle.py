"""Kaggle's ImageNet as downloaded (the zip, or its extracted tree) builds the same records as
image-net.org's archives; layout detection; each layout's damage is one line naming the file."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import zipfile
from pathlib import Path

import pytest
from tests.helpers import (
    assert_build_refused,
    build_every_split,
    layout_downloads,
    output_files,
)

from imagenet_prep.cli import main
from imagenet_prep.formats import NAMES
from imagenet_prep.sources import KAGGLE_ZIP, discover

LAYOUTS = ("archives", "extracted", "kaggle", "kaggle-tree")
SPLITS = ("train", "validation", "test")
VAL_SOLUTION = "LOC_val_solution.csv"


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One download written in each layout from the same options (so the same images)."""
    return layout_downloads(tmp_path_factory.mktemp("layouts"), LAYOUTS, seed=77)


def test_every_layout_gives_byte_identical_records(
    downloads: dict[str, Path], tmp_path: Path
) -> None:
    """Every format, with validation boxes and the test split, from each layout: the same
    bytes (the manifest aside, which names the source)."""
    outs = {
        layout: build_every_split(
            src, tmp_path / layout, validation_boxes=True, formats=NAMES, shard_size=20
        )
        for layout, src in downloads.items()
    }
    reference = outs["archives"]
    files = output_files(reference)
    assert "imagenet_2012_validation_bounding_boxes.csv" in files
    assert {f.split("/")[-1].split("-")[0] for f in files if f.startswith("tfrecord/")} == {
        "train",
        "validation",
        "test",
    }
    for layout, out in outs.items():
        assert output_files(out) == files, layout
        _match, mismatch, errors = filecmp.cmpfiles(reference, out, files, shallow=False)
        assert not mismatch and not errors, (layout, mismatch, errors)
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["source"]["layout"] == layout
        expected = VAL_SOLUTION if layout.startswith("kaggle") else "devkit"
        assert manifest["validation_labels"] == expected
        assert manifest["splits"]["test"]["images"] == 5


def test_the_kaggle_zip_holds_stored_and_deflated_images(downloads: dict[str, Path]) -> None:
    """The byte-identical records above were read through both kinds of zip member."""
    with zipfile.ZipFile(downloads["kaggle"] / KAGGLE_ZIP) as z:
        kinds = {i.compress_type for i in z.infolist() if i.filename.endswith(".JPEG")}
    assert kinds == {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def test_detection_names_the_layout_in_the_first_line(
    downloads: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for layout in ("kaggle", "kaggle-tree"):
        assert discover(downloads[layout]).name == layout
        out = tmp_path / layout
        args = ["build", "--source", str(downloads[layout]), "--output", str(out)]
        assert main([*args, "--splits", "validation", "--validation-shards", "1"]) == 0
        first = capsys.readouterr().err.splitlines()[0]
        assert first.startswith(f"source: {layout} layout in {downloads[layout]}: "), first
    assert discover(downloads["archives"]).name == "archives"
    assert discover(downloads["extracted"]).name == "extracted"


def test_two_layouts_in_one_folder_are_an_error_unless_one_is_chosen(
    downloads: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "src"
    shutil.copytree(downloads["kaggle"], src)
    os.symlink(downloads["archives"] / "ILSVRC2012_img_val.tar", src / "ILSVRC2012_img_val.tar")
    args = ["build", "--source", str(src), "--output", str(tmp_path / "out")]
    args += ["--splits", "validation", "--validation-shards", "1", "--quiet"]
    assert main(args) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "holds two layouts, archives (ILSVRC2012_img_val.tar) and kaggle" in line
    assert KAGGLE_ZIP in line and "--layout" in line
    assert main([*args, "--layout", "kaggle"]) == 0
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["source"]["layout"] == (
        "kaggle"
    )


def _rezip(src: Path, dest: Path, drop: str = "", add: tuple[str, bytes] | None = None) -> None:
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dest, "w") as new:
        for info in old.infolist():
            if info.filename != drop:
                new.writestr(info, old.read(info))
        if add is not None:
            new.writestr(*add)


def _damage(case: str, downloads: dict[str, Path], src: Path) -> str:
    """Make ``src`` a damaged copy; return the file the error must name."""
    if case.startswith("zip"):
        src.mkdir()
        zipped = src / KAGGLE_ZIP
        original = downloads["kaggle"] / KAGGLE_ZIP
        if case == "zip-truncated":
            zipped.write_bytes(original.read_bytes()[: original.stat().st_size * 2 // 3])
            return str(zipped)
        if case == "zip-no-solution":
            _rezip(original, zipped, drop=VAL_SOLUTION)
            return f"{zipped}:{VAL_SOLUTION}"
        if case == "zip-unknown-class":
            member = "ILSVRC/Data/CLS-LOC/train/n99999999/n99999999_1.JPEG"
        else:
            member = "ILSVRC/Data/CLS-LOC/n01440764_1.JPEG"
        _rezip(original, zipped, add=(member, b"\xff\xd8"))
        return f"{zipped}:{member}"
    shutil.copytree(downloads["kaggle-tree"], src)
    solution = src / VAL_SOLUTION
    if case == "tree-no-solution":
        solution.unlink()
        return str(solution)
    if case == "tree-disagreeing-row":
        header, first, *rest = solution.read_text().splitlines(keepends=True)
        image, _, prediction = first.partition(",")
        wnid = prediction.split()[0]
        other = "n01443537" if wnid != "n01443537" else "n01484850"
        solution.write_text(header + f"{image},{prediction.replace(wnid, other)}" + "".join(rest))
        return str(solution)
    if case == "tree-mapping-order":
        mapping = src / "LOC_synset_mapping.txt"
        lines = mapping.read_text().splitlines(keepends=True)
        mapping.write_text("".join([lines[1], lines[0], *lines[2:]]))
        return str(mapping)
    val = src / "ILSVRC/Data/CLS-LOC/val"
    stray = src / "ILSVRC/Data/CLS-LOC/train" / "ILSVRC2012_val_99999999.JPEG"
    shutil.copy(next(val.iterdir()), stray)
    return str(stray)


DAMAGE = [
    ("zip-truncated", "truncated"),
    ("zip-no-solution", "missing; it holds the validation labels"),
    ("zip-image-outside", "an image outside the expected folders"),
    ("zip-unknown-class", "'n99999999' is not an ILSVRC2012 class"),
    ("tree-no-solution", "missing; it holds the validation labels"),
    ("tree-disagreeing-row", "in the shipped imagenet_2012_validation_synset_labels.txt"),
    ("tree-mapping-order", "where the ILSVRC2012 classes in order have"),
    ("tree-image-outside", "an image outside the expected folders"),
]


@pytest.mark.parametrize(("case", "message"), DAMAGE, ids=[c for c, _ in DAMAGE])
def test_each_layouts_damage_is_one_line_naming_the_file(
    case: str,
    message: str,
    downloads: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    src = tmp_path / "src"
    named = _damage(case, downloads, src)
    assert_build_refused(src, tmp_path / "out", named, message, capsys)
