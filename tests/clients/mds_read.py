"""Read an MDS output with MosaicML's own ``streaming`` library; print one JSON object.

Runs in an environment of its own (``mosaicml-streaming`` pins an older numpy than the
project), so it imports nothing of ``imagenet_prep`` or ``tests``.

    python mds_read.py dataset OUT/mds SPLIT     # streaming.StreamingDataset
    python mds_read.py imagenet OUT/mds SPLIT    # streaming.vision.StreamingImageNet
    python mds_read.py rewrite OUT/mds SPLIT TMP # MDSWriter rewrites every shard's samples

``dataset``: every sample by global index (``get_item``, shard order) with its columns and
the SHA-256 of its ``x`` bytes, and the keys met by iterating the dataset. ``imagenet``:
(SHA-256 of ``x``, ``y``) pairs met by iterating ``StreamingImageNet``. ``rewrite``: for each
shard, whether ``MDSWriter`` fed its samples writes the same shard bytes and index entry.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PIL import Image

T = TypeVar("T")


def jpeg_bytes(image: Image.Image) -> bytes:
    """The bytes behind a decoded ``jpeg`` column: streaming opens them as BytesIO."""
    return image.fp.getvalue()  # type: ignore[union-attr]


def opened(make: Callable[[], T]) -> T:
    """``make()`` (a StreamingDataset), again when another reader started at the same moment
    took the shared-memory prefix it picked: streaming takes the first free prefix, and two
    readers that look at once pick the same one (``FileExistsError: '/000177_locals'``), as
    the test suite's two workers sometimes do."""
    for attempt in range(10):
        try:
            return make()
        except FileExistsError:
            time.sleep(0.2 * (attempt + 1))
    return make()


def read_dataset(root: str, split: str) -> dict[str, Any]:
    from streaming import StreamingDataset

    ds = opened(
        lambda: StreamingDataset(
            local=root, split=split, shuffle=False, batch_size=1, num_canonical_nodes=1
        )
    )
    samples = []
    for i in range(ds.num_samples):
        s = ds.get_item(i)
        data = jpeg_bytes(s["x"])
        samples.append(
            {
                "key": s["key"],
                "y": int(s["y"]),
                "wnid": s["wnid"],
                "text": s["text"],
                "filename": s["filename"],
                "width": int(s["width"]),
                "height": int(s["height"]),
                "boxes": s["boxes"],
                "sha256": hashlib.sha256(data).hexdigest(),
                "decoded": list(s["x"].size),
            }
        )
    iterated = [s["key"] for s in ds]
    return {"num_samples": ds.num_samples, "samples": samples, "iterated": iterated}


def read_imagenet(root: str, split: str) -> dict[str, Any]:
    from streaming.vision import StreamingImageNet

    def digest(image: Image.Image) -> str:
        return hashlib.sha256(jpeg_bytes(image)).hexdigest()

    ds = opened(
        lambda: StreamingImageNet(
            local=root, split=split, batch_size=4, num_canonical_nodes=1, transform=digest
        )
    )
    pairs = [[x, int(y)] for x, y in ds]
    return {"num_samples": ds.num_samples, "pairs": pairs}


def rewrite(root: str, split: str, tmp: str) -> dict[str, Any]:
    """Each shard's samples through MDSWriter (one shard each, as its byte limit allows)."""
    from streaming import MDSWriter, StreamingDataset

    index = json.loads((Path(root) / split / "index.json").read_text())
    ds = opened(
        lambda: StreamingDataset(
            local=root, split=split, shuffle=False, batch_size=1, num_canonical_nodes=1
        )
    )
    shards: list[dict[str, Any]] = []
    start = 0
    for n, entry in enumerate(index["shards"]):
        columns = dict(zip(entry["column_names"], entry["column_encodings"], strict=True))
        out = Path(tmp) / f"{split}-{n}"
        with MDSWriter(out=str(out), columns=columns, size_limit=entry["size_limit"]) as w:
            for i in range(start, start + entry["samples"]):
                s = ds.get_item(i)
                w.write({**s, "x": jpeg_bytes(s["x"])})
        start += entry["samples"]
        theirs = json.loads((out / "index.json").read_text())["shards"]
        mine = Path(root) / split / entry["raw_data"]["basename"]
        same_entry = (
            len(theirs) == 1
            and {
                **theirs[0],
                "raw_data": {**theirs[0]["raw_data"], "basename": entry["raw_data"]["basename"]},
            }
            == entry
        )
        same_bytes = (out / "shard.00000.mds").read_bytes() == mine.read_bytes()
        shards.append({"shard": mine.name, "same_bytes": same_bytes, "same_entry": same_entry})
    return {"shards": shards}


def main() -> None:
    mode, root, split, *rest = sys.argv[1:]
    if mode == "dataset":
        report = read_dataset(root, split)
    elif mode == "imagenet":
        report = read_imagenet(root, split)
    else:
        report = rewrite(root, split, *rest)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
