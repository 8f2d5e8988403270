"""WebDataset: ``OUT/webdataset/<split>-%06d.tar``, shards of at most ``--shard-size`` images.

``writer.py`` is the sink and its verify, ``reader.py`` the loaders' reader.
"""

from ..spec import Format

# The same shape in every format's package, on purpose: the declaration the registry reads.
FORMAT = Format(
    name="webdataset",
    folder="webdataset",
    size_factor=1.03,
    writer="imagenet_prep.formats.webdataset.writer:WebDatasetSink",
    reader="imagenet_prep.formats.webdataset.reader:WebDatasetReader",
    shards_by_size=True,
)
