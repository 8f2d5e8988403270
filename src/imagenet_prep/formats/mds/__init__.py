"""MosaicML MDS (version 2): ``OUT/mds/<split>/index.json`` and ``shard.%05d.mds``.

``spec.py`` is the byte layout, ``writer.py`` the sink and its verify, ``reader.py`` the
loaders' reader. The columns follow MosaicML's ImageNet (``x`` the JPEG, ``y`` the 0-based
class), so ``streaming.vision.StreamingImageNet(local=OUT/mds, split=...)`` reads it.
"""

from ..spec import Format

# The same shape in every format's package, on purpose: the declaration the registry reads.
FORMAT = Format(
    name="mds",
    folder="mds",
    size_factor=1.01,
    writer="imagenet_prep.formats.mds.writer:MDSSink",
    reader="imagenet_prep.formats.mds.reader:MDSReader",
    shards_by_size=True,
    shard_bytes=64 << 20,  # MDSWriter's default size_limit (1 << 26)
)
