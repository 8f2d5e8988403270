"""The build's phases on their own: inputs, resume, shards and finish, each with its types."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from imagenet_prep import BuildConfig
from imagenet_prep.executors import Executor
from imagenet_prep.executors.local import InlineExecutor, ProcessExecutor
from imagenet_prep.labels import load_synsets
from imagenet_prep.manifest import PARTS_DIR, OutputState, ShardResult
from imagenet_prep.pipeline import shards as shards_module
from imagenet_prep.pipeline.finish import build_manifest, summary
from imagenet_prep.pipeline.inputs import Inputs, gather
from imagenet_prep.pipeline.report import Silent
from imagenet_prep.pipeline.resume import finished, output_sizes, resume, shard_plans
from imagenet_prep.pipeline.shards import shard_jobs, write_shards
from imagenet_prep.sources import SplitIndex, discover
from imagenet_prep.sources.splitindex import RefBlock


def _index(split: str, images: int, size: int = 100) -> SplitIndex:
    index = SplitIndex(split)
    for i in range(images):
        index.add(f"n01440764_{i}.JPEG", 0, i * size, size, 0)
    return index


def _config(tmp_path: Path, **options: object) -> BuildConfig:
    return BuildConfig(source=tmp_path / "src", output=tmp_path / "out", **options)  # type: ignore[arg-type]


def test_formats_of_one_shard_count_share_a_plan(tmp_path: Path) -> None:
    config = _config(
        tmp_path,
        formats=("tfrecord", "webdataset", "imagefolder"),
        train_shards=4,
        shard_size=30,
    )
    plans = shard_plans(config, {"train": _index("train", 100)})
    # 100 images of at most 30 a shard: WebDataset's 4 shards are the TFRecords' 4.
    assert [(formats, len(specs)) for formats, specs in plans] == [
        (("tfrecord", "webdataset", "imagefolder"), 4)
    ]
    config = _config(tmp_path, formats=("tfrecord", "webdataset"), train_shards=2, shard_size=30)
    plans = shard_plans(config, {"train": _index("train", 100)})
    assert [len(specs) for _f, specs in plans] == [2, 4]
    assert all(sum(s.size for s in specs) == 100 for _f, specs in plans)


def test_a_shard_is_finished_only_with_its_formats_and_files(tmp_path: Path) -> None:
    config = _config(tmp_path, train_shards=2)
    (spec, _second) = shard_plans(config, {"train": _index("train", 10)})[0][1]
    shard = config.output / "tfrecord" / spec.name
    result = ShardResult(
        spec.name,
        "train",
        5,
        500,
        [],
        [],
        {"tfrecord": {"file": f"tfrecord/{spec.name}", "bytes": 3}},
    )
    records = {spec.name: result}
    sizes = output_sizes(config.output)
    assert finished(config, ("tfrecord",), spec, records, sizes) is None  # no file yet
    shard.parent.mkdir(parents=True)
    shard.write_bytes(b"abc")
    assert finished(config, ("tfrecord",), spec, records, sizes) == result
    assert finished(config, ("tfrecord", "imagefolder"), spec, records, sizes) is None  # formats
    shard.write_bytes(b"abcd")  # not the size the journal says
    assert finished(config, ("tfrecord",), spec, records, sizes) is None


@pytest.fixture
def phased(small_download: Path, tmp_path: Path) -> tuple[BuildConfig, Inputs]:
    config = BuildConfig(
        source=small_download,
        output=tmp_path / "out",
        formats=("tfrecord", "webdataset"),
        train_shards=3,
        validation_shards=1,
        shard_size=10,
        workers=1,
    )
    config.output.mkdir()
    inputs = gather(
        config, discover(small_download), InlineExecutor(), OutputState(config.output),
        load_synsets(),
    )  # fmt: skip
    return config, inputs


def test_the_phases_hand_over_typed_results(phased: tuple[BuildConfig, Inputs]) -> None:
    config, inputs = phased
    synsets = load_synsets()
    state = OutputState(config.output)
    layout = discover(config.source)
    assert list(inputs.indexes) == ["train", "validation"]
    assert inputs.boxes is not None and (config.output / "labels.txt").is_file()
    assert inputs.md5_pending == {}  # a generated download is no official archive
    journal = state.journal()
    point = resume(config, layout, inputs.indexes, synsets, state, journal)
    assert point.done == {} and point.done_images == 0
    assert point.groups == {"train": 2, "validation": 2}  # TFRecord and WebDataset counts differ
    jobs = list(shard_jobs(config, inputs, synsets, point))
    assert sum(len(j.refs) for j in jobs) == 2 * sum(len(i) for i in inputs.indexes.values())
    results = write_shards(
        config, inputs, synsets, point, InlineExecutor(), Silent(), journal, state
    )
    assert set(results) == {j.spec.name for j in jobs}
    assert set(journal.load()) == set(results)  # each shard journaled as it ended

    # A second resume point finds every shard finished, and writes none.
    again = resume(config, layout, inputs.indexes, synsets, state, journal)
    assert set(again.done) == set(results)
    assert again.done_images == sum(len(i) for i in inputs.indexes.values())
    assert list(shard_jobs(config, inputs, synsets, again)) == []

    manifest = build_manifest(config, layout, inputs, synsets, results)
    assert manifest.splits["train"]["written"] == len(inputs.indexes["train"])
    assert manifest.formats["tfrecord"]["records"] == sum(len(i) for i in inputs.indexes.values())
    result = summary(config, inputs, again, results, manifest, 0.0)
    assert (result.shards_written, result.shards_reused) == (0, len(results))


def test_large_jobs_reach_the_workers_in_files_with_the_same_shards(
    phased: tuple[BuildConfig, Inputs], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job over SPILL_IMAGES images goes to a pool worker in a local file: the shards are
    those of jobs handed over pickled, and no file is left."""
    config, inputs = phased
    synsets = load_synsets()
    layout = discover(config.source)

    def shards(out: Path, executor: Executor) -> dict[str, bytes]:
        run = replace(config, output=out)
        out.mkdir()
        state = OutputState(out)
        journal = state.journal()
        point = resume(run, layout, inputs.indexes, synsets, state, journal)
        with executor:
            write_shards(run, inputs, synsets, point, executor, Silent(), journal, state)
        assert not (state.local / PARTS_DIR / "blocks").exists()
        return {
            str(p.relative_to(out)): p.read_bytes()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.parent.name in ("tfrecord", "webdataset")
        }

    pickled = shards(tmp_path / "pickled", InlineExecutor())
    monkeypatch.setattr(shards_module, "SPILL_IMAGES", 5)
    spilled: list[str] = []
    spill = RefBlock.spill

    def counted(block: RefBlock, path: Path) -> RefBlock:
        spilled.append(path.name)
        return spill(block, path)

    monkeypatch.setattr(RefBlock, "spill", counted)
    assert shards(tmp_path / "spilled", ProcessExecutor(2)) == pickled
    assert len(spilled) >= 4 and len(pickled) >= 4


def test_a_changed_archive_strikes_its_split_from_the_journal(
    phased: tuple[BuildConfig, Inputs], tmp_path: Path
) -> None:
    config, inputs = phased
    synsets = load_synsets()
    state = OutputState(config.output)
    layout = discover(config.source)
    journal = state.journal()
    point = resume(config, layout, inputs.indexes, synsets, state, journal)
    write_shards(config, inputs, synsets, point, InlineExecutor(), Silent(), journal, state)
    val = layout.images("validation")
    assert val is not None
    stat = val.stat()
    try:
        os.utime(val, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a new download
        again = resume(config, layout, inputs.indexes, synsets, state, journal)
    finally:
        os.utime(val, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert {r.split for r in again.done.values()} == {"train"}
