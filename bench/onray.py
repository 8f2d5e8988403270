#!/usr/bin/env python3
"""Ray benchmark: `imagenet-prep build --executor ray` on a Ray instance started beforehand
against `--executor local`, Ray's start-up apart, and a projection to ImageNet-1k and -21k.

    python bench/onray.py [--download bench/out/download-100x200x10] [--runs 3] [--workers 2]
                          [--memory full|free] [--write-docs] [--docs docs/BENCHMARKS.md]

On the generated download (made with `imagenet-prep fixture` when missing, bench/run.py's
sizes), page cache warm:

1. a Ray head of --workers CPUs on 127.0.0.1 (tests/raycluster.py: `ray start --head`, killed
   with its whole session at the end), timed until a driver can connect; then a driver's
   start-up on it, as a build's (a new process: `import ray`, RayExecutor's connect and node
   check, the start of the job's worker processes, an empty task's round trip, a one-off
   task, the disconnect);
2. the default build (tfrecord, --workers, --quiet) with `--executor local` and with
   `--executor ray --ray-address ADDR`, taking turns, --runs each, in the memory state that
   --memory names (bench/memstate.py, as bench/run.py and bench/ab.py do); the median of
   each, their ratio against the issue's target (Ray at most 1.25x local), and the outputs of
   the last runs compared (every file but manifest.json and .imagenet-prep/, and
   manifest.json without its "created" time); then the same pair with --decode-check, work
   bound by the CPU, over which a build's fixed costs spread as over a real download's;
3. after the head is gone: a driver's start-up with a local Ray instance started for it, and
   one `--executor ray` build without an address (the instance's start-up included);
4. the Ray tasks such a build runs, counted by running the same build once, untimed, through
   a counting wrapper around the inline engine (the pipeline hands every engine the same
   calls), and the train index's time alone: the per-image cost per core and the per-task
   overhead, and from them a projection on paper to ImageNet-1k and ImageNet-21k on 1 to 64
   nodes of --node-cores cores.

It changes to the repository's root first, so that the processes it starts run from there.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.raycluster
from docsection import DOCS, machine, write_section
from memstate import MODES, MemoryState
from peak_memory import measure
from run import (
    MD5_GBPS,
    OFFICIAL_BYTES,
    PY,
    ROOT,
    Row,
    archives,
    busy_seconds,
    digest,
    ensure_download,
    image_stats,
    same_output,
    warm,
)
from tests.raycluster import in_session, ray_head, use_loopback

from imagenet_prep.config import OFFICIAL_BOX_FILES, BuildConfig
from imagenet_prep.executors import InlineExecutor
from imagenet_prep.labels import load_synsets
from imagenet_prep.pipeline import build
from imagenet_prep.pipeline.shards import TASK_IMAGES
from imagenet_prep.plan import plan_split
from imagenet_prep.sources import BOX_BATCH, discover, index_train

T = TypeVar("T")
R = TypeVar("R")

OUT = ROOT / "bench" / "out"
DEFAULT_DOWNLOAD = OUT / "download-100x200x10"
# bench/run.py's download sizes, for --download when it is missing.
FIXTURE_SIZES = argparse.Namespace(classes=100, per_class=200, val_per_class=10)
TARGET = 1.25  # issue: Ray on a running instance at most 1.25x the local engine
NODES = (1, 4, 16, 64)

# A driver's start-up, in a process of its own as a build's is: `import ray`; what
# RayExecutor does on entering (connect: ray.init; then the node check, a task per node); the
# first empty task on each CPU (the job's worker processes start); EMPTY_TASKS more empty
# tasks on the warm workers (a task's round trip); an empty one-off task beside them (its
# worker process starts for it, as the train index's does); leaving (disconnect; a local
# instance is stopped then). argv: workers, address ("" for a local instance started for it).
DRIVER = """
import json, sys, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
from imagenet_prep.executors.ray_executor import RayExecutor
from imagenet_prep.worker import process_shards
ex = RayExecutor(int(sys.argv[1]), sys.argv[2] or None)
t2 = time.perf_counter()
with ex:
    t3 = time.perf_counter()
    list(ex.map_unordered(process_shards, [()] * ex.workers))
    t4 = time.perf_counter()
    list(ex.map_unordered(process_shards, [()] * int(sys.argv[3])))
    t5 = time.perf_counter()
    ex.run_aside(process_shards, ()).result()
    t6 = time.perf_counter()
t7 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "init": ex.startup_seconds, "ready": t3 - t2,
                  "workers": t4 - t3, "task": (t5 - t4) / int(sys.argv[3]),
                  "aside": t6 - t5, "exit": t7 - t6}))
"""
EMPTY_TASKS = 200


@dataclass(frozen=True)
class Dataset:
    """A download projected on paper: its images, bytes and the tasks a build of it runs."""

    name: str
    train: int
    validation: int
    nbytes: float
    train_shards: int
    validation_shards: int
    box_xmls: int
    helpers: int  # one-off tasks beside the others (the train index, the devkit, MD5s)
    note: str

    @property
    def images(self) -> int:
        return self.train + self.validation

    @property
    def tasks(self) -> int:
        return (
            shard_tasks(self.train, self.train_shards)
            + shard_tasks(self.validation, self.validation_shards)
            + math.ceil(self.box_xmls / BOX_BATCH)
            + self.helpers
        )


DATASETS = (
    Dataset(
        "ImageNet-1k",
        1_281_167,
        50_000,
        OFFICIAL_BYTES,
        1024,
        128,
        OFFICIAL_BOX_FILES,
        4,
        "the official archives (154.6 GB with val), default shards (1,024 + 128), the "
        "544,546 box XMLs; helpers: the train index, the devkit, the two archives' MD5",
    ),
    Dataset(
        "ImageNet-21k",
        13_200_000,
        0,
        1.2e12,
        10_240,
        1,
        0,
        1,
        "about 13.2 M images, 1.2 TB, as if laid out like ILSVRC2012's train archive (no "
        "source layout reads it today), no validation split, no boxes, --train-shards "
        "10240 (about 1,290 images a shard, as ImageNet-1k's 1,251; with the default 1,024 "
        "no more than 1,024 cores could be busy); helper: the train index",
    ),
)


def shard_tasks(images: int, shards: int) -> int:
    """Ray tasks for ``shards`` shards of ``images`` images: consecutive shards go to a task
    together until it holds ``TASK_IMAGES`` images (pipeline/shards.py's ``batched``), so about
    one a shard for shards of 256 images or more.

    >>> shard_tasks(1_281_167, 1024), shard_tasks(20_000, 1024)
    (1024, 74)
    """
    if images == 0:
        return 0
    tasks = held = 0
    for spec in plan_split("train", images, shards):
        held += spec.size
        if held >= TASK_IMAGES:
            tasks, held = tasks + 1, 0
    return tasks + (held > 0)


class Counting:
    """An engine that runs everything inline and counts the tasks it is given, by function."""

    same_machine = False  # inline: results are handed back as they are

    def __init__(self) -> None:
        self.inner = InlineExecutor()
        self.workers = 1
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> Counting:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        name = getattr(fn, "__name__", type(fn).__name__)
        for item in items:
            self.counts[name] += 1
            yield fn(item)

    def release(self) -> None:
        """No workers to stop."""

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        self.counts[getattr(fn, "__name__", type(fn).__name__)] += 1
        return self.inner.run_aside(fn, *args)


@dataclass
class Build(Row):
    """A build's runs (Row's lists), and its last run's manifest without its "created" time."""

    manifest: dict[str, Any] | None = None


def count_tasks(download: Path, scratch: Path) -> tuple[Counter[str], int, float, int]:
    """The tasks the default build hands its engine, by function (one untimed inline build);
    the shards it wrote; the train index's time alone (the best of two) and its images."""
    shutil.rmtree(scratch, ignore_errors=True)
    out = scratch / "out"
    engine = Counting()
    package_log = logging.getLogger("imagenet_prep")
    level = package_log.level
    package_log.setLevel(logging.ERROR)
    try:
        build(BuildConfig(source=download, output=out, workers=1), executor=engine)
        shards = sum(1 for _ in (out / "tfrecord").iterdir())
    finally:
        package_log.setLevel(level)
        shutil.rmtree(scratch, ignore_errors=True)
    layout, synsets = discover(download), load_synsets()
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        index = index_train(layout, synsets, None)
        best = min(best, time.perf_counter() - started)
    return engine.counts, shards, best, len(index)


def driver_startup(workers: int, address: str, runs: int) -> dict[str, float]:
    """Median seconds of a driver's start-up parts (``DRIVER``) over ``runs`` new processes."""
    parts: dict[str, list[float]] = {}
    for _ in range(runs):
        done = subprocess.run(
            [PY, "-c", DRIVER, str(workers), address, str(EMPTY_TASKS)],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if done.returncode != 0:
            raise SystemExit(f"a Ray driver failed to start: {done.stderr[-2000:]}")
        for name, seconds in json.loads(done.stdout.splitlines()[-1]).items():
            parts.setdefault(name, []).append(seconds)
    return {name: statistics.median(values) for name, values in parts.items()}


def settle(sid: int, baseline: int, seconds: float = 15.0) -> None:
    """Wait (untimed) until the head's session is back to ``baseline`` processes: the worker
    processes of a finished Ray build end after its driver, and would share the next run's
    cores."""
    deadline = time.monotonic() + seconds
    while len(in_session(sid)) > baseline and time.monotonic() < deadline:
        time.sleep(0.05)


def take_turns(
    group: list[tuple[Build, Callable[[Path], list[str]]]],
    runs: int,
    scratch: Path,
    memory: MemoryState,
    head: tuple[int, int] | None = None,
) -> None:
    """``runs`` rounds of one run of each build, each into a folder of its own under
    ``scratch``; the memory and the outputs handled as bench/run.py's ``timed`` does (the
    runs take turns in either memory mode, as in bench/ab.py: the rows are builds of the
    same work). ``head``: the Ray head's session and its process count when idle."""
    shutil.rmtree(scratch, ignore_errors=True)
    memory.before_group(runs * len(group))
    try:
        for run_no in range(runs):
            for i, (row, command) in enumerate(group):
                if row.error:
                    continue
                out = scratch / f"{i}-run-{run_no}"
                out.mkdir(parents=True)
                busy = busy_seconds()
                result = measure(command(out / "out"), 0.01, cwd=ROOT)
                busy = busy_seconds() - busy
                if result["returncode"] != 0:
                    row.error = f"run {run_no + 1} exited with {result['returncode']}"
                    continue
                row.seconds.append(float(result["seconds"]))
                row.cpu.append(busy)
                print(f"  {row.name} run {run_no + 1}: {result['seconds']:.2f} s", flush=True)
                if run_no == runs - 1:  # before --memory free truncates it
                    row.digests = digest(out / "out")
                    manifest = json.loads((out / "out" / "manifest.json").read_text())
                    manifest.pop("created", None)
                    row.manifest = manifest
                memory.after_run(out)
                if head is not None:
                    settle(*head)
                memory.top_up()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def same_manifest(a: Build, b: Build) -> str:
    if a.manifest is None or b.manifest is None:
        return "not compared"
    if a.manifest == b.manifest:
        return 'MATCH (without its "created" time)'
    x, y = a.manifest, b.manifest
    keys = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
    return f'DIFFER (without its "created" time) in {", ".join(keys)}'


def report(
    args: argparse.Namespace,
    builds: dict[str, Build],
    images: int,
    nbytes: int,
    head_seconds: float,
    on_head: dict[str, float],
    local_instance: dict[str, float],
    counts: Counter[str],
    shards: int,
    index: tuple[float, int],
) -> str:
    local, ray, instance = builds["local"], builds["ray"], builds["instance"]
    cpus = args.workers
    lines = [
        f"{images:,} images, {nbytes / 1e9:.2f} GB of image data ({nbytes / images / 1e3:.0f} KB "
        f"an image); default build (tfrecord + box CSV), --workers {cpus}, --quiet; a Ray head "
        f"of {cpus} CPUs on 127.0.0.1 started beforehand; page cache warm; memory "
        f"{args.memory} (bench/memstate.py); median of the runs.",
        "",
        "| build | wall s | runs (min-max) | CPU s | images/s | images/s per CPU | against local |",
        "|---|---|---|---|---|---|---|",
    ]
    local_heavy, ray_heavy = builds["local_heavy"], builds["ray_heavy"]
    for r in (local, ray, instance, local_heavy, ray_heavy):
        if r.error or not r.seconds:
            lines.append(f"| {r.name} | failed: {r.error} | | | | | |")
            continue
        base = local_heavy if r is ray_heavy else local
        against = "" if r in (local, local_heavy) else f"{r.median / base.median:.2f}x"
        lines.append(
            f"| {r.name} | {r.median:.2f} | {r.spread} | {r.cpu_median:.2f} "
            f"| {images / r.median:,.0f} | {images / r.median / cpus:,.0f} | {against} |"
        )
    lines += [
        "",
        "CPU s: the machine's busy time during the run (every process, the Ray head's and its "
        "workers' too, and the kernel; /proc/stat), median.",
        "",
    ]
    if not (local.seconds and ray.seconds):
        return "\n".join(lines)
    # What a build on the running head pays once: its driver's start-up and stop, the start
    # of the job's worker processes (on every node at once), and of the train index's
    # one-off worker, which the shards wait for.
    fixed = sum(on_head[k] for k in ("import", "ready", "workers", "aside", "exit"))
    for what, lo, hi in (
        ("the default build", local, ray),
        ("the build with --decode-check", local_heavy, ray_heavy),
    ):
        if not (lo.seconds and hi.seconds):
            continue
        ratio = hi.median / lo.median
        net = (hi.median - fixed) / lo.median
        pairs = [r / x for x, r in zip(lo.seconds, hi.seconds, strict=False)]
        lines += [
            f"Ray on the running head against local, {what}: {ratio:.2f}x (each round: "
            f"{min(pairs):.2f}-{max(pairs):.2f}x); without the {fixed:.2f} s a driver pays once "
            f"to start on Ray (below): {net:.2f}x. Target, at most {TARGET}x: "
            f"{'PASS' if ratio <= TARGET else 'FAIL'} ({'PASS' if net <= TARGET else 'FAIL'} "
            "without the start-up).",
            "",
            f"Output, Ray against local, {what} (last runs): {same_output(lo, hi)}; "
            f"manifest.json {same_manifest(lo, hi)}.",
            "",
        ]
    if instance.digests:
        lines.append(
            f"Output, the local Ray instance's build against local: "
            f"{same_output(local, instance)}; manifest.json {same_manifest(local, instance)}."
        )
    lines += [
        "",
        "Ray's start-up:",
        "",
        f"- `ray start --head` ({cpus} CPUs) until a driver connects: {head_seconds:.1f} s, "
        "once for the cluster, not in any build's time (tests/raycluster.py's check: a new "
        "process tries `ray.init(address)` until it works, so the time includes one driver's "
        "import and connect).",
        f"- a driver on the running head, as a build's (a new process, median of {args.runs}): "
        f"`import ray` {on_head['import']:.2f} s; connect (`ray.init(address)`) "
        f"{on_head['init']:.2f} s, with the node check (a task on each node) "
        f"{on_head['ready']:.2f} s; its first task on each CPU, which starts the job's worker "
        f"processes, {on_head['workers']:.2f} s; a one-off task (run beside the others, as "
        f"the train index is; its worker process ends after it) {on_head['aside']:.2f} s; "
        f"disconnect {on_head['exit']:.2f} s: "
        f"{fixed:.2f} s in all, which every build pays once (the local engine starts its fork "
        "server and workers instead).",
        f"- an empty task (process_shards of no shard) on the warm workers: "
        f"{on_head['task'] * 1e3:.1f} ms of wall time each ({EMPTY_TASKS} tasks, "
        f"{2 * cpus} in flight).",
        f"- a driver starting a local Ray instance of {cpus} CPUs (no address; median of "
        f"{args.runs}): `import ray` {local_instance['import']:.2f} s; `ray.init()` starting "
        f"the instance {local_instance['init']:.2f} s, with the node check "
        f"{local_instance['ready']:.2f} s; the workers' start {local_instance['workers']:.2f} "
        f"s; stopping the instance {local_instance['exit']:.2f} s.",
    ]
    if instance.seconds:
        lines.append(
            f"- the whole build with a local instance (one run, its start-up and stop "
            f"included): {instance.median:.2f} s, {instance.median / local.median:.2f}x local."
        )
    lines += [
        "",
        *per_task(args, local, ray, images, nbytes, fixed, on_head, counts, shards, index),
    ]
    return "\n".join(lines)


def per_task(
    args: argparse.Namespace,
    local: Build,
    ray: Build,
    images: int,
    nbytes: int,
    fixed: float,
    on_head: dict[str, float],
    counts: Counter[str],
    shards: int,
    index: tuple[float, int],
) -> list[str]:
    """The per-task figures and the projection to ImageNet-1k and -21k on N nodes."""
    cpus = args.workers
    tasks = sum(counts.values())
    index_seconds, train_images = index
    helpers = {k: v for k, v in counts.items() if k not in ("process_shards", "parse_box_batch")}
    # Core-seconds an image costs, all but the train index (a serial task), as if every core
    # were busy the whole local build: an upper bound.
    per_image = max(local.median - index_seconds, 0.0) * cpus / images
    extra = ray.median - local.median
    # What Ray adds per task once its costs paid once a build are taken out: wall seconds on
    # this cluster, and core-seconds (spread over its CPUs).
    overhead_wall = max(extra - fixed, 0.0) / tasks
    overhead = overhead_wall * cpus
    lines = [
        f"Tasks a build of this download runs: {tasks:,} (counted: the same build, untimed, "
        "through a counting engine): "
        f"{plural(counts['process_shards'], 'shard batch')} (process_shards: {shards:,} shards, "
        f"consecutive ones together until a task holds {TASK_IMAGES} images), "
        f"{plural(counts['parse_box_batch'], 'box-parse batch')} (parse_box_batch, "
        f"{BOX_BATCH} XMLs each) and {plural(sum(helpers.values()), 'helper')} "
        f"({', '.join(f'{k} {v}' for k, v in sorted(helpers.items()))}).",
        "",
        f"- images/s per CPU: local {images / local.median / cpus:,.0f}, Ray "
        f"{images / ray.median / cpus:,.0f}; an image costs {per_image * 1e3:.3f} ms of a core "
        f"(the local build's wall time less the train index, times {cpus} cores, over the "
        "images: an upper bound, serial moments count as busy).",
        f"- per-task overhead, (Ray - local) / tasks: {extra / tasks * 1e3:.1f} ms of wall "
        f"time. Of the {extra:.2f} s, {fixed:.2f} s are paid once a build (above); the rest, "
        f"{max(extra - fixed, 0.0):.2f} s, is {overhead_wall * 1e3:.1f} ms of wall time a "
        f"task, {overhead * 1e3:.1f} ms of a core ({cpus} CPUs); an empty task's round trip: "
        f"{on_head['task'] * 1e3:.1f} ms.",
        f"- the train index alone ({train_images:,} images, one process, best of 2): "
        f"{index_seconds:.2f} s, {index_seconds / train_images * 1e6:.1f} us an image.",
        "",
        f"Projection on paper, N nodes of {args.node_cores} cores, with the figures above:",
        "",
        "wall = what a build pays once + train index + (images x image cost + tasks x task "
        "overhead) / busy cores, where busy cores = min(N x cores, tasks). It assumes: the "
        "CPU-bound work scales linearly with cores, and an image there costs what one of "
        f"{nbytes / images / 1e3:.0f} KB costs here (per-byte work, the copy and the CRC, "
        "grows with larger images); the shared storage delivers the input rate in the "
        "MB/s column (and takes about as much output) and is not the limit; tasks are of "
        "equal size; the train index is built once, by one task, its time here scaled by "
        "the images; the cluster is running already (its start-up not counted) and its "
        f"nodes start their worker processes at once, as the {cpus} CPUs here do; the per-task "
        "overhead spreads over the cores. The last column is the time to add if it were "
        "paid one task after another by the driver instead.",
        "",
        "| download | images | GB | tasks | nodes | busy cores | wall | of which tasks "
        "| input MB/s needed | + overhead if serial |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for data in DATASETS:
        index_part = index_seconds / train_images * data.train
        for nodes in NODES:
            busy = min(nodes * args.node_cores, data.tasks)
            work = (data.images * per_image + data.tasks * overhead) / busy
            wall = fixed + index_part + work
            lines.append(
                f"| {data.name} | {data.images / 1e6:.2f} M | {data.nbytes / 1e9:,.0f} "
                f"| {data.tasks:,} | {nodes} | {busy:,} | {duration(wall)} | {duration(work)} "
                f"| {data.nbytes / work / 1e6:,.0f} | {duration(data.tasks * overhead_wall)} |"
            )
    lines += [""]
    lines += [f"- {data.name}: {data.note}." for data in DATASETS]
    one_k = DATASETS[0]
    lines.append(
        f"- ImageNet-1k with the MD5 check: one helper task hashes the {one_k.nbytes / 1e9:.0f} "
        f"GB at about {MD5_GBPS} GB/s, about {one_k.nbytes / MD5_GBPS / 1e9 / 60:.0f} min "
        "beside the shards: no build is quicker than that (none with --no-md5)."
    )
    return lines


def plural(n: int, what: str) -> str:
    return f"{n:,} {what}" + ("" if n == 1 else "es" if what.endswith("h") else "s")


def duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:,.1f} min"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--download",
        type=Path,
        default=DEFAULT_DOWNLOAD,
        help="a generated download, made when missing (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="builds of each engine (default: 3)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="build --workers, and the CPUs of the Ray head and of the local instance (default: 2)",
    )
    parser.add_argument(
        "--memory",
        choices=MODES,
        default="full",
        help="the memory state every run starts in (bench/memstate.py): full of clean page "
        "cache (default), or free",
    )
    parser.add_argument(
        "--node-cores", type=int, default=32, help="cores a node in the projection (default: 32)"
    )
    parser.add_argument("--write-docs", action="store_true", help="update the docs' section")
    parser.add_argument(
        "--docs",
        type=Path,
        default=DOCS,
        help="the file --write-docs updates (default: %(default)s)",
    )
    args = parser.parse_args()
    download = ensure_download(args.download.resolve(), FIXTURE_SIZES)
    # No process started here may find this file on its path as `ray` (a `python -c` has the
    # working folder there), nor a cluster other than ours.
    os.chdir(ROOT)
    os.environ.pop("RAY_ADDRESS", None)
    use_loopback()  # every driver started from here: 127.0.0.1 only, this run's token

    images, nbytes = image_stats(download)
    print(f"download: {images:,} images, {nbytes / 1e9:.2f} GB of image data", flush=True)
    scratch = OUT / "scratch-ray"
    warm(download)
    counts, shards, index_seconds, train_images = count_tasks(download, scratch)
    print(f"tasks a build runs: {dict(counts)}", flush=True)

    workers = ["--workers", str(args.workers)]
    base = [PY, "-m", "imagenet_prep", "build", "--source", str(download), "--quiet", *workers]
    builds = {
        "local": Build("`--executor local`", "", "ours"),
        "ray": Build("`--executor ray --ray-address ADDR`", "", "ours"),
        "instance": Build("`--executor ray`, a local instance started for the run", "", "ours"),
        "local_heavy": Build("`--executor local --decode-check`", "", "ours"),
        "ray_heavy": Build("`--executor ray --ray-address ADDR --decode-check`", "", "ours"),
    }
    memory = MemoryState(args.memory, OUT, sum(p.stat().st_size for p in archives(download)))
    try:
        started = time.perf_counter()
        with ray_head(args.workers) as (address, sid):
            head_seconds = time.perf_counter() - started
            print(f"Ray head at {address}, ready in {head_seconds:.1f} s", flush=True)
            on_head = driver_startup(args.workers, address, args.runs)
            time.sleep(2)  # the probes' worker processes end after them
            idle = len(in_session(sid))
            on = [*base, "--executor", "ray", "--ray-address", address]
            take_turns(
                [
                    (builds["local"], lambda out: [*base, "--output", str(out)]),
                    (builds["ray"], lambda out: [*on, "--output", str(out)]),
                ],
                args.runs,
                scratch,
                memory,
                head=(sid, idle),
            )
            # The same with every image decoded: CPU-bound work, over which a build's fixed
            # costs spread as over a real download's.
            take_turns(
                [
                    (
                        builds["local_heavy"],
                        lambda out: [*base, "--decode-check", "--output", str(out)],
                    ),
                    (
                        builds["ray_heavy"],
                        lambda out: [*on, "--decode-check", "--output", str(out)],
                    ),
                ],
                args.runs,
                scratch,
                memory,
                head=(sid, idle),
            )
        local_instance = driver_startup(args.workers, "", args.runs)
        take_turns(
            [(builds["instance"], lambda out: [*base, "--executor", "ray", "--output", str(out)])],
            1,
            scratch,
            memory,
        )
    finally:
        memory.close()
    text = report(
        args,
        builds,
        images,
        nbytes,
        head_seconds,
        on_head,
        local_instance,
        counts,
        shards,
        (index_seconds, train_images),
    )
    print(text)
    if args.write_docs:
        command = "python bench/onray.py " + " ".join(sys.argv[1:])
        write_section(
            "ray-bench",
            f"## On Ray (`bench/onray.py`)\n\nMachine: {machine()}. Date: {date.today()}. "
            f"Command: `{command}` (`make bench`).\n\n{text}",
            args.docs,
        )
        print(json.dumps({"wrote": str(args.docs)}))
    return 0 if all(not b.error for b in builds.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
