"""Phase 1, the inputs: index every split, parse the boxes, start the checks beside the build.

The training archive is indexed in a helper process (the pool's fork server boots
meanwhile) while this process parses the box XMLs, then indexes the small validation
archive. The MD5s and the devkit are only started here; :mod:`.finish` checks them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import OFFICIAL_BOX_FILES, BuildConfig
from ..executors import Executor
from ..fsutil import xxh3_of
from ..labels import Devkit, Synsets, validation_labels
from ..manifest import OutputState
from ..outdir import BOX_CSV, LABELS_TXT, write_if_changed
from ..sources import (
    TRAIN_ARCHIVE,
    BoxTable,
    SourceLayout,
    SplitIndex,
    index_train_detached,
    index_validation,
    load_boxes,
)
from .checks import (
    aside_result,
    check_devkit,
    check_download,
    hash_aside,
    known_md5,
    read_devkit_aside,
)

log = logging.getLogger(__name__)


@dataclass
class Inputs:
    """What the build knows of its inputs before the first shard."""

    indexes: dict[str, SplitIndex]  # in the order of config.splits
    boxes: BoxTable | None
    download_of: dict[str, dict[str, Any]]  # per split: the manifest's ``downloads`` entry
    md5_pending: dict[str, Future[str]]  # MD5s still being computed, per split
    devkit: Future[Devkit] | None  # the devkit being read, if not checked yet
    bounding_boxes: dict[str, Any] | None = None  # the box CSV's manifest entry
    validation_labels: str | None = None  # "shipped", or "devkit" once the devkit agreed
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # box files left out
    foreign: list[str] = field(default_factory=list)  # a user's files left in OUT

    @property
    def downloads(self) -> list[dict[str, Any]]:
        return [self.download_of[s] for s in self.indexes if s in self.download_of]


def file_entry(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    """A file's entry in the manifest: name, size, checksum and what else is given."""
    return {"file": name, "bytes": len(data), "xxh3_128": xxh3_of(data), **extra}


def labels_txt(synsets: Synsets, offset: int) -> bytes:
    lines = [f"{i + offset}\t{w}\t{synsets.text(w)}\n" for i, w in enumerate(synsets.wnids)]
    return "".join(lines).encode("utf-8")


def gather(
    config: BuildConfig,
    layout: SourceLayout,
    executor: Executor,
    state: OutputState,
    synsets: Synsets,
) -> Inputs:
    """Index the splits, write the box CSV and ``labels.txt``; start the MD5s and the devkit."""
    train = None
    if "train" in config.splits:
        # Said here: the helper process has no log handler of its own.
        log.info(
            "indexing %s in a helper process (or reusing its index from an earlier run)",
            layout.train,
        )
        train = executor.run_aside(index_train_detached, layout, state)
    md5_pending = hash_aside(config, layout, state, executor)
    boxes = load_boxes(
        layout, synsets, skip_bad=config.on_error == "skip", map_unordered=executor.map_unordered
    )
    # The devkit can only confirm the shipped validation labels (a disagreement is an error),
    # so the shards do not wait for it: it is read beside them, once the start-up it would
    # slow down is over, and checked as soon as it is read, at the latest before the manifest.
    devkit = (
        executor.run_aside(read_devkit_aside, layout.devkit)
        if layout.devkit is not None and "validation" in config.splits
        else None
    )
    inputs = Inputs({}, boxes, {}, md5_pending, devkit)
    _index_splits(config, layout, state, synsets, train, inputs)
    if boxes is not None:
        _box_csv(config, layout, boxes, inputs)
    _name_foreign(config, state, inputs)
    for message in inputs.warnings:
        log.warning("%s", message)
    write_if_changed(config.output / LABELS_TXT, labels_txt(synsets, config.label_offset))
    return inputs


def _index_splits(
    config: BuildConfig,
    layout: SourceLayout,
    state: OutputState,
    synsets: Synsets,
    train: Future[SplitIndex] | None,
    inputs: Inputs,
) -> None:
    """Each split's index and download entry; validation first, indexed here while the
    training archive still is in the helper process."""
    found: dict[str, SplitIndex] = {}
    for split in sorted(config.splits, key=lambda name: name == "train"):
        if split == "train" and train is not None:
            found[split] = aside_result(train)
        else:
            inputs.validation_labels = "shipped"
            if inputs.devkit is not None and inputs.devkit.done():
                inputs.validation_labels = check_devkit(inputs.devkit)
                inputs.devkit = None
            labels = validation_labels(None)
            found[split] = index_validation(layout, synsets, labels, state)
        archive = layout.images(split)
        md5, used = known_md5(config, state, archive, inputs.md5_pending.get(split))
        if used:
            del inputs.md5_pending[split]
        entry = check_download(config, found[split], md5)
        if entry is not None:
            inputs.download_of[split] = entry
        log.info("%s: %d images", split, len(found[split]))
    inputs.indexes.update((split, found[split]) for split in config.splits)


def _box_csv(config: BuildConfig, layout: SourceLayout, boxes: BoxTable, inputs: Inputs) -> None:
    csv = boxes.csv_bytes()
    write_if_changed(config.output / BOX_CSV, csv)
    inputs.bounding_boxes = file_entry(BOX_CSV, csv, images=len(boxes), **asdict(boxes.stats))
    inputs.skipped.extend({"file": where, "reason": why} for where, why in boxes.skipped)
    log.info(
        "boxes: %d kept for %d images from %d XML files",
        boxes.stats.boxes_kept,
        len(boxes),
        boxes.stats.files,
    )
    official = any(d.get("official") and d["name"] == TRAIN_ARCHIVE for d in inputs.downloads)
    if official and boxes.stats.files != OFFICIAL_BOX_FILES:
        inputs.warnings.append(
            f"{layout.boxes}: {boxes.stats.files:,} XML files, the official box archive "
            f"holds {OFFICIAL_BOX_FILES:,}"
        )


def _name_foreign(config: BuildConfig, state: OutputState, inputs: Inputs) -> None:
    """The files of a user's that ``--overwrite`` left in OUT: named in a warning."""
    out = config.output
    inputs.foreign = [path for path in state.read_foreign() if (out / path).exists()]
    if inputs.foreign:
        shown = ", ".join(inputs.foreign[:5]) + (
            f" and {len(inputs.foreign) - 5} more" if len(inputs.foreign) > 5 else ""
        )
        inputs.warnings.append(
            f"{out}: {len(inputs.foreign)} files that imagenet-prep did not write were left "
            f"alone (--overwrite removes only a build's own files): {shown}"
        )
