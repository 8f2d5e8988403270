#!/usr/bin/env python3
"""Is the new commit's `imagenet-prep build` more than --threshold % slower than the old one's?

    python bench/ab.py [--old REF] [--new REF] [--runs 5] [--threshold 5] [--memory full|free]
                       [--classes 100 --per-class 200 --val-per-class 10] [--workers 2]
                       [--formats F] [--no-compare] [-- EXTRA BUILD OPTIONS]

Issue 13's check: the build suite's median over at least 5 alternating runs of the old and
the new commit, in one session, is not more than 5% slower. Each side is a source tree: a
path to one (the working tree by default for --new), or a git ref, checked out once with
``git worktree add --detach /tmp/ab-<sha>`` (reused when it is there). Both sides run in the
same venv, ``<this python> -m imagenet_prep build ...`` with ``PYTHONPATH=<tree>/src``, so
that only the package's code differs; each side's ``imagenet_prep.__file__`` is printed once.

The download, the build command, the memory state and the handling of each run's output are
the build suite's (bench/run.py, bench/memstate.py): the same generated download (kept in
bench/out/), page cache warm, each run into a folder of its own, its output written back and
kept (``--memory full``) or freed (``--memory free``), the folders deleted after the last run.
The runs go old, new, old, new, ... in either memory mode (the suite's free mode runs each
command's runs in a row; here both sides are the same command). Then the outputs of each
side's last run are compared file by file (all but manifest.json and .imagenet-prep/): a
speed comparison of builds that write different bytes is no comparison, but a commit may
change its output on purpose, so a difference is reported, not an error.

Exit status: 0 when the new median is at most --threshold % above the old one, 1 when it is
more, 2 when a build fails.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memstate import MODES, MemoryState
from peak_memory import measure
from run import (
    PY,
    ROOT,
    Row,
    add_download_options,
    archives,
    busy_seconds,
    digest,
    fixture,
    image_stats,
    warm,
)

WORKTREES = Path("/tmp")
PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>
PROBE = (
    "import compileall, os, imagenet_prep; "
    "compileall.compile_dir(os.path.dirname(imagenet_prep.__file__), quiet=1); "
    "print(imagenet_prep.__file__)"
)


@dataclass
class Side(Row):
    """One side of the comparison: a source tree, its runs (Row's lists) and its output."""

    role: str = "ours"
    tree: Path = ROOT
    user_sys: list[float] = field(default_factory=list)  # CPU s from getrusage(children)
    fingerprint: tuple[tuple[str, int, int], ...] = ()

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "PYTHONPATH": str(self.tree / "src")}

    @property
    def user_sys_median(self) -> float:
        return statistics.median(self.user_sys) if self.user_sys else float("nan")


def git(*args: str, cwd: Path = ROOT) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout.strip()


def default_old() -> str:
    """The merge base with the branch's upstream when it has one, else HEAD~1."""
    try:
        git("rev-parse", "--abbrev-ref", "--symbolic-full-name", "@{upstream}")
    except SystemExit:
        return "HEAD~1"
    return git("merge-base", "HEAD", "@{upstream}")


def local_changes(tree: Path) -> int:
    """Files under the tree's src/ that differ from its checked-out commit (0 outside git)."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--", "src"], cwd=tree, capture_output=True, text=True
    )
    return len(proc.stdout.splitlines()) if proc.returncode == 0 else 0


def commit_line(rev: str, cwd: Path = ROOT) -> str:
    return git("log", "-1", "--format=%h %s", rev, cwd=cwd)[:72]


def source_tree(ref: str, created: list[Path]) -> tuple[Path, str]:
    """(tree, a line saying what it is) for a path to a source tree or a git ref."""
    path = Path(ref).expanduser()
    if (path / "src" / "imagenet_prep" / "__init__.py").is_file():
        tree = path.resolve()
        try:
            what = f"{tree}, at {commit_line('HEAD', tree)}"
        except SystemExit:
            return tree, f"{tree} (not a git checkout)"
        changed = local_changes(tree)
        if changed:
            what += f", with {changed} uncommitted change(s) in src/"
        return tree, what
    sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    tree = WORKTREES / f"ab-{sha[:12]}"
    if tree.exists():
        there = git("rev-parse", "HEAD", cwd=tree)
        if there != sha or local_changes(tree):
            raise SystemExit(
                f"{tree} is there but is not a clean checkout of {sha[:12]}: remove it "
                f"(git worktree remove --force {tree}) or pass a path"
            )
        how = "worktree reused"
    else:
        git("worktree", "add", "--detach", str(tree), sha)
        created.append(tree)
        how = "worktree added"
    return tree, f"{ref} = {commit_line(sha)} ({tree}, {how})"


def fingerprint(tree: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, size and mtime of every source file of the package: did it change meanwhile?"""
    package = tree / "src" / "imagenet_prep"
    return tuple(
        (str(p.relative_to(package)), (st := p.stat()).st_size, st.st_mtime_ns)
        for p in sorted(package.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    )


def probe(side: Side) -> None:
    """Compile the side's package (so that no timed run pays for it) and show that the side's
    python imports it from the side's tree."""
    proc = subprocess.run(
        [PY, "-c", PROBE], env=side.env, cwd=side.tree, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"{side.name}: importing imagenet_prep failed: {proc.stderr[-2000:]}")
    imported = Path(proc.stdout.strip())
    print(f"{side.name}: imagenet_prep.__file__ = {imported}")
    if not imported.is_relative_to(side.tree / "src"):
        raise SystemExit(f"{side.name}: imported from {imported}, not from {side.tree}/src")


def become_subreaper() -> None:
    """Adopt this process's orphaned descendants (``PR_SET_CHILD_SUBREAPER``).

    The build's workers are children of multiprocessing's fork server, which the build leaves
    to exit on its own: orphaned, it would be reaped by init, and its CPU time and its
    workers' would never reach ``getrusage(RUSAGE_CHILDREN)`` here. Adopted, it is reaped by
    ``reap_orphans`` and the build's whole process tree is counted.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def reap_orphans(timeout: float = 30.0) -> bool:
    """Wait for the adopted descendants of the last build to exit (untimed); False if some
    still run after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)


def children_cpu() -> float:
    """User + system seconds of every process this one has reaped (and those they reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def alternate(
    sides: list[Side],
    command: list[str],
    runs: int,
    scratch: Path,
    memory: MemoryState,
    compare: bool,
) -> None:
    """``runs`` rounds of one build of each side, each into a folder of its own under ``scratch``;
    the memory and the outputs handled as bench/run.py's ``timed`` does. Stops at a failure."""
    shutil.rmtree(scratch, ignore_errors=True)
    memory.before_group(runs * len(sides))
    try:
        for run_no in range(runs):
            for side in sides:
                out = scratch / f"{side.name}-run-{run_no}"
                out.mkdir(parents=True)
                busy, used = busy_seconds(), children_cpu()
                result = measure(
                    [*command, "--output", str(out / "out")], 0.01, env=side.env, cwd=out
                )
                busy = busy_seconds() - busy
                if not reap_orphans():
                    print(f"  WARNING: processes of {side.name}'s build still run after 30 s")
                used = children_cpu() - used
                if result["returncode"] != 0:
                    side.error = f"run {run_no + 1} exited with {result['returncode']}"
                    return
                side.seconds.append(float(result["seconds"]))
                side.cpu.append(busy)
                side.user_sys.append(used)
                side.peak_mb.append(float(result["peak_rss_mb"]))
                print(
                    f"  {side.name} run {run_no + 1}: {result['seconds']:.2f} s, {used:.2f} CPU s",
                    flush=True,
                )
                if compare and run_no == runs - 1:
                    side.digests = digest(out / "out")  # before --memory free truncates it
                memory.after_run(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def compare_outputs(old: Side, new: Side) -> tuple[bool, list[str]]:
    """(identical, lines saying how the last runs' outputs compare)."""
    a, b = old.digests or {}, new.digests or {}
    differ = sorted(n for n in a.keys() & b.keys() if a[n] != b[n])
    only_old, only_new = sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())
    skipped = "manifest.json and .imagenet-prep/"
    if not (differ or only_old or only_new):
        mb = sum(size for size, _ in a.values()) / 1e6
        return True, [f"output: identical, {len(a):,} files, {mb:,.1f} MB ({skipped} not compared)"]
    both = len(a.keys() & b.keys())
    lines = [
        f"output: DIFFERS ({skipped} not compared): {len(differ):,} of {both:,} "
        f"files in both differ, {len(only_old):,} only in old, {len(only_new):,} only in new; "
        "the build writes other bytes, so the times compare different work"
    ]
    for label, names in (("differ", differ), ("only in old", only_old), ("only in new", only_new)):
        if names:
            more = f" and {len(names) - 5:,} more" if len(names) > 5 else ""
            lines.append(f"  {label}: {', '.join(names[:5])}{more}")
    return False, lines


def main() -> int:
    parser = argparse.ArgumentParser(
        description=" ".join(__doc__.split("\n\n")[i] for i in (0, 2)).replace("``", "`"),
        epilog="Extra build options go after --, e.g. `-- --resize-shorter 160`; they are "
        "passed to both sides. Exit status: 0 within the threshold, 1 slower than it, 2 a "
        "build failed.",
    )
    parser.add_argument(
        "--old",
        metavar="REF",
        help="git ref or path to a source tree (default: the merge base with the branch's "
        "upstream, or HEAD~1 without one)",
    )
    parser.add_argument(
        "--new",
        metavar="REF",
        default=str(ROOT),
        help=f"git ref or path to a source tree (default: the working tree, {ROOT})",
    )
    parser.add_argument(
        "--runs", type=int, default=5, help="builds of each side, alternating (default: 5)"
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=5.0,
        metavar="PERCENT",
        help="how much slower new's median may be (default: 5, issue 13)",
    )
    parser.add_argument("--workers", type=int, default=2, help="build --workers (default: 2)")
    parser.add_argument(
        "--formats", help="build --formats (default: none passed, the build's tfrecord)"
    )
    parser.add_argument(
        "--memory",
        choices=MODES,
        default="full",
        help="the memory state every run starts in, as in bench/run.py (bench/memstate.py): "
        "full of clean page cache (default), or free",
    )
    parser.add_argument(
        "--no-compare",
        action="store_true",
        help="do not compare the two sides' output bytes (last run of each)",
    )
    parser.add_argument(
        "--keep-worktrees",
        action="store_true",
        help=f"keep the worktrees this run adds under {WORKTREES} for the next one (default: "
        "remove them at the end; ones that were there already are always kept)",
    )
    add_download_options(parser)
    parser.add_argument("build_options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args()
    extra = args.build_options
    if extra and extra[0] != "--":
        parser.error(f"unrecognized arguments: {' '.join(extra)} (build options go after --)")
    extra = extra[1:]
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    created: list[Path] = []
    try:
        return compare(args, extra, created)
    finally:
        for tree in created:
            if args.keep_worktrees:
                print(f"kept {tree} (git worktree remove {tree})")
            else:
                git("worktree", "remove", "--force", str(tree))


def compare(args: argparse.Namespace, extra: list[str], created: list[Path]) -> int:
    old_ref = args.old or default_old()
    sides = []
    for name, ref in (("old", old_ref), ("new", args.new)):
        tree, what = source_tree(ref, created)
        sides.append(Side(name, what, tree=tree))
        print(f"{name}: {what}")
    old, new = sides
    for side in sides:
        probe(side)
        side.fingerprint = fingerprint(side.tree)

    args.out.mkdir(parents=True, exist_ok=True)
    download = fixture(args, args.out)
    images, nbytes = image_stats(download)
    print(f"download: {download}, {images:,} images, {nbytes / 1e9:.2f} GB of image data")
    build = [PY, "-m", "imagenet_prep", "build", "--source", str(download), "--quiet"]
    build += ["--workers", str(args.workers)]
    if args.formats:
        build += ["--formats", args.formats]
    build += extra
    shown = " ".join(build[1:]).replace(str(download), download.name)
    print(
        f"{args.runs} run(s) of each side, alternating old/new; memory {args.memory}; "
        f"command: {shown} --output <run folder>/out",
        flush=True,
    )
    warm(download)
    become_subreaper()
    folder = args.out / "ab"
    folder.mkdir(exist_ok=True)
    memory = MemoryState(args.memory, folder, sum(p.stat().st_size for p in archives(download)))
    try:
        alternate(sides, build, args.runs, folder / "scratch", memory, not args.no_compare)
    finally:
        memory.close()

    for side in sides:
        if side.fingerprint != fingerprint(side.tree):
            print(f"WARNING: {side.tree}/src/imagenet_prep changed during the runs: {side.name}'s")
            print("  runs may not all have run the same code")
    failed = [s for s in sides if s.error]
    if failed:
        for s in failed:
            print(f"FAILED: {s.name} ({s.tree}): {s.error} (its stderr is above)")
        return 2

    print()
    print("| side | wall s | runs (min-max) | each run, in order | CPU s | busy s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for s in sides:
        each = " ".join(f"{t:.2f}" for t in s.seconds)
        print(
            f"| {s.name} | {s.median:.2f} | {s.spread} | {each} | {s.user_sys_median:.2f} "
            f"| {s.cpu_median:.2f} | {s.peak:,.0f} |"
        )
    print()
    print(
        "CPU s: user + system time of all the build's processes (getrusage of children, its "
        "fork server and workers adopted), median; "
        "busy s: the machine's (/proc/stat, the suite's CPU s), median."
    )
    ratio = new.median / old.median
    print(
        f"new/old: wall {ratio:.3f} (median {new.median:.3f} s / {old.median:.3f} s), "
        f"CPU {new.user_sys_median / old.user_sys_median:.3f}"
    )
    same = None
    if not args.no_compare:
        same, lines = compare_outputs(old, new)
        print("\n".join(lines))
    slower = ratio > 1 + args.threshold / 100
    change = f"{ratio - 1:.1%} slower" if ratio >= 1 else f"{1 - ratio:.1%} faster"
    notes = []
    if same is not None:
        notes.append("same output" if same else "OUTPUT DIFFERS")
    if args.runs < 5:
        notes.append("fewer than issue 13's 5 runs")
    print(
        f"{'FAIL' if slower else 'PASS'}: new is {change} than old (median of {args.runs} "
        f"alternating run(s) each: {new.median:.3f} s against {old.median:.3f} s; "
        f"limit {args.threshold:g}% slower){'; ' + ', '.join(notes) if notes else ''}"
    )
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
