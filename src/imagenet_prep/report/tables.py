"""The build's record as tables (header, rows) from its manifest: options, source, timings,
checksums. Pure: the page renders them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..manifest import Manifest


@dataclass(frozen=True)
class Table:
    """A titled table; ``note`` is a line shown under it."""

    title: str
    header: tuple[str, ...]
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    note: str = ""


def _value(value: Any) -> str:
    """An option's value as text.

    >>> _value(None), _value(["train", "validation"]), _value(True), _value(12345)
    ('-', 'train, validation', 'yes', '12345')
    """
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def options(manifest: Manifest) -> Table:
    rows = [(name, _value(value)) for name, value in sorted(manifest.options.items())]
    rows.insert(0, ("tool", f"imagenet-prep {manifest.tool.get('version', '?')}"))
    rows.insert(1, ("finished", manifest.created))
    return Table("Options that decide the output's bytes", ("option", "value"), rows)


def source(manifest: Manifest) -> Table:
    src = manifest.source
    rows: list[tuple[Any, ...]] = [
        ("root", src.get("root", "?")),
        ("layout", src.get("layout", "?")),
    ]
    for name in ("images", "boxes", "labels"):
        for split, where in sorted((src.get(name) or {}).items()):
            rows.append((f"{name} ({split})", _value(where)))
    if src.get("devkit"):
        rows.append(("devkit", src["devkit"]))
    if manifest.validation_labels:
        rows.append(("validation labels confirmed by", manifest.validation_labels))
    for archive in src.get("archives", []):
        rows.append(("input file", f"{archive['name']} ({archive['bytes']:,} bytes)"))
    for download in manifest.downloads:
        rows.append(("MD5", f"{download.get('name')}: {_md5(download)}"))
    return Table("Source", ("", ""), rows)


def _md5(download: dict[str, Any]) -> str:
    """What the build found of an archive's MD5.

    >>> _md5({"md5": "ab", "official": True, "md5_verified": True})
    'ab (the published MD5)'
    >>> _md5({"md5": None})
    "not taken (not an archive of image-net.org's name and size)"
    """
    md5 = download.get("md5")
    if download.get("official"):
        if md5 is None:
            return "not checked (--no-md5)"
        return f"{md5} (the published MD5)" if download.get("md5_verified") else str(md5)
    if md5 is None:
        return "not taken (not an archive of image-net.org's name and size)"
    return str(md5)


def timings(manifest: Manifest) -> Table:
    record = manifest.timings
    if not record:
        return Table(
            "Timings",
            ("phase", "seconds"),
            [],
            "This build's manifest records no timings (made before they were kept).",
        )
    seconds = record.get("seconds", {})
    what = {
        "inputs": "index the splits, read the boxes",
        "plan": "plan the shards, find those already done",
        "shards": "read, fix and write every shard",
        "finish": "MD5 and devkit checks, the formats' files, manifest",
        "total": "the whole run",
    }
    rows = [
        (phase, what.get(phase, ""), f"{seconds[phase]:,.1f}") for phase in what if phase in seconds
    ]
    images = sum(int(s.get("written", s.get("images", 0))) for s in manifest.splits.values())
    note = (
        f"{record.get('executor', '?')} executor, {record.get('workers', '?')} workers; "
        f"{record.get('shards_written', '?')} shard jobs run, "
        f"{record.get('shards_reused', 0)} kept from an earlier run"
    )
    shard_seconds = seconds.get("shards")
    if shard_seconds and not record.get("shards_reused"):
        note += f"; {images / shard_seconds:,.0f} images/s in the shard phase"
    return Table(
        "Timings of the run that finished the build", ("phase", "what", "seconds"), rows, note
    )


def checksums(manifest: Manifest) -> list[Table]:
    """Every file the manifest lists with its checksum, by format; the top-level files."""
    top: list[tuple[Any, ...]] = []
    for entry in (manifest.labels, manifest.bounding_boxes, manifest.validation_bounding_boxes):
        if entry:
            top.append((entry["file"], "", f"{entry['bytes']:,}", entry.get("xxh3_128", "")))
    tables = [Table("Files in OUT", ("file", "records", "bytes", "XXH3-128"), top)]
    for name, section in manifest.formats.items():
        rows: list[tuple[Any, ...]] = []
        for shard in section.get("shards", []):
            rows.append(
                (
                    shard["file"],
                    f"{shard.get('records', 0):,}",
                    f"{shard['bytes']:,}",
                    shard.get("xxh3_128", ""),
                )
            )
        for folder, entry in sorted(section.get("classes", {}).items()):
            rows.append(
                (
                    f"{name}/{folder}/",
                    f"{entry['count']:,}",
                    f"{entry['bytes']:,}",
                    entry.get("digest", ""),
                )
            )
        for side in section.get("side_files", []):
            rows.append((side["file"], "", f"{side['bytes']:,}", side.get("xxh3_128", "")))
        note = (
            "A class folder's digest is the sum, modulo 2**128, of an XXH3-128 per file (of "
            "its path and bytes): the same whatever order the files were written in."
            if section.get("classes")
            else ""
        )
        tables.append(Table(name, ("file", "records", "bytes", "XXH3-128"), rows, note))
    return tables
