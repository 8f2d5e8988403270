"""What a build tells its caller: progress as it goes (:class:`Reporter`) and a summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..manifest import Manifest


@dataclass
class BuildResult:
    """Summary of a finished build."""

    output: Path
    images: dict[str, int]
    shards_written: int  # shard jobs run (one per plan group's shard)
    shards_reused: int
    reencoded: list[dict[str, str]]
    skipped: list[dict[str, str]]
    warnings: list[str]
    seconds: float
    bytes_in: int
    images_written: int
    files_written: int = 0  # output files made by this run (shards, indexes, images in folders)
    files_reused: int = 0  # output files an earlier run finished
    # Object stores: (requests, bytes read) to index the archives, and to read the images
    store_index: tuple[int, int] = (0, 0)
    store_images: tuple[int, int] = (0, 0)
    # (requests, bytes written) to write the outputs and the bookkeeping to an object store
    store_writes: tuple[int, int] = (0, 0)
    already_complete: bool = False
    manifest: Manifest | None = field(default=None, repr=False)


class Reporter(Protocol):
    """Receives progress; the CLI draws a bar or logs lines, the library stays silent."""

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None: ...

    def update(self, images: float, nbytes: float) -> None:
        """More work done: ``images`` (each image counted once, whatever the number of
        formats) and the input bytes they hold."""
        ...

    def close(self) -> None: ...


class Silent:
    """The reporter of a library call that passed none."""

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        pass

    def update(self, images: float, nbytes: float) -> None:
        pass

    def close(self) -> None:
        pass
