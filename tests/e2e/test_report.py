"""``imagenet-prep report``: its numbers against independent ones on the generated download,
its page's structure, ``build --report`` with the sizes a resized build keeps, the skipped
images read back from the source, and its refusals."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from tests.helpers import records_by_name, run_cli, source_images

from imagenet_prep import BuildConfig, build
from imagenet_prep.cli import main
from imagenet_prep.loaders.decode import make_decoder
from imagenet_prep.manifest import OutputState

CONTACT = "n01739381"  # a class of the generated downloads


def _pixels(images: list[bytes], pillow: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's per-channel mean and std of the pixels in [0, 1], every image's pixels in one
    array: decoded as the loaders decode them, or by Pillow."""
    decode = make_decoder("auto")
    arrays = []
    for data in images:
        if pillow:
            with Image.open(io.BytesIO(data)) as image:
                rgb = np.asarray(image.convert("RGB"))
        else:
            rgb = decode(data)
        arrays.append(rgb.reshape(-1, 3).astype(np.float64) / 255)
    pixels = np.concatenate(arrays)
    return pixels.mean(axis=0), pixels.std(axis=0)


def _sizes(images: list[bytes]) -> list[tuple[int, int]]:
    out = []
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            out.append(image.size)
    return out


@pytest.fixture(scope="module")
def reported(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build in three formats and its report (read from the image folder, the default)."""
    out = tmp_path_factory.mktemp("reported") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "imagefolder", "webdataset"),
            train_shards=2,
            validation_shards=1,
            shard_size=20,
            workers=2,
        )
    )
    args = ["report", str(out), "--workers", "2", "--contact-classes", CONTACT]
    assert main([*args, "--contact-images", "5"]) == 0
    return out


@pytest.fixture(scope="module")
def stats(reported: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((reported / "report" / "stats.json").read_text())
    return data


def test_counts_agree_with_the_records(reported: Path, stats: dict[str, Any]) -> None:
    records = records_by_name(reported)
    for split, prefix in (("train", "train"), ("validation", "validation")):
        mine = Counter(
            r["image/class/synset"].values[0].decode()
            for name, r in records.items()
            if name.startswith("ILSVRC2012_val") == (prefix == "validation")
        )
        entry = stats["splits"][split]
        assert entry["per_class"] == dict(sorted(mine.items()))
        assert entry["images"] == sum(mine.values())
        assert entry["classes"] == len(mine)
    assert stats["report"]["format"] == "imagefolder"
    assert stats["problems"] == []


def test_mean_and_std_agree_with_numpy(small_download: Path, stats: dict[str, Any]) -> None:
    images = source_images(small_download)
    for split, is_val in (("train", False), ("validation", True)):
        chosen = [d for n, d in images.items() if n.startswith("ILSVRC2012_val") == is_val]
        mean, std = _pixels(chosen)
        pixels = stats["splits"][split]["pixels"]
        assert pixels["exact"] and pixels["images"] == len(chosen)
        np.testing.assert_allclose(pixels["mean"], mean, atol=1e-4)
        np.testing.assert_allclose(pixels["std"], std, atol=1e-4)
        # Pillow turns CMYK into RGB up to 1/255 lower than libjpeg-turbo (4 of these images
        # are CMYK): the figures stay within a few 1e-4.
        mean, std = _pixels(chosen, pillow=True)
        np.testing.assert_allclose(pixels["mean"], mean, atol=5e-4)
        np.testing.assert_allclose(pixels["std"], std, atol=5e-4)
        assert pixels["pixels"] == sum(w * h for w, h in _sizes(chosen))


def test_sizes_agree_with_pillow(small_download: Path, stats: dict[str, Any]) -> None:
    images = source_images(small_download, validation=False)
    sizes = _sizes(list(images.values()))
    widths = [w for w, _ in sizes]
    heights = [h for _, h in sizes]
    entry = stats["splits"]["train"]["sizes"]
    assert entry["width"]["min"] == min(widths) and entry["width"]["max"] == max(widths)
    assert entry["height"]["median"] == float(np.median(heights))
    assert entry["total_bytes"] == sum(len(d) for d in images.values())
    top = Counter(sizes).most_common(1)[0]
    assert entry["common"][0] == [top[0][0], top[0][1], top[1]]


def test_boxes_and_label_ranges(reported: Path, stats: dict[str, Any]) -> None:
    manifest = json.loads((reported / "manifest.json").read_text())
    boxes = stats["splits"]["train"]["boxes"]
    assert boxes["boxes"] == manifest["bounding_boxes"]["boxes_kept"]
    assert boxes["images_with_boxes"] == manifest["bounding_boxes"]["images"]
    assert len(boxes["heatmap"]) == 64
    ranges = stats["label_ranges"]
    lowest = min(ranges["webdataset"]["splits"]["train"]["min"], 10**6)
    assert ranges["tfrecord"]["splits"]["train"]["min"] == lowest + 1  # --label-offset 1
    assert ranges["tfrecord"]["field"] == "image/class/label"


class _Page(HTMLParser):
    """The page's images, links, scripts and section anchors."""

    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.ids: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and values.get("src"):
            self.sources.append(str(values["src"]))
        if values.get("href"):
            self.links.append(str(values["href"]))
        if values.get("id"):
            self.ids.append(str(values["id"]))
        if tag in ("script", "iframe", "object", "embed") or tag == "link":
            self.scripts += 1


def test_the_page_shows_every_plot_and_every_file_it_names_exists(
    reported: Path, stats: dict[str, Any]
) -> None:
    folder = reported / "report"
    page = _Page()
    page.feed((folder / "index.html").read_text(encoding="utf-8"))
    assert page.scripts == 0  # no script, no stylesheet or font from elsewhere
    assert all(link.startswith("#") for link in page.links)
    for src in page.sources:
        assert "://" not in src and not src.startswith("/"), src
        assert (folder / src).is_file(), src
    pngs = {p.name for p in folder.glob("*.png")}
    assert pngs == {
        "classes-train.png",
        "classes-validation.png",
        "sizes-train.png",
        "sizes-validation.png",
        "density-train.png",
        "density-validation.png",
        "boxes-train.png",
        "pixels.png",
    }
    assert pngs <= set(page.sources)
    for anchor in ("counts", "sizes", "boxes", "pixels", "fixes", "contact", "build"):
        assert anchor in page.ids
    # Every re-encoded image is listed with its thumbnail; the contact sheets are there.
    manifest = json.loads((reported / "manifest.json").read_text())
    assert len(stats["reencoded"]) == len(manifest["reencoded"]) > 0
    assert all(e["thumbnail"] in page.sources for e in stats["reencoded"])
    sheets = {(s["wnid"], s["split"]): s for s in stats["contact_sheets"]}
    assert set(sheets) == {(CONTACT, "train"), (CONTACT, "validation")}
    assert sheets[CONTACT, "train"]["shown"] == 5
    assert sheets[CONTACT, "validation"]["shown"] == 3  # the class's 3 validation images
    with Image.open(folder / sheets[CONTACT, "train"]["file"]) as sheet:
        assert sheet.width > 5 * 100
    html = (folder / "index.html").read_text(encoding="utf-8")
    for needle in ("transforms.Normalize(mean=[", "tf.constant([", "XXH3-128", "Timings"):
        assert needle in html


def test_the_same_report_from_another_format_and_a_rerun_replaces_it(
    reported: Path, stats: dict[str, Any], tmp_path: Path
) -> None:
    to = tmp_path / "wds-report"
    args = ["report", str(reported), "--format", "webdataset", "--to", str(to), "--workers", "1"]
    assert main([*args, "--contact-sheets", "0", "--quiet"]) == 0
    other = json.loads((to / "stats.json").read_text())
    assert other["report"]["format"] == "webdataset"
    for split in ("train", "validation"):
        assert other["splits"][split]["per_class"] == stats["splits"][split]["per_class"]
    # The webdataset holds the re-encoded (RGB) bytes, not the originals: close, not equal.
    np.testing.assert_allclose(
        other["splits"]["train"]["pixels"]["mean"],
        stats["splits"]["train"]["pixels"]["mean"],
        atol=0.02,
    )
    (to / "sheets").mkdir(exist_ok=True)
    (to / "stale.txt").write_text("from an earlier report")
    assert main([*args, "--contact-sheets", "0", "--quiet"]) == 0
    assert not (to / "stale.txt").exists()
    assert not list(tmp_path.glob(".wds-report.*"))


def test_refusals(reported: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    assert main(["report", str(reported), "--to", str(mine)]) == 2
    assert "holds no imagenet-prep report" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
    assert main(["report", str(reported), "--contact-classes", "n09999999"]) == 2
    assert "n09999999 not in the build" in capsys.readouterr().err
    assert main(["report", str(reported), "--contact-classes", "tench"]) == 2
    assert "WordNet IDs" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 1
    assert "no manifest" in capsys.readouterr().err


def test_without_matplotlib_it_says_what_to_install(
    reported: Path,
    small_download: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib: ImportError
    assert main(["report", str(reported)]) == 2
    assert "pip install 'imagenet-prep[report]'" in capsys.readouterr().err
    out = tmp_path / "out"
    args = ["build", "--source", str(small_download), "--output", str(out), "--report"]
    assert main(args) == 2
    assert "pip install 'imagenet-prep[report]'" in capsys.readouterr().err
    assert not out.exists()  # refused before the build started


def test_build_report_of_a_resized_build_shows_the_original_sizes(
    small_download: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [
        "build", "--source", str(small_download), "--output", str(out), "--formats", "tfrecord",
        "--train-shards", "2", "--validation-shards", "1", "--resize-shorter", "64",
        "--workers", "2", "--report", "--sample", "7", "--contact-sheets", "1", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    timings = manifest["timings"]
    assert set(timings["seconds"]) == {"inputs", "plan", "shards", "finish", "total"}
    assert timings["shards_written"] == 3 and timings["workers"] == 2
    # Each image's size before resizing, kept in the bookkeeping folder.
    images = source_images(small_download, validation=False)
    kept = OutputState(out).read_sizes("train")
    assert kept is not None
    sizes = _sizes(list(images.values()))
    originals = {Path(n).stem: size for n, size in zip(images, sizes, strict=True)}
    kept_sizes = zip(kept.widths, kept.heights, strict=True)
    assert dict(zip(kept.keys, kept_sizes, strict=True)) == originals
    stats = json.loads((out / "report" / "stats.json").read_text())
    train = stats["splits"]["train"]
    assert train["original_sizes"]["images"] == len(originals)
    assert train["original_sizes"]["width"]["max"] == max(w for w, _ in originals.values())
    assert train["sizes"]["megapixels"]["max"] < train["original_sizes"]["megapixels"]["max"]
    assert train["pixels"]["images"] == 7 and not train["pixels"]["exact"]
    assert stats["report"]["format"] == "tfrecord"
    assert len({s["wnid"] for s in stats["contact_sheets"]}) == 1


def test_skipped_images_are_shown_from_the_source(small_extracted: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(small_extracted, src)
    victim = sorted((src / "train").rglob("*.jpeg"))[5]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])
    out = tmp_path / "out"
    args = [
        "build", "--source", str(src), "--output", str(out), "--train-shards", "2",
        "--validation-shards", "1", "--workers", "1", "--on-error", "skip", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0
    assert main(["report", str(out), "--workers", "1", "--contact-sheets", "0", "--quiet"]) == 0
    stats = json.loads((out / "report" / "stats.json").read_text())
    (skipped,) = stats["skipped"]
    assert skipped["image"] == str(victim) and "truncated" in skipped["reason"]
    assert skipped["thumbnail"] and (out / "report" / skipped["thumbnail"]).is_file()
    assert stats["splits"]["train"]["images"] == 47 and stats["problems"] == []


def test_a_build_in_a_bucket_is_reported_into_a_local_folder(
    reported: Path, stats: dict[str, Any], s3: Any, tmp_path: Path
) -> None:
    client = s3.client()
    client.create_bucket(Bucket="reported-from-bucket")
    for path in sorted(p for p in reported.rglob("*") if p.is_file()):
        relative = path.relative_to(reported).as_posix()
        if not relative.startswith("report/"):
            client.upload_file(str(path), "reported-from-bucket", f"out/{relative}")
    url = "s3://reported-from-bucket/out"
    refused = run_cli("report", url, env=s3.env)
    assert refused.returncode == 2 and "--to DIR" in refused.stderr
    to = tmp_path / "report"
    done = run_cli("report", url, "--to", to, "--workers", "2", "--contact-sheets", "1", env=s3.env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(to / "index.html")
    remote = json.loads((to / "stats.json").read_text())
    assert remote["build"]["output"] == url
    for split in ("train", "validation"):
        mine, theirs = remote["splits"][split], stats["splits"][split]
        assert mine["per_class"] == theirs["per_class"]
        assert mine["pixels"]["mean"] == theirs["pixels"]["mean"]
        assert mine["sizes"] == theirs["sizes"]
