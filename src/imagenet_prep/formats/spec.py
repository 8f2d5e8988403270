"""What the registry knows of a format without importing its writer or reader."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config import BuildConfig
    from ..sources import SplitIndex
    from .base import Sink, SinkOptions

DALI_DIR = "dali-index"


@dataclass(frozen=True)
class Format:
    """One output format: its name, where it writes, and where its code is.

    ``writer`` and ``reader`` are ``"module:attribute"`` paths, imported on use.
    """

    name: str
    folder: str  # OUT/<folder>/
    size_factor: float  # output bytes per input byte, for the disk-space estimate
    writer: str
    reader: str
    shards_by_size: bool = False  # counts its shards by --shard-size (not --*-shards)
    shard_bytes: int = 10**9  # with shards_by_size: input bytes a shard holds by default

    def sink(self, options: SinkOptions) -> Sink:
        factory: Any = _load(self.writer)
        sink: Sink = factory(options)
        return sink

    def reader_class(self) -> Any:
        return _load(self.reader)

    def shard_count(self, config: BuildConfig, split: str, index: SplitIndex) -> int:
        """How many shards the format cuts ``split`` into."""
        if self.shards_by_size:
            return config.shards_by_size(len(index), index.total_bytes(), self.shard_bytes)
        return config.shards(split)

    def owned_folders(self) -> tuple[str, ...]:
        """The folders of OUT that hold only this format's files (relative to OUT)."""
        return (self.folder, f"{DALI_DIR}/{self.name}")

    def manifest_extra(
        self, config: BuildConfig, indexes: Mapping[str, SplitIndex]
    ) -> dict[str, Any]:
        """What the format's manifest section says besides its ``finalize``."""
        if not self.shards_by_size:
            return {}
        return {
            "shard_size": {
                split: -(-len(index) // self.shard_count(config, split, index))
                for split, index in indexes.items()
            }
        }


def _load(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)
