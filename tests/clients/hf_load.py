"""Load an output folder with Hugging Face ``datasets.load_dataset(FOLDER)`` and nothing else.

Reads the card the build wrote (``OUT/webdataset`` or ``OUT/imagefolder``). Prints one JSON
object: the load time, and per split the row count, the feature types, the class names, the
(filename, label) pairs, and per filename the boxes, the declared size and the decoded size.
The caller sets the cache and offline variables (HF_HOME, HF_DATASETS_CACHE, HF_*_OFFLINE).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import datasets


def _row(row: dict[str, Any]) -> tuple[str, int, list[list[float]], list[int]]:
    """(filename, label, boxes, [width, height]) of a webdataset or an imagefolder row."""
    if "json" in row:  # webdataset: cls, jpg, json
        meta = row["json"]
        return meta["filename"], row["cls"], meta["boxes"], [meta["width"], meta["height"]]
    return row["filename"], row["label"], row["boxes"], [row["width"], row["height"]]


def main(folder: str) -> dict[str, Any]:
    start = time.perf_counter()
    loaded = datasets.load_dataset(folder)
    report: dict[str, Any] = {"load_seconds": round(time.perf_counter() - start, 3), "splits": {}}
    for split, ds in loaded.items():
        features = {
            name: f"ClassLabel({f.num_classes})" if isinstance(f, datasets.ClassLabel) else repr(f)
            for name, f in ds.features.items()
        }
        names = next(f.names for f in ds.features.values() if isinstance(f, datasets.ClassLabel))
        samples, boxes, sizes = [], {}, {}
        for row in ds:
            filename, label, row_boxes, size = _row(row)
            image = row["jpg"] if "jpg" in row else row["image"]
            samples.append([filename, label])
            boxes[filename] = row_boxes
            sizes[filename] = [*size, *image.size]
        report["splits"][split] = {
            "rows": len(ds),
            "features": features,
            "names": names,
            "samples": samples,
            "boxes": boxes,
            "sizes": sizes,
        }
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
