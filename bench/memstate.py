"""The memory state each timed run starts in: full of clean page cache, or free.

A machine that has been up for a while has little free memory: the page cache holds what was
read and written, and new page cache comes from reclaiming its oldest clean pages. A fresh
virtual machine is the other way round, and this one (``virtio_balloon`` free page reporting)
hands memory that has been free for about half a second back to its host: writing into such
memory makes the host fault it in again: 2.6-2.8 s of kernel time per GB here (``dd`` of
1.87 GB into a new file, reading a sparse file), while ``cat`` copies the suite's 1.96 GB
in 0.6-0.9 s when its memory is recycled. Which of the two a timed command gets then
depends on how long ago the previous run's output was freed, not on the command.

- ``full`` (the suite's default): before each group of rows, free memory is filled with
  clean page cache by reading a sparse file (its holes read as zeros, nothing goes to
  disk) down to ``leave`` bytes, or until it has read the memory that was free plus 1 GB, or
  for at most ``seconds`` (a host whose proactive reclaim, DAMON ``pageout``, keeps about 5%
  of memory free whatever is read would otherwise never let the fill end); each run's
  output is written back (``sync``) and kept until the group ends, so every run, whatever
  the command, gets its memory from reclaim, as on a busy machine.
- ``free``: each run's output is truncated right after it (its memory freed), and the next
  run starts at once: a command that writes at once reuses those pages (``cat``), one that
  writes later gets memory the host has taken back meanwhile.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

MODES = ("full", "free")
CHUNK = 16 << 20


def mem_free() -> int:
    """Free memory in bytes (``MemFree`` in /proc/meminfo)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemFree:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/meminfo has no MemFree line")


def release(tree: Path) -> None:
    """Free the data of the files a run wrote under ``tree`` (truncate to 0), keeping them.

    Only regular files with no other link: a peer's work folder holds symbolic links to the
    download's archives (and a build with --link hard links), which must stay whole.
    """
    for folder, _dirs, files in os.walk(tree):
        for name in files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                os.truncate(path, 0)


class MemoryState:
    """Puts the machine in ``mode`` before each group of rows and keeps it there between runs."""

    def __init__(self, mode: str, folder: Path, run_bytes: int = 0, leave: int = 320 << 20) -> None:
        if mode not in MODES:
            raise ValueError(f"memory mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.leave = leave
        self.run_bytes = run_bytes  # about what one run writes (``full`` keeps it on disk)
        self._folder = folder
        self._fill = folder / "memory-fill.sparse"
        self._offset = 0

    def before_group(self, runs: int = 0) -> None:
        """Fill free memory with clean page cache (``full``).

        ``full`` keeps the ``runs`` runs' output until the group ends: without disk space
        for about ``runs * run_bytes`` it stops here, before any run, saying so.
        """
        if self.mode != "full":
            return
        need = runs * self.run_bytes * 11 // 10
        free = shutil.disk_usage(self._folder).free
        if need > free:
            raise SystemExit(
                f"{self._folder}: {free / 1e9:.1f} GB free, --memory full keeps every run's "
                f"output of a group until it ends (about {need / 1e9:.1f} GB here): use "
                "fewer --runs or --memory free"
            )
        self.top_up()

    #: The longest a fill may take (see ``full`` above).
    seconds = 60.0

    def top_up(self) -> None:
        """``full``: fill free memory with clean page cache again, down to ``leave`` (what a
        run freed as it ended: its processes' memory, files it deleted), within the bounds
        above."""
        if self.mode != "full":
            return
        buf = bytearray(CHUNK)
        budget = mem_free() + (1 << 30)
        deadline = time.monotonic() + self.seconds
        read = 0
        with open(self._fill, "ab"):
            pass
        with open(self._fill, "rb", buffering=0) as f:
            while mem_free() > self.leave and read < budget and time.monotonic() < deadline:
                end = self._offset + (256 << 20)
                if os.fstat(f.fileno()).st_size < end:
                    os.truncate(self._fill, end)  # more holes: no disk space is used
                f.seek(self._offset)
                while self._offset < end and (n := f.readinto(buf)):
                    self._offset += n
                    read += n

    def after_run(self, out: Path) -> None:
        """``full``: write the run's output back so that reclaim can take it without I/O.
        ``free``: free its memory at once."""
        if self.mode == "full":
            os.sync()
        else:
            release(out)

    def close(self) -> None:
        self._fill.unlink(missing_ok=True)
