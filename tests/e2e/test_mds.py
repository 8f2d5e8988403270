"""MosaicML MDS output (issue 16): layout, verify, our loader, and MosaicML's own library.

``mosaicml-streaming`` pins ``numpy<2.2`` and brings heavy dependencies, so it is not a test
extra: the tests that use it run ``tests/clients/mds_read.py`` in a virtual environment of
its own, made on first use and kept in ``~/.cache/imagenet-prep-test/`` (keyed by the
requirement and the Python version). They are skipped only when the package index is
unreachable.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.clients import ROOT

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.errors import DataError
from imagenet_prep.formats.base import SinkOptions
from imagenet_prep.formats.mds import spec as mds
from imagenet_prep.formats.mds.writer import MDSShardWriter
from imagenet_prep.formats.tfrecord.writer import read_examples
from imagenet_prep.loaders.readers import open_reader
from imagenet_prep.manifest import read_manifest
from imagenet_prep.sample import ImageRef, Sample

REQUIREMENT = "mosaicml-streaming==0.13.0"
SPLITS = ("train", "validation")
# pip's words when it cannot reach the package index (or finds nothing on it, offline).
UNREACHABLE = (
    "Max retries exceeded",
    "NewConnectionError",
    "Temporary failure in name resolution",
    "Network is unreachable",
    "No matching distribution found for mosaicml-streaming",
)


@pytest.fixture(scope="module")
def out(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mds") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "mds"),
            train_shards=3,
            validation_shards=2,
            shard_size=10,
            dali_index=True,  # writes nothing for MDS
            workers=2,
        )
    )
    return out


def tfrecords(out: Path, split: str) -> list[dict[str, Any]]:
    """The split's TFRecord Examples in shard order, as plain values."""
    rows = []
    for path in sorted((out / "tfrecord").glob(f"{split}-*-of-*")):
        for ex in read_examples(path):
            data = ex["image/encoded"].values[0]
            coords = [ex[f"image/object/bbox/{c}"].values for c in ("xmin", "ymin", "xmax", "ymax")]
            rows.append(
                {
                    "filename": ex["image/filename"].values[0].decode(),
                    "y": ex["image/class/label"].values[0] - 1,
                    "wnid": ex["image/class/synset"].values[0].decode(),
                    "text": ex["image/class/text"].values[0].decode(),
                    "width": ex["image/width"].values[0],
                    "height": ex["image/height"].values[0],
                    "boxes": [list(b) for b in zip(*coords, strict=True)],
                    "data": data,
                    "sha256": hashlib.sha256(data).hexdigest(),
                }
            )
    return rows


def same_boxes(got: list[list[float]], want: list[list[float]]) -> bool:
    """Equal boxes, up to the TFRecords' float32."""
    return [len(b) for b in got] == [len(b) for b in want] and [
        c for b in got for c in b
    ] == pytest.approx([c for b in want for c in b], abs=1e-6)


# --- the layout and verify ------------------------------------------------------------------


def test_each_split_holds_an_index_and_numbered_shards(out: Path) -> None:
    section = read_manifest(out).formats["mds"]
    listed = {s["file"] for s in section["shards"]}
    for split in SPLITS:
        names = sorted(p.name for p in (out / "mds" / split).iterdir())
        shards = [n for n in names if n != "index.json"]
        assert "index.json" in names
        assert shards == [mds.shard_file(i) for i in range(len(shards))]
        assert {f"mds/{split}/{n}" for n in shards} <= listed
        index = json.loads((out / "mds" / split / "index.json").read_text())
        assert index["version"] == 2
        assert [e["raw_data"]["basename"] for e in index["shards"]] == shards
        for entry in index["shards"]:
            path = out / "mds" / split / entry["raw_data"]["basename"]
            assert entry["raw_data"]["bytes"] == path.stat().st_size
            assert entry["format"] == "mds" and entry["compression"] is None
            columns = zip(entry["column_names"], entry["column_encodings"], strict=True)
            assert dict(columns) == mds.COLUMNS
    assert sorted(f["file"] for f in section["side_files"]) == [
        "mds/train/index.json",
        "mds/validation/index.json",
    ]
    assert len(listed) == len(section["shards"]) == 7  # 48 images by 10, 12 by 6
    assert not (out / "dali-index" / "mds").exists()


def test_verify_passes_and_names_a_corrupted_shard(out: Path, tmp_path: Path) -> None:
    result = verify(out, decode=True)
    assert result.ok, result.problems
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / "mds" / "train" / "shard.00001.mds"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    problems = verify(copy).problems
    assert problems and all(str(shard) in p for p in problems), problems


def test_verify_checks_the_header_and_the_index(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / "mds" / "validation" / "shard.00000.mds"
    data = bytearray(shard.read_bytes())
    data[8:12] = (2**32 - 1).to_bytes(4, "little")  # the second sample's offset
    shard.write_bytes(bytes(data))
    (copy / "mds" / "train" / "index.json").write_text("{}")
    (copy / "mds" / "train" / "stray.mds").write_bytes(b"")
    (copy / "mds" / "notes.txt").write_bytes(b"")  # beside the split folders
    (copy / "mds" / "test").mkdir()  # a folder that holds no listed file
    problems = "\n".join(verify(copy).problems)
    assert f"{shard}: sample offsets out of order" in problems
    assert f"{copy / 'mds' / 'train' / 'index.json'}: " in problems
    assert f"{copy / 'mds' / 'train' / 'stray.mds'}: not listed" in problems
    assert f"{copy / 'mds' / 'notes.txt'}: not listed" in problems
    assert f"{copy / 'mds' / 'test'}: not listed" in problems


def test_a_shard_that_would_reach_4_gib_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mds, "MAX_SHARD_BYTES", 5000)
    writer = MDSShardWriter("train", mds.shard_file(0), SinkOptions(out=tmp_path))
    ref = ImageRef(
        "train", "n01440764_1", "n01440764_1.JPEG", "n01440764", 0, "-", 0, 3000, "x.JPEG"
    )
    writer.add(Sample(ref, b"\xff" * 3000, b"\xff" * 3000, 10, 10))
    with pytest.raises(DataError, match=r"under 4 GiB .* use a smaller --shard-size"):
        writer.add(Sample(ref, b"\xff" * 3000, b"\xff" * 3000, 10, 10))
    writer.abort()
    assert not any((tmp_path / "mds" / "train").iterdir())


# --- our loader -----------------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_our_loader_reads_what_the_tfrecords_hold(out: Path, split: str) -> None:
    reader = open_reader(out, split, "mds", boxes=True)
    got = [raw for unit, n in enumerate(reader.sizes) for _, raw in reader.read(unit, 0, int(n))]
    want = tfrecords(out, split)
    assert [r.key for r in got] == [Path(w["filename"]).stem for w in want]  # the same order
    for raw, w in zip(got, want, strict=True):
        assert (raw.label, bytes(raw.data)) == (w["y"], w["data"]), raw.key
        assert same_boxes([list(b) for b in raw.boxes], w["boxes"]), raw.key


# --- MosaicML's streaming library -----------------------------------------------------------


def _pip_install(python: Path) -> None:
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            REQUIREMENT,
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if proc.returncode != 0:
        if any(words in proc.stderr for words in UNREACHABLE):
            pytest.skip(f"{REQUIREMENT}: the package index is unreachable")
        raise AssertionError(f"pip install {REQUIREMENT} failed:\n{proc.stderr[-4000:]}")


@pytest.fixture(scope="session")
def streaming_python() -> Path:
    """The interpreter of a cached virtual environment that has ``mosaicml-streaming``."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(f"{REQUIREMENT} {sys.version}".encode()).hexdigest()[:12]
    venv = cache / "imagenet-prep-test" / f"mds-venv-{key}"
    python = venv / "bin" / "python"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one session makes it, the others wait
        if not (venv / ".complete").is_file():
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
            _pip_install(python)
            (venv / ".complete").write_text(REQUIREMENT + "\n")
    return python


def run_streaming(python: Path, *args: object) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.run(
        [str(python), str(ROOT / "tests" / "clients" / "mds_read.py"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("split", SPLITS)
def test_streaming_reads_every_sample_once(out: Path, split: str, streaming_python: Path) -> None:
    """``StreamingDataset`` (every column, in order) and ``StreamingImageNet`` (x, y)."""
    report = run_streaming(streaming_python, "dataset", out / "mds", split)
    want = tfrecords(out, split)
    got = report["samples"]
    assert report["num_samples"] == len(got) == len(want)
    for s, w in zip(got, want, strict=True):  # the same shuffled order as the TFRecords
        assert s["key"] == Path(w["filename"]).stem
        for column in ("y", "wnid", "text", "filename", "width", "height", "sha256"):
            assert s[column] == w[column], (s["key"], column)
        assert same_boxes(s["boxes"], w["boxes"]), s["key"]
        assert s["decoded"] == [w["width"], w["height"]]
    assert sorted(report["iterated"]) == sorted(s["key"] for s in got)

    report = run_streaming(streaming_python, "imagenet", out / "mds", split)
    pairs = collections.Counter(tuple(p) for p in report["pairs"])
    assert pairs == collections.Counter((w["sha256"], w["y"]) for w in want)
    assert report["num_samples"] == len(want)
    assert verify(out).ok  # the library left nothing in OUT


@pytest.mark.slow
def test_mdswriter_writes_the_same_bytes(out: Path, streaming_python: Path, tmp_path: Path) -> None:
    report = run_streaming(streaming_python, "rewrite", out / "mds", "train", tmp_path)
    assert len(report["shards"]) == 5
    for shard in report["shards"]:
        assert shard["same_bytes"] and shard["same_entry"], shard
