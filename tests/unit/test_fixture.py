"""The generated ILSVRC2012-shaped download: structure, names, labels, boxes, devkit, quirks."""

from __future__ import annotations

import argparse
import io
import re
import tarfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from scipy.io import loadmat

from imagenet_prep import fixture
from imagenet_prep.cli import fixture as fixture_cli
from imagenet_prep.errors import UsageError
from imagenet_prep.fixture import (
    BOX_QUIRKS,
    IMAGE_QUIRKS,
    FixtureConfig,
    FixtureReport,
    choose_classes,
    generate,
    validation_numbers,
)
from imagenet_prep.fixture.plan import BOX_FRACTION
from imagenet_prep.labels import (
    all_synset_texts,
    load_synsets,
    read_devkit,
    shipped_validation_labels,
    validation_labels,
)

ARCHIVES = {
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_bbox_train_v2.tar.gz",
    "ILSVRC2012_bbox_val_v3.tgz",
    "ILSVRC2012_devkit_t12.tar.gz",
}
TRAIN_NAME = re.compile(r"^(n\d{8})_([1-9]\d*)\.JPEG$")
VAL_NAME = re.compile(r"^ILSVRC2012_val_(\d{8})\.JPEG$")
SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}

# Small enough to be quick, large enough that each class holds several images.
CLASSES, PER_CLASS, VAL_PER_CLASS, SEED = 3, 6, 2, 7


def _config(out: Path, **options: Any) -> FixtureConfig:
    values: dict[str, Any] = {
        "classes": CLASSES,
        "per_class": PER_CLASS,
        "val_per_class": VAL_PER_CLASS,
        "seed": SEED,
        "pool_size": 12,
    }
    values.update(options)
    return FixtureConfig(out=out, **values)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FixtureReport]:
    out = tmp_path_factory.mktemp("fixture") / "download"
    return out, generate(_config(out))


def _members(tar: tarfile.TarFile) -> dict[str, bytes]:
    out = {}
    for m in tar:
        if m.isfile():
            f = tar.extractfile(m)
            assert f is not None
            out[m.name] = f.read()
    return out


def _train(path: Path) -> dict[str, dict[str, bytes]]:
    """Class tar name -> {member name: bytes}, opening the nested tars."""
    with tarfile.open(path / "ILSVRC2012_img_train.tar") as outer:
        return {
            name: _members(tarfile.open(fileobj=io.BytesIO(data)))
            for name, data in _members(outer).items()
        }


def _all_images(path: Path) -> dict[str, bytes]:
    images = {n: d for inner in _train(path).values() for n, d in inner.items()}
    with tarfile.open(path / "ILSVRC2012_img_val.tar") as tar:
        images.update(_members(tar))
    return images


def _boxes(path: Path) -> dict[str, ET.Element]:
    out = {}
    for archive in ("ILSVRC2012_bbox_train_v2.tar.gz", "ILSVRC2012_bbox_val_v3.tgz"):
        with tarfile.open(path / archive) as tar:
            for name, data in _members(tar).items():
                out[name] = ET.fromstring(data)
    return out


def _sof_components(data: bytes) -> int:
    """The number of colour components in a JPEG's start-of-frame segment."""
    i = 2
    while i + 4 <= len(data):
        marker = data[i + 1]
        if marker in SOF_MARKERS:
            return data[i + 9]
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    raise AssertionError("no SOF marker")


def _box_values(obj: ET.Element) -> tuple[int, int, int, int]:
    box = obj.find("bndbox")
    assert box is not None
    xmin, ymin, xmax, ymax = (int(box.findtext(k, "")) for k in ("xmin", "ymin", "xmax", "ymax"))
    return xmin, ymin, xmax, ymax


# --------------------------------------------------------------------------- structure


def test_the_five_archives_with_their_real_names(made: tuple[Path, FixtureReport]) -> None:
    out, report = made
    assert {p.name for p in out.iterdir()} == ARCHIVES
    assert report.train_images == CLASSES * PER_CLASS
    assert report.val_images == CLASSES * VAL_PER_CLASS
    assert report.total_bytes == sum(p.stat().st_size for p in out.iterdir())


def test_train_tar_holds_one_tar_per_class(made: tuple[Path, FixtureReport]) -> None:
    out, report = made
    with tarfile.open(out / "ILSVRC2012_img_train.tar") as outer:
        outer_members = outer.getmembers()
    assert {m.name for m in outer_members} == {f"{w}.tar" for w in report.classes}
    assert all(m.isfile() and m.mtime == outer_members[0].mtime for m in outer_members)
    for name, members in _train(out).items():
        wnid = name.removesuffix(".tar")
        assert len(members) == PER_CLASS
        numbers = []
        for member in members:
            m = TRAIN_NAME.match(member)
            assert m is not None and m.group(1) == wnid, member
            numbers.append(int(m.group(2)))
        numbers.sort()
        assert numbers != list(range(numbers[0], numbers[0] + len(numbers)))


def test_members_are_not_in_sorted_order(small_download: Path) -> None:
    with tarfile.open(small_download / "ILSVRC2012_img_train.tar") as outer:
        names = outer.getnames()
    assert names != sorted(names)
    assert all(list(m) != sorted(m) for m in _train(small_download).values())
    with tarfile.open(small_download / "ILSVRC2012_img_val.tar") as tar:
        assert tar.getnames() != sorted(tar.getnames())


def test_classes_come_from_the_known_quirk_files_first() -> None:
    first = choose_classes(23)
    assert first[0] == "n02105855"
    assert set(first[1:]) == {s.split("_")[0] for s in fixture.REAL_CMYK_TRAIN}
    assert choose_classes(24)[23] == shipped_validation_labels()[19877 - 1]
    assert choose_classes(30)[:24] == choose_classes(24)
    assert set(choose_classes(1000)) == set(load_synsets().wnids)
    spread = choose_classes(34)[24:]
    assert len(set(spread)) == 10 and spread == tuple(sorted(spread))


def test_validation_images_are_numbered_by_the_real_labels(
    made: tuple[Path, FixtureReport],
) -> None:
    out, report = made
    labels = shipped_validation_labels()
    with tarfile.open(out / "ILSVRC2012_img_val.tar") as tar:
        names = tar.getnames()
    numbers = []
    for name in names:
        m = VAL_NAME.match(name)
        assert m is not None, name
        numbers.append(int(m.group(1)))
    per_class = Counter(labels[n - 1] for n in numbers)
    assert per_class == dict.fromkeys(report.classes, VAL_PER_CLASS)
    for wnid in report.classes:
        first = [i for i, w in enumerate(labels, start=1) if w == wnid][:VAL_PER_CLASS]
        assert sorted(n for n in numbers if labels[n - 1] == wnid) == first


def test_the_real_cmyk_validation_file_is_kept_with_its_class() -> None:
    wnid = shipped_validation_labels()[19877 - 1]
    numbers = validation_numbers([wnid], 3)[wnid]
    assert 19877 in numbers and len(numbers) == 3
    assert all(shipped_validation_labels()[n - 1] == wnid for n in numbers)


# --------------------------------------------------------------------------- boxes


def test_box_files_are_imagenet_pascal_voc(made: tuple[Path, FixtureReport]) -> None:
    out, report = made
    boxes = _boxes(out)
    train = {n: x for n, x in boxes.items() if not n.startswith("val/")}
    val = {n: x for n, x in boxes.items() if n.startswith("val/")}
    assert len(train) == report.train_boxes == round(report.train_images * BOX_FRACTION)
    assert len(val) == report.val_boxes == report.val_images
    children = ["folder", "filename", "source", "size", "segmented"]
    for name, root in boxes.items():
        assert root.tag == "annotation"
        assert [c.tag for c in root][:5] == children
        assert {c.tag for c in root[5:]} == {"object"}
        folder, _, stem = name.removesuffix(".xml").partition("/")
        assert root.findtext("folder") == folder
        assert root.findtext("filename") in (stem, "%s")
        assert root.findtext("source/database") == "ILSVRC_2012"
        assert root.findtext("size/depth") == "3" and root.findtext("segmented") == "0"
        for obj in root.iter("object"):
            assert [c.tag for c in obj] == ["name", "pose", "truncated", "difficult", "bndbox"]
            assert obj.findtext("pose") == "Unspecified"
    with tarfile.open(out / "ILSVRC2012_bbox_train_v2.tar.gz") as tar:
        names = tar.getnames()
        text = _members(tar)[next(n for n in names if n.endswith(".xml"))].decode()
    assert set(names) >= {f"{w}" for w in report.classes}  # the folders, as tar lists them
    assert text.startswith("<annotation>\n\t<folder>n") and "\n\t\t\t<xmin>" in text


def test_box_quirks_are_planted(made: tuple[Path, FixtureReport]) -> None:
    out, report = made
    boxes = {n.rpartition("/")[2]: x for n, x in _boxes(out).items()}
    images = _all_images(out)
    challenge = set(load_synsets().wnids)
    for quirk in BOX_QUIRKS:
        assert report.quirks[quirk], quirk
    for name in report.quirks["box_several_objects"]:
        assert len(boxes[name].findall("object")) >= 3
    for name in report.quirks["box_reversed"]:
        assert any(
            v[0] > v[2] and v[1] > v[3] for v in map(_box_values, boxes[name].iter("object"))
        )
    for name in report.quirks["box_outside_image"]:
        root = boxes[name]
        w, h = int(root.findtext("size/width", "")), int(root.findtext("size/height", ""))
        assert any(v[2] > w and v[3] > h for v in map(_box_values, root.iter("object")))
    for name in report.quirks["box_zero_area"]:
        assert any(v[0] == v[2] for v in map(_box_values, boxes[name].iter("object")))
    for name in report.quirks["box_scottish_deerhound"]:
        assert "Scottish_deerhound" in [o.findtext("name") for o in boxes[name].iter("object")]
    for name in report.quirks["box_other_synset"]:
        root = boxes[name]
        names = {o.findtext("name") for o in root.iter("object")}
        others = names - {root.findtext("folder"), "Scottish_deerhound"}
        assert others and others <= challenge
    for name in report.quirks["box_filename_placeholder"]:
        assert boxes[name].findtext("filename") == "%s"
    for name in report.quirks["box_size_mismatch"]:
        root = boxes[name]
        size = int(root.findtext("size/width", "")), int(root.findtext("size/height", ""))
        image = Image.open(io.BytesIO(images[name.replace(".xml", ".JPEG")]))
        assert size != image.size


# --------------------------------------------------------------------------- devkit


def test_devkit_round_trips_through_the_parser(small_download: Path) -> None:
    devkit = read_devkit(small_download / "ILSVRC2012_devkit_t12.tar.gz")
    assert validation_labels(devkit) == shipped_validation_labels()
    assert len(devkit.synsets) == 1860
    assert len(devkit.validation_ids) == 50_000
    leaves = devkit.leaf_wnids()
    assert sorted(leaves) == list(range(1, 1001))
    by_id = [leaves[i] for i in range(1, 1001)]
    assert sorted(by_id) == list(load_synsets().wnids)
    assert by_id != sorted(by_id)


def test_devkit_meta_mat_is_a_tree_like_the_real_one(small_download: Path) -> None:
    devkit = read_devkit(small_download / "ILSVRC2012_devkit_t12.tar.gz")
    challenge = set(load_synsets().wnids)
    texts = all_synset_texts()
    ids = [s.ilsvrc2012_id for s in devkit.synsets]
    assert ids == list(range(1, 1861))
    inner = [s for s in devkit.synsets if s.num_children > 0]
    assert [s.ilsvrc2012_id for s in inner] == list(range(1001, 1861))
    parents = Counter(c for s in inner for c in s.children)
    assert set(parents) == set(range(1, 1861)) - {1001} and set(parents.values()) == {1}
    for s in devkit.synsets:
        assert s.words == texts[s.wnid] and s.gloss
        assert s.num_children == len(s.children)
        assert (s.wnid in challenge) == (s.num_children == 0) == (s.wordnet_height == 0)
    trained = {s.wnid: s.num_train_images for s in devkit.synsets if s.num_train_images}
    assert set(trained) >= set(_train_wnids(small_download))
    root = devkit.synsets[1000]
    assert root.num_train_images == sum(len(v) for v in _train(small_download).values())


def _train_wnids(path: Path) -> set[str]:
    with tarfile.open(path / "ILSVRC2012_img_train.tar") as tar:
        return {n.removesuffix(".tar") for n in tar.getnames()}


def test_meta_mat_has_the_real_field_order(small_download: Path) -> None:
    with tarfile.open(small_download / "ILSVRC2012_devkit_t12.tar.gz") as tar:
        data = _members(tar)["ILSVRC2012_devkit_t12/data/meta.mat"]
    synsets = loadmat(io.BytesIO(data))["synsets"]
    assert synsets.shape == (1860, 1)
    assert synsets.dtype.names == (
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    )


# --------------------------------------------------------------------------- image quirks


def _check_image_quirk(quirk: str, data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    if quirk.startswith("png"):
        assert image.format == "PNG"
        assert image.mode == ("RGBA" if quirk == "png_rgba" else "RGB")
        return
    assert image.format == "JPEG"
    image.load()
    if quirk == "cmyk":
        assert image.mode == "CMYK" and _sof_components(data) == 4 and b"Adobe" in data
    elif quirk == "grayscale":
        assert image.mode == "L" and _sof_components(data) == 1
    elif quirk == "progressive":
        assert image.info.get("progressive") and image.mode == "RGB"
    elif quirk == "exif_rotated":
        assert image.getexif()[0x0112] == 6 and image.size == (500, 375)
    elif quirk == "tiny":
        assert image.size == (40, 30)
    elif quirk == "large":
        assert image.size == (2000, 1500)
    else:  # pragma: no cover
        raise AssertionError(quirk)


def test_image_quirks_are_what_pillow_sees(made: tuple[Path, FixtureReport]) -> None:
    out, report = made
    images = _all_images(out)
    for quirk in IMAGE_QUIRKS:
        assert report.quirks[quirk], quirk
        for name in report.quirks[quirk]:
            _check_image_quirk(quirk, images[name])
    quirky = {n for q in IMAGE_QUIRKS for n in report.quirks[q]}
    for name, data in images.items():
        if name not in quirky:
            image = Image.open(io.BytesIO(data))
            assert image.format == "JPEG" and image.mode == "RGB" and _sof_components(data) == 3
            assert not image.info.get("progressive") and 0x0112 not in image.getexif()


def test_real_quirk_file_names_are_used(made: tuple[Path, FixtureReport]) -> None:
    _, report = made  # classes: n02105855 and the first two CMYK classes
    assert report.quirks["png_rgb"] == ("n02105855_2933.JPEG",)
    assert {"n01739381_1309.JPEG", "n02077923_14822.JPEG"} <= set(report.quirks["cmyk"])


def test_smallest_fixture_has_every_quirk(tmp_path: Path) -> None:
    out = tmp_path / "d"
    report = generate(_config(out, classes=2, per_class=5, val_per_class=1, pool_size=4))
    assert report.train_images == 10 and report.val_images == 2
    images = _all_images(out)
    for quirk in (*IMAGE_QUIRKS, *BOX_QUIRKS):
        assert report.quirks[quirk], quirk
    for quirk in ("cmyk", "grayscale"):
        val = [n for n in report.quirks[quirk] if n.startswith("ILSVRC2012_val_")]
        assert val, quirk
        _check_image_quirk(quirk, images[val[0]])


def test_median_jpeg_is_the_size_of_imagenet_photos(small_download: Path) -> None:
    images = _all_images(small_download)
    sizes = sorted(
        len(d)
        for d in images.values()
        if Image.open(io.BytesIO(d)).size == (500, 375) and _sof_components(d) == 3
    )
    assert 80_000 <= sizes[len(sizes) // 2] <= 130_000


def test_pixels_look_like_photos_not_noise_or_flat(made: tuple[Path, FixtureReport]) -> None:
    out, _ = made
    data = next(iter(_train(out).values()))
    for blob in list(data.values())[:3]:
        image = Image.open(io.BytesIO(blob)).convert("RGB")
        pixels = np.asarray(image, np.float32)
        assert pixels.std() > 10  # not flat
        # neighbours are strongly correlated, as in photos (white noise would give ~0)
        a, b = pixels[:, :-1].ravel(), pixels[:, 1:].ravel()
        assert np.corrcoef(a, b)[0, 1] > 0.5


# --------------------------------------------------------------------------- determinism


def _clear_caches() -> None:
    fixture.pool_image.cache_clear()
    fixture.devkit_files.cache_clear()


def test_same_config_gives_identical_bytes(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _clear_caches()
    generate(_config(first, pool_size=6))
    _clear_caches()
    generate(_config(second, pool_size=6))
    for name in ARCHIVES:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    generate(_config(other, pool_size=6, seed=SEED + 1))
    train = "ILSVRC2012_img_train.tar"
    assert (first / train).read_bytes() != (other / train).read_bytes()


# --------------------------------------------------------------------------- extracted layout


def test_extracted_layout(small_extracted: Path, small_download: Path) -> None:
    assert {p.name for p in small_extracted.iterdir()} == {
        "train",
        "val",
        "bounding_boxes",
        "ILSVRC2012_devkit_t12",
    }
    train = sorted(
        p.relative_to(small_extracted / "train") for p in small_extracted.rglob("*.jpeg")
    )
    archived = _train(small_download)
    expected = sorted(
        Path(wnid.removesuffix(".tar")) / name.replace(".JPEG", ".jpeg")
        for wnid, members in archived.items()
        for name in members
    )
    assert train == expected
    for rel in train[:3]:
        image_bytes = (small_extracted / "train" / rel).read_bytes()
        assert image_bytes == archived[f"{rel.parent}.tar"][rel.name.replace(".jpeg", ".JPEG")]
    val = sorted(p.name for p in (small_extracted / "val").iterdir())
    with tarfile.open(small_download / "ILSVRC2012_img_val.tar") as tar:
        assert val == sorted(tar.getnames())
    boxes = {
        p.relative_to(small_extracted / "bounding_boxes").as_posix()
        for p in (small_extracted / "bounding_boxes").rglob("*.xml")
    }
    assert set(_boxes(small_download)) == boxes
    devkit = read_devkit(small_extracted / "ILSVRC2012_devkit_t12")
    assert validation_labels(devkit) == shipped_validation_labels()
    assert not list(small_extracted.rglob(".*"))  # no temporary files left behind


# --------------------------------------------------------------------------- options and CLI


@pytest.mark.parametrize(
    "options",
    [
        {"classes": 0},
        {"classes": 1001},
        {"per_class": 0},
        {"val_per_class": 0},
        {"val_per_class": 51},
        {"seed": -1},
        {"pool_size": 0},
        {"layout": "zip"},
        {"layout": "extracted", "extension": "jpeg"},
        {"extension": ".jpeg"},  # archives always use .JPEG
        {"classes": 2, "per_class": 3},  # too few images to plant every quirk
        {"classes": 1, "val_per_class": 1},
        {"classes": 2.0},
        {"per_class": True},
    ],
)
def test_bad_options_raise_usage_error(tmp_path: Path, options: dict[str, Any]) -> None:
    with pytest.raises(UsageError):
        _config(tmp_path, **options)


def test_refuses_a_non_empty_output(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(UsageError, match="not an empty directory"):
        generate(_config(tmp_path))


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    fixture_cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = _parse(
        [
            *("fixture", str(out), "--classes", "2", "--per-class", "5", "--val-per-class", "1"),
            *("--seed", str(SEED), "--pool-size", "4", "--layout", "archives"),
        ]
    )
    assert args.func(args) == 0
    text = capsys.readouterr().out
    assert "10 training images" in text and "2 validation images" in text
    assert re.search(r"median JPEG \d+\.\d KB \(\d+x\d+\)", text)
    assert {p.name for p in out.iterdir()} == ARCHIVES


def test_cli_bad_option_is_a_usage_error(tmp_path: Path) -> None:
    args = _parse(["fixture", str(tmp_path / "x"), "--val-per-class", "60"])
    with pytest.raises(UsageError, match="val_per_class"):
        args.func(args)


def test_image_size_makes_every_image_that_size_and_the_quirks_scale(tmp_path: Path) -> None:
    """``--image-size 64x48``: the pool images are 64x48, the large quirk 4 times that, the
    tiny one as before; the boxes fit the image they describe; a bad size is refused."""
    out = tmp_path / "small"
    report = generate(_config(out, image_size=(64, 48)))
    assert report.median_jpeg_size == (64, 48)
    sizes: dict[str, tuple[int, int]] = {}
    with tarfile.open(out / "ILSVRC2012_img_train.tar") as outer:
        for member in outer:
            f = outer.extractfile(member)
            assert f is not None
            with tarfile.open(fileobj=io.BytesIO(f.read())) as inner:
                for m in inner:
                    data = inner.extractfile(m).read()  # type: ignore[union-attr]
                    with Image.open(io.BytesIO(data)) as im:
                        sizes[m.name] = im.size
    large = set(report.quirks["large"])
    tiny = set(report.quirks["tiny"])
    for name, size in sizes.items():
        want = (256, 192) if name in large else (40, 30) if name in tiny else (64, 48)
        assert size == want, name
    assert list(sizes.values()).count((64, 48)) == len(sizes) - len(large) - len(tiny)
    with tarfile.open(out / "ILSVRC2012_bbox_train_v2.tar.gz") as boxes:
        described = [
            ET.fromstring(boxes.extractfile(m).read())  # type: ignore[union-attr]
            for m in boxes
            if m.isfile()
        ]
    seen = [(x.findtext("size/width"), x.findtext("size/height")) for x in described]
    assert max(set(seen), key=seen.count) == ("64", "48")  # the XMLs describe 64x48 images
    for bad in ((0, 48), (64,), (64, 48.0), (True, 48), (5000, 48)):
        with pytest.raises(UsageError, match="image_size"):
            _config(tmp_path / "bad", image_size=bad)
    parser = argparse.ArgumentParser()
    fixture_cli.register(parser.add_subparsers())
    args = parser.parse_args(["fixture", str(tmp_path / "cli"), "--image-size", "64x48"])
    assert args.image_size == (64, 48)
    with pytest.raises(SystemExit):
        parser.parse_args(["fixture", str(tmp_path / "cli"), "--image-size", "64by48"])
