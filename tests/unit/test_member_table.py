"""An archive's members as columns (``MemberTable``), and its index kept in OUT: written a
chunk of lines at a time in the format earlier versions kept, read back into the table."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest

from imagenet_prep.archive import ArchiveIndex, MemberTable, TarMember, index_tar
from imagenet_prep.manifest import OutputState
from imagenet_prep.sources import indexcache
from imagenet_prep.sources.indexcache import (
    _index_cache_path,
    _load_cached_index,
    _save_index,
    cached_md5,
    indexed_archive,
    record_md5,
)
from imagenet_prep.sources.layout import INDEX_VERSION

from .test_archive import make_tar

MEMBERS = [
    TarMember("n01440764_10026.JPEG", 1536, 110_000, "n01440764.tar"),
    TarMember("n01440764_2.JPEG", 112_640, 7, "n01440764.tar"),
    TarMember("README", 512, 0),
    TarMember("n01443537_ü é.JPEG", 1 << 40, 1 << 33, "n01443537.tar"),
    TarMember("n01443537_bad\udce9.JPEG", 5120, 3, "n01443537.tar"),  # not UTF-8 on disk
]


def train_archive(tmp_path: Path, classes: int = 3, per_class: int = 4) -> Path:
    """A training archive's shape: a tar of class tars, and a file beside them."""
    inner = [
        (
            f"n{c:08d}.tar",
            make_tar([(f"n{c:08d}_{j}.JPEG", bytes([j]) * (100 + j)) for j in range(per_class)]),
        )
        for c in range(classes)
    ]
    path = tmp_path / "ILSVRC2012_img_train.tar"
    path.write_bytes(make_tar([*inner, ("README", b"hello")]))
    return path


def test_a_table_reads_as_the_members_it_was_given() -> None:
    table = MemberTable(MEMBERS)
    assert len(table) == len(MEMBERS)
    assert [table[i] for i in range(len(MEMBERS))] == MEMBERS
    assert table[-1] == MEMBERS[-1] and table[-len(MEMBERS)] == MEMBERS[0]
    for i in (len(MEMBERS), -len(MEMBERS) - 1):
        with pytest.raises(IndexError):
            table[i]
    assert list(table) == MEMBERS and list(reversed(table)) == MEMBERS[::-1]
    assert table[1:4] == MEMBERS[1:4] and table[::-2] == MEMBERS[::-2]
    assert list(table.rows()) == [(m.name, m.offset, m.size, m.parent) for m in MEMBERS]
    assert MEMBERS[2] in table and table.index(MEMBERS[3]) == 3
    # Equal to the same members as a table, a list or a tuple (either side of ==).
    assert table == MemberTable(MEMBERS) and table == MEMBERS and tuple(MEMBERS) == table
    assert table != MemberTable(MEMBERS[:-1]) and table != MEMBERS[::-1] and table != "x"
    changed = [*MEMBERS[:-1], TarMember(MEMBERS[-1].name, 5120, 4, MEMBERS[-1].parent)]
    assert table != MemberTable(changed)
    assert pickle.loads(pickle.dumps(table)) == table
    assert repr(table) == "MemberTable(5 members)"
    empty = MemberTable()
    assert len(empty) == 0 and list(empty) == [] and empty == () and not empty


def test_a_table_is_filled_by_add_or_append() -> None:
    table = MemberTable()
    table.add("a.JPEG", 512, 10, "n1.tar")
    table.append(TarMember("b.JPEG", 1024, 20))
    assert list(table) == [TarMember("a.JPEG", 512, 10, "n1.tar"), TarMember("b.JPEG", 1024, 20)]


def test_an_index_lists_its_members_in_a_table(tmp_path: Path) -> None:
    path = train_archive(tmp_path, classes=2, per_class=2)
    index = index_tar(path, nested=True)
    assert isinstance(index.members, MemberTable)
    assert [(m.parent, m.name, m.size) for m in index.members] == [
        ("n00000000.tar", "n00000000_0.JPEG", 100),
        ("n00000000.tar", "n00000000_1.JPEG", 101),
        ("n00000001.tar", "n00000001_0.JPEG", 100),
        ("n00000001.tar", "n00000001_1.JPEG", 101),
        ("", "README", 5),
    ]
    data = path.read_bytes()
    m = index.members[-2]
    assert data[m.offset : m.offset + m.size] == bytes([1]) * 101
    assert [t.name for t in index.nested] == ["n00000000.tar", "n00000001.tar"]


def test_a_kept_index_is_written_in_chunks_in_its_format_and_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexcache, "_LINES_PER_WRITE", 5)  # 13 lines: chunks of 5, 5, 3
    archive = train_archive(tmp_path)
    state = OutputState(tmp_path / "out")
    first = indexed_archive(archive, nested=True, state=state)
    cache = _index_cache_path(state, archive)
    # The format earlier versions kept: a JSON head, then offset, size, parent, name a line.
    head, *lines = cache.read_text(encoding="utf-8").split("\n")
    st = archive.stat()
    assert json.loads(head) == {
        "version": INDEX_VERSION,
        "archive": archive.name,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "md5": None,
        "count": 13,
        "nested": [[t.offset, t.size, t.name] for t in first.nested],
    }
    assert lines == [f"{m.offset}\t{m.size}\t{m.parent}\t{m.name}" for m in first.members] + [""]
    again = indexed_archive(archive, nested=True, state=state)  # from the kept index
    assert isinstance(again.members, MemberTable)
    assert again == first and again.members == first.members and again.nested == first.nested


def test_odd_names_and_members_as_a_tuple_round_trip(tmp_path: Path) -> None:
    archive = tmp_path / "a.tar"
    archive.write_bytes(bytes(10240))
    st = archive.stat()
    # A name that was not UTF-8 in the archive is written back as its bytes, and read again.
    index = ArchiveIndex(str(archive), st.st_size, st.st_mtime_ns, "ab" * 16, tuple(MEMBERS))
    _save_index(tmp_path / "a.idx", index)
    assert b"n01443537_bad\xe9.JPEG" in (tmp_path / "a.idx").read_bytes()
    loaded = _load_cached_index(tmp_path / "a.idx", archive)
    assert loaded is not None and loaded.md5 == "ab" * 16
    assert loaded.members == MEMBERS and isinstance(loaded.members, MemberTable)


def test_a_cut_or_damaged_kept_index_is_not_used(tmp_path: Path) -> None:
    archive = train_archive(tmp_path)
    state = OutputState(tmp_path / "out")
    first = indexed_archive(archive, nested=True, state=state)
    cache = _index_cache_path(state, archive)
    whole = cache.read_bytes()
    assert _load_cached_index(cache, archive) == first
    last_line = whole.rstrip(b"\n").rfind(b"\n") + 1
    damaged = {
        "without its last line": whole[:last_line],
        "cut in its last name": whole[:-3],
        "without its last newline": whole[:-1],
        "cut in a number": whole[: whole.find(b"\n") + 3],
        "a line without its name": whole[:last_line] + b"1\t2\n",
        "a number that is not one": whole[:last_line] + b"x\t2\t\tREADME\n",
        "a line too many": whole + whole[last_line:],
        "only a head": whole[: whole.find(b"\n") + 1],
    }
    for why, data in damaged.items():
        cache.write_bytes(data)
        assert _load_cached_index(cache, archive) is None, why
        again = indexed_archive(archive, nested=True, state=state)  # indexed anew, kept
        assert again == first and cache.read_bytes() == whole, why


def test_an_md5_is_added_to_the_head_and_the_lines_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(indexcache, "_COPY_CHUNK", 7)  # the lines are copied in pieces
    archive = train_archive(tmp_path)
    state = OutputState(tmp_path / "out")
    first = indexed_archive(archive, nested=True, state=state)
    cache = _index_cache_path(state, archive)
    before = cache.read_bytes()
    record_md5(state, archive, "cd" * 16)
    after = cache.read_bytes()
    assert after.partition(b"\n")[2] == before.partition(b"\n")[2]
    assert json.loads(after.partition(b"\n")[0])["md5"] == "cd" * 16
    assert cached_md5(state, archive) == "cd" * 16
    assert not [p for p in os.listdir(cache.parent) if p != cache.name]  # no temporary left
    again = indexed_archive(archive, nested=True, state=state)
    assert again.md5 == "cd" * 16 and again.members == first.members
