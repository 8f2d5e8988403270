"""Real clients read the output: TensorFlow (inception feature spec), torchvision ImageFolder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tests.clients import run_client

from imagenet_prep import BuildConfig, build
from imagenet_prep.labels import load_synsets


@pytest.fixture(scope="module")
def prepared(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "imagefolder"),
            train_shards=3,
            validation_shards=2,
            workers=2,
        )
    )
    return out


def test_tensorflow_reads_the_shards_like_the_inception_model(prepared: Path) -> None:
    synsets = load_synsets()
    manifest = json.loads((prepared / "manifest.json").read_text())
    csv: dict[str, list[list[float]]] = {}
    for line in (prepared / "imagenet_2012_bounding_boxes.csv").read_text().splitlines():
        name, *coords = line.split(",")
        csv.setdefault(name, []).append([float(c) for c in coords])
    files = sorted(str(p) for p in (prepared / "tfrecord").glob("*-of-*"))
    records = run_client("tf_inception_read", *files)["records"]
    total = sum(s["images"] for s in manifest["splits"].values())
    assert len(records) == total
    for r in records:
        assert r["shape"][2] == 3, r["filename"]
        assert r["shape"][:2] == [r["height"], r["width"]]
        assert r["label"] == synsets.index(r["synset"]) + 1
        assert r["text"] == synsets.text(r["synset"])
        assert (r["channels"], r["colorspace"], r["format"]) == (3, "RGB", "JPEG")
        assert r["crop"][2] == 3 and r["crop"][0] > 0 and r["crop"][1] > 0
        boxes = [list(b) for b in zip(*r["boxes"], strict=True)]
        want = csv.get(r["filename"], []) if r["filename"].startswith("n") else []
        assert len(boxes) == len(want)
        for got, expected in zip(boxes, want, strict=True):
            assert got == pytest.approx(expected, abs=1e-6)
        assert r["box_labels"] == [r["label"]] * len(boxes)
    assert any(r["boxes"][0] for r in records)


def test_torchvision_imagefolder_loads_the_folders(prepared: Path) -> None:
    train_root = str(prepared / "imagefolder" / "train")
    val_root = str(prepared / "imagefolder" / "val")
    report = run_client("torchvision_imagefolder", train_root, val_root)
    manifest = json.loads((prepared / "manifest.json").read_text())
    classes = sorted(manifest["splits"]["train"]["per_class"])
    assert report[train_root]["classes"] == classes
    assert report[val_root]["classes"] == sorted(manifest["splits"]["validation"]["per_class"])
    assert len(classes) > 1
    assert report[train_root]["count"] == manifest["splits"]["train"]["images"]
    assert report[val_root]["count"] == manifest["splits"]["validation"]["images"]
    for width, height, target in report[train_root]["samples"]:
        assert width > 0 and height > 0 and 0 <= target < len(classes)
