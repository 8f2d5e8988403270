"""Real clients read the output: TensorFlow (inception feature spec), torchvision ImageFolder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from imagenet_prep import BuildConfig, build
from imagenet_prep.labels import load_synsets


@pytest.fixture(scope="module")
def prepared(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("readers") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "imagefolder"),
            train_shards=3,
            validation_shards=2,
            workers=2,
        )
    )
    return out


def test_tensorflow_reads_the_shards_like_the_inception_model(prepared: Path) -> None:
    import tensorflow as tf

    # The feature spec of research/inception/inception/image_processing.py parse_example_proto.
    spec = {
        "image/encoded": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
        "image/class/label": tf.io.FixedLenFeature([1], dtype=tf.int64, default_value=-1),
        "image/class/text": tf.io.FixedLenFeature([], dtype=tf.string, default_value=""),
        "image/object/bbox/xmin": tf.io.VarLenFeature(dtype=tf.float32),
        "image/object/bbox/ymin": tf.io.VarLenFeature(dtype=tf.float32),
        "image/object/bbox/xmax": tf.io.VarLenFeature(dtype=tf.float32),
        "image/object/bbox/ymax": tf.io.VarLenFeature(dtype=tf.float32),
        # The slim/TPU readers also use these.
        "image/height": tf.io.FixedLenFeature([], tf.int64),
        "image/width": tf.io.FixedLenFeature([], tf.int64),
        "image/class/synset": tf.io.FixedLenFeature([], tf.string),
        "image/filename": tf.io.FixedLenFeature([], tf.string),
        "image/format": tf.io.FixedLenFeature([], tf.string),
    }
    synsets = load_synsets()
    files = sorted(str(p) for p in (prepared / "tfrecord").glob("*-of-*"))
    seen = 0
    boxed = 0
    for serialized in tf.data.TFRecordDataset(files):
        ex = tf.io.parse_single_example(serialized, spec)
        image = tf.io.decode_jpeg(ex["image/encoded"], channels=3)
        assert image.shape[2] == 3
        assert image.shape[0] == int(ex["image/height"])
        assert image.shape[1] == int(ex["image/width"])
        label = int(ex["image/class/label"][0])
        synset = ex["image/class/synset"].numpy().decode()
        assert label == synsets.index(synset) + 1
        assert ex["image/format"].numpy() == b"JPEG"
        # Boxes as the inception input pipeline builds them, then a bbox-aware crop.
        coords = [
            tf.expand_dims(ex[f"image/object/bbox/{k}"].values, 0)
            for k in ("ymin", "xmin", "ymax", "xmax")
        ]
        bbox = tf.expand_dims(tf.transpose(tf.concat(coords, 0), [1, 0]), 0)
        if int(tf.size(bbox)) > 0:
            boxed += 1
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
            assert crop.shape[2] == 3 and crop.shape[0] > 0 and crop.shape[1] > 0
        seen += 1
    manifest_total = sum(
        1 for _ in tf.data.TFRecordDataset(files)
    )  # count again independently of parsing
    assert seen == manifest_total > 0
    assert boxed > 0


def test_torchvision_imagefolder_loads_the_folders(prepared: Path, small_download: Path) -> None:
    from torchvision.datasets import ImageFolder

    train = ImageFolder(str(prepared / "imagefolder" / "train"))
    val = ImageFolder(str(prepared / "imagefolder" / "val"))
    wnids = sorted(p.name for p in (prepared / "imagefolder" / "train").iterdir())
    assert train.classes == wnids
    assert len(train.classes) == len(val.classes) == len(wnids) > 1
    import json

    manifest = json.loads((prepared / "manifest.json").read_text())
    assert len(train) == manifest["splits"]["train"]["images"]
    assert len(val) == manifest["splits"]["validation"]["images"]
    for index in range(0, len(train), max(1, len(train) // 10)):
        image, target = train[index]
        image = image.convert("RGB")
        assert image.size[0] > 0 and 0 <= target < len(wnids)
