"""A ``tf.data`` pipeline over the TFRecords: the inception feature spec, the loaders' crops.

The rank's share and the shard order are the framework-free loader's (``order.py``): the
same ranks get the same images for the same (seed, epoch). Records are read in that order,
shuffled through ``tf.data``'s buffer (so the order within a rank differs from the PyTorch
loader's; the images and labels do not), parsed as the inception models parse them, and
cropped while decoding (``decode_and_crop_jpeg``). Random crops use stateless ops seeded by
(seed, epoch, position), so a pipeline is reproducible. Labels are 0-based whatever
``--label-offset`` the records were built with; the test split's are -1 (no class: its
records hold ``--label-offset`` - 1).

A build in an object store (``s3://bucket/out``) is read by the package's own reader with
read-ahead (``readers/remote.py``) through ``Dataset.from_generator``: TensorFlow's own file
systems no longer read ``s3://`` without tensorflow-io, and this needs no such plugin. The
records, their order and everything after are the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..formats.tfrecord.reader import TFRecordReader
from ..formats.tfrecord.spec import (
    BOX,
    BOX_LABEL,
    ENCODED,
    FEATURES,
    FILENAME,
    HEIGHT,
    LABEL,
    SYNSET,
    TEXT,
    WIDTH,
    XMAX,
    XMIN,
    YMAX,
    YMIN,
    BytesList,
    FloatList,
    Int64List,
)
from ..storage import as_location
from .options import LoaderConfig, ReadOptions, accept
from .order import consumer_range, locate, unit_order

if TYPE_CHECKING:
    from typing import Unpack  # Python 3.11


def _tf() -> Any:
    """TensorFlow, imported when a pipeline is built (never when this module is imported)."""
    try:
        import tensorflow
    except ImportError as exc:
        raise ImportError(
            "imagenet_prep.loaders.tf needs TensorFlow: pip install 'imagenet-prep[tensorflow]'"
        ) from exc
    return tensorflow


# research/inception's ``parse_example_proto`` features, and the others slim reads.
PARSED = (ENCODED, LABEL, TEXT, SYNSET, FILENAME, HEIGHT, WIDTH, *BOX, BOX_LABEL)


def feature_spec() -> dict[str, Any]:
    """The ``parse_single_example`` spec of ``PARSED``, typed as ``tfrecord_io.FEATURES``.

    One value per record is a ``FixedLenFeature`` (missing: inception's -1 for the label,
    else empty or 0), one per box a ``VarLenFeature``.
    """
    tf = _tf()
    dtypes = {BytesList: tf.string, Int64List: tf.int64, FloatList: tf.float32}
    spec = {}
    for name in PARSED:
        feature = FEATURES[name]
        dtype = dtypes[feature.kind]
        if feature.per_box:
            spec[name] = tf.io.VarLenFeature(dtype)
        else:
            default = -1 if name == LABEL else "" if feature.kind is BytesList else 0
            spec[name] = tf.io.FixedLenFeature([], dtype, default_value=default)
    return spec


def rank_segments(
    reader: TFRecordReader, config: LoaderConfig, epoch: int
) -> tuple[list[str], list[int], list[int], int]:
    """(file, first record, record count) of each piece of the config's rank's share, and
    its start."""
    sizes = reader.sizes
    order = unit_order(len(sizes), config.seed, epoch, bool(config.shuffle))
    ordered = sizes[order]
    cumulative = ordered.cumsum()
    total = int(sizes.sum())
    lo, hi = consumer_range(total, config.consumer(), config.balance)
    files: list[str] = []
    skips: list[int] = []
    takes: list[int] = []
    v = lo
    while v < hi:
        index, record = locate(cumulative, v % total)
        take = min(int(ordered[index]) - record, hi - v)
        files.append(reader.files[int(order[index])])
        skips.append(record)
        takes.append(take)
        v += take
    return files, skips, takes, lo


def _store_records(
    reader: TFRecordReader, files: list[str], skips: list[int], takes: list[int]
) -> Any:
    """The serialized records of the pieces, read from an object store by ``reader``."""
    tf = _tf()
    units = {name: unit for unit, name in enumerate(reader.files)}

    def records() -> Iterator[bytes]:
        for name, skip, take in zip(files, skips, takes, strict=True):
            for _, data in reader.records(units[name], skip, skip + take):
                yield bytes(data)

    return tf.data.Dataset.from_generator(
        records, output_signature=tf.TensorSpec(shape=(), dtype=tf.string)
    )


def _crop_window(
    features: dict[str, Any], transform: str, image_size: int, seed: Any
) -> tuple[Any, Any]:
    """(offset_y, offset_x, height, width) to decode, and whether to flip."""
    tf = _tf()
    encoded = features[ENCODED]
    shape = tf.io.extract_jpeg_shape(encoded)
    height, width = shape[0], shape[1]
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    flip = tf.random.stateless_uniform([], seed=flip_seed) < 0.5
    if transform == "eval":
        resize = round(image_size / 0.875)
        short = tf.minimum(height, width)
        side = tf.cast(tf.round(tf.cast(short, tf.float64) * image_size / resize), tf.int32)
        side = tf.clip_by_value(side, 1, short)
        top = tf.cast(tf.round(tf.cast(height - side, tf.float64) / 2), tf.int32)
        left = tf.cast(tf.round(tf.cast(width - side, tf.float64) / 2), tf.int32)
        return tf.stack([top, left, side, side]), tf.constant(False)
    if transform == "train-inception":
        boxes = tf.stack(
            [
                tf.sparse.to_dense(features[k])
                for k in (YMIN, XMIN, YMAX, XMAX)  # the order of TensorFlow's boxes
            ],
            axis=1,
        )[tf.newaxis]
        options = {
            "min_object_covered": 0.1,
            "aspect_ratio_range": (0.75, 1.33),
            "area_range": (0.05, 1.0),
            "max_attempts": 100,
        }
    else:  # "train": RandomResizedCrop's ranges over the whole image
        boxes = tf.constant([[[0.0, 0.0, 1.0, 1.0]]])
        options = {
            "min_object_covered": 0.0,
            "aspect_ratio_range": (3 / 4, 4 / 3),
            "area_range": (0.08, 1.0),
            "max_attempts": 10,
        }
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        shape, bounding_boxes=boxes, seed=crop_seed, use_image_if_no_bounding_boxes=True, **options
    )
    return tf.stack([begin[0], begin[1], size[0], size[1]]), flip


def _parse(
    serialized: Any,
    position: Any,
    *,
    config: LoaderConfig,
    epoch: int,
    label_offset: int,
    with_keys: bool,
) -> tuple[Any, ...]:
    tf = _tf()
    features = tf.io.parse_single_example(serialized, feature_spec())
    label = features[LABEL] - label_offset
    transform, image_size = config.transform, config.image_size
    if transform is None:
        image = tf.io.decode_jpeg(features[ENCODED], channels=3)
    else:
        op_seed = tf.stack([tf.constant(config.seed, tf.int64), epoch * (1 << 32) + position])
        window, flip = _crop_window(features, transform, image_size, op_seed)
        image = tf.io.decode_and_crop_jpeg(features[ENCODED], window, channels=3)
        image = tf.image.resize(image, [image_size, image_size], antialias=True)
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
        image = tf.cond(flip, lambda: tf.image.flip_left_right(image), lambda: image)
    if not with_keys:
        return image, label
    key = tf.strings.regex_replace(features[FILENAME], r"\.[^.]*$", "")
    return image, label, key


def dataset(
    root: str | Path,
    split: str,
    *,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    batch_size: int | None = None,
    drop_remainder: bool = False,
    num_parallel_calls: int | None = None,
    with_keys: bool = False,
    **options: Unpack[ReadOptions],
) -> Any:
    """A ``tf.data.Dataset`` of ``(image uint8 HxWx3, label int64)`` (and ``key`` with keys).

    One rank's share of one epoch: build a new one per epoch (``epoch`` changes the shard
    order, the shuffle and the crops). The options (``transform``, ``image_size``,
    ``seed``, ``shuffle``, ``buffer_size``, ``balance``) are :class:`LoaderConfig`'s, with
    its defaults. ``num_parallel_calls`` defaults to AUTOTUNE.
    """
    accept(options, ReadOptions, "dataset")
    config = LoaderConfig(
        as_location(root),
        split,
        format="tfrecord",
        rank=rank,
        world_size=world_size,
        batch_size=batch_size,
        drop_last=drop_remainder,
        **options,
    )
    return _pipeline(config, epoch, num_parallel_calls, with_keys)


def _pipeline(
    config: LoaderConfig, epoch: int, num_parallel_calls: int | None, with_keys: bool
) -> Any:
    tf = _tf()
    reader = config.open_reader()
    if not isinstance(reader, TFRecordReader):  # pragma: no cover - the config's format
        raise TypeError("expected a TFRecord reader")
    files, skips, takes, start = rank_segments(reader, config, epoch)
    if reader.remote:
        records = _store_records(reader, files, skips, takes)
    else:
        pieces = tf.data.Dataset.from_tensor_slices(
            (
                tf.constant(files, tf.string),
                tf.constant(skips, tf.int64),
                tf.constant(takes, tf.int64),
            )
        )
        records = pieces.flat_map(
            lambda f, s, t: tf.data.TFRecordDataset(f, buffer_size=1 << 20).skip(s).take(t)
        )
    # Keras then knows the steps.
    records = records.apply(tf.data.experimental.assert_cardinality(sum(takes)))
    # Positions in the epoch's sequence seed each image's crop, as in the PyTorch loader.
    ds = tf.data.Dataset.zip((records, tf.data.Dataset.range(start, 1 << 62)))
    if config.shuffle:
        seed = (config.seed * 1_000_003 + epoch * 1009 + config.rank) & 0x7FFFFFFF
        ds = ds.shuffle(config.buffer_size, seed=seed)
    ds = ds.map(
        lambda serialized, position: _parse(
            serialized,
            position,
            config=config,
            epoch=epoch,
            label_offset=reader.label_offset,
            with_keys=with_keys,
        ),
        num_parallel_calls=tf.data.AUTOTUNE if num_parallel_calls is None else num_parallel_calls,
        deterministic=True,
    )
    if config.batch_size is not None:
        ds = ds.batch(config.batch_size, drop_remainder=config.drop_last)
    return ds.prefetch(tf.data.AUTOTUNE)
