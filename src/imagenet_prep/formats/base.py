"""What every format's writer shares: its options, the writer protocols, the verify report."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..plan import ShardSpec
from ..sample import Sample


@dataclass(frozen=True)
class SinkOptions:
    """What every sink may need besides the samples; picklable for worker processes."""

    out: Path
    label_offset: int = 1
    link: bool = False  # imagefolder: hard-link files of an extracted tree instead of copying
    dali_index: bool = False  # tfrecord, webdataset: write OUT/dali-index/<format>/<shard>.idx


@dataclass
class VerifyReport:
    """Problems found by a check, each one line naming the file; empty means all is well."""

    checked: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)

    def extend(self, other: VerifyReport) -> None:
        self.checked += other.checked
        self.records += other.records
        self.problems.extend(other.problems)


class ShardWriter(Protocol):
    def add(self, sample: Sample) -> None: ...

    def commit(self) -> dict[str, Any]:
        """Finish the shard's files (rename into place) and say what was written."""
        ...

    def abort(self) -> None:
        """Remove whatever the shard wrote under temporary names."""
        ...


class Sink(Protocol):
    name: str
    root: Path  # the format's folder in OUT

    def open_shard(self, spec: ShardSpec) -> ShardWriter: ...

    def finalize(self, results: list[dict[str, Any]]) -> dict[str, Any]:
        """The format's manifest section from every shard's commit() result."""
        ...

    def verify(self, section: dict[str, Any], *, decode: bool) -> VerifyReport: ...

    def side_files(self, splits: Sequence[str]) -> Iterator[str]:
        """The files (relative to OUT) that ``finalize`` writes beside the shards of ``splits``
        (dataset cards, readers' info files); listed in the section under ``side_files``."""
        ...

    def planned_files(self, spec: ShardSpec, images: Iterable[tuple[str, str]]) -> Iterator[str]:
        """Every file (relative to OUT) that writing ``spec`` may make; ``images`` are the
        shard's (wnid, file name) pairs. Recorded before the shard work, so that
        ``--overwrite`` removes exactly what a build wrote."""
        ...
