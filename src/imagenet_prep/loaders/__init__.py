"""Read a build's output back for training: ``iterate()`` and framework adapters.

``iterate(root, split, ...)`` yields ``(image, label, key)`` with no framework at all
(``split``: ``train``, ``validation`` or, when the build has it, ``test``, whose images have
no class: label -1);
``imagenet_prep.loaders.torch`` (PyTorch ``IterableDataset`` and a resumable loader) and
``imagenet_prep.loaders.tf`` (a ``tf.data`` pipeline over the TFRecords) are imported only
when used and need their framework installed.
"""

from __future__ import annotations

from .iterator import ImageNetIterator, iterate
from .options import LoaderConfig
from .order import BALANCE, Consumer
from .readers import FORMATS, RawSample, detect_format, open_reader
from .transforms import TRANSFORMS

__all__ = [
    "BALANCE",
    "FORMATS",
    "TRANSFORMS",
    "Consumer",
    "ImageNetIterator",
    "LoaderConfig",
    "RawSample",
    "detect_format",
    "iterate",
    "open_reader",
]
