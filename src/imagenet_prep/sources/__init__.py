"""What is in SRC, and every image of a split in canonical order, without extracting anything.

``discover`` finds the layout SRC holds (:mod:`.layout`) and ``open_source`` the
:class:`Source` that reads it (:mod:`.source`): the official archives or their extracted tree
(:mod:`.official`), Kaggle's zip or its tree (:mod:`.kaggle`). A source lists every image of
a split in the canonical order (sorted by wnid, then file name) as a compact
:class:`SplitIndex` (:mod:`.splitindex`) whose containers say how to read each image
(:mod:`.container`), reusing the archive indexes kept in OUT (:mod:`.indexcache`), and
yields its box XMLs, which ``load_boxes`` parses (:mod:`.boxtable`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_getattr

if TYPE_CHECKING:
    from .boxtable import (
        BOX_BATCH,
        BoxStats,
        BoxTable,
        BoxXmls,
        box_file,
        load_boxes,
        parse_box_batch,
    )
    from .container import Container, ContainerKind, read
    from .indexcache import cached_md5, indexed_archive, record_md5
    from .layout import (
        BOX_TRAIN_ARCHIVE,
        BOX_VAL_ARCHIVE,
        DEVKIT_ARCHIVE,
        DEVKIT_DIR,
        IMAGE_EXTENSIONS,
        INDEX_VERSION,
        KAGGLE_ZIP,
        LAYOUTS,
        MAX_KEY_BYTES,
        TEST_ARCHIVE,
        TRAIN_ARCHIVE,
        VAL_ARCHIVE,
        SourceLayout,
        discover,
        is_image_name,
        stem,
    )
    from .official import OfficialSource, index_test, index_train, index_validation
    from .source import LabelFile, Source, index_detached, open_source, run_prepared
    from .splitindex import RefBlock, SplitIndex

__all__ = [
    "BOX_BATCH",
    "BOX_TRAIN_ARCHIVE",
    "BOX_VAL_ARCHIVE",
    "DEVKIT_ARCHIVE",
    "DEVKIT_DIR",
    "IMAGE_EXTENSIONS",
    "INDEX_VERSION",
    "KAGGLE_ZIP",
    "LAYOUTS",
    "MAX_KEY_BYTES",
    "TEST_ARCHIVE",
    "TRAIN_ARCHIVE",
    "VAL_ARCHIVE",
    "BoxStats",
    "BoxTable",
    "BoxXmls",
    "Container",
    "ContainerKind",
    "LabelFile",
    "OfficialSource",
    "RefBlock",
    "Source",
    "SourceLayout",
    "SplitIndex",
    "box_file",
    "cached_md5",
    "discover",
    "index_detached",
    "index_test",
    "index_train",
    "index_validation",
    "indexed_archive",
    "is_image_name",
    "load_boxes",
    "open_source",
    "parse_box_batch",
    "read",
    "record_md5",
    "run_prepared",
    "stem",
]

# Imported on first use: ``import imagenet_prep.sources.layout`` (the config's layout names)
# stays light.
_LAZY = {
    "BOX_BATCH": "boxtable",
    "BoxStats": "boxtable",
    "BoxTable": "boxtable",
    "BoxXmls": "boxtable",
    "box_file": "boxtable",
    "load_boxes": "boxtable",
    "parse_box_batch": "boxtable",
    "Container": "container",
    "ContainerKind": "container",
    "read": "container",
    "cached_md5": "indexcache",
    "indexed_archive": "indexcache",
    "record_md5": "indexcache",
    "BOX_TRAIN_ARCHIVE": "layout",
    "BOX_VAL_ARCHIVE": "layout",
    "DEVKIT_ARCHIVE": "layout",
    "DEVKIT_DIR": "layout",
    "IMAGE_EXTENSIONS": "layout",
    "INDEX_VERSION": "layout",
    "KAGGLE_ZIP": "layout",
    "LAYOUTS": "layout",
    "MAX_KEY_BYTES": "layout",
    "TEST_ARCHIVE": "layout",
    "TRAIN_ARCHIVE": "layout",
    "VAL_ARCHIVE": "layout",
    "SourceLayout": "layout",
    "discover": "layout",
    "is_image_name": "layout",
    "stem": "layout",
    "OfficialSource": "official",
    "index_test": "official",
    "index_train": "official",
    "index_validation": "official",
    "LabelFile": "source",
    "Source": "source",
    "index_detached": "source",
    "open_source": "source",
    "run_prepared": "source",
    "RefBlock": "splitindex",
    "SplitIndex": "splitindex",
}

__getattr__ = lazy_getattr(__name__, _LAZY, globals())


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
