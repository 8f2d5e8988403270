"""Run the ``tf.data`` loader over a build; print what it delivered as JSON.

Usage: ``python -m tests.clients.loaders_tf OUT``. Reports, per split and transform, every
(key, label, shape) in order; the keys each of two ranks got; and how far the eval crops
are from the framework-free loader's (same region, a different resize filter).
"""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np

from imagenet_prep.loaders import iterate
from imagenet_prep.loaders.tf import dataset


def main(root: str) -> dict[str, object]:
    report: dict[str, object] = {}
    for split in ("train", "validation"):
        for transform in (None, "train", "train-inception", "eval"):
            ds = dataset(root, split, transform=transform, image_size=40, with_keys=True, seed=1)
            report[f"{split}/{transform}"] = [
                [key.numpy().decode(), int(label), [int(d) for d in image.shape], image.dtype.name]
                for image, label, key in ds
            ]
    report["ranks"] = [
        [
            key.numpy().decode()
            for _, _, key in dataset(root, "train", rank=r, world_size=2, with_keys=True)
        ]
        for r in range(2)
    ]
    batches = dataset(root, "train", transform="train", image_size=40, batch_size=16)
    report["batches"] = [
        [list(map(int, im.shape)), im.dtype.name, lb.dtype.name] for im, lb in batches
    ]
    ours = {
        key: image for image, _, key in iterate(root, "validation", transform="eval", image_size=64)
    }
    diffs = [
        float(np.abs(image.numpy().astype(int) - ours[key.numpy().decode()].astype(int)).mean())
        for image, _, key in dataset(
            root, "validation", transform="eval", image_size=64, with_keys=True
        )
    ]
    report["eval_diff"] = max(diffs)
    return report


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
