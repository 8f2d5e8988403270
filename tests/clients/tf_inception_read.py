"""Read TFRecord shards with TensorFlow exactly as the inception/slim models do; print a report."""

from __future__ import annotations

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf

# The feature spec of research/inception/inception/image_processing.py parse_example_proto,
# plus the fields the slim and TPU readers use.
SPEC = {
    "image/encoded": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
    "image/class/label": tf.io.FixedLenFeature([1], dtype=tf.int64, default_value=-1),
    "image/class/text": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
    "image/object/bbox/xmin": tf.io.VarLenFeature(dtype=tf.float32),
    "image/object/bbox/ymin": tf.io.VarLenFeature(dtype=tf.float32),
    "image/object/bbox/xmax": tf.io.VarLenFeature(dtype=tf.float32),
    "image/object/bbox/ymax": tf.io.VarLenFeature(dtype=tf.float32),
    "image/object/bbox/label": tf.io.VarLenFeature(dtype=tf.int64),
    "image/height": tf.io.FixedLenFeature([], tf.int64),
    "image/width": tf.io.FixedLenFeature([], tf.int64),
    "image/channels": tf.io.FixedLenFeature([], tf.int64),
    "image/colorspace": tf.io.FixedLenFeature([], tf.string),
    "image/class/synset": tf.io.FixedLenFeature([], tf.string),
    "image/filename": tf.io.FixedLenFeature([], tf.string),
    "image/format": tf.io.FixedLenFeature([], tf.string),
}


def main(files: list[str]) -> dict[str, object]:
    records = []
    for serialized in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(serialized, SPEC)
        image = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
        # Boxes as the inception input pipeline builds them, then its bbox-aware crop.
        coords = [
            tf.expand_dims(ex[f"image/object/bbox/{k}"].values, 0)
            for k in ("ymin", "xmin", "ymax", "xmax")
        ]
        bbox = tf.expand_dims(tf.transpose(tf.concat(coords, 0), [1, 0]), 0)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(image),
            bounding_boxes=bbox,
            min_object_covered=0.1,
            aspect_ratio_range=[0.75, 1.33],
            area_range=[0.05, 1.0],
            max_attempts=100,
            use_image_if_no_bounding_boxes=True,
            seed=1,
        )
        crop = tf.slice(image, begin, size)
        records.append(
            {
                "filename": ex["image/filename"].numpy().decode(),
                "synset": ex["image/class/synset"].numpy().decode(),
                "label": int(ex["image/class/label"][0]),
                "text": ex["image/class/text"].numpy().decode(),
                "shape": [int(d) for d in image.shape],
                "height": int(ex["image/height"]),
                "width": int(ex["image/width"]),
                "channels": int(ex["image/channels"]),
                "colorspace": ex["image/colorspace"].numpy().decode(),
                "format": ex["image/format"].numpy().decode(),
                "boxes": [
                    [float(v) for v in ex[f"image/object/bbox/{k}"].values.numpy()]
                    for k in ("xmin", "ymin", "xmax", "ymax")
                ],
                "box_labels": [int(v) for v in ex["image/object/bbox/label"].values.numpy()],
                "crop": [int(d) for d in crop.shape],
            }
        )
    return {"records": records}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
