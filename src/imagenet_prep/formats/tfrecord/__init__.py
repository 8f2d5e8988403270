"""TFRecords in the reference scripts' layout: ``OUT/tfrecord/<split>-%05d-of-%05d``.

``spec.py`` is the one TFRecord spec (features, framing, codec), ``writer.py`` the sink and
its verify, ``reader.py`` the loaders' reader.
"""

from ..spec import Format

# The same shape in every format's package, on purpose: the declaration the registry reads.
FORMAT = Format(
    name="tfrecord",
    folder="tfrecord",
    size_factor=1.01,
    writer="imagenet_prep.formats.tfrecord.writer:TFRecordSink",
    reader="imagenet_prep.formats.tfrecord.reader:TFRecordReader",
)
