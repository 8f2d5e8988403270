"""Archive indexes, kept in the output's bookkeeping folder with the archive's MD5 once known."""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ..archive import ArchiveIndex, MemberTable, TarMember, index_tar
from ..fsutil import atomic_open, read_bytes
from ..manifest import OutputState
from ..storage import is_url
from .layout import INDEX_VERSION

log = logging.getLogger(__name__)


# --- archive indexes, cached in the output folder -------------------------------------


def _index_cache_path(state: OutputState, archive: Path) -> Path:
    return state.index_file(archive.name)


def _read_head(f: TextIO, archive: Path) -> dict[str, Any] | None:
    """The first line of a kept index, if it was made from ``archive`` as it is now."""
    try:
        st = archive.stat()
        head = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    if (
        not isinstance(head, dict)
        or head.get("version") != INDEX_VERSION
        or head.get("size") != st.st_size
        or head.get("mtime_ns") != st.st_mtime_ns
    ):
        return None
    return head


def _open_binary(cache: Path) -> BinaryIO:
    """A kept index to read front to back: a local file, or an object read whole (a store's
    output keeps its indexes under its prefix, for a rerun on any machine)."""
    if not is_url(cache):
        return open(cache, "rb")
    data = read_bytes(cache)
    if data is None:
        raise FileNotFoundError(str(cache))
    return io.BytesIO(data)


def _open_text(cache: Path) -> TextIO:
    """A kept index to read line by line (see :func:`_open_binary`)."""
    # A name that was not UTF-8 in the archive (kept as surrogates by the walk) round-trips.
    return io.TextIOWrapper(
        _open_binary(cache), encoding="utf-8", errors="surrogateescape", newline="\n"
    )


def _cached_head(cache: Path, archive: Path) -> dict[str, Any] | None:
    try:
        with _open_text(cache) as f:
            return _read_head(f, archive)
    except OSError:
        return None


def _load_cached_index(cache: Path, archive: Path) -> ArchiveIndex | None:
    """The kept index of ``archive``, parsed line by line into a :class:`MemberTable`; None
    when there is none, it describes another file, or it is cut short or damaged."""
    members = MemberTable()
    add = members.add
    try:
        with _open_text(cache) as f:
            head = _read_head(f, archive)
            if head is None:
                return None
            for line in f:
                if line[-1:] != "\n":  # the last line cut short
                    return None
                offset, size, parent, name = line[:-1].split("\t", 3)
                add(name, int(offset), int(size), parent)
    except (OSError, ValueError):
        return None
    if len(members) != head.get("count"):
        return None
    try:
        nested = tuple(
            TarMember(name=str(name), offset=int(offset), size=int(size))
            for offset, size, name in head.get("nested", ())
        )
    except (TypeError, ValueError):
        return None
    return ArchiveIndex(
        path=str(archive),
        size=head["size"],
        mtime_ns=head["mtime_ns"],
        md5=head.get("md5"),
        members=members,
        nested=nested,
    )


def cached_md5(state: OutputState | None, archive: Path) -> str | None:
    """The MD5 an earlier run kept with ``archive``'s index, if the index still describes it."""
    if state is None:
        return None
    head = _cached_head(_index_cache_path(state, archive), archive)
    md5 = head.get("md5") if head is not None else None
    return md5 if isinstance(md5, str) else None


#: Lines of a kept index written at a time (about a MB), never the whole file as one string.
_LINES_PER_WRITE = 1 << 14
_COPY_CHUNK = 4 << 20


def record_md5(state: OutputState | None, archive: Path, md5: str) -> None:
    """Keep ``md5`` with ``archive``'s index in OUT, so that a rerun need not hash it again."""
    if state is None:
        return
    cache = _index_cache_path(state, archive)
    if _cached_head(cache, archive) is None:
        return
    with _open_binary(cache) as src:
        head = json.loads(src.readline())
        head["md5"] = md5
        with atomic_open(cache) as out:
            out.write(json.dumps(head).encode("utf-8") + b"\n")
            shutil.copyfileobj(src, out, _COPY_CHUNK)


def _save_index(cache: Path, index: ArchiveIndex) -> None:
    """Write ``index`` to ``cache``: a JSON head, then a line a member (offset, size, parent
    and name, between tabs), written some thousands of lines at a time, never as one string
    (locally under a temporary name, renamed; in a store, an upload that appears complete)."""
    head = {
        "version": INDEX_VERSION,
        "archive": os.path.basename(index.path),
        "size": index.size,
        "mtime_ns": index.mtime_ns,
        "md5": index.md5,
        "count": len(index.members),
        "nested": [[m.offset, m.size, m.name] for m in index.nested],
    }
    members = index.members
    rows = (
        members.rows()
        if isinstance(members, MemberTable)
        else ((m.name, m.offset, m.size, m.parent) for m in members)
    )
    with atomic_open(cache) as out:
        out.write(json.dumps(head).encode("utf-8") + b"\n")
        while text := "".join(
            f"{offset}\t{size}\t{parent}\t{name}\n"
            for name, offset, size, parent in itertools.islice(rows, _LINES_PER_WRITE)
        ):
            out.write(text.encode("utf-8", "surrogateescape"))


def indexed_archive(archive: Path, *, nested: bool, state: OutputState | None) -> ArchiveIndex:
    """Index ``archive`` (its headers), or reuse the index kept in OUT (with its MD5, if kept)."""
    cache = _index_cache_path(state, archive) if state is not None else None
    if cache is not None:
        cached = _load_cached_index(cache, archive)
        if cached is not None:
            log.info("reusing the index of %s (%d members)", archive.name, len(cached.members))
            return cached
    log.info("indexing %s", archive)
    index = index_tar(archive, nested=nested)
    if cache is not None:
        _save_index(cache, index)
    return index
