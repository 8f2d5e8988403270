"""The numbers of the report, from a split's scan and the manifest: counts per class, size
summaries, boxes, pixel moments, label ranges. JSON-ready dicts (``stats.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..labels import Synsets
from ..manifest import Manifest, OriginalSizes
from .scan import SplitScan

# The box heat map's grid over the normalized image (cells per side).
HEATMAP = 64
# Classes named at each end of the sorted counts.
NAMED = 5

# What each format calls its label, and how its numbers relate to the 0-based class index.
_LABEL_FIELDS = {
    "tfrecord": "image/class/label",
    "webdataset": ".cls",
    "mds": "y",
    "imagefolder": "class folder",
}


def summary(values: np.ndarray | Sequence[float]) -> dict[str, float] | None:
    """Min, 5th percentile, median, mean, 95th percentile and max; None for no values.

    >>> summary(np.array([1, 2, 3, 4]))
    {'min': 1.0, 'p5': 1.15, 'median': 2.5, 'mean': 2.5, 'p95': 3.85, 'max': 4.0}
    """
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return None
    p5, median, p95 = np.percentile(array, [5, 50, 95])
    return {
        "min": float(array.min()),
        "p5": round(float(p5), 4),
        "median": round(float(median), 4),
        "mean": round(float(array.mean()), 4),
        "p95": round(float(p95), 4),
        "max": float(array.max()),
    }


def common_sizes(widths: np.ndarray, heights: np.ndarray, top: int = 5) -> list[list[int]]:
    """The ``top`` most frequent ``[width, height, images]``, most frequent first.

    >>> common_sizes(np.array([500, 500, 375]), np.array([375, 375, 500]))
    [[500, 375, 2], [375, 500, 1]]
    """
    if widths.size == 0:
        return []
    codes = widths.astype(np.int64) << 32 | heights.astype(np.int64)
    values, counts = np.unique(codes, return_counts=True)
    order = np.lexsort((values, -counts))[:top]
    return [[int(values[i] >> 32), int(values[i] & 0xFFFFFFFF), int(counts[i])] for i in order]


def box_heatmap(boxes: np.ndarray, cells: int = HEATMAP) -> np.ndarray:
    """How many boxes cover each cell of a ``cells`` x ``cells`` grid over the normalized
    image (rows top to bottom); a box covers the cells it touches.

    >>> box_heatmap(np.array([[0.0, 0.0, 0.5, 0.5]]), 2).tolist()
    [[1, 0], [0, 0]]
    """
    grid = np.zeros((cells + 1, cells + 1), np.int64)
    if len(boxes):
        b = np.clip(np.asarray(boxes, np.float64), 0.0, 1.0)
        x0 = np.minimum(np.floor(b[:, 0] * cells), cells - 1).astype(np.int64)
        y0 = np.minimum(np.floor(b[:, 1] * cells), cells - 1).astype(np.int64)
        x1 = np.maximum(np.ceil(b[:, 2] * cells).astype(np.int64), x0 + 1)
        y1 = np.maximum(np.ceil(b[:, 3] * cells).astype(np.int64), y0 + 1)
        np.add.at(grid, (y0, x0), 1)  # a 2-D difference array: corners, then running sums
        np.add.at(grid, (y0, x1), -1)
        np.add.at(grid, (y1, x0), -1)
        np.add.at(grid, (y1, x1), 1)
    return grid.cumsum(axis=0).cumsum(axis=1)[:cells, :cells]


def class_counts(scan: SplitScan, synsets: Synsets) -> dict[str, int]:
    """Images per class as read, by wnid, in label order (classes with images only)."""
    labels = scan.labels[scan.labels >= 0]
    counts = np.bincount(labels, minlength=len(synsets.wnids))
    return {synsets.wnids[i]: int(n) for i, n in enumerate(counts) if n}


def ends(counts: dict[str, int], synsets: Synsets, named: int = NAMED) -> dict[str, Any]:
    """The smallest and largest classes, ``[wnid, name, images]`` (ties by wnid)."""
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    largest = sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def named_rows(rows: list[tuple[str, int]]) -> list[list[Any]]:
        return [[wnid, synsets.text(wnid), n] for wnid, n in rows[:named]]

    return {"smallest": named_rows(ordered), "largest": named_rows(largest)}


def sizes(widths: np.ndarray, heights: np.ndarray, nbytes: np.ndarray | None) -> dict[str, Any]:
    ok = (widths > 0) & (heights > 0)
    w, h = widths[ok], heights[ok]
    entry: dict[str, Any] = {
        "width": summary(w),
        "height": summary(h),
        "aspect": summary(w / h) if w.size else None,
        "megapixels": summary(w.astype(np.float64) * h / 1e6) if w.size else None,
        "common": common_sizes(w, h),
        "distinct": int(np.unique(w.astype(np.int64) << 32 | h).size),
    }
    if nbytes is not None:
        entry["bytes"] = summary(nbytes)
        entry["total_bytes"] = int(nbytes.sum())
    return entry


def boxes(scan: SplitScan) -> dict[str, Any] | None:
    """What the split's records say of boxes; None when they carry none."""
    if not len(scan.boxes):
        return None
    b = scan.boxes.astype(np.float64)
    width, height = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    per_image = np.bincount(scan.nboxes)
    return {
        "images_with_boxes": int((scan.nboxes > 0).sum()),
        "boxes": len(b),
        "per_image": {str(n): int(c) for n, c in enumerate(per_image) if n and c},
        "area": summary(width * height),
        "width": summary(width),
        "height": summary(height),
        "center_x": summary((b[:, 0] + b[:, 2]) / 2),
        "center_y": summary((b[:, 1] + b[:, 3]) / 2),
        "heatmap": box_heatmap(b).tolist(),
    }


def pixels(scan: SplitScan, sample: int | None, seed: int) -> dict[str, Any] | None:
    """Per-channel mean and std in [0, 1] (RGB), and how they were counted."""
    if scan.moments is None:
        return None
    m = scan.moments
    return {
        "mean": [round(v, 6) for v in m.mean()],
        "std": [round(v, 6) for v in m.std()],
        "images": m.images,
        "pixels": m.pixels,
        "exact": sample is None or sample >= len(scan),
        "sample": None if sample is None or sample >= len(scan) else sample,
        "seed": seed if sample is not None and sample < len(scan) else None,
        "histogram": m.histogram.tolist(),
    }


def split_stats(
    scan: SplitScan,
    synsets: Synsets,
    manifest: Manifest,
    originals: OriginalSizes | None,
    sample: int | None,
    seed: int,
) -> tuple[dict[str, Any], list[str]]:
    """A split's entry of ``stats.json``, and the disagreements with the manifest found."""
    problems: list[str] = []
    entry: dict[str, Any] = {"images": len(scan)}
    recorded = manifest.splits.get(scan.split, {})
    if recorded.get("written", recorded.get("images")) != len(scan):
        problems.append(
            f"{scan.split}: {len(scan):,} images read, the manifest says "
            f"{recorded.get('written', recorded.get('images'))}"
        )
    if scan.split != "test":
        counts = class_counts(scan, synsets)
        entry["classes"] = len(counts)
        entry["per_class"] = counts
        entry.update(ends(counts, synsets))
        if "per_class" in recorded and not recorded.get("skipped"):
            differ = sorted(
                w
                for w in counts.keys() | recorded["per_class"].keys()
                if counts.get(w, 0) != recorded["per_class"].get(w, 0)
            )
            if differ:
                problems.append(
                    f"{scan.split}: the images per class differ from the manifest's for "
                    f"{len(differ)} classes ({', '.join(differ[:5])})"
                )
    entry["sizes"] = sizes(scan.widths, scan.heights, scan.nbytes)
    if originals is not None:
        o_w = np.asarray(originals.widths, np.int64)
        o_h = np.asarray(originals.heights, np.int64)
        entry["original_sizes"] = {"images": len(originals), **sizes(o_w, o_h, None)}
    box_entry = boxes(scan)
    if box_entry is not None:
        entry["boxes"] = box_entry
    pixel_entry = pixels(scan, sample, seed)
    if pixel_entry is not None:
        entry["pixels"] = pixel_entry
    return entry, problems


def split_order(split: str) -> int:
    """Splits in the order people read them: train, validation, test."""
    order = ("train", "validation", "test")
    return order.index(split) if split in order else len(order)


def label_ranges(manifest: Manifest, synsets: Synsets) -> dict[str, dict[str, Any]]:
    """Per format and split: the field that holds the label and its lowest and highest value
    as stored, from the classes the manifest lists."""
    out: dict[str, dict[str, Any]] = {}
    offset = int(manifest.options.get("label_offset", 1))
    for fmt, section in manifest.formats.items():
        if fmt not in _LABEL_FIELDS:
            continue
        shift = int(section.get("label_offset", offset)) if fmt == "tfrecord" else 0
        splits: dict[str, Any] = {}
        for split, entry in sorted(manifest.splits.items(), key=lambda item: split_order(item[0])):
            if split == "test":
                splits[split] = {"min": shift - 1, "max": shift - 1, "classes": 0}
                continue
            indices = sorted(synsets.index(w) for w in entry.get("per_class", {}))
            if not indices:
                continue
            splits[split] = {
                "min": indices[0] + shift,
                "max": indices[-1] + shift,
                "classes": len(indices),
            }
        out[fmt] = {"field": _LABEL_FIELDS[fmt], "offset": shift, "splits": splits}
    return out
