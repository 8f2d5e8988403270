"""``verify``: re-read everything a build wrote and compare it with the manifest."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from .formats import get_format, get_sink
from .formats.base import SinkOptions, VerifyReport
from .fsutil import file_size, hash_file
from .manifest import read_manifest
from .storage import as_location

log = logging.getLogger(__name__)


@dataclass
class VerifyResult:
    """What was checked and every problem found (one line each, naming the file)."""

    output: Path
    files_checked: int = 0
    records: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_file(out: Path, entry: dict[str, object], report: VerifyReport) -> None:
    path = out / str(entry["file"])
    report.checked += 1
    if file_size(path) is None:
        report.problems.append(f"{path}: missing")
        return
    size, digest = hash_file(path)
    if size != entry["bytes"] or digest != entry["xxh3_128"]:
        report.problems.append(f"{path}: contents differ from the manifest")


def verify(output: Path | str, *, decode: bool = False) -> VerifyResult:
    """Check every output file listed in ``output``'s manifest; ``decode`` decodes every image.

    ``output`` is a folder or an object store's URL (``s3://bucket/prefix``): its shards are
    then fetched one at a time, in large blocks, and checked as local files."""
    output = as_location(output)
    manifest = read_manifest(output)
    result = VerifyResult(output=output)
    report = VerifyReport()
    _check_file(output, manifest.labels, report)
    for entry in (manifest.bounding_boxes, manifest.validation_bounding_boxes):
        if entry is not None:
            _check_file(output, entry, report)
    options = SinkOptions(out=output, label_offset=manifest.labels["label_offset"])
    for name, section in manifest.formats.items():
        log.info("verifying %s", name)
        sink_report = get_sink(name, options).verify(section, decode=decode)
        report.extend(sink_report)
        # Every format holds one record per image written (a record, a sample, a file).
        expected = sum(s["written"] for s in manifest.splits.values())
        if sink_report.records != expected and not sink_report.problems:
            report.problems.append(
                f"{output / get_format(name).folder}: {sink_report.records} records, the "
                f"splits hold {expected} images"
            )
    result.files_checked = report.checked
    result.records = report.records
    result.problems = report.problems
    return result
