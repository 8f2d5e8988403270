"""The test split (issue 17) end to end: ``--splits test`` in every format, verify, the
manifest, the loaders, and the real clients (TensorFlow, webdataset, Hugging Face
``datasets``, MosaicML streaming).

The download and the build are the README's own commands (its "The test split" paragraph),
run as written with only the two folders moved into the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.clients import ROOT, run_client
from tests.e2e.test_mds import run_streaming, streaming_python  # noqa: F401
from tests.helpers import records_by_name, run_cli

from imagenet_prep import BuildConfig, build, verify
from imagenet_prep.errors import DataError
from imagenet_prep.formats import NAMES
from imagenet_prep.formats.mds import spec as mds
from imagenet_prep.formats.tfrecord import spec as tfrecord_io
from imagenet_prep.formats.tfrecord.writer import _check_example
from imagenet_prep.labels import load_synsets
from imagenet_prep.loaders import iterate
from imagenet_prep.loaders.readers import open_reader
from imagenet_prep.manifest import read_manifest

TEST_ARCHIVE = "ILSVRC2012_img_test_v10102019.tar"
TEST_IMAGES = 12
# The README's folders, put in place of the test's own.
README_SRC, README_OUT = "/tmp/fake-imagenet-test", "/tmp/prepared-test"


def readme_commands() -> list[list[str]]:
    """The commands of the README's test-split paragraph, one argument list each."""
    text = (ROOT / "README.md").read_text("utf-8")
    paragraph = text.split("**The test split.**", 1)[1].split("\n**", 1)[0]
    block = paragraph.split("```sh\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line) for line in block.replace("\\\n", " ").splitlines() if line]


def run_readme(command: list[str], download: Path, out: Path) -> None:
    """A README command, its two folders put in the test's own, run as a user runs it."""
    args = [{README_SRC: str(download), README_OUT: str(out)}.get(a, a) for a in command]
    assert args[0] == "imagenet-prep"
    proc = run_cli(*args[1:])
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The README's download: 4 classes, and 12 test images."""
    download = tmp_path_factory.mktemp("test_split") / "download"
    fixture, _ = readme_commands()
    assert fixture[:2] == ["imagenet-prep", "fixture"] and fixture[-2:] == ["--test-images", "12"]
    run_readme(fixture, download, download.parent / "out")
    return download


@pytest.fixture(scope="module")
def out(download: Path) -> Path:
    """The README's build: every format, the three splits, two test shards."""
    out = download.parent / "out"
    _, command = readme_commands()
    assert command[:2] == ["imagenet-prep", "build"]
    run_readme(command, download, out)
    return out


def source_images(download: Path) -> dict[str, bytes]:
    """The download's test images by file name, read with ``tarfile``."""
    with tarfile.open(download / TEST_ARCHIVE) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


# --- the build, verify, the manifest -------------------------------------------------------


def test_verify_passes_and_the_manifest_counts_the_test_split(out: Path, download: Path) -> None:
    result = verify(out, decode=True)
    assert result.ok, result.problems
    manifest = read_manifest(out)
    assert sorted(manifest.splits) == ["test", "train", "validation"]
    entry = manifest.splits["test"]
    assert entry["images"] == entry["written"] == TEST_IMAGES
    assert entry["shards"] == 2 and entry["skipped"] == 0
    assert "per_class" not in entry and "classes" not in entry  # no classes to count
    assert manifest.options["test_shards"] == 2
    assert len(source_images(download)) == TEST_IMAGES
    # Every format holds the test images once (verify counts the records of all splits).
    assert result.records == len(NAMES) * sum(s["written"] for s in manifest.splits.values())


def test_tfrecords_have_the_background_label_and_no_synset(out: Path, download: Path) -> None:
    names = sorted(p.name for p in (out / "tfrecord").glob("test-*"))
    assert names == ["test-00000-of-00002", "test-00001-of-00002"]
    records = records_by_name(out, "test")
    source = source_images(download)
    assert sorted(records) == sorted(source)
    for name, ex in records.items():
        assert list(ex["image/class/label"].values) == [0], name  # --label-offset 1, minus 1
        assert list(ex["image/class/synset"].values) == [b""], name
        assert list(ex["image/class/text"].values) == [b""], name
        assert list(ex["image/object/bbox/xmin"].values) == [], name
        assert ex["image/encoded"].values[0] == source[name], name  # plain JPEGs, unchanged
    # TensorFlow reads them as the inception models do, and the tf.data loader gives -1.
    report = run_tf(out, [str(out / "tfrecord" / n) for n in names])
    got = report["records"]
    assert sorted(r["filename"] for r in got) == sorted(source)
    assert {(r["label"], r["synset"], r["text"]) for r in got} == {(0, "", "")}
    assert sorted(report["loader"]) == sorted([Path(n).stem, -1] for n in source)


# TensorFlow in an interpreter of its own (it does not share one with torch well).
TF_SCRIPT = """
import json, sys
from tests.clients.tf_inception_read import main
from imagenet_prep.loaders.tf import dataset

report = main(sys.argv[2:])
ds = dataset(sys.argv[1], "test", transform="eval", image_size=32, with_keys=True)
report["loader"] = [[key.numpy().decode(), int(label)] for _, label, key in ds]
print(json.dumps(report))
"""


def run_tf(out: Path, files: list[str]) -> Any:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", TF_SCRIPT, str(out), *files],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_another_label_offset_gives_offset_minus_one(download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(
        BuildConfig(
            source=download,
            output=out,
            formats=("tfrecord",),
            splits=("test",),
            test_shards=1,
            label_offset=0,
            workers=1,
        )
    )
    assert verify(out).ok
    records = records_by_name(out, "test")
    assert len(records) == TEST_IMAGES
    assert {ex["image/class/label"].values[0] for ex in records.values()} == {-1}
    assert {label for _, label, _ in iterate(out, "test")} == {-1}  # still -1 for the loaders


def test_verify_refuses_a_class_in_a_test_record_and_no_class_elsewhere() -> None:
    synsets = load_synsets()

    def record(label: int, synset: str, text: str) -> bytes:
        parts = tfrecord_io.encode_imagenet_example_parts(
            encoded=b"\xff\xd8",
            height=1,
            width=1,
            label=label,
            synset=synset,
            text=text,
            filename="x.JPEG",
            boxes=[],
        )
        return b"".join(parts)

    wnid = synsets.wnids[0]
    assert _check_example(record(0, "", ""), synsets, 1, False, test=True) is None
    assert _check_example(record(-1, "", ""), synsets, 0, False, test=True) is None
    assert _check_example(record(1, wnid, synsets.text(wnid)), synsets, 1, False) is None
    for bad in (record(1, wnid, ""), record(0, "", "a text"), record(1, "", "")):
        assert "a test record must have label 0" in str(
            _check_example(bad, synsets, 1, False, test=True)
        )
    assert "does not match synset" in str(_check_example(record(0, "", ""), synsets, 1, False))


# --- WebDataset, MDS, ImageFolder ----------------------------------------------------------


def test_webdataset_samples_have_class_minus_one(out: Path, download: Path) -> None:
    import webdataset as wds

    shards = sorted(str(p) for p in (out / "webdataset").glob("test-*.tar"))
    assert len(shards) == 2  # 12 images by --shard-size 10
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode().to_tuple("cls", "json"))
    assert len(samples) == TEST_IMAGES
    assert {cls for cls, _ in samples} == {-1}
    assert {(meta["wnid"], meta["text"]) for _, meta in samples} == {("", "")}
    assert sorted(meta["filename"] for _, meta in samples) == sorted(source_images(download))
    info = json.loads((out / "webdataset" / "_info.json").read_text())
    assert info["splits"]["test"]["num_samples"] == TEST_IMAGES
    assert info["splits"]["test"]["filenames"] == [Path(s).name for s in shards]
    assert "- test-*.tar" in (out / "webdataset" / "README.md").read_text()


def test_mds_samples_have_y_minus_one(out: Path) -> None:
    index = json.loads((out / "mds" / "test" / "index.json").read_text())
    assert sum(s["samples"] for s in index["shards"]) == TEST_IMAGES
    for shard in sorted((out / "mds" / "test").glob("shard.*.mds")):
        view = memoryview(shard.read_bytes())
        offsets = mds.sample_offsets(view, str(shard))
        for i in range(len(offsets) - 1):
            col = mds.columns(view[offsets[i] : offsets[i + 1]], str(shard))
            assert mds.as_int(col["y"]) == -1
            assert (mds.as_str(col["wnid"]), mds.as_str(col["text"])) == ("", "")
    reader = open_reader(out, "test", "mds")
    labels = [raw.label for u, n in enumerate(reader.sizes) for _, raw in reader.read(u, 0, int(n))]
    assert labels == [-1] * TEST_IMAGES


@pytest.mark.slow
def test_streaming_reads_the_test_split(out: Path, streaming_python: Path) -> None:  # noqa: F811
    report = run_streaming(streaming_python, "dataset", out / "mds", "test")
    assert report["num_samples"] == TEST_IMAGES
    assert {(s["y"], s["wnid"], s["text"]) for s in report["samples"]} == {(-1, "", "")}


def test_imagefolder_test_folder_is_flat(out: Path, download: Path) -> None:
    folder = out / "imagefolder" / "test"
    source = source_images(download)
    files = {p.name: p for p in folder.iterdir()}
    assert sorted(files) == sorted([*source, "metadata.parquet"])  # no class folders
    for name, data in source.items():
        assert files[name].read_bytes() == data, name
    table = pq.read_table(folder / "metadata.parquet").to_pydict()
    assert sorted(table["file_name"]) == sorted(source)
    assert set(table["label"]) == {-1} and set(table["wnid"]) == {""}
    manifest = read_manifest(out)
    side = {e["file"] for e in manifest.formats["imagefolder"]["side_files"]}
    assert "imagefolder/test/metadata.parquet" in side
    assert manifest.formats["imagefolder"]["classes"]["test"]["count"] == TEST_IMAGES
    listed = (out / ".imagenet-prep" / "outputs.txt").read_text().splitlines()
    assert {f"imagefolder/test/{name}" for name in source} <= set(listed)  # for --overwrite


def test_verify_names_a_stray_file_in_the_test_folder(out: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "imagefolder" / "test" / "extra.JPEG").write_bytes(b"\xff\xd8")
    (copy / "imagefolder" / "test" / "n01440764").mkdir()
    problems = verify(copy).problems
    assert any("imagefolder/test: 13 files" in p for p in problems), problems
    assert any(
        p.endswith("n01440764: not a file (the test folder holds only images)") for p in problems
    )


def test_huggingface_datasets_loads_the_three_splits(
    out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "HF_HOME": str(tmp_path / "hf"),
        "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }.items():
        monkeypatch.setenv(name, value)
    want = {
        split: {raw.key: raw.label for raw in _raws(out, split)}
        for split in ("train", "validation", "test")
    }
    for output in ("imagefolder", "webdataset"):
        report = run_client("hf_load", str(out / output))["splits"]
        assert sorted(report) == ["test", "train", "validation"], output
        for split, labels in want.items():
            got = {Path(f).stem: n for f, n in report[split]["samples"]}
            assert got == labels, (output, split)
            assert report[split]["features"]["label" if output == "imagefolder" else "cls"] == (
                "ClassLabel(1000)"
            )
        assert set(want["test"].values()) == {-1}
        assert min(want["train"].values()) >= 0


# --- the loaders, and the default build ----------------------------------------------------


def _raws(out: Path, split: str, fmt: str = "webdataset") -> list[Any]:
    reader = open_reader(out, split, fmt)
    return [raw for u, n in enumerate(reader.sizes) for _, raw in reader.read(u, 0, int(n))]


@pytest.mark.parametrize("fmt", NAMES)
def test_the_loaders_yield_label_minus_one(out: Path, download: Path, fmt: str) -> None:
    got = [(label, key) for _image, label, key in iterate(out, "test", format=fmt)]
    assert sorted(key for _, key in got) == sorted(Path(n).stem for n in source_images(download))
    assert {label for label, _ in got} == {-1}


def test_the_torch_loader_yields_label_minus_one(out: Path) -> None:
    torch = pytest.importorskip("imagenet_prep.loaders.torch")
    loader = torch.ImageNetLoader(out, "test", batch_size=5, format="imagefolder", image_size=32)
    labels = [label for _, batch in loader for label in batch.tolist()]
    assert labels == [-1] * TEST_IMAGES


def test_a_default_build_writes_nothing_for_test(download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    build(
        BuildConfig(
            source=download,
            output=out,
            formats=NAMES,
            train_shards=2,
            validation_shards=1,
            shard_size=100,
            workers=2,
        )
    )
    assert verify(out).ok
    assert sorted(read_manifest(out).splits) == ["train", "validation"]
    assert not [p for p in out.rglob("*") if "test" in p.name.lower()]
    assert "test" not in (out / "webdataset" / "_info.json").read_text()
    assert "test" not in (out / "imagefolder" / "README.md").read_text().split("---")[1]
    with pytest.raises(DataError, match="has no test split"):
        open_reader(out, "test", "tfrecord")
