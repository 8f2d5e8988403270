"""What is in SRC, and every image of a split in canonical order, without extracting anything.

``discover`` finds the inputs (:mod:`.layout`); ``index_train`` / ``index_validation`` list
every image of a split in the canonical order (sorted by wnid, then file name) as a compact
:class:`SplitIndex` (:mod:`.official`, :mod:`.splitindex`), reusing the archive indexes kept
in OUT (:mod:`.indexcache`); ``load_boxes`` reads the box XMLs (:mod:`.boxtable`).
"""

from __future__ import annotations

from .boxtable import BOX_BATCH, BoxStats, BoxTable, box_file, load_boxes, parse_box_batch
from .indexcache import cached_md5, indexed_archive, record_md5
from .layout import (
    BOX_TRAIN_ARCHIVE,
    BOX_VAL_ARCHIVE,
    DEVKIT_ARCHIVE,
    DEVKIT_DIR,
    IMAGE_EXTENSIONS,
    INDEX_VERSION,
    MAX_KEY_BYTES,
    TRAIN_ARCHIVE,
    VAL_ARCHIVE,
    SourceLayout,
    discover,
    is_image_name,
    stem,
)
from .official import index_train, index_train_detached, index_validation
from .splitindex import RefBlock, SplitIndex

__all__ = [
    "BOX_BATCH",
    "BOX_TRAIN_ARCHIVE",
    "BOX_VAL_ARCHIVE",
    "DEVKIT_ARCHIVE",
    "DEVKIT_DIR",
    "IMAGE_EXTENSIONS",
    "INDEX_VERSION",
    "MAX_KEY_BYTES",
    "TRAIN_ARCHIVE",
    "VAL_ARCHIVE",
    "BoxStats",
    "BoxTable",
    "RefBlock",
    "SourceLayout",
    "SplitIndex",
    "box_file",
    "cached_md5",
    "discover",
    "index_train",
    "index_train_detached",
    "index_validation",
    "indexed_archive",
    "is_image_name",
    "load_boxes",
    "parse_box_batch",
    "record_md5",
    "stem",
]
