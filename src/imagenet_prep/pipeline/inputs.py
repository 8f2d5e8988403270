"""Phase 1, the inputs: index every split, parse the boxes, start the checks beside the build.

The training split is indexed in a helper process (the pool's fork server boots
meanwhile) while this process checks the layout's label files, parses the box XMLs, then
indexes the small validation and test splits. The MD5s and the devkit are only started
here; :mod:`.finish` checks them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from typing import Any

from ..config import OFFICIAL_BOX_FILES, BuildConfig
from ..errors import DataError
from ..executors import Executor
from ..fsutil import xxh3_of
from ..labels import (
    Devkit,
    Synsets,
    check_synset_mapping,
    kaggle_validation_labels,
    validation_labels,
)
from ..manifest import PARTS_DIR, OutputState
from ..outdir import BOX_CSV, LABELS_TXT, VALIDATION_BOX_CSV, write_if_changed
from ..sources import (
    TRAIN_ARCHIVE,
    BoxTable,
    Source,
    SourceLayout,
    SplitIndex,
    index_detached,
    load_boxes,
    open_source,
    run_prepared,
)
from ..sources.layout import KAGGLE_SYNSET_MAPPING, KAGGLE_VAL_SOLUTION
from .checks import (
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
    boxes: dict[str, BoxTable]  # per split whose records carry boxes
    download_of: dict[str, dict[str, Any]]  # per split: the manifest's ``downloads`` entry
    md5_pending: dict[str, Future[str]]  # MD5s still being computed, per split
    devkit: Future[Devkit] | None  # the devkit being read, if not checked yet
    bounding_boxes: dict[str, Any] | None = None  # the box CSV's manifest entry
    validation_bounding_boxes: dict[str, Any] | None = None  # the validation box CSV's
    # "shipped", "devkit" once the devkit agreed, or the layout's label file that agreed
    validation_labels: str | None = None
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # box files left out
    foreign: list[str] = field(default_factory=list)  # a user's files left in OUT

    @property
    def downloads(self) -> list[dict[str, Any]]:
        return [self.download_of[s] for s in self.indexes if s in self.download_of]


def file_entry(name: str, data: bytes | bytearray, **extra: Any) -> dict[str, Any]:
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
    """Index the splits, write the box CSVs and ``labels.txt``; start the MD5s and the devkit."""
    source = open_source(layout)
    shipped = validation_labels(None)
    tasks = [task for split in config.splits for task in source.prepare(split, state)]
    if tasks:  # e.g. the Hub's tar.gz archives, each indexed by a pool worker
        log.info("indexing %d archives, %d at a time", len(tasks), executor.workers)
        for _ in executor.map_unordered(run_prepared, tasks):
            pass
    train = None
    if "train" in config.splits:
        # Said here: the helper process has no log handler of its own.
        log.info(
            "indexing %s in a helper process (or reusing its index from an earlier run)",
            layout.images("train"),
        )
        # A helper on this machine hands the columns back in a file (see SplitIndex.spill).
        spill = state.local / PARTS_DIR / "index-train.columns" if executor.same_machine else None
        train = executor.run_aside(index_detached, source, "train", shipped, state, spill)
    md5_pending = hash_aside(config, layout, state, executor)
    truth, evidence = _label_files(config, source, synsets, shipped)
    skip_bad = config.on_error == "skip"
    boxes: dict[str, BoxTable] = {}
    train_boxes = load_boxes(
        source.box_xmls("train"), synsets, skip_bad=skip_bad, map_unordered=executor.map_unordered
    )
    if train_boxes is not None:
        boxes["train"] = train_boxes
    if config.validation_boxes and "validation" in config.splits:
        val_boxes = load_boxes(
            source.box_xmls("validation"),
            synsets,
            validation_labels=truth,
            skip_bad=skip_bad,
            map_unordered=executor.map_unordered,
        )
        if val_boxes is None:
            raise DataError(
                f"{layout.root}: --validation-boxes, but the {layout.name} layout there has no "
                "validation box XMLs (ILSVRC2012_bbox_val_v3.tgz, or Kaggle's "
                "ILSVRC/Annotations/CLS-LOC/val/)"
            )
        boxes["validation"] = val_boxes
    # The devkit can only confirm the shipped validation labels (a disagreement is an error),
    # so the shards do not wait for it: it is read beside them, once the start-up it would
    # slow down is over, and checked as soon as it is read, at the latest before the manifest.
    devkit = (
        executor.run_aside(read_devkit_aside, layout.devkit)
        if layout.devkit is not None and "validation" in config.splits
        else None
    )
    inputs = Inputs({}, boxes, {}, md5_pending, devkit)
    inputs.warnings.extend(layout.warnings)
    inputs.validation_labels = evidence
    _index_splits(config, layout, source, state, synsets, truth, train, inputs)
    if train_boxes is not None:
        _box_csv(config, layout, train_boxes, inputs)
    if "validation" in boxes:
        _validation_box_csv(config, boxes["validation"], inputs)
    _name_foreign(config, state, inputs)
    for message in inputs.warnings:
        log.warning("%s", message)
    write_if_changed(config.output / LABELS_TXT, labels_txt(synsets, config.label_offset))
    return inputs


def _label_files(
    config: BuildConfig, source: Source, synsets: Synsets, shipped: tuple[str, ...]
) -> tuple[tuple[str, ...], str | None]:
    """The validation labels by number and what confirmed them: Kaggle's label files, checked
    against the shipped labels (a disagreement is an error); the shipped labels otherwise."""
    files = source.label_files()
    mapping = files.get(KAGGLE_SYNSET_MAPPING)
    if mapping is not None:
        check_synset_mapping(mapping.data, mapping.where, synsets)
    if "validation" not in config.splits:
        return shipped, None
    if not source.layout.name.startswith("kaggle"):
        return shipped, "shipped"
    solution = files.get(KAGGLE_VAL_SOLUTION)
    if solution is None:
        holder = source.layout.labels.get(KAGGLE_VAL_SOLUTION)
        where = (
            f"{holder}:{KAGGLE_VAL_SOLUTION}"
            if holder is not None and holder.is_file() and holder.suffix == ".zip"
            else str(source.layout.root / KAGGLE_VAL_SOLUTION)
        )
        raise DataError(
            f"{where}: missing; it holds the validation labels of Kaggle's download (the "
            f"{source.layout.name} layout)"
        )
    return kaggle_validation_labels(solution.data, solution.where), KAGGLE_VAL_SOLUTION


def _index_splits(
    config: BuildConfig,
    layout: SourceLayout,
    source: Source,
    state: OutputState,
    synsets: Synsets,
    truth: tuple[str, ...],
    train: Future[SplitIndex] | None,
    inputs: Inputs,
) -> None:
    """Each split's index and download entry; validation and test first, indexed here while
    the training split still is in the helper process."""
    found: dict[str, SplitIndex] = {}
    for split in sorted(config.splits, key=lambda name: name == "train"):
        if split == "train" and train is not None:
            found[split] = train.result().unspilled()
        else:
            if split == "validation" and inputs.devkit is not None and inputs.devkit.done():
                inputs.validation_labels = check_devkit(inputs.devkit)
                inputs.devkit = None
            found[split] = index_detached(source, split, truth, state)
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
    inputs.bounding_boxes = _write_box_csv(config, BOX_CSV, "boxes", boxes, inputs)
    official = any(d.get("official") and d["name"] == TRAIN_ARCHIVE for d in inputs.downloads)
    if official and boxes.stats.files != OFFICIAL_BOX_FILES:
        inputs.warnings.append(
            f"{layout.boxes.get('train')}: {boxes.stats.files:,} XML files, the official box "
            f"archive holds {OFFICIAL_BOX_FILES:,}"
        )


def _validation_box_csv(config: BuildConfig, boxes: BoxTable, inputs: Inputs) -> None:
    inputs.validation_bounding_boxes = _write_box_csv(
        config, VALIDATION_BOX_CSV, "validation boxes", boxes, inputs
    )


def _write_box_csv(
    config: BuildConfig, name: str, what: str, boxes: BoxTable, inputs: Inputs
) -> dict[str, Any]:
    """Write a split's box CSV ``name`` into OUT, list its skipped XMLs; its manifest entry."""
    csv = boxes.csv_bytes()
    write_if_changed(config.output / name, csv)
    inputs.skipped.extend({"file": where, "reason": why} for where, why in boxes.skipped)
    log.info(
        "%s: %d kept for %d images from %d XML files",
        what,
        boxes.stats.boxes_kept,
        len(boxes),
        boxes.stats.files,
    )
    return file_entry(name, csv, images=len(boxes), **asdict(boxes.stats))


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
