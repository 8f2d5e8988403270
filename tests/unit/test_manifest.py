"""The output's bookkeeping folder: typed journal lines, recorded options and sources."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imagenet_prep.manifest import (
    OutputState,
    RecordedOptions,
    RecordedSources,
    ShardResult,
)

RESULT = ShardResult(
    shard="train-00000-of-00002",
    split="train",
    images=3,
    bytes_in=300,
    reencoded=[["a.JPEG", "cmyk"]],
    skipped=[],
    outputs={"tfrecord": {"file": "tfrecord/train-00000-of-00002", "bytes": 10}},
)


def test_journal_lines_round_trip_and_foreign_lines_are_ignored(tmp_path: Path) -> None:
    journal = OutputState(tmp_path).journal()
    journal.extend([RESULT])
    journal.close()
    with open(journal.path, "a", encoding="utf-8") as f:
        f.write(json.dumps({**RESULT.to_record(), "shard": "x", "images": "3"}) + "\n")  # a str
        f.write(json.dumps({"shard": "y", "split": "train"}) + "\n")  # fields missing
        f.write('{"shard": "torn", "spl')  # a torn last line
    assert journal.load() == {RESULT.shard: RESULT}
    journal.extend([RESULT.__class__(**{**RESULT.to_record(), "shard": "z"})])
    journal.close()
    assert sorted(journal.load()) == [RESULT.shard, "z"]
    journal.forget(lambda r: r.shard == "z")
    assert list(journal.load()) == [RESULT.shard]


def test_recorded_options_name_what_differs() -> None:
    now = RecordedOptions({"seed": 1, "formats": ["tfrecord"]}, {"a.tar": 10})
    assert now.differences(RecordedOptions.from_json(now.to_json())) == []
    earlier = RecordedOptions({"seed": 2, "formats": ["tfrecord"], "gone": 1}, {"a.tar": 11})
    assert now.differences(earlier) == ["gone", "seed", "source_archives"]
    assert RecordedOptions.from_json({"seed": 1}) is None  # no archives: not a record
    assert now.differences(None) == ["formats", "seed", "source_archives"]


def test_the_state_folder_reads_what_it_wrote(tmp_path: Path) -> None:
    state = OutputState(tmp_path)
    assert state.read_options() is None and state.read_sources().splits == {}
    assert state.holds_only_lock()
    options = RecordedOptions({"seed": 1}, {"a.tar": 10})
    state.write_options(options)
    assert state.read_options() == options
    sources = RecordedSources({"train": (("a.tar", 10, 123),)})
    state.write_sources(sources)
    assert state.read_sources() == sources
    state.record_outputs(["tfrecord/x", "labels.txt"])
    assert state.read_outputs() == ["tfrecord/x", "labels.txt"]
    state.record_foreign(["mine.txt"])
    assert state.read_foreign() == ["mine.txt"]
    (state.root / "options.json").write_text("{not json")
    assert state.read_options() == RecordedOptions({}, {})  # unreadable: matches nothing
    part = state.part_file("imagefolder", "train-0.jsonl")
    part.parent.mkdir(parents=True)
    part.write_text("{}")
    state.remove_parts()
    assert not part.exists()
    with state.lock():
        assert not state.holds_only_lock()
        state.clear()
        assert state.holds_only_lock()


def test_a_manifest_round_trips_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    from imagenet_prep.errors import DataError
    from imagenet_prep.manifest import Manifest, read_manifest, write_manifest

    manifest = Manifest(
        tool={"name": "imagenet-prep"},
        created="2026-12-06T00:00:00+00:00",
        options={"formats": ["tfrecord"]},
        source={"root": "/src", "archives": []},
        splits={"train": {"images": 1}},
        labels={"file": "labels.txt"},
        formats={"tfrecord": {"shards": []}},
        downloads=[],
        warnings=[],
        reencoded=[],
        skipped=[],
    )
    write_manifest(tmp_path, manifest)
    data = json.loads((tmp_path / "manifest.json").read_text())
    assert "bounding_boxes" not in data and data["format_version"] == 1
    assert read_manifest(tmp_path) == manifest
    data["splits"] = []
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(
        DataError, match=r"manifest.json: damaged manifest \('splits' is not a dict\)"
    ):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(DataError, match="not an imagenet-prep manifest"):
        read_manifest(tmp_path)
