"""What is in SRC: which inputs exist (the archives as downloaded, or the reference
scripts' extracted raw-data layout), and the names of its files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
BOX_TRAIN_ARCHIVE = "ILSVRC2012_bbox_train_v2.tar.gz"
BOX_VAL_ARCHIVE = "ILSVRC2012_bbox_val_v3.tgz"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
#: A tar header's name field: a WebDataset member ``<key>.<ext>`` must fit in it.
MAX_KEY_BYTES = 100
# 2: the nested tars are kept too, and the archives' ends were checked.
INDEX_VERSION = 2


def is_image_name(name: str) -> bool:
    """Image files are matched by extension in any case.

    >>> [is_image_name(n) for n in ("a.JPEG", "b.jpeg", "c.JpG", "d.png", "e.xml", "JPEG")]
    [True, True, True, True, False, False]
    """
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stem(name: str) -> str:
    """File name without directory and extension.

    >>> stem("n01440764/n01440764_10026.JPEG")
    'n01440764_10026'
    """
    base = name[name.rfind("/") + 1 :] if os.sep == "/" else os.path.basename(name)
    dot = base.rfind(".")
    if dot > 0 and base[0] != ".":  # the common case, without os.path's general rules
        return base[:dot]
    return os.path.splitext(base)[0]


@dataclass(frozen=True)
class SourceLayout:
    """The inputs found in SRC; each is an archive file, a folder, or absent."""

    root: Path
    train: Path | None
    validation: Path | None
    boxes: Path | None
    devkit: Path | None

    def images(self, split: str) -> Path | None:
        """The input of ``split``'s images (``train`` or ``validation``)."""
        return self.train if split == "train" else self.validation

    def archives(self) -> list[Path]:
        """The input files that are archives, for the manifest."""
        found = [self.train, self.validation, self.boxes, self.devkit]
        return [p for p in found if p is not None and p.is_file()]


def _regular_file(path: Path) -> Path:
    if path.is_symlink() and not path.exists():
        raise DataError(
            f"{path}: cannot read (a symbolic link to {os.readlink(path)}, which is missing)"
        )
    if not path.is_file():
        raise DataError(f"{path}: exists but is not a regular file (archives must be files)")
    return path


def discover(src: Path) -> SourceLayout:
    """Find the inputs in ``src``: per input, the archive as downloaded wins over a folder."""
    if not src.exists():
        raise DataError(f"{src}: source folder does not exist")
    if not src.is_dir():
        raise DataError(f"{src}: source must be a folder holding the download, not a file")

    def pick(archive: str, *folders: str) -> Path | None:
        a = src / archive
        if a.exists() or a.is_symlink():
            return _regular_file(a)
        for folder in folders:
            if (src / folder).is_dir():
                return src / folder
        return None

    return SourceLayout(
        root=src,
        train=pick(TRAIN_ARCHIVE, "train"),
        validation=pick(VAL_ARCHIVE, "validation", "val"),
        boxes=pick(BOX_TRAIN_ARCHIVE, "bounding_boxes"),
        devkit=pick(DEVKIT_ARCHIVE, DEVKIT_DIR),
    )
