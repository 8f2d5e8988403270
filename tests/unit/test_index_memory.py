"""The indexes of a full-size split stay columnar: 1.3 million images in a bounded memory.

A child process (so that nothing else of the test run is counted) builds the training index
of a synthetic listing as a source would (``SplitIndex.add`` per member, then ``sort``), and
reports its peak resident memory above what it held after its imports. Names as a list of
``str`` and a sort keyed by tuples cost about 390 MB here; the columns about 130 MB.

Another loads the training archive's kept index (``offset, size, parent, name`` a line) into
its member table and writes it back, as a build that indexed the archive keeps it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHILD = r"""
import json, sys
from imagenet_prep.labels import load_synsets
from imagenet_prep.sources.splitindex import SplitIndex

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
synsets = load_synsets()
import numpy, xxhash  # what sort() uses, imported before the baseline
base = rss("VmRSS:")
index = SplitIndex("train")
n = 0
for label, wnid in enumerate(synsets.wnids):
    for j in range(1300):  # shuffled within a class, as members of a class tar come
        index.add(f"{wnid}_{(j * 7919) % 100003}.JPEG", label, 512 * n, 110_000, label)
        n += 1
index.sort()
assert index.names[:3] == sorted(f"n01440764_{(j * 7919) % 100003}.JPEG" for j in range(1300))[:3]
assert list(index.labels[:2]) == [0, 0] and index.labels[-1] == 999
json.dump({"images": len(index), "peak": rss("VmHWM:") - base}, sys.stdout)
"""

#: Bytes per image at the peak while indexing and sorting (measured 2026-12-06: 99 with the
#: columns; 303 with names as a list of str and a sort keyed by tuples).
PEAK_PER_IMAGE = 130


def test_a_full_size_split_index_fits_its_memory_bound() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300, check=True
    )
    found = json.loads(done.stdout)
    images = found["images"]
    assert images == 1_300_000
    assert found["peak"] < PEAK_PER_IMAGE * images, f"{found['peak'] / images:.0f} B/image"


ARCHIVE_CHILD = r"""
import filecmp, json, sys
from pathlib import Path
from imagenet_prep.archive import MemberTable
from imagenet_prep.labels import load_synsets
from imagenet_prep.sources.indexcache import _load_cached_index, _save_index
from imagenet_prep.sources.layout import INDEX_VERSION

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024
tmp = Path(sys.argv[1])
archive = tmp / "ILSVRC2012_img_train.tar"  # what the kept index's head is checked against
archive.write_bytes(bytes(10240))
st = archive.stat()
wnids = load_synsets().wnids
head = {"version": INDEX_VERSION, "archive": archive.name, "size": st.st_size,
        "mtime_ns": st.st_mtime_ns, "md5": None, "count": 1300 * len(wnids),
        "nested": [[512 + 1024 * i, 512, f"{w}.tar"] for i, w in enumerate(wnids)]}
kept = tmp / "kept.idx"
with open(kept, "w", encoding="utf-8") as f:  # a class at a time: the writing stays small
    f.write(json.dumps(head) + "\n")
    for c, wnid in enumerate(wnids):
        f.write("".join(
            f"{512 * (1300 * c + j)}\t{110_000 + j}\t{wnid}.tar\t{wnid}_{j * 7919 % 100003}.JPEG\n"
            for j in range(1300)
        ))
base = rss("VmRSS:")
index = _load_cached_index(kept, archive)
assert index is not None and isinstance(index.members, MemberTable)
_save_index(tmp / "again.idx", index)  # as indexed_archive keeps a new index
assert filecmp.cmp(kept, tmp / "again.idx", shallow=False)
last = index.members[-1]
assert (last.parent, last.size) == (f"{wnids[-1]}.tar", 111_299), last
json.dump({"members": len(index.members), "peak": rss("VmHWM:") - base}, sys.stdout)
"""

#: Bytes per member at the peak while loading a kept index of the training archive and
#: writing it again (measured 2026-12-06, names of 20 bytes: 50 with the member table; 288
#: loaded as TarMember objects, 504 once the file was written back as one string).
PEAK_PER_MEMBER = 60


def test_a_full_size_archive_index_fits_its_memory_bound(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", ARCHIVE_CHILD, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    found = json.loads(done.stdout)
    members = found["members"]
    assert members == 1_300_000
    assert found["peak"] < PEAK_PER_MEMBER * members, f"{found['peak'] / members:.0f} B/member"
