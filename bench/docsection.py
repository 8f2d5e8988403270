"""docs/BENCHMARKS.md is assembled from sections that each benchmark script replaces in place."""

from __future__ import annotations

import os
import platform
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"


def machine() -> str:
    """One line about this machine: platform, CPU model, cores, memory."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "")
    mem = next(
        ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in ln
    )
    return f"{platform.platform()}; {cpu}; {os.cpu_count()} cores; {int(mem) / 1e6:.0f} GB RAM"


def write_section(name: str, body: str, docs: Path = DOCS) -> None:
    """Replace (or append) the section marked ``name`` in docs/BENCHMARKS.md with ``body``."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    current = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if begin in current:
        head, rest = current.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        current = head + block + ("\n" + tail if tail else "")  # a blank line before the text
    else:
        current = current.rstrip("\n") + "\n\n" + block
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(current)
