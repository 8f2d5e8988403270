#!/usr/bin/env python3
"""Run a command and report the peak of the SUMMED resident memory of its whole process tree.

Per-process maxima (``/usr/bin/time -v``, ``getrusage``) under-report a pool of workers: the
peak that matters is the sum at one instant. This samples every process in the tree
(``/proc/<pid>/statm``) every ``--interval`` seconds (default 0.01 s, i.e. 10 ms) and prints
the largest sum. Linux only, no dependencies.

    python bench/peak_memory.py -- imagenet-prep build --source S --output O --workers 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def _children_of(pid: int) -> list[int] | None:
    """``pid``'s children from ``/proc/<pid>/task/*/children`` (None where that is missing).

    Reading a few such files per process is much cheaper than reading every process's stat,
    which matters on a 2-core machine where the sampler shares the cores with the command.
    """
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except FileNotFoundError:
            return None
        except OSError:
            continue
    return out


def tree_rss(root: int) -> tuple[int, int]:
    """(summed RSS in bytes, number of processes) of ``root`` and all its descendants."""
    # A kernel without the children files: scan all of /proc instead.
    children = _children_map() if _children_of(root) is None else {}
    total = 0
    count = 0
    stack = [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * PAGE
            count += 1
        except OSError:
            pass
        stack.extend(children.get(pid, ()) if children else (_children_of(pid) or ()))
    return total, count


def measure(
    command: list[str],
    interval: float = 0.01,
    *,
    env: dict[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> dict[str, float]:
    """Run ``command`` (in ``env`` and ``cwd`` when given, else this process's); return its exit
    code, wall time, peak summed RSS and the most processes."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, cwd=cwd)
    peak = 0
    most = 0
    samples = 0
    while proc.poll() is None:
        rss, count = tree_rss(proc.pid)
        peak = max(peak, rss)
        most = max(most, count)
        samples += 1
        time.sleep(interval)
    return {
        "returncode": proc.returncode,
        "seconds": time.perf_counter() - start,
        "peak_rss_mb": peak / 1e6,
        "max_processes": most,
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between samples")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- command to run")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    result = measure(command, args.interval)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"peak summed RSS {result['peak_rss_mb']:.0f} MB over {result['max_processes']} "
            f"processes; {result['seconds']:.1f} s; exit {result['returncode']}",
            file=sys.stderr,
        )
    return int(result["returncode"])


if __name__ == "__main__":
    sys.exit(main())
