"""ImageFolder: ``OUT/imagefolder/{train,val}/<wnid>/<file>``, as torchvision reads it.

``writer.py`` is the sink and its verify, ``reader.py`` the loaders' reader.
"""

from ..spec import Format

# The same shape in every format's package, on purpose: the declaration the registry reads.
FORMAT = Format(
    name="imagefolder",
    folder="imagefolder",
    size_factor=1.0,
    writer="imagenet_prep.formats.imagefolder.writer:ImageFolderSink",
    reader="imagenet_prep.formats.imagefolder.reader:ImageFolderReader",
)
