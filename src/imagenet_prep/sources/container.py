"""Where a split's images are kept (:class:`Container`) and reading one image's bytes by
reference (:func:`read`), whatever the kind of container: a tar, a folder, a zip."""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..archive import read_at
from ..sample import ContainerKind, ImageRef

__all__ = ["Container", "ContainerKind", "read"]


@dataclass(frozen=True, slots=True)
class Container:
    """A file or folder that holds images of one split, and how they are stored in it.

    ``path`` is the archive to open, or the folder holding the image files (kind FILE);
    ``parent``, for messages, the nested tar the images are in, or a zip's folder that holds
    them (``""`` when none).
    """

    path: str
    kind: ContainerKind
    parent: str = ""

    def origin(self, name: str) -> str:
        """An image's place for messages: ``archive:nested.tar:name``, ``archive:name`` or a
        path.

        >>> Container("train.tar", ContainerKind.TAR, "n1.tar").origin("n1_1.JPEG")
        'train.tar:n1.tar:n1_1.JPEG'
        >>> Container("k.zip", ContainerKind.ZIP_DEFLATED, "ILSVRC/Data").origin("v.JPEG")
        'k.zip:ILSVRC/Data/v.JPEG'
        >>> Container("/d/val", ContainerKind.FILE).origin("v.JPEG")
        '/d/val/v.JPEG'
        """
        if self.kind is ContainerKind.FILE:
            return os.path.join(self.path, name)
        if self.parent and self.kind is not ContainerKind.TAR:
            return f"{self.path}:{self.parent}/{name}"
        return f"{self.path}:{self.parent}:{name}" if self.parent else f"{self.path}:{name}"

    def file(self, name: str) -> str:
        """The file to open to read the image ``name``: the archive, or the image itself."""
        return os.path.join(self.path, name) if self.kind is ContainerKind.FILE else self.path


def read(ref: ImageRef, fd: int) -> bytes:
    """The bytes of the image ``ref``, from ``fd``, the open file ``ref.path``.

    A short read, or a zip member that is damaged, is a :class:`~..errors.DataError` naming
    ``ref.origin``.
    """
    kind = ref.kind
    if kind is ContainerKind.TAR or kind is ContainerKind.FILE:
        return read_at(fd, ref.offset, ref.size, ref.origin)
    from ..ziparchive import DEFLATED, STORED, read_member

    method = STORED if kind is ContainerKind.ZIP_STORED else DEFLATED
    return read_member(fd, ref.offset, ref.size, method, ref.origin)
