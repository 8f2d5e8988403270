#!/usr/bin/env python3
"""The reference scripts' per-image work, as a baseline.

The build flow of tensorflow/models research/inception.

    python bench/baseline_reference.py TREE OUT [--threads 2]

TREE is an extracted download in the reference scripts' raw-data layout (train/<wnid>/*.JPEG,
validation/<wnid>/*.JPEG, bounding_boxes/<wnid>/*.xml), as the reference scripts' recipe leaves it
after its extraction step (not timed here). This does what process_bounding_boxes.py and
build_imagenet_data.py do, the same way: the box CSV by ElementTree; then, with N threads
over contiguous ranges of a shuffled list, for every image: read the file, re-encode it if
its name is on the reference scripts' CMYK/PNG lists, decode it fully with TensorFlow to learn
its size,
build a tf.train.Example object and serialize it into a tf.io.TFRecordWriter shard (1024
train + 128 validation shards). It prints the seconds and images/s as JSON.
"""

from __future__ import annotations

import glob
import json
import os
import random
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import tensorflow as tf

from imagenet_prep.imagefix import KNOWN_CMYK_TRAIN, KNOWN_PNG_TRAIN
from imagenet_prep.labels import load_synsets

CMYK = set(KNOWN_CMYK_TRAIN) | {"ILSVRC2012_val_00019877.JPEG"}


def box_csv(tree: Path, out: Path, synsets: set[str]) -> dict[str, list[list[float]]]:
    """process_bounding_boxes.py: one line per kept box; returns the boxes by image name."""

    def item(root: ET.Element, name: str, index: int = 0) -> str | None:
        for i, found in enumerate(root.iter(name)):
            if i == index:
                return found.text
        return None

    boxes: dict[str, list[list[float]]] = {}
    lines = []
    for path in sorted(glob.glob(str(tree / "bounding_boxes" / "*" / "*.xml"))):
        label = os.path.basename(os.path.dirname(path))
        if label not in synsets:
            continue
        root = ET.parse(path).getroot()
        width = float(item(root, "width") or 1)
        height = float(item(root, "height") or 1)
        name = item(root, "name")
        index = 0
        stem = os.path.splitext(os.path.basename(path))[0]
        while item(root, "xmin", index) is not None:
            coords = [
                int(float(item(root, k, index) or 0)) for k in ("xmin", "ymin", "xmax", "ymax")
            ]
            xmin, xmax = sorted((coords[0] / width, coords[2] / width))
            ymin, ymax = sorted((coords[1] / height, coords[3] / height))
            box = [min(max(v, 0.0), 1.0) for v in (xmin, ymin, xmax, ymax)]
            index += 1
            if name != label and name in synsets:
                continue
            if box[0] >= box[2] or box[1] >= box[3]:
                continue
            line = f"{stem}.JPEG,{box[0]:.4f},{box[1]:.4f},{box[2]:.4f},{box[3]:.4f}"
            lines.append(line)
            boxes.setdefault(f"{stem}.JPEG", []).append([float(v) for v in line.split(",")[1:]])
    out.write_text("".join(line + "\n" for line in lines))
    return boxes


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _ints(values: list[int]) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=values))


def _floats(values: list[float]) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=values))


def example(path: str, label: int, synset: str, text: str, boxes: list[list[float]]) -> bytes:
    """_process_image + _convert_to_example of build_imagenet_data.py."""
    with open(path, "rb") as f:
        data = f.read()
    name = os.path.basename(path)
    if name in KNOWN_PNG_TRAIN:
        data = tf.io.encode_jpeg(tf.io.decode_png(data, channels=3), quality=100).numpy()
    elif name in CMYK:
        data = tf.io.encode_jpeg(tf.io.decode_jpeg(data, channels=0), quality=100).numpy()
    # The reference scripts decode every image for its size.
    image = tf.io.decode_jpeg(data, channels=3)
    height, width = int(image.shape[0]), int(image.shape[1])
    cols = list(zip(*boxes, strict=True)) if boxes else [[], [], [], []]
    feature = {
        "image/height": _ints([height]),
        "image/width": _ints([width]),
        "image/colorspace": _bytes(b"RGB"),
        "image/channels": _ints([3]),
        "image/class/label": _ints([label]),
        "image/class/synset": _bytes(synset.encode()),
        "image/class/text": _bytes(text.encode()),
        "image/object/bbox/xmin": _floats(list(cols[0])),
        "image/object/bbox/xmax": _floats(list(cols[2])),
        "image/object/bbox/ymin": _floats(list(cols[1])),
        "image/object/bbox/ymax": _floats(list(cols[3])),
        "image/object/bbox/label": _ints([label] * len(boxes)),
        "image/format": _bytes(b"JPEG"),
        "image/filename": _bytes(name.encode()),
        "image/encoded": _bytes(data),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_split(
    name: str,
    files: list[tuple[str, str]],
    shards: int,
    threads: int,
    out: Path,
    boxes: dict[str, list[list[float]]],
) -> None:
    """_process_image_files: threads over contiguous ranges, each writing its shards."""
    synsets = load_synsets()
    order = list(range(len(files)))
    random.seed(12345)
    random.shuffle(order)
    files = [files[i] for i in order]
    spacing = np.linspace(0, len(files), threads + 1).astype(int)
    errors: list[BaseException] = []

    def batch(thread: int) -> None:
        try:
            per_thread = shards // threads
            edges = np.linspace(spacing[thread], spacing[thread + 1], per_thread + 1).astype(int)
            for s in range(per_thread):
                shard = thread * per_thread + s
                path = out / f"{name}-{shard:05d}-of-{shards:05d}"
                with tf.io.TFRecordWriter(str(path)) as writer:
                    for i in range(edges[s], edges[s + 1]):
                        file, wnid = files[i]
                        label = synsets.index(wnid) + 1
                        writer.write(
                            example(
                                file,
                                label,
                                wnid,
                                synsets.text(wnid),
                                boxes.get(os.path.basename(file), []),
                            )
                        )
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=batch, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if errors:
        raise errors[0]


def main() -> int:
    tree, out = Path(sys.argv[1]), Path(sys.argv[2])
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else 2
    out.mkdir(parents=True, exist_ok=True)
    synsets = set(load_synsets().wnids)
    start = time.perf_counter()
    boxes = box_csv(tree, out / "imagenet_2012_bounding_boxes.csv", synsets)
    counts = {}
    for split, shards in (("train", 1024), ("validation", 128)):
        files = [
            (path, os.path.basename(os.path.dirname(path)))
            for path in sorted(glob.glob(str(tree / split / "*" / "*.JPEG")))
        ]
        counts[split] = len(files)
        write_split(split, files, shards, threads, out, boxes if split == "train" else {})
    seconds = time.perf_counter() - start
    images = sum(counts.values())
    print(json.dumps({"seconds": seconds, "images": images, "images_per_s": images / seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
