"""The clients users train with load the outputs as they are, with the README's one line each.

Each line runs in its own interpreter (``tests/clients/readme_line.py``) against one build of
every format with DALI indexes; Hugging Face ``datasets`` and timm are also checked image by
image against the build (labels, counts, boxes, sizes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.clients import ROOT, run_client

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.labels import load_synsets
from imagenet_prep.loaders.readers import open_reader

ROWS = [
    ("TensorFlow", "tfrecord"),
    ("torchvision", "imagefolder"),
    ("webdataset", "webdataset"),
    ("NVIDIA DALI", "tfrecord"),
    ("Hugging Face", "webdataset"),
    ("Hugging Face", "imagefolder"),
    ("timm", "webdataset"),
]


@pytest.fixture(scope="module")
def out(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clients") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "imagefolder", "webdataset"),
            train_shards=3,
            validation_shards=2,
            shard_size=10,
            dali_index=True,
            workers=2,
        )
    )
    assert verify(out, decode=True).ok
    return out


@pytest.fixture(scope="module")
def hf_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Hugging Face caches in a temporary folder, and no attempt to reach the Hub."""
    home = tmp_path_factory.mktemp("hf_home")
    return {
        "HF_HOME": str(home),
        "HF_DATASETS_CACHE": str(home / "datasets"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }


def expected(out: Path, split: str) -> dict[str, dict[str, Any]]:
    """Every image of ``split`` as our own loader reads it: stem -> label, boxes."""
    reader = open_reader(out, split, "webdataset", boxes=True)
    return {
        raw.key: {"label": raw.label, "boxes": [list(b) for b in raw.boxes]}
        for unit, size in enumerate(reader.sizes)
        for _, raw in reader.read(unit, 0, int(size))
    }


def run_line(client: str, output: str, out: Path, env: dict[str, str]) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.clients.readme_line", client, output, str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("client", "output"), ROWS, ids=[f"{c}-{o}" for c, o in ROWS])
def test_the_readme_line_loads_the_training_split(
    client: str, output: str, out: Path, hf_env: dict[str, str]
) -> None:
    if client == "NVIDIA DALI":
        pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    want = expected(out, "train")
    got = run_line(client, output, out, hf_env)
    assert got["count"] == len(want)
    if got["labels"] is not None:
        assert got["labels"] == sorted(v["label"] for v in want.values())


def test_huggingface_datasets_loads_both_splits_with_explicit_features(
    out: Path, hf_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in hf_env.items():
        monkeypatch.setenv(name, value)
    synsets = load_synsets()
    for output, label in (("webdataset", "cls"), ("imagefolder", "label")):
        report = run_client("hf_load", str(out / output))["splits"]
        assert sorted(report) == ["train", "validation"], output
        for split in ("train", "validation"):
            want = expected(out, split)
            got = report[split]
            assert got["rows"] == len(want), (output, split)
            assert got["features"][label] == "ClassLabel(1000)"
            assert got["names"] == list(synsets.wnids), (output, split)
            labels = {Path(f).stem: n for f, n in got["samples"]}
            assert labels == {k: v["label"] for k, v in want.items()}, (output, split)
            for filename, boxes in got["boxes"].items():
                wanted = want[Path(filename).stem]["boxes"]
                assert len(boxes) == len(wanted), filename
                for box, want_box in zip(boxes, wanted, strict=True):
                    assert box == pytest.approx(want_box, abs=1e-6), filename
            for filename, (width, height, *shown) in got["sizes"].items():
                # The stored grid; datasets decodes with EXIF orientation applied.
                assert shown in ([width, height], [height, width]), filename
        assert any(report["train"]["boxes"].values()), output


def test_the_side_files_are_listed_and_verified(out: Path) -> None:
    manifest = json.loads((out / "manifest.json").read_text())
    side = {
        name: sorted(entry["file"] for entry in section.get("side_files", ()))
        for name, section in manifest["formats"].items()
    }
    assert side == {
        "tfrecord": [],
        "imagefolder": [
            "imagefolder/README.md",
            "imagefolder/train/metadata.parquet",
            "imagefolder/val/metadata.parquet",
        ],
        "webdataset": ["webdataset/README.md", "webdataset/_info.json"],
    }
    # The shards' metadata lines were joined, then removed from the bookkeeping folder.
    assert not (out / ".imagenet-prep" / "parts").exists()
    info = json.loads((out / "webdataset" / "_info.json").read_text())
    for split, entry in info["splits"].items():
        shards = sorted(p.name for p in (out / "webdataset").glob(f"{split}-*.tar"))
        assert entry["name"] == split and entry["filenames"] == shards
        assert sum(entry["shard_lengths"]) == entry["num_samples"] == len(expected(out, split))
    for name in (*side["imagefolder"], *side["webdataset"]):
        path = out / name
        original = path.read_bytes()
        path.write_bytes(original + b" ")
        try:
            problems = verify(out).problems
        finally:
            path.write_bytes(original)
        assert len(problems) == 1 and problems[0].startswith(f"{path}: "), problems
    assert verify(out).ok


def test_the_readme_dali_pipelines_run_on_the_cpu(out: Path) -> None:
    pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed")
    text = (ROOT / "README.md").read_text("utf-8")
    (code,) = [b for b in text.split("```python\n") if "def tfrecord_pipeline" in b]
    code = code.split("```", 1)[0]
    code = code.replace('Path("/tmp/prepared-dali")', f"Path({str(out)!r})")
    # No GPU here: the README's own note says how the same pipelines run on the CPU.
    code = code.replace("device_id=0", "device_id=None").replace('device="mixed"', 'device="cpu"')
    code += """
import json
report = {}
for name, make in (("tfrecord", tfrecord_pipeline), ("webdataset", webdataset_pipeline)):
    pipe = make(batch_size=4)
    pipe.build()
    images, labels = pipe.run()
    report[name] = {
        "epoch": pipe.epoch_size("reader"),
        "shapes": [list(images.at(i).shape) for i in range(len(images))],
        "labels": [int(bytes(labels.at(i))) if name == "webdataset" else int(labels.at(i)[0])
                   for i in range(len(labels))],
    }
print(json.dumps(report))
"""
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    train = len(expected(out, "train"))
    labels = {v["label"] for v in expected(out, "train").values()}
    for name, got in report.items():
        assert got["epoch"] == train, name
        assert all(len(shape) == 3 and shape[2] == 3 for shape in got["shapes"]), name
        offset = 1 if name == "tfrecord" else 0  # the TFRecords' labels are 1-based by default
        assert {label - offset for label in got["labels"]} <= labels, name
