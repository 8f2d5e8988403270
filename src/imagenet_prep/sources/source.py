"""The seam every source layout plugs into: a :class:`Source` says what it found and yields
a split's index entries, its box XMLs and the files that are evidence for the labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ..labels import Synsets, load_synsets
from ..storage import tally

if TYPE_CHECKING:
    from ..manifest import OutputState
    from .boxtable import BoxXmls
    from .layout import SourceLayout
    from .splitindex import SplitIndex


@dataclass(frozen=True)
class LabelFile:
    """A file that is evidence for the labels (Kaggle's ``LOC_val_solution.csv``): where it
    is, for messages, and its bytes."""

    where: str
    data: bytes


class Source(Protocol):
    """One layout of the download: what it found, and its splits read as index entries.

    Picklable (it holds paths and small records): the training split is indexed in a helper
    process. Labels are made in :mod:`..labels` only: ``index`` takes the validation truth by
    image number, ``label_files`` hands over what a layout holds to check it with.
    """

    @property
    def layout(self) -> SourceLayout: ...

    def prepare(self, split: str, state: OutputState | None) -> list[Callable[[], object]]:
        """Picklable work that may run in parallel before ``index(split)`` and makes it quick
        (each archive of a split indexed, say); none when there is nothing to do."""
        ...

    def index(
        self,
        split: str,
        synsets: Synsets,
        validation_labels: tuple[str, ...],
        state: OutputState | None,
    ) -> SplitIndex:
        """Every image of ``split`` (``train``, ``validation`` or ``test``) in canonical
        order; an error when SRC has none."""
        ...

    def box_xmls(self, split: str) -> BoxXmls | None:
        """The box XML files of ``split``, streamed; None when the layout has none."""
        ...

    def label_files(self) -> dict[str, LabelFile]:
        """The files of label evidence this layout holds, by their name."""
        ...


def open_source(layout: SourceLayout) -> Source:
    """The :class:`Source` that reads ``layout``."""
    if layout.name.startswith("kaggle"):
        from .kaggle import KaggleSource

        return KaggleSource(layout)
    if layout.name == "hf":
        from .hf import HfTarSource

        return HfTarSource(layout)
    if layout.name == "hf-parquet":
        from .hf import HfParquetSource

        return HfParquetSource(layout)
    from .official import OfficialSource

    return OfficialSource(layout)


def run_prepared(task: Callable[[], object]) -> None:
    """Run one task of :meth:`Source.prepare` (in a pool worker); its result stays there."""
    task()


def index_detached(
    source: Source,
    split: str,
    validation_labels: tuple[str, ...],
    state: OutputState | None,
    spill_to: Path | None = None,
) -> SplitIndex:
    """Picklable entry point: ``source.index`` without the archive's member list.

    The columns are all a build needs; leaving the members out keeps the result small
    to send back from the process that did the indexing. With ``spill_to`` (a local file,
    for a caller on this machine) the columns are handed back in it: see
    :meth:`SplitIndex.spill`.
    """
    requests, fetched = tally()
    out = source.index(split, load_synsets(), validation_labels, state)
    if out.archive is not None:
        out.archive = replace(out.archive, members=())
    requests_after, fetched_after = tally()
    out.requests = requests_after - requests
    out.bytes_fetched = fetched_after - fetched
    return out if spill_to is None else out.spill(spill_to)
