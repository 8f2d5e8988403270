"""Names a format cannot hold as they are: WebDataset keys made safe, names refused in one line.

Each case adds files to a copy of the extracted download and runs the command line.
"""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import pytest

from imagenet_prep.cli import main
from imagenet_prep.loaders import iterate
from imagenet_prep.loaders.readers import FORMATS, open_reader
from imagenet_prep.loaders.transforms import Box

BOX_CSV = "imagenet_2012_bounding_boxes.csv"


@pytest.fixture
def src(small_extracted: Path, tmp_path: Path) -> Path:
    """A writable copy of the extracted download."""
    out = tmp_path / "src"
    shutil.copytree(small_extracted, out)
    return out


def wnids(src: Path) -> list[str]:
    return sorted(p.name for p in (src / "train").iterdir())


def add_image(src: Path, wnid: str, name: str) -> Path:
    """A copy of one of the class's images under ``name``."""
    folder = src / "train" / wnid
    path = folder / name
    shutil.copyfile(sorted(folder.iterdir())[0], path)
    return path


def add_box_file(src: Path, wnid: str, name: str, *, folder: str | None = None) -> Path:
    """A copy of one of the class's box XMLs as ``bounding_boxes/<folder>/<name>``, its objects
    named as that folder's synset (so that its boxes are kept)."""
    data = sorted((src / "bounding_boxes" / wnid).glob("*.xml"))[0].read_text()
    folder = folder or wnid
    path = src / "bounding_boxes" / folder / name
    path.write_text(data.replace(f"<name>{wnid}</name>", f"<name>{folder}</name>"))
    return path


def build(src: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Build every format with --quiet: stderr holds the error line and nothing else."""
    code = main(
        [
            "build",
            "--quiet",
            "--source",
            str(src),
            "--output",
            str(out),
            "--formats",
            ",".join(FORMATS),
            "--train-shards",
            "2",
            "--validation-shards",
            "1",
            "--workers",
            "1",
        ]
    )
    return code, capsys.readouterr().err


def one_error(code: int, err: str, *needles: str) -> str:
    """The one error line of a failed command, holding every needle."""
    assert code == 1, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def loaded(out: Path, split: str) -> dict[str, dict[str, tuple[Box, ...]]]:
    """Per format: every record's key and its boxes, as the loaders report them."""
    found: dict[str, dict[str, tuple[Box, ...]]] = {}
    for fmt in FORMATS:
        reader = open_reader(out, split, fmt, boxes=True)
        found[fmt] = {
            raw.key: tuple(tuple(round(v, 4) for v in b) for b in raw.boxes)  # type: ignore[misc]
            for unit, size in enumerate(reader.sizes)
            for _, raw in reader.read(unit, 0, int(size))
        }
    return found


def test_dots_and_backslashes_make_a_safe_webdataset_key_and_loaders_report_the_stem(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[1]
    dotted, slashed = f"{wnid}_77.v2", f"{wnid}_78\\x"
    add_image(src, wnid, f"{dotted}.JPEG")
    add_image(src, wnid, f"{slashed}.JPEG")
    add_box_file(src, wnid, f"{dotted}.xml")
    out = tmp_path / "out"

    code, err = build(src, out, capsys)
    assert code == 0, err
    assert main(["verify", str(out), "--decode"]) == 0, capsys.readouterr().err

    members: dict[str, bytes] = {}
    for shard in sorted((out / "webdataset").glob("train-*.tar")):
        with tarfile.open(shard) as tar:
            for m in tar:
                f = tar.extractfile(m)
                assert f is not None
                members[m.name] = f.read()
    assert not [name for name in members if "77.v2" in name or "\\" in name]
    safe = {f"{wnid}_77_v2": f"{dotted}.JPEG", f"{wnid}_78_x": f"{slashed}.JPEG"}
    for key, filename in safe.items():
        assert {f"{key}.{ext}" for ext in ("cls", "jpg", "json")} <= members.keys()
        assert json.loads(members[f"{key}.json"])["filename"] == filename
    import webdataset as wds

    shards = sorted(str(p) for p in (out / "webdataset").glob("train-*.tar"))
    by_key = {s["__key__"]: s for s in wds.WebDataset(shards, shardshuffle=False)}
    for key, filename in safe.items():
        assert {"cls", "jpg", "json"} <= by_key[key].keys()
        assert json.loads(by_key[key]["json"])["filename"] == filename

    found = loaded(out, "train")
    stems = {p.stem for p in (out / "imagefolder" / "train").glob("*/*")}
    for fmt, boxes in found.items():
        assert boxes.keys() == stems, fmt
        assert {dotted, slashed} <= boxes.keys(), fmt
        assert boxes[dotted] and boxes[dotted] == found["imagefolder"][dotted], fmt
    assert found["tfrecord"] == found["webdataset"] == found["imagefolder"]
    for fmt in FORMATS:
        it = iterate(out, "train", format=fmt, transform="eval", image_size=8, decoder="pillow")
        assert {key for _, _, key in it} == stems, fmt


def test_two_names_of_one_webdataset_key_are_refused_naming_both(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[0]
    a = add_image(src, wnid, f"{wnid}_5.v2.JPEG")
    b = add_image(src, wnid, f"{wnid}_5_v2.JPEG")
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, str(a), str(b), f"{wnid}_5_v2")


@pytest.mark.parametrize("mark", [",", '"'])
def test_an_image_name_the_box_csv_cannot_hold_is_refused(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], mark: str
) -> None:
    wnid = wnids(src)[2]
    bad = add_image(src, wnid, f"{wnid}_5{mark}6.JPEG")
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, str(bad), "comma" if mark == "," else "double quote")


def test_an_image_name_with_a_line_break_is_refused_in_one_line(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[2]
    add_image(src, wnid, f"{wnid}_5\n6.JPEG")
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, f"{wnid}_5\\n6.JPEG", "line break")


def test_a_box_file_name_the_csv_cannot_hold_is_refused(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[0]
    bad = add_box_file(src, wnid, f"{wnid}_5,6.xml")
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, str(bad), "comma")


def test_two_box_files_for_one_image_are_refused_naming_both(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, other = wnids(src)[:2]
    original = sorted((src / "bounding_boxes" / first).glob("*.xml"))[0]
    copy = add_box_file(src, first, original.name, folder=other)
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, str(original), str(copy), original.stem)


def test_a_box_file_name_beyond_ascii_goes_into_the_csv_as_utf8(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[3]
    key = f"{wnid}_caf\u00e9"
    add_image(src, wnid, f"{key}.JPEG")
    add_box_file(src, wnid, f"{key}.xml")
    out = tmp_path / "out"

    code, err = build(src, out, capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert main(["verify", str(out)]) == 0, capsys.readouterr().err
    lines = (out / BOX_CSV).read_bytes().decode("utf-8").splitlines()
    assert [line for line in lines if line.startswith(f"{key}.JPEG,")]
    found = loaded(out, "train")
    assert found["tfrecord"][key] and found["tfrecord"][key] == found["webdataset"][key]
    assert found["webdataset"][key] == found["imagefolder"][key]


def test_a_validation_number_out_of_range_says_so(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    val = src / "val"
    bad = val / "ILSVRC2012_val_00099999.JPEG"
    shutil.copyfile(sorted(val.iterdir())[0], bad)
    code, err = build(src, tmp_path / "out", capsys)
    line = one_error(code, err, str(bad), "99999", "out of range", "1..50000")
    assert "expected a name like" not in line


def test_a_name_too_long_for_a_webdataset_member_is_refused(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[0]
    bad = add_image(src, wnid, f"{wnid}_{'7' * 100}.JPEG")
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, str(bad), "the file name is too long (110 bytes")


def test_a_name_that_is_not_utf8_is_refused(
    src: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wnid = wnids(src)[0]
    folder = src / "train" / wnid
    first = sorted(folder.iterdir())[0]
    (
        folder / f"{wnid}_9\xff9.JPEG".encode("latin-1").decode("utf-8", "surrogateescape")
    ).write_bytes(first.read_bytes())
    code, err = build(src, tmp_path / "out", capsys)
    one_error(code, err, "the file name is not UTF-8 text")
