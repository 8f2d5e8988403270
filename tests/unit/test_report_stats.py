"""The report's pieces without a build: exact pixel moments, selections, summaries, tables,
the original sizes a resized build keeps, options."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imagenet_prep.errors import DataError
from imagenet_prep.labels import load_synsets
from imagenet_prep.manifest import Manifest, OriginalSizes, OutputState
from imagenet_prep.report import ReportOptions
from imagenet_prep.report import pixels as pixels_module
from imagenet_prep.report.pixels import PixelMoments, channel_histogram
from imagenet_prep.report.select import (
    contact_classes,
    draw_rank,
    key_of,
    sample_positions,
    unit_ranges,
)
from imagenet_prep.report.stats import box_heatmap, label_ranges, summary
from imagenet_prep.report.tables import checksums, timings


def _images(seed: int, count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        rng.integers(0, 256, size=(int(rng.integers(1, 40)), int(rng.integers(1, 40)), 3),
                     dtype=np.uint8)
        for _ in range(count)
    ]  # fmt: skip


def test_moments_equal_numpy_over_all_pixels_in_any_merge_order() -> None:
    images = _images(0, 50)
    whole = np.concatenate([i.reshape(-1, 3) for i in images]).astype(np.float64) / 255
    parts = [PixelMoments() for _ in range(3)]
    for n, image in enumerate(images):
        parts[n % 3].add(image)
    merged = PixelMoments()
    for part in reversed(parts):
        merged.merge(part)
    assert merged.images == 50 and merged.pixels == len(whole)
    np.testing.assert_allclose(merged.mean(), whole.mean(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(merged.std(), whole.std(axis=0), rtol=0, atol=1e-12)


def test_moments_stay_exact_where_float32_sums_would_not() -> None:
    """A constant image of 2**25 pixels: a float32 count would lose it (calcHist counts in
    float32, so a large image is counted in tiles); the moments stay exact."""
    big = np.full((4096, 8192, 3), 201, np.uint8)
    m = PixelMoments()
    m.add(big)
    m.add(np.zeros((1, 1, 3), np.uint8))
    n = 4096 * 8192 + 1
    expected = 201 * (n - 1) / (255 * n)
    assert m.mean() == pytest.approx([expected] * 3, abs=1e-15)
    var = (201**2 * (n - 1) / n - (201 * (n - 1) / n) ** 2) / 255**2
    assert m.std() == pytest.approx([var**0.5] * 3, rel=1e-12)


def test_the_two_histogram_paths_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    image = _images(1, 1)[0]
    fast = channel_histogram(image)
    monkeypatch.setattr(pixels_module, "_TILE_PIXELS", 7)  # tiles of 1 row x 7 pixels
    assert (channel_histogram(image) == fast).all()
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        channel_histogram(np.zeros((2, 2), np.uint8))


def test_empty_moments_are_nan() -> None:
    assert all(np.isnan(PixelMoments().mean()))


def test_unit_ranges_cover_every_unit_once() -> None:
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 2000, size=300)
    ranges = unit_ranges(sizes, 512)
    assert ranges[0][0] == 0 and ranges[-1][1] == 300
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(sizes[s:e].sum() >= 512 for s, e in ranges[:-1])


def test_sample_positions_are_distinct_sorted_and_seeded() -> None:
    a = sample_positions(1000, 100, 5)
    assert a is not None and len(set(a.tolist())) == 100 and (np.diff(a) > 0).all()
    assert (a == sample_positions(1000, 100, 5)).all()
    b = sample_positions(1000, 100, 6)
    assert b is not None and not (a == b).all()


def test_contact_draw_does_not_depend_on_order() -> None:
    wnids = [f"n{n:08d}" for n in range(1000)]
    assert contact_classes(wnids, 4, 1) == contact_classes(list(reversed(wnids)), 4, 1)
    keys = [f"n01440764_{n}" for n in range(100)]
    first = sorted(keys, key=lambda k: draw_rank(9, k))[:5]
    assert first == sorted(reversed(keys), key=lambda k: draw_rank(9, k))[:5]


@pytest.mark.parametrize(
    ("origin", "key"),
    [
        ("/x/ILSVRC2012_img_train.tar:n02105855.tar:n02105855_2933.JPEG", "n02105855_2933"),
        ("k.zip:ILSVRC/Data/CLS-LOC/train/n01440764/n01440764_10026.JPEG", "n01440764_10026"),
        ("/data/train/n01440764/n01440764_10026.jpeg", "n01440764_10026"),
        ("/x/val.tar:ILSVRC2012_val_00000001.JPEG", "ILSVRC2012_val_00000001"),
    ],
)
def test_key_of_an_origin(origin: str, key: str) -> None:
    assert key_of(origin) == key


def test_summary_and_heatmap() -> None:
    assert summary([]) is None
    s = summary(np.arange(101))
    assert s is not None and (s["min"], s["median"], s["max"], s["p5"]) == (0, 50, 100, 5)
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 1.0, 1.0], [0.26, 0.0, 0.3, 0.1]])
    grid = box_heatmap(boxes, 4)
    brute = np.zeros((4, 4), int)
    for x0, y0, x1, y1 in boxes:
        for row in range(4):
            for col in range(4):
                inside_x = col < np.ceil(x1 * 4) and col >= np.floor(x0 * 4)
                inside_y = row < np.ceil(y1 * 4) and row >= np.floor(y0 * 4)
                brute[row, col] += inside_x and inside_y
    assert (grid == brute).all()


def _manifest(**changes: Any) -> Manifest:
    fields: dict[str, Any] = {
        "tool": {"name": "imagenet-prep", "version": "0.1.0"},
        "created": "2026-12-06T00:00:00+00:00",
        "options": {"label_offset": 1, "formats": ["tfrecord", "webdataset"]},
        "source": {"root": "/src", "layout": "archives"},
        "splits": {
            "train": {"images": 3, "per_class": {"n01440764": 2, "n15075141": 1}},
            "test": {"images": 2},
        },
        "labels": {"file": "labels.txt", "bytes": 10, "xxh3_128": "ab"},
        "formats": {
            "tfrecord": {
                "label_offset": 1,
                "shards": [{"file": "tfrecord/train-00000-of-00001", "records": 3, "bytes": 9,
                            "xxh3_128": "cd"}],
            },
            "webdataset": {"shards": []},
        },
        "downloads": [],
        "warnings": [],
        "reencoded": [],
        "skipped": [],
    }  # fmt: skip
    fields.update(changes)
    return Manifest(**fields)


def test_label_ranges_per_format() -> None:
    ranges = label_ranges(_manifest(), load_synsets())
    assert ranges["tfrecord"]["splits"]["train"] == {"min": 1, "max": 1000, "classes": 2}
    assert ranges["tfrecord"]["splits"]["test"]["min"] == 0
    assert ranges["webdataset"]["splits"]["train"] == {"min": 0, "max": 999, "classes": 2}
    assert ranges["webdataset"]["splits"]["test"]["max"] == -1


def test_tables_of_the_build() -> None:
    assert "no timings" in timings(_manifest()).note
    record = {"seconds": {"inputs": 1.0, "shards": 2.0, "total": 3.5}, "workers": 4,
              "executor": "local", "shards_written": 1, "shards_reused": 0}  # fmt: skip
    table = timings(_manifest(timings=record))
    assert [row[0] for row in table.rows] == ["inputs", "shards", "total"]
    assert "4 workers" in table.note and "2 images/s" in table.note
    top, tfrecord, _wds = checksums(_manifest())
    assert top.rows == [("labels.txt", "", "10", "ab")]
    assert tfrecord.rows == [("tfrecord/train-00000-of-00001", "3", "9", "cd")]


def test_original_sizes_round_trip(tmp_path: Path) -> None:
    state = OutputState(tmp_path)
    state.write_sizes_part("train-00001-of-00002", OriginalSizes.of([("b", 500, 375)]))
    state.write_sizes_part("train-00000-of-00002", OriginalSizes.of([("c", 1, 2), ("a", 3, 4)]))
    assert state.read_sizes("train") is None
    shards = ["train-00000-of-00002", "train-00001-of-00002", "train-gone"]
    assert state.join_sizes("train", shards) == 3
    kept = state.read_sizes("train")
    assert kept is not None
    assert (kept.keys, kept.widths, kept.heights) == (("a", "b", "c"), (3, 500, 1), (4, 375, 2))
    state.sizes_file("validation").parent.mkdir(parents=True, exist_ok=True)
    state.sizes_file("validation").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable"):
        state.read_sizes("validation")
    # Keys an Arrow CSV reader would take for nulls or quotes stay keys; sorted as str sorts.
    odd = [("NA", 1, 1), ("null", 2, 2), ('"q"', 3, 3), ("caf\u00e9", 4, 4), ("cafe", 5, 5)]
    state.write_sizes_part("train-00000-of-00001", OriginalSizes.of(odd))
    state.write_sizes_part("train-empty", OriginalSizes.of([]))
    assert state.join_sizes("train", ["train-00000-of-00001", "train-empty"]) == 5
    kept = state.read_sizes("train")
    assert kept is not None and list(kept.keys) == sorted(k for k, _, _ in odd)
    assert kept.widths == tuple(w for _, w, _ in sorted(odd))
    (state.root / "parts" / "sizes" / "train-bad").write_bytes(b"a\t1\n")
    with pytest.raises(DataError, match="train-bad: not a shard's original sizes"):
        state.join_sizes("train", ["train-bad"])


def test_options_are_checked() -> None:
    assert ReportOptions("out", to=Path("r")).folder == Path("r")
    with pytest.raises(ValueError, match="object store"):
        ReportOptions("s3://bucket/out")
    assert ReportOptions("s3://bucket/out", to=Path("r")).folder == Path("r")
    with pytest.raises(ValueError, match="format"):
        ReportOptions("out", format="parquet")
    with pytest.raises(ValueError, match="WordNet"):
        ReportOptions("out", contact_classes=("tench",))
    with pytest.raises(ValueError, match="contact_images"):
        ReportOptions("out", contact_images=0)
    with pytest.raises(ValueError, match="workers"):
        ReportOptions("out", workers=0)
