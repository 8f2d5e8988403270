#!/usr/bin/env python3
"""Object storage benchmark: `imagenet-prep build` reading its source from and writing its
output into an S3 server on 127.0.0.1 (moto's), against local disk: requests, bytes,
throughput, time; and `imagenet-prep verify` of a build in the store against one on disk.

    python bench/objstore.py [--download bench/out/download-10x50x5]
                             [--output-download bench/out/download-100x200x10] [--runs 3]
                             [--workers 2] [--memory full|free] [--wait-for TEXT]
                             [--max-foreign-cpu CORES] [--write-docs]
                             [--docs docs/BENCHMARKS.md]

Downloads are generated with `imagenet-prep fixture` when missing. Page cache warm; every group
of rows takes turns (a run of each row, then the next round), --runs rounds, in the memory
state that --memory names (bench/memstate.py, as bench/run.py and bench/ab.py do, its fill
bounded here: see BoundedMemory); every command with the same environment (this one's,
without its AWS_ variables, with the server's endpoint and keys, and XDG_CACHE_HOME in a
scratch folder). With --wait-for TEXT a run starts
only while no process whose command line holds TEXT runs (a test suite on a shared machine),
and a run that such a process overlapped is repeated; with --max-foreign-cpu CORES, the same
for the processes not started here using more than CORES cores (other jobs).

1. a moto S3 server on 127.0.0.1 in a session of its own (tests/s3server.py's `moto_server`,
   killed with its whole session at the end); --download's files uploaded into a bucket
   (boto3's `upload_file`, its default multipart and threads), timed apart from the builds;
   moto's cost of one request: a 1-byte ranged GET of each uploaded object, the median of a
   few (moto's server reads the whole object for every ranged GET, so it grows with the
   object, which S3's does not);
2. on --download (small: 10 classes of 50 images, 550 in all; see the report): the default
   build (tfrecord + box CSV, --workers, not --quiet: its summary's `object store:` lines
   give the requests and bytes) from local disk and from `s3://BUCKET/PREFIX` into local
   disk (the source side), and, for the default format and for `--formats
   tfrecord,webdataset`, local disk into the store and the store into the store, each
   against local disk into local disk;
3. on --output-download (the suite's 21,000 images): for both format lists, local disk into
   local disk and local disk into the store (the output side: moto does not read a whole
   object per request when it is written);
4. `imagenet-prep verify` of the default build, the last run's on disk against the last
   run's in the store (its own reads counted by a `python -c` wrapper around the command
   that prints `storage.tally()` at the end);
5. one more build into the store and its verify, untimed, through tests/s3server.py's
   `SlowDownProxy` with no failures, which logs every request: what the server was asked,
   by kind, against the summary's counts.

Each row: the median wall time, the machine's busy CPU time, images/s and MB/s of image input,
its ratio to local disk, the store's requests and bytes, the server's CPU time (its session's
processes in /proc) and peak memory during each run. Each run into the store writes under a
prefix of its own, deleted after the run (moto holds objects in its memory); the last run's
objects are first fetched and hashed and must equal, byte for byte, the local build's of the
same download and formats (every file but manifest.json and .imagenet-prep/): the script
exits 1 and writes no docs when they do not. The local builds' outputs are compared the same
way with the source side's.

moto is a Python server on the same cores as the build: the S3 rows are a floor for the
client's overhead plus moto's own cost, not a measure of S3's speed.
It changes to the repository's root first, so that the processes it starts run from there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.s3server
from docsection import DOCS, machine, write_section
from memstate import MODES, MemoryState, mem_free
from peak_memory import tree_rss
from run import (
    NOT_COMPARED,
    PY,
    ROOT,
    Row,
    archives,
    busy_seconds,
    digest,
    ensure_download,
    image_stats,
    warm,
)
from tests.s3server import S3Endpoint, SlowDownProxy, moto_server
from tests.sessions import in_session

OUT = ROOT / "bench" / "out"
# A small download: moto's cost of a ranged GET grows with the object (see the report).
DEFAULT_DOWNLOAD = OUT / "download-10x50x5"
# Its sizes, for a --download missing (and not named download-CxPxV).
FIXTURE_SIZES = argparse.Namespace(classes=10, per_class=50, val_per_class=5)
# The suite's download (bench/run.py's), for the output side: writing, moto reads no object.
DEFAULT_OUTPUT_DOWNLOAD = OUT / "download-100x200x10"
OUTPUT_FIXTURE_SIZES = argparse.Namespace(classes=100, per_class=200, val_per_class=10)
BUCKET = "imagenet-bench"  # the uploaded source
OUT_BUCKET = "imagenet-bench-out"  # the builds' outputs, a prefix a run
FORMAT_LISTS = ("tfrecord", "tfrecord,webdataset")
PROBES = 5  # ranged GETs of each object to time moto's cost of one request
TICK = os.sysconf("SC_CLK_TCK")
LOCAL, STORE_SIDE = "local disk", "moto S3"

# The summary's lines (cli/build.py's _summary).
WRITTEN = re.compile(r"images written in ([\d.]+) s")
STORE = re.compile(
    r"object store: ([\d,]+) requests read ([\d,]+) MB to index the archives(?:, [\d,]+ per GB)?;"
    r" ([\d,]+) requests read ([\d,]+) MB of images"
)
WROTE = re.compile(r"object store: ([\d,]+) requests wrote ([\d,]+) MB of outputs")
# `imagenet-prep verify` as the command runs it, then this process's count of its requests to
# object stores: verify works in one process and prints no count of its own.
VERIFY = (
    "import sys; from imagenet_prep.cli import main; from imagenet_prep import storage; "
    "status = main(sys.argv[1:]); "
    "print('object store tally:', *storage.tally(), *storage.tally_writes(), file=sys.stderr); "
    "sys.exit(status)"
)
TALLY = re.compile(r"object store tally: (\d+) (\d+) (\d+) (\d+)")


@dataclass
class Build(Row):
    """A command's runs (Row's lists), with what its summary and the server said of each."""

    source: str = LOCAL
    output: str = LOCAL
    formats: str = "tfrecord"
    to_store: bool = False  # each run writes under a prefix of its own in OUT_BUCKET
    keep: bool = False  # the last run's output is kept (for the verify rows): ``kept``
    kept: str = ""
    own: list[float] = field(default_factory=list)  # the summary's "written in" seconds
    # (index requests, index MB, image requests, image MB) from the `object store:` line
    store: list[tuple[int, int, int, int]] = field(default_factory=list)
    wrote: list[tuple[int, int]] = field(default_factory=list)  # (requests, MB) written
    # verify's own count (VERIFY): (requests, bytes read, write requests, bytes written)
    tallied: list[tuple[int, int, int, int]] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # moto's CPU seconds
    server_peak: list[float] = field(default_factory=list)  # moto's peak RSS, MB
    # the last run's prefix in the store: objects and their bytes, all and compared
    objects: tuple[int, int, int, int] | None = None
    open_uploads: int = 0  # multipart uploads left open under its prefixes, all runs
    foreign: list[float] = field(default_factory=list)  # CPU s of other processes in each run
    free: list[float] = field(default_factory=list)  # GB of free memory as each run started


class BoundedMemory(MemoryState):
    """bench/memstate.py's state with a short fill: memory this host's proactive reclaim gave
    back costs its faults again (about 2.7 s a GB), so a fill here stops after 3 s; the free
    memory each run starts with is recorded (``Build.free``)."""

    seconds = 3.0


Command = Callable[[str], list[str]]  # the command of a run writing its output to this place


def code_version() -> str:
    """The last commit that changed src/ (the code measured), and whether src/ differs
    from it."""
    git = ["git", "-C", str(ROOT)]
    head = subprocess.run(
        [*git, "log", "-1", "--format=%h", "--", "src"], capture_output=True, text=True
    )
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "src"], capture_output=True, text=True
    ).stdout.strip()
    return head.stdout.strip() + (" with changes to src/ not committed" if dirty else "")


def sizes_of(download: Path, default: argparse.Namespace) -> argparse.Namespace:
    """A generated download's sizes from its name (download-CLASSESxPERxVAL), or ``default``."""
    m = re.fullmatch(r"download-(\d+)x(\d+)x(\d+)", download.name)
    if m is None:
        return default
    return argparse.Namespace(classes=int(m[1]), per_class=int(m[2]), val_per_class=int(m[3]))


def session_cpu(sid: int) -> float:
    """CPU seconds (user and system, with the children it has waited for) of the live
    processes of session ``sid``."""
    ticks = 0
    for pid in in_session(sid):
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        ticks += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
    return ticks / TICK


@contextmanager
def peak_rss(pid: int, every: float = 0.05) -> Iterator[list[float]]:
    """Sample the summed RSS of ``pid`` and its descendants until the block ends: [peak MB]."""
    peak = [0.0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(pid)[0] / 1e6)
            stop.wait(every)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()


def upload(endpoint: S3Endpoint, download: Path, prefix: str) -> dict[str, float]:
    """Create the bucket and upload every file of ``download`` under ``prefix``: the files,
    bytes, seconds and the server's CPU seconds."""
    client = endpoint.client()
    client.create_bucket(Bucket=BUCKET)
    files = sorted(p for p in download.iterdir() if p.is_file())
    cpu = session_cpu(endpoint.sid)
    with peak_rss(endpoint.sid) as peak:
        started = time.perf_counter()
        for path in files:
            client.upload_file(str(path), BUCKET, f"{prefix}/{path.name}")
        seconds = time.perf_counter() - started
    return {
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "seconds": seconds,
        "server_cpu": session_cpu(endpoint.sid) - cpu,
        "server_peak": peak[0],
    }


def probe(endpoint: S3Endpoint, download: Path, prefix: str) -> list[tuple[str, int, float]]:
    """(name, size, median seconds) of a 1-byte ranged GET of each uploaded object, largest
    first. Untimed otherwise; it also leaves the server's copies in the page cache."""
    client = endpoint.client()
    found = []
    for path in sorted(download.iterdir(), key=lambda p: -p.stat().st_size):
        if not path.is_file():
            continue
        seconds = []
        for _ in range(PROBES):
            started = time.perf_counter()
            got = client.get_object(Bucket=BUCKET, Key=f"{prefix}/{path.name}", Range="bytes=0-0")
            got["Body"].read()
            seconds.append(time.perf_counter() - started)
        found.append((path.name, path.stat().st_size, statistics.median(seconds)))
    return found


def parse_summary(text: str, row: Build) -> None:
    """What a run's stderr says: a build's summary (a line it leaves out counts as 0), or
    verify's count (VERIFY)."""
    if (m := WRITTEN.search(text)) is not None:
        row.own.append(float(m.group(1)))
        m = STORE.search(text)
        a, b, c, d = (int(g.replace(",", "")) for g in m.groups()) if m else (0, 0, 0, 0)
        row.store.append((a, b, c, d))
        m = WROTE.search(text)
        w, mb = (int(g.replace(",", "")) for g in m.groups()) if m else (0, 0)
        row.wrote.append((w, mb))
    if (m := TALLY.search(text)) is not None:
        r, rb, w, wb = (int(g) for g in m.groups())
        row.tallied.append((r, rb, w, wb))


# -- the output bucket -----------------------------------------------------------------------


def list_prefix(client: Any, prefix: str) -> dict[str, int]:
    """Name (under ``prefix``) -> size of every object of OUT_BUCKET under ``prefix``."""
    found: dict[str, int] = {}
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=OUT_BUCKET, Prefix=f"{prefix}/")
    for page in pages:
        for obj in page.get("Contents", []):
            found[obj["Key"][len(prefix) + 1 :]] = obj["Size"]
    return found


def bucket_digest(client: Any, prefix: str, names: list[str]) -> dict[str, tuple[int, str]]:
    """Size and XXH3-128 of the objects ``names`` under ``prefix``, fetched whole with boto3
    (not with the code measured): what bench/run.py's ``digest`` gives of a folder."""

    def one(name: str) -> tuple[str, tuple[int, str]]:
        body = client.get_object(Bucket=OUT_BUCKET, Key=f"{prefix}/{name}")["Body"]
        h = xxhash.xxh3_128()
        size = 0
        for block in body.iter_chunks(1 << 20):
            h.update(block)
            size += len(block)
        return name, (size, h.hexdigest())

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(one, names))


def compared(names: dict[str, int]) -> list[str]:
    """The names a comparison takes: all but manifest.json and .imagenet-prep/ at the top."""
    return sorted(n for n in names if n.split("/", 1)[0] not in NOT_COMPARED)


def delete_prefix(client: Any, prefix: str, names: dict[str, int]) -> int:
    """Delete every object under ``prefix`` and abort its open multipart uploads (moto keeps
    objects in its memory); how many uploads were open."""
    keys = [f"{prefix}/{n}" for n in names]
    for i in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[i : i + 1000]]
        client.delete_objects(Bucket=OUT_BUCKET, Delete={"Objects": batch, "Quiet": True})
    found = client.list_multipart_uploads(Bucket=OUT_BUCKET, Prefix=f"{prefix}/")
    uploads = found.get("Uploads", [])
    for u in uploads:
        client.abort_multipart_upload(Bucket=OUT_BUCKET, Key=u["Key"], UploadId=u["UploadId"])
    return len(uploads)


def same_bytes(a: Build, b: Build) -> tuple[bool, str]:
    """Whether the last runs of ``a`` and ``b`` wrote the same files, byte for byte, and a
    line saying so (with the files by top folder)."""
    x, y = a.digests or {}, b.digests or {}
    skipped = "manifest.json and .imagenet-prep/ not compared"
    if not x or not y:
        return False, "NOT COMPARED (a build failed)"
    if x == y:
        mb = sum(size for size, _ in x.values()) / 1e6
        tops = Counter(n.split("/", 1)[0] + ("/" if "/" in n else "") for n in x)
        parts = ", ".join(
            f"{n:,} in {top}" if top.endswith("/") else top for top, n in tops.items()
        )
        return True, f"MATCH, byte for byte ({len(x):,} files, {mb:,.0f} MB: {parts}; {skipped})"
    differ = sorted(n for n in x.keys() & y.keys() if x[n] != y[n])
    only = sorted(x.keys() ^ y.keys())
    names = ", ".join([*differ, *only][:5])
    return False, (
        f"DIFFER ({len(differ):,} files differ, {len(only):,} in one only: {names}; {skipped})"
    )


# -- the runs --------------------------------------------------------------------------------


class Quiet:
    """Runs only on an otherwise quiet machine (this one is shared with other jobs).

    A run starts when no process whose command line holds one of ``patterns`` runs (a test
    suite) and the other processes (not this one's descendants, not the kernel's threads)
    used at most ``limit`` cores over half a second; it waits otherwise, polling every 30 s. A run
    during which such a process ran, or the others used more than ``limit`` cores on
    average, is repeated (``repeated``)."""

    def __init__(self, patterns: list[str], limit: float | None) -> None:
        self.patterns = [p.encode() for p in patterns]
        self.limit = limit
        self.waited = 0.0  # seconds spent waiting
        self.repeated = 0

    @staticmethod
    def snapshot() -> dict[int, tuple[int, float, bytes]]:
        """pid -> (parent, CPU seconds, command line) of every user-space process."""
        found = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{name}/stat").read_bytes()
                cmdline = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if not cmdline:  # a kernel thread (or a zombie)
                continue
            fields = stat[stat.rfind(b")") + 2 :].split()
            cpu = (int(fields[11]) + int(fields[12])) / TICK  # utime stime
            found[int(name)] = (int(fields[1]), cpu, cmdline)
        return found

    @staticmethod
    def mine(snap: dict[int, tuple[int, float, bytes]]) -> set[int]:
        """This process, its descendants and its ancestors (whose command lines may name a
        pattern) in ``snap``."""
        me = os.getpid()
        found = {me}
        pid = me
        while pid in snap and pid > 1:
            pid = snap[pid][0]
            found.add(pid)
        children: dict[int, list[int]] = {}
        for pid, (parent, _, _) in snap.items():
            children.setdefault(parent, []).append(pid)
        stack = [me]
        while stack:
            for child in children.get(stack.pop(), ()):
                found.add(child)
                stack.append(child)
        return found

    def intruders(self, snap: dict[int, tuple[int, float, bytes]], mine: set[int]) -> list[str]:
        return [
            f"{pid} {cmd.decode(errors='replace').strip()[:100]}"
            for pid, (_, _, cmd) in snap.items()
            if pid not in mine and any(p in cmd for p in self.patterns)
        ]

    @contextmanager
    def watch(self, every: float = 0.5) -> Iterator[dict[str, Any]]:
        """While the block runs: ``intruders`` (processes of ``patterns`` seen) and
        ``foreign`` (CPU seconds the others used), sampled every ``every`` s."""
        seen: dict[str, Any] = {"intruders": [], "foreign": 0.0}
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        ours: set[int] = set()
        stop = threading.Event()

        def sample(start: bool) -> None:
            snap = self.snapshot()
            ours.update(self.mine(snap))
            if not seen["intruders"]:
                seen["intruders"] = self.intruders(snap, ours)
            for pid, (_, cpu, _) in snap.items():
                if pid not in ours:
                    first.setdefault(pid, cpu if start else 0.0)
                    last[pid] = cpu

        def loop() -> None:
            while not stop.wait(every):
                sample(False)

        sample(True)
        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield seen
        finally:
            stop.set()
            thread.join()
            sample(False)
            seen["foreign"] = sum(last[p] - first[p] for p in last if p not in ours)

    def busy(self) -> list[str]:
        """Why a run may not start now (nothing: it may)."""
        with self.watch() as seen:
            time.sleep(0.5)
        why = list(seen["intruders"])
        if self.limit is not None and seen["foreign"] > self.limit * 0.5:
            why.append(f"other processes used {seen['foreign']:.2f} CPU s in 0.5 s")
        return why

    def wait(self) -> None:
        if not self.patterns and self.limit is None:
            return
        started = time.monotonic()
        said = False
        while why := self.busy():
            if not said:
                print(f"  waiting: {why[0]} (every 30 s)", flush=True)
                said = True
            time.sleep(30)
        self.waited += time.monotonic() - started

    def spoiled(self, seen: dict[str, Any], seconds: float) -> str:
        """Why a run that took ``seconds`` must be repeated (nothing: it stands)."""
        if seen["intruders"]:
            return f"{seen['intruders'][0]} ran too"
        if self.limit is not None and seen["foreign"] > self.limit * seconds:
            return f"other processes used {seen['foreign']:.2f} CPU s"
        return ""


def take_turns(
    group: list[tuple[Build, Command]],
    runs: int,
    scratch: Path,
    memory: MemoryState,
    env: dict[str, str],
    endpoint: S3Endpoint,
    tag: str,
    keep_dir: Path,
    quiet: Quiet,
) -> None:
    """``runs`` rounds of one run of each row, each into a folder of its own under
    ``scratch`` (deleted after the group) or a prefix of its own in OUT_BUCKET (deleted after
    the run, once its last run is hashed); the memory and the local outputs handled as
    bench/run.py's ``timed`` does; each run's stderr kept for its summary, the server watched.
    A run waits for ``quiet``, and is repeated when one of its processes came meanwhile."""
    shutil.rmtree(scratch, ignore_errors=True)
    memory.before_group(runs * sum(1 for row, _ in group if not row.to_store))
    client = endpoint.client()
    sid = endpoint.sid
    try:
        for run_no in range(runs):
            last = run_no == runs - 1
            for i, (row, command) in enumerate(group):
                if row.error:
                    continue
                attempt = 0
                while True:
                    quiet.wait()
                    name = f"{tag}-{i}-run-{run_no}" + (f"-again-{attempt}" if attempt else "")
                    out = scratch / name
                    out.mkdir(parents=True)
                    where = f"s3://{OUT_BUCKET}/{name}" if row.to_store else str(out / "out")
                    log = scratch / f"{name}.stderr"
                    server = session_cpu(sid)
                    free = mem_free() / 1e9
                    busy = busy_seconds()
                    with peak_rss(sid) as peak, quiet.watch() as seen, open(log, "wb") as err:
                        started = time.perf_counter()
                        done = subprocess.run(
                            command(where),
                            stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL,
                            stderr=err,
                            cwd=ROOT,
                            env=env,
                        )
                        seconds = time.perf_counter() - started
                    busy = busy_seconds() - busy
                    server = session_cpu(sid) - server
                    if not (why := quiet.spoiled(seen, seconds)):
                        row.foreign.append(seen["foreign"])
                        row.free.append(free)
                        break
                    print(
                        f"  {row.name} run {run_no + 1} ({seconds:.2f} s): {why}: again", flush=True
                    )
                    quiet.repeated += 1
                    attempt += 1
                    if row.to_store:
                        delete_prefix(client, name, list_prefix(client, name))
                    memory.after_run(out)
                    memory.top_up()
                text = log.read_text(errors="replace")
                if done.returncode != 0:
                    tail = " | ".join(text.strip().splitlines()[-3:])
                    row.error = f"run {run_no + 1} exited with {done.returncode}: {tail}"
                    print(f"  {row.name} run {run_no + 1}: {row.error}", flush=True)
                else:
                    row.seconds.append(seconds)
                    row.cpu.append(busy)
                    row.server_cpu.append(server)
                    row.server_peak.append(peak[0])
                    parse_summary(text, row)
                    print(
                        f"  {time.strftime('%H:%M:%S')} {row.name} [{row.formats}] "
                        f"run {run_no + 1}: {seconds:.2f} s "
                        f"(moto CPU {server:.2f} s, peak {peak[0]:,.0f} MB)",
                        flush=True,
                    )
                if row.to_store:
                    objects = list_prefix(client, name)
                    keep = last and row.keep and not row.error
                    if last and not row.error:
                        names = compared(objects)
                        row.digests = bucket_digest(client, name, names)
                        size = sum(s for s, _ in row.digests.values())
                        row.objects = (len(objects), sum(objects.values()), len(names), size)
                    if keep:
                        row.kept = where
                    else:
                        row.open_uploads += delete_prefix(client, name, objects)
                elif last and row.role != "verify" and not row.error:
                    # before --memory free truncates it
                    row.digests = digest(out / "out")
                    if row.keep:
                        keep_dir.mkdir(parents=True, exist_ok=True)
                        kept = keep_dir / name
                        (out / "out").rename(kept)
                        row.kept = str(kept)
                memory.after_run(out)
                memory.top_up()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def output_rows(
    download: Path, source_url: str | None, base: list[str], local_default: Build | None = None
) -> list[tuple[Build, Command]]:
    """For each format list: local disk into local disk (``local_default`` for the default
    format when given: a row already in the group), into the store, and, with
    ``source_url``, the store into the store."""
    rows: list[tuple[Build, Command]] = []
    src = str(download)
    for formats in FORMAT_LISTS:
        fmt = ["--formats", formats]
        if formats == "tfrecord" and local_default is not None:
            local = local_default
        else:
            local = Build(f"{LOCAL} → {LOCAL}", "", "ours", formats=formats)
            rows.append((local, lambda out, f=fmt: [*base, *f, "--source", src, "--output", out]))
        into = Build(
            f"{LOCAL} → {STORE_SIDE}",
            "",
            "ours",
            against=local,
            equals=local,
            output=STORE_SIDE,
            formats=formats,
            to_store=True,
        )
        rows.append((into, lambda out, f=fmt: [*base, *f, "--source", src, "--output", out]))
        if source_url is not None:
            both = Build(
                f"{STORE_SIDE} → {STORE_SIDE}",
                "",
                "ours",
                against=local,
                equals=local,
                source=STORE_SIDE,
                output=STORE_SIDE,
                formats=formats,
                to_store=True,
            )
            rows.append(
                (both, lambda out, f=fmt: [*base, *f, "--source", source_url, "--output", out])
            )
    return rows


def warm_tree(folder: Path) -> None:
    """Read every file under ``folder`` twice into the page cache (see bench/run.py's warm)."""
    for _ in range(2):
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                with open(path, "rb") as f:
                    while f.read(16 << 20):
                        pass


def kind(method: str, target: str) -> str:
    """What an S3 request (path style) asks for."""
    parts = urlsplit(target)
    query = parse_qs(parts.query, keep_blank_values=True)
    key = parts.path.lstrip("/").partition("/")[2]
    if method == "PUT":
        return "upload part" if "partNumber" in query else "PUT object"
    if method == "POST":
        if "uploads" in query:
            return "start multipart upload"
        if "uploadId" in query:
            return "complete multipart upload"
        return "delete objects (batch)" if "delete" in query else "POST"
    if method == "DELETE":
        return "abort multipart upload" if "uploadId" in query else "DELETE object"
    if not key:
        return "list" if method == "GET" else f"{method} bucket"
    return f"{method} object"


def census(
    endpoint: S3Endpoint, env: dict[str, str], download: Path, base: list[str]
) -> dict[str, Any]:
    """One build of ``download`` into the store (default format) and its verify, untimed,
    through a logging proxy: the requests the server was asked, by kind and status, and what
    the build's summary and verify's own count said."""
    name = "census"
    url = f"s3://{OUT_BUCKET}/{name}"
    found: dict[str, Any] = {}
    with SlowDownProxy(endpoint.url, fail_first=0) as proxy:
        via = {**env, **endpoint.via(proxy.url).env}
        for step, command in (
            ("build", [*base, "--source", str(download), "--output", url]),
            ("verify", [PY, "-c", VERIFY, "verify", url]),
        ):
            before = len(proxy.log)
            done = subprocess.run(
                command, stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=ROOT, env=via
            )
            if done.returncode != 0:
                raise RuntimeError(f"census {step} failed: {done.stderr[-2000:]}")
            log = proxy.log[before:]
            row = Build(step, "")
            parse_summary(done.stderr, row)
            found[step] = {
                "kinds": Counter(kind(m, t) for m, t, _ in log),
                "not 2xx": Counter(f"{kind(m, t)} {s}" for m, t, s in log if not 200 <= s < 300),
                "requests": len(log),
                "summary": row,
            }
    client = endpoint.client()
    delete_prefix(client, name, list_prefix(client, name))
    return found


# -- the report ------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def mb_pair(pairs: list[tuple[int, int]]) -> str:
    """``requests / MB``, the medians; empty when there were none."""
    if not any(r or mb for r, mb in pairs):
        return ""
    return f"{med([p[0] for p in pairs]):,.0f} / {med([p[1] for p in pairs]):,.0f}"


def output_table(rows: list[Build], images: int, nbytes: int) -> list[str]:
    lines = [
        "| source → output | formats | wall s | runs (min-max) | build's own s | CPU s "
        "| images/s | image MB/s | against local | store reads: requests / MB "
        "| store writes: requests / MB | moto CPU s | moto peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        head = f"| {r.source} → {r.output} | `{r.formats}` "
        if r.error or not r.seconds:
            lines.append(head + f"| failed: {r.error} | | | | | | | | | | |")
            continue
        base = r.against
        against = "" if base is None or not base.seconds else f"{r.median / base.median:.2f}x"
        reads = [(a + c, b + d) for a, b, c, d in r.store]
        lines.append(
            head + f"| {r.median:.2f} | {r.spread} | {med(r.own):.2f} | {r.cpu_median:.2f} "
            f"| {images / r.median:,.0f} | {nbytes / 1e6 / r.median:,.0f} | {against} "
            f"| {mb_pair(reads)} | {mb_pair(r.wrote)} | {med(r.server_cpu):.2f} "
            f"| {max(r.server_peak, default=0):,.0f} |"
        )
    return lines


def verify_table(rows: list[Build], images: int, out_bytes: int) -> list[str]:
    lines = [
        "| verify | wall s | runs (min-max) | CPU s | images/s | MB/s of output | against local "
        "| store reads: requests / MB | moto CPU s | moto peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    local = rows[0]
    for r in rows:
        if r.error or not r.seconds:
            lines.append(f"| {r.name} | failed: {r.error} | | | | | | | | |")
            continue
        against = "" if r is local or not local.seconds else f"{r.median / local.median:.2f}x"
        reads = [(t[0], round(t[1] / 1e6)) for t in r.tallied]
        lines.append(
            f"| {r.name} | {r.median:.2f} | {r.spread} | {r.cpu_median:.2f} "
            f"| {images / r.median:,.0f} | {out_bytes / 1e6 / r.median:,.0f} | {against} "
            f"| {mb_pair(reads) or '0'} "
            f"| {med(r.server_cpu):.2f} | {max(r.server_peak, default=0):,.0f} |"
        )
    return lines


def census_lines(found: dict[str, Any], images: int) -> list[str]:
    build, verify = found["build"], found["verify"]
    wrote = build["summary"].wrote
    read = build["summary"].store
    tallied = verify["summary"].tallied

    def kinds(step: dict[str, Any]) -> str:
        text = ", ".join(f"{k} {n:,}" for k, n in step["kinds"].most_common())
        odd = ", ".join(f"{k}: {n:,}" for k, n in step["not 2xx"].most_common())
        return text + (f" (not 2xx: {odd})" if odd else "")

    writes = sum(
        n
        for k, n in build["kinds"].items()
        if k.startswith(("PUT", "upload", "start", "complete", "delete", "DELETE", "abort"))
    )
    summary_writes = wrote[0][0] if wrote else 0
    summary_reads = sum(read[0][i] for i in (0, 2)) if read else 0
    return [
        f"What the server was asked (one more build of the {images:,}-image download from local "
        "disk into the store, default format, and its verify; untimed, through "
        "tests/s3server.py's `SlowDownProxy` with no failures, which logs every request):",
        "",
        f"- build: {build['requests']:,} requests: {kinds(build)}. Its summary counted "
        f"{summary_writes:,} write requests (the server saw {writes:,} that write or delete) and "
        f"{summary_reads:,} that read (the server saw {build['requests'] - writes:,} others).",
        f"- verify: {verify['requests']:,} requests: {kinds(verify)}. Its own count "
        f"(`storage.tally()`): {tallied[0][0] if tallied else 0:,}.",
        "",
    ]


def report(
    args: argparse.Namespace,
    groups: dict[str, Any],
    sent: dict[str, float],
    probes: list[tuple[str, int, float]],
    found: dict[str, Any],
    quiet: Quiet,
    code: list[str],
) -> tuple[str, list[str]]:
    """The section's text and the comparisons that failed."""
    small, big = groups["small"], groups["big"]
    local, s3 = small["local"], small["s3"]
    images, nbytes, url = small["images"], small["bytes"], small["url"]
    failed: list[str] = []
    lines = [
        f"Code: {code[0]}"
        + (
            f" at the start, {code[-1]} at the end (it changed meanwhile)"
            if code[-1] != code[0]
            else ""
        )
        + ".",
        "",
        "### Reading the source from the store",
        "",
        f"{images:,} images, {nbytes / 1e9:.2f} GB of image data ({nbytes / images / 1e3:.0f} KB "
        f"an image); default build (tfrecord + box CSV), --workers {args.workers}, summary on "
        f"(not --quiet); the source on local disk against `{url}` on a moto S3 server "
        f"(tests/s3server.py) on 127.0.0.1; the output on local disk in both; page "
        f"cache warm; memory {args.memory} (bench/memstate.py); median of {args.runs} "
        f"run{'' if args.runs == 1 else 's'} each, taking turns (with the rows of the same "
        "download below).",
        "",
        "| source | wall s | runs (min-max) | build's own s | CPU s | images/s "
        "| image MB/s | against local | moto CPU s | moto peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in (local, s3):
        if r.error or not r.seconds:
            lines.append(f"| {r.name} | failed: {r.error} | | | | | | | | |")
            continue
        against = "" if r is local or not local.seconds else f"{r.median / local.median:.2f}x"
        lines.append(
            f"| {r.name} | {r.median:.2f} | {r.spread} | {med(r.own):.2f} | {r.cpu_median:.2f} "
            f"| {images / r.median:,.0f} | {nbytes / 1e6 / r.median:,.0f} | {against} "
            f"| {med(r.server_cpu):.2f} | {max(r.server_peak, default=0):,.0f} |"
        )
    lines += [
        "",
        "build's own s: the summary's time (`images written in ... s`), without the "
        "process's start-up. CPU s: the machine's busy time during the run (every process, "
        "the server's too, and the kernel; /proc/stat). moto CPU s: the server's user and "
        "system time during the run (its session's processes in /proc); moto peak MB: its "
        "resident memory at most, sampled every 50 ms.",
        "",
    ]
    if s3.store:
        ireq, imb, greq, gmb = (statistics.median(s[k] for s in s3.store) for k in range(4))
        per_gb = ireq / (imb / 1e3) if imb else float("nan")
        lines += [
            "Requests and bytes, from the S3 build's summary (`object store:` line, MB rounded "
            "there; median of the runs):",
            "",
            "| pass | requests | MB read | MB a request | requests per GB |",
            "|---|---|---|---|---|",
            f"| index (the summary's `to index the archives`) | {ireq:,.0f} | {imb:,.0f} "
            f"| {imb / max(ireq, 1):,.1f} | {per_gb:,.1f} |",
            f"| images (shard tasks, by range) | {greq:,.0f} | {gmb:,.0f} "
            f"| {gmb / max(greq, 1):,.1f} | {greq / (gmb / 1e3) if gmb else float('nan'):,.1f} |",
            f"| all | {ireq + greq:,.0f} | {imb + gmb:,.0f} | | |",
            "",
            f"Image bytes read from the store against the images' own: {gmb / (nbytes / 1e6):.2f}x "
            "(neighbours closer than 1 MiB are read in one request, the bytes between included).",
            "",
        ]
    ok, text = same_bytes(local, s3)
    lines += [f"Output, S3 source against local source (last runs): {text}.", ""]
    if not ok:
        failed.append(f"S3 source against local source: {text}")
    lines += [
        f"Upload (untimed in the builds): {sent['files']:.0f} files, {sent['bytes'] / 1e6:,.0f} "
        f"MB in {sent['seconds']:.1f} s ({sent['bytes'] / 1e6 / sent['seconds']:,.0f} MB/s), "
        f"boto3 `upload_file` (8 MB parts, 10 threads); moto CPU {sent['server_cpu']:.1f} s, "
        f"peak {sent['server_peak']:,.0f} MB.",
        "",
        "moto's cost of one request, a 1-byte ranged GET (median of "
        f"{PROBES}): "
        + "; ".join(f"{name} ({size / 1e6:,.1f} MB) {s * 1e3:,.1f} ms" for name, size, s in probes)
        + ". moto's server reads the whole object for every ranged GET and slices it "
        "(moto/s3/responses.py, `_handle_range_header`), so its cost grows with the object: "
        "S3's does not.",
        "",
        "Why a small download for the source side, not the suite's 21,000 images: there the "
        "training tar is 1.87 GB, so each of a build's about 21,000 ranged GETs (one per "
        "image: a shuffled shard's images lie far apart) would cost moto about 1 s of reading "
        "the whole object, 5 to 6 hours a build, which measures moto and not the build. "
        "`--download` takes any other download.",
        "",
        "### Writing the output into the store",
        "",
        f"`--output s3://{OUT_BUCKET}/<a prefix a run>` on the same moto server against "
        "`--output` on local disk; the default format and `--formats tfrecord,webdataset` "
        "(both with the box CSV); the rest as above. Each run into the store writes under a "
        "prefix of its own, deleted after the run (untimed: moto keeps objects under 5 MiB in "
        "its memory, larger ones in temporary files); the local outputs are kept until the "
        "group ends, as bench/run.py does. store reads and writes: the summary's `object "
        "store:` lines (requests, MB rounded there; median of the runs). against local: the "
        "time over local disk into local disk, same download and formats.",
        "",
    ]
    sections = []
    if big is not None:
        sections.append((big, "the suite's download"))
    sections.append((small, "the source side's download: the store into the store"))
    for group, what in sections:
        lines += [
            f"{group['images']:,} images, {group['bytes'] / 1e9:.2f} GB of image data ({what}):",
            "",
            *output_table(group["outputs"], group["images"], group["bytes"]),
            "",
        ]
    lines += ["Outputs in the store against the same build on local disk (last runs):", ""]
    for group, _what in sections:
        for r in group["outputs"]:
            if not r.to_store:
                continue
            ok, text = same_bytes(r.equals, r) if r.equals is not None else (False, "no pair")
            if not ok:
                failed.append(f"{r.name} [{r.formats}], {group['images']:,} images: {text}")
            extra = ""
            if r.objects is not None:
                n, size, c, _ = r.objects
                extra = (
                    f"; the prefix held {n:,} objects, {size / 1e6:,.0f} MB: {n - c:,} more "
                    "than compared (manifest.json and .imagenet-prep/: journal, lock, "
                    "options, indexes)"
                )
            if r.open_uploads:
                extra += f"; {r.open_uploads:,} multipart uploads left open"
            lines.append(
                f"- {r.source} → {r.output}, `{r.formats}`, {group['images']:,} images: "
                f"{text}{extra}."
            )
    lines.append("")
    verify = groups["verify"]
    if verify is not None:
        rows, vimages, out_bytes = verify["rows"], verify["images"], verify["bytes"]
        lines += [
            f"`imagenet-prep verify` of the default build of the {vimages:,} images (the last "
            f"runs above; {out_bytes / 1e6:,.0f} MB of files the manifest lists), one process, "
            "taking turns; run as `python -c` around the command's `main` that then prints "
            "`storage.tally()`, the requests and bytes it read from the store. MB/s of output: "
            "those MB over the time.",
            "",
            *verify_table(rows, vimages, out_bytes),
            "",
        ]
    if found:
        lines += census_lines(found, images)
    rows = [local, s3, *small["outputs"], *(big["outputs"] if big else [])]
    rows += groups["verify"]["rows"] if groups["verify"] else []
    free = [f for r in rows for f in r.free]
    if args.memory == "full" and free:
        lines += [
            f"Memory full, bounded: before each run free memory is filled with clean page cache "
            f"for at most {BoundedMemory.seconds:.0f} s (this host's proactive reclaim, DAMON "
            "`pageout`, keeps about 5% of memory free whatever is read, so bench/memstate.py's "
            f"fill down to 320 MB does not end here); the runs started with {min(free):.1f}-"
            f"{max(free):.1f} GB free (median {statistics.median(free):.1f} GB).",
            "",
        ]
    if args.wait_for or args.max_foreign_cpu is not None:
        foreign = max((f for r in rows for f in r.foreign), default=0.0)
        what = []
        if args.wait_for:
            what.append(f"no process named {' or '.join(args.wait_for)} ran (--wait-for)")
        if args.max_foreign_cpu is not None:
            what.append(
                f"the processes not started by the script used at most {args.max_foreign_cpu} "
                "cores (--max-foreign-cpu: over 0.5 s before each run, and on average during "
                "it)"
            )
        lines += [
            f"This machine is shared: runs were taken only while {' and '.join(what)}; "
            f"{quiet.repeated} run{' was' if quiet.repeated == 1 else 's were'} repeated; in "
            f"the runs kept, other processes used at most {foreign:.2f} CPU s.",
            "",
        ]
    lines += [
        "moto is a Python server on the same "
        f"{os.cpu_count()} cores as the build: an S3 row's extra time is a floor for the "
        "client's overhead (signing, HTTP, s3fs) plus moto's own cost, not a measure of S3's "
        "speed, which depends on the network and on how many requests run at once.",
    ]
    return "\n".join(lines), failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--download",
        type=Path,
        default=DEFAULT_DOWNLOAD,
        help="the source side's download, made when missing (default: %(default)s)",
    )
    parser.add_argument(
        "--output-download",
        type=Path,
        default=DEFAULT_OUTPUT_DOWNLOAD,
        help="the output side's download, from local disk only, made when missing; the same "
        "as --download to skip it (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each row (default: 3)")
    parser.add_argument("--workers", type=int, default=2, help="build --workers (default: 2)")
    parser.add_argument(
        "--memory",
        choices=MODES,
        default="full",
        help="the memory state every run starts in (bench/memstate.py): full of clean page "
        "cache (default), or free",
    )
    parser.add_argument(
        "--wait-for",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only while no process whose command line holds TEXT runs (another job on "
        "a shared machine, e.g. pytest): wait for it, repeat a run it overlapped (repeatable)",
    )
    parser.add_argument(
        "--max-foreign-cpu",
        type=float,
        default=None,
        metavar="CORES",
        help="run only while the processes not started here use at most CORES cores, and "
        "repeat a run during which they used more on average (default: no limit)",
    )
    parser.add_argument("--write-docs", action="store_true", help="update the docs' section")
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS,
        help="the file --write-docs updates (default: %(default)s)",
    )
    args = parser.parse_args()
    begun = time.perf_counter()
    code = [code_version()]
    download = args.download.resolve()
    ensure_download(download, sizes_of(download, FIXTURE_SIZES))
    big = args.output_download.resolve()
    separate = big != download
    if separate:
        ensure_download(big, sizes_of(big, OUTPUT_FIXTURE_SIZES))
    os.chdir(ROOT)

    images, nbytes = image_stats(download)
    print(f"download: {images:,} images, {nbytes / 1e9:.2f} GB of image data", flush=True)
    scratch = OUT / "scratch-objstore"
    keep_dir = OUT / "scratch-objstore-kept"
    cache = OUT / "scratch-objstore-cache"
    prefix = download.name
    url = f"s3://{BUCKET}/{prefix}"
    workers = ["--workers", str(args.workers)]
    base = [PY, "-m", "imagenet_prep", "build", *workers]
    local = Build(LOCAL, "", "ours")
    s3 = Build(f"`{url}` (moto, loopback)", "", "ours", source=STORE_SIDE)
    small_outputs = output_rows(download, url, base, local_default=local)
    groups: dict[str, Any] = {
        "small": {
            "images": images,
            "bytes": nbytes,
            "url": url,
            "local": local,
            "s3": s3,
            "outputs": [local, *(r for r, _ in small_outputs)],
        },
        "big": None,
        "verify": None,
    }
    memory = BoundedMemory(args.memory, OUT, sum(p.stat().st_size for p in archives(download)))
    found: dict[str, Any] = {}
    quiet = Quiet(args.wait_for, args.max_foreign_cpu)
    try:
        with moto_server() as endpoint:
            print(f"moto S3 server at {endpoint.url}", flush=True)
            quiet.wait()  # the upload and the probes are timed too
            sent = upload(endpoint, download, prefix)
            print(
                f"uploaded {sent['bytes'] / 1e6:,.0f} MB in {sent['seconds']:.1f} s "
                f"(moto CPU {sent['server_cpu']:.1f} s)",
                flush=True,
            )
            probes = probe(endpoint, download, prefix)
            name, size, each = probes[0]
            print(
                f"moto: a ranged GET of {name} ({size / 1e6:,.0f} MB) takes {each:.3f} s (it "
                f"reads the whole object each time, one request at a time per object); at up "
                f"to a request an image, the server alone needs up to {images * each / 60:,.1f} "
                "min a build from the store",
                flush=True,
            )
            endpoint.client().create_bucket(Bucket=OUT_BUCKET)
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(endpoint.env)
            env["XDG_CACHE_HOME"] = str(cache)  # an output in a store keeps a cache folder
            src = str(download)
            small_group: list[tuple[Build, Command]] = [
                (local, lambda out: [*base, "--source", src, "--output", out]),
                (s3, lambda out: [*base, "--source", url, "--output", out]),
                *small_outputs,
            ]
            verify_from = small_group
            verify_images, verify_bytes = images, nbytes
            if separate:
                big_outputs = output_rows(big, None, base)
                verify_from = big_outputs
                verify_images, verify_bytes = image_stats(big)
                groups["big"] = {
                    "images": verify_images,
                    "bytes": verify_bytes,
                    "outputs": [r for r, _ in big_outputs],
                }
            for row, _ in verify_from:  # the default format's builds, local and into the store
                if row.formats == "tfrecord" and row.source == LOCAL:
                    row.keep = True
            print(f"source side and store into store: {images:,} images", flush=True)
            warm(download)
            take_turns(small_group, args.runs, scratch, memory, env, endpoint, "s", keep_dir, quiet)
            if separate:
                print(f"output side: {verify_images:,} images", flush=True)
                memory.run_bytes = sum(p.stat().st_size for p in archives(big))
                warm(big)
                take_turns(
                    big_outputs, args.runs, scratch, memory, env, endpoint, "l", keep_dir, quiet
                )
            kept = [r for r, _ in verify_from if r.keep]
            on_disk = next(r for r in kept if not r.to_store)
            in_store = next(r for r in kept if r.to_store)
            if on_disk.kept and in_store.kept:
                print("verify", flush=True)
                v_local = Build(f"`{LOCAL}`", "", "verify")
                v_s3 = Build(f"`{STORE_SIDE}`", "", "verify", to_store=False)
                warm_tree(Path(on_disk.kept))
                take_turns(
                    [
                        (v_local, lambda _o: [PY, "-c", VERIFY, "verify", on_disk.kept]),
                        (v_s3, lambda _o: [PY, "-c", VERIFY, "verify", in_store.kept]),
                    ],
                    args.runs,
                    scratch,
                    memory,
                    env,
                    endpoint,
                    "v",
                    keep_dir,
                    quiet,
                )
                client = endpoint.client()
                gone = in_store.kept.split("/", 3)[3]
                delete_prefix(client, gone, list_prefix(client, gone))
                groups["verify"] = {
                    "rows": [v_local, v_s3],
                    "images": verify_images,
                    "bytes": sum(s for s, _ in (on_disk.digests or {}).values()),
                }
            print("census through a logging proxy", flush=True)
            found = census(endpoint, env, download, base)
    finally:
        memory.close()
        shutil.rmtree(keep_dir, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    code.append(code_version())
    text, failed = report(args, groups, sent, probes, found, quiet, code)
    print(text)
    took = time.perf_counter() - begun
    print(
        f"bench/objstore.py took {took / 60:.1f} min, of which {quiet.waited / 60:.1f} min "
        f"waiting for {', '.join(args.wait_for) or 'nothing'}",
        flush=True,
    )
    if failed:
        for line in failed:
            print(f"OUTPUT MISMATCH: {line}", file=sys.stderr, flush=True)
        print("bench/objstore.py: outputs differ; docs not written", file=sys.stderr)
        return 1
    if args.write_docs:
        command = "python bench/objstore.py " + " ".join(sys.argv[1:])
        write_section(
            "objstore-bench",
            f"## Object storage (`bench/objstore.py`)\n\nMachine: {machine()}. Date: "
            f"{date.today()}. Command: `{command}` (`make bench`).\n\n{text}",
            args.docs,
        )
        print(json.dumps({"wrote": str(args.docs)}))
    rows = [r for g in (groups["small"], groups["big"]) if g for r in g["outputs"]] + [s3]
    if groups["verify"] is not None:
        rows += groups["verify"]["rows"]
    return 1 if any(r.error for r in rows) or groups["verify"] is None else 0


if __name__ == "__main__":
    sys.exit(main())
