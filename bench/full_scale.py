#!/usr/bin/env python3
"""ILSVRC2012's full image count on this machine (issue 21): every step measured on 1.35 M
small images against 21,000 of the same size, so that the ratio measures growth with the
count, and on 21,000 images of ImageNet's size, so that the real data set can be projected.

    python bench/full_scale.py [--steps build,formats,verify,loaders,report,resize]
                               [--sizes small,ref,full] [--redo] [--keep] [--wait 120]
                               [--write-docs]

Downloads (`imagenet-prep fixture`, kept in bench/out/ and reused when whole):

- full: `--classes 1000 --per-class 1300 --val-per-class 50 --image-size 64x48`
  (1,300,000 + 50,000 images, box XMLs for 42.5% of the training images; about 4.2 GB);
- small: `--classes 100 --per-class 200 --val-per-class 10 --image-size 64x48` (21,000);
- ref: bench/out/download-100x200x10, the build suite's download (21,000 images around
  500x375, about 93 KB each, as ImageNet's): the cost of the image bytes.

Steps, each on every download (small, ref, full, in that order):

- `build`: `imagenet-prep build` with the default options (tfrecord + box CSV), --workers 2;
- `formats`: the same with `--formats tfrecord,webdataset,mds,imagefolder`;
- `verify`: `imagenet-prep verify` of that all-formats build;
- `loaders`: one epoch of each split of that build's TFRecords through the PyTorch loader a
  user trains with (`ImageNetLoader`, 2 DataLoader workers, batches of 256, transform
  `train` for the training split and `eval` for validation, 224 px), then through the plain
  `iterate` in one process (no transform: read and decode only);
- `report`: `imagenet-prep report` of that all-formats build (its image folder, every image
  decoded for the exact mean and std), `--workers 2`;
- `resize`: `build --resize-shorter 32` (small, full: at 64x48 every image is resized) or
  `--resize-shorter 160` (ref), then Pillow's decode-LANCZOS-encode and imagenet-prep's
  resize path on 1,000 images of the same download in this process (bench/resize.py's code),
  right after the build, for the rate per core against the baseline.

For each run: wall time, images/s, the CPU seconds of the command's process tree (user +
system from `getrusage` of the reaped children; this script adopts the fork server and its
workers as a subreaper, as bench/ab.py does), the peak of the summed resident memory of the
tree and each process's own peaks (VmRSS, RssAnon, RssFile, RssShmem from /proc/<pid>/status
every 20 ms; bench/peak_memory.py's sum, with the parts), the output's size, the machine's
load average at the start and the end, and the CPU the rest of the machine used meanwhile
(busy time from /proc/stat less the tree's: other engineers' runs on this shared host, and
kernel threads such as writeback and reclaim working for the run). Before each run the
command's input is read twice into the page cache and free memory is filled with clean page
cache (bench/memstate.py, `full`), as in the build suite; and the script waits (up to
`--wait` seconds) while other processes keep more than half a core busy.

Results are kept in bench/out/full-scale/results.json: a step already there is not run again
(`--redo` runs it again), so a long run resumes step by step. An output is deleted once no
later step needs it (`--keep` keeps them). The report (printed; `--write-docs` puts it in
docs/BENCHMARKS.md) is made from that file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ab import become_subreaper, children_cpu, reap_orphans
from docsection import DOCS, machine, write_section
from memstate import MemoryState, mem_free
from resize import load_images, ours, pillow_path, rate
from run import archives, busy_seconds, whole_download

from imagenet_prep.resize import ResizeSpec

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
WORKERS = 2
IMAGE_SIZE = "64x48"
# fixture options (classes, per class, validation per class) and image size of each download
SIZES: dict[str, tuple[int, int, int, str | None]] = {
    "small": (100, 200, 10, IMAGE_SIZE),
    "ref": (100, 200, 10, None),
    "full": (1000, 1300, 50, IMAGE_SIZE),
}
WHAT = {"small": "21k, 64x48", "ref": "21k, 500x375", "full": "1.35 M, 64x48"}
STEPS = ("build", "formats", "verify", "loaders", "report", "resize")
ALL_FORMATS = "tfrecord,webdataset,mds,imagefolder"
RESIZE = {"small": 32, "full": 32, "ref": 160}
LOADER_BATCH = 256
LOADER_PIXELS = 224
BASELINE_IMAGES = 1000
# ImageNet-1k as published: training and validation images, the two image archives' bytes
REAL_TRAIN = 1_281_167
REAL_IMAGES = REAL_TRAIN + 50_000
REAL_ARCHIVES = 147_897_477_120 + 6_744_924_160
CORES = (2, 8, 32, 64)
# The memory targets (issue 21, item 3)
BUILD_LIMIT_MB = 500
VERIFY_LIMIT_MB = 1000
# A loader worker may grow by its share of the epoch's order: a few bytes per image
LOADER_BYTES_PER_IMAGE = 16
LOADER_NOISE_MB = 4  # the allocator's and the sampling's own spread
# The build's time per image at full count against 21,000 images (issue 21, done when)
GROWTH_LIMIT = 1.5
INTERVAL = 0.02
TRACE_EVERY = 0.5
QUIET_CORES = 0.5

# One epoch of a split in a child process; prints what it saw as JSON.
TORCH_EPOCH = """
import json, sys, time
start = time.perf_counter()
from imagenet_prep.loaders.torch import ImageNetLoader
root, split, fmt, workers, transform, size, batch = sys.argv[1:8]
loader = ImageNetLoader(root, split, batch_size=int(batch), num_workers=int(workers),
                        format=fmt, transform=transform, image_size=int(size))
made = time.perf_counter()
images = batches = 0
first = None
for pixels, labels in loader:
    if first is None:
        first = time.perf_counter()
    images += len(labels)
    batches += 1
end = time.perf_counter()
print(json.dumps({"images": images, "batches": batches, "import_s": made - start,
                  "first_batch_s": (first or end) - made, "epoch_s": end - made}))
"""
PLAIN_EPOCH = """
import json, sys, time
start = time.perf_counter()
from imagenet_prep.loaders import iterate
root, split, fmt = sys.argv[1:4]
it = iterate(root, split, format=fmt)
made = time.perf_counter()
images = 0
for image, label, key in it:
    images += 1
end = time.perf_counter()
print(json.dumps({"images": images, "import_s": made - start, "epoch_s": end - made}))
"""


# -- measuring ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


MEM_KEYS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


def _status(pid: int) -> dict[str, int] | None:
    """VmRSS, RssAnon, RssFile, RssShmem of ``pid`` in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            text = f.read().decode()
    except OSError:
        return None
    got = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in MEM_KEYS:
            got[key] = int(value.split()[0]) * 1024
    return got if "VmRSS" in got else None


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            words = f.read().split(b"\0")
    except OSError:
        return "?"
    return " ".join(w.decode(errors="replace") for w in words if w)[:200]


@dataclass
class Proc:
    """One process of a measured tree: when it was seen and its largest figures (bytes)."""

    pid: int
    parent: int
    name: str
    first: float
    last: float
    rss: int = 0
    anon: int = 0
    file: int = 0
    shmem: int = 0

    def see(self, now: float, mem: dict[str, int]) -> None:
        self.last = now
        self.rss = max(self.rss, mem["VmRSS"])
        self.anon = max(self.anon, mem.get("RssAnon", 0))
        self.file = max(self.file, mem.get("RssFile", 0))
        self.shmem = max(self.shmem, mem.get("RssShmem", 0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "parent": self.parent,
            "name": self.name,
            "from_s": round(self.first, 2),
            "to_s": round(self.last, 2),
            "rss_mb": self.rss / 1e6,
            "anon_mb": self.anon / 1e6,
            "file_mb": self.file / 1e6,
            "shmem_mb": self.shmem / 1e6,
        }


def sample(command: list[str], interval: float = INTERVAL) -> dict[str, Any]:
    """Run ``command``: its exit code, wall time and standard output, the peak of its process
    tree's summed RSS (and when), each process's own peaks, and the sum every
    ``TRACE_EVERY`` seconds."""
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()
    procs: dict[int, Proc] = {}
    peak = most = 0
    peak_at = 0.0
    trace: list[tuple[float, float, int]] = []
    while proc.poll() is None:
        now = time.perf_counter() - start
        total = count = 0
        stack = [(proc.pid, 0)]
        while stack:
            pid, parent = stack.pop()
            mem = _status(pid)
            if mem is None:
                continue
            if pid not in procs:
                procs[pid] = Proc(pid, parent, _name(pid), now, now)
            procs[pid].see(now, mem)
            total += mem["VmRSS"]
            count += 1
            stack.extend((c, pid) for c in _children(pid))
        if total > peak:
            peak, peak_at = total, now
        most = max(most, count)
        if not trace or now - trace[-1][0] >= TRACE_EVERY:
            trace.append((round(now, 2), round(total / 1e6, 1), count))
        time.sleep(interval)
    seconds = time.perf_counter() - start
    reader.join()
    return {
        "returncode": proc.returncode,
        "seconds": seconds,
        "peak_mb": peak / 1e6,
        "peak_at_s": peak_at,
        "processes": most,
        "procs": [p.as_dict() for p in procs.values()],
        "trace": trace,
        "stdout": "".join(lines),
    }


def disk_usage(path: Path) -> dict[str, Any]:
    """Bytes on disk (allocated blocks), apparent bytes and files under ``path``, and the same
    for each entry at its top."""
    parts: dict[str, list[int]] = {}
    for folder, _dirs, names in os.walk(path):
        rel = Path(folder).relative_to(path).parts
        for name in names:
            st = os.lstat(os.path.join(folder, name))
            entry = parts.setdefault(rel[0] if rel else name, [0, 0, 0])
            entry[0] += st.st_blocks * 512
            entry[1] += st.st_size
            entry[2] += 1
    return {
        "disk": sum(v[0] for v in parts.values()),
        "bytes": sum(v[1] for v in parts.values()),
        "files": sum(v[2] for v in parts.values()),
        "parts": parts,
    }


def warm(paths: list[Path]) -> None:
    """Read ``paths`` into the page cache twice (as bench/run.py's ``warm``: a page read once
    is on the inactive list, the first that reclaim takes)."""
    for _ in range(2):
        for path in paths:
            with open(path, "rb") as f:
                while f.read(16 << 20):
                    pass


def load() -> str:
    """The load average, 1, 5 and 15 minutes."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def others_busy(seconds: float = 2.0) -> float:
    """Cores the machine kept busy over ``seconds`` (nothing of ours runs meanwhile)."""
    busy = busy_seconds()
    time.sleep(seconds)
    return (busy_seconds() - busy) / seconds


def wait_quiet(limit: float) -> tuple[float, float]:
    """Wait, up to ``limit`` seconds, while other processes keep more than ``QUIET_CORES``
    busy; (seconds waited, cores they kept busy when the wait ended)."""
    waited = 0.0
    cores = others_busy()
    while cores > QUIET_CORES and waited < limit:
        if waited == 0:
            print(
                f"    others keep {cores:.1f} cores busy: waiting (up to {limit:.0f} s)",
                flush=True,
            )
        time.sleep(10)
        waited += 10 + 2
        cores = others_busy()
    return waited, cores


class Bench:
    """The downloads, the results file and the state every measurement starts in."""

    def __init__(self, out: Path, redo: bool, keep: bool, wait: float) -> None:
        self.out = out
        self.work = out / "full-scale"
        self.work.mkdir(parents=True, exist_ok=True)
        self.results_path = self.work / "results.json"
        self.results: dict[str, Any] = (
            json.loads(self.results_path.read_text()) if self.results_path.exists() else {}
        )
        self.redo = redo
        self.keep = keep
        self.wait = wait
        # Free memory filled with clean page cache before each run, bounded (bench/memstate.py):
        # this host's proactive reclaim keeps about 5% free; the free memory left is recorded.
        self.fill = MemoryState("full", self.work)
        self.ran: set[str] = set()  # steps measured by this run (``--redo`` runs each once)

    def save(self) -> None:
        tmp = self.results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.results, indent=1, sort_keys=True))
        tmp.replace(self.results_path)

    def done(self, key: str) -> bool:
        return key in self.results and (not self.redo or key in self.ran)

    def record(self, key: str, result: dict[str, Any]) -> None:
        self.results[key] = result
        self.ran.add(key)
        self.save()

    def download(self, size: str) -> Path:
        """The download of ``size``, made (and timed) when missing or not whole."""
        classes, per_class, val, image_size = SIZES[size]
        name = f"download-{classes}x{per_class}x{val}"
        download = self.out / (f"{name}-{image_size}" if image_size else name)
        if whole_download(download):
            return download
        partial = download.with_name(download.name + ".partial")
        shutil.rmtree(download, ignore_errors=True)
        shutil.rmtree(partial, ignore_errors=True)
        print(f"generating {download}", flush=True)
        command = [PY, "-m", "imagenet_prep", "fixture", str(partial)]
        command += ["--classes", str(classes), "--per-class", str(per_class)]
        command += ["--val-per-class", str(val)]
        command += ["--image-size", image_size] if image_size else []
        result = self.measure(command, [])
        if result["returncode"] != 0:
            raise SystemExit(f"fixture failed: {' '.join(command)}")
        partial.rename(download)
        result["output"] = disk_usage(download)
        self.record(f"{size}/download", result)
        return download

    def measure(self, command: list[str], warm_first: list[Path]) -> dict[str, Any]:
        """One measured run of ``command`` (the module's docstring says what is taken), the
        files ``warm_first`` read into the page cache before it."""
        warm(warm_first)
        waited, cores = wait_quiet(self.wait)
        self.fill.top_up()
        free = mem_free()
        print(f"  $ {' '.join(command)[:300]}", flush=True)
        started, busy, cpu = load(), busy_seconds(), children_cpu()
        result = sample(command)
        if not reap_orphans():
            print("  WARNING: processes of the command still run after 30 s", flush=True)
        cpu = children_cpu() - cpu
        busy = busy_seconds() - busy
        result.update(
            cpu_s=cpu,
            others_cpu_s=max(0.0, busy - cpu),
            load_start=started,
            load_end=load(),
            waited_s=waited,
            others_cores_before=cores,
            free_mb_before=free / 1e6,
            when=time.strftime("%Y-%m-%d %H:%M:%S"),
        )
        os.sync()
        print(
            f"    {result['seconds']:.1f} s, {cpu:.1f} CPU s, peak {result['peak_mb']:.0f} MB "
            f"over {result['processes']} processes; load {result['load_start']} -> "
            f"{result['load_end']}; others' CPU {result['others_cpu_s']:.1f} s",
            flush=True,
        )
        return result


# -- steps --------------------------------------------------------------------------------


def build_command(download: Path, output: Path, *extra: str) -> list[str]:
    return [
        PY,
        "-m",
        "imagenet_prep",
        "build",
        "--source",
        str(download),
        "--output",
        str(output),
        "--workers",
        str(WORKERS),
        "--quiet",
        *extra,
    ]


def manifest_facts(output: Path) -> dict[str, Any]:
    """Images, image bytes, per-split counts and the timings of a build, from its manifest."""
    manifest = json.loads((output / "manifest.json").read_text())
    splits = manifest["splits"]
    return {
        "images": sum(s["images"] for s in splits.values()),
        "image_bytes": sum(s["bytes"] for s in splits.values()),
        "split_images": {k: s["images"] for k, s in splits.items()},
        "timings": manifest.get("timings", {}),
        "manifest_bytes": (output / "manifest.json").stat().st_size,
    }


def step_build(bench: Bench, size: str, step: str, extra: list[str]) -> None:
    """A build into ``full-scale/<size>-<step>``, measured; the all-formats one is kept for
    ``verify`` and ``loaders``."""
    key = f"{size}/{step}"
    output = bench.work / f"{size}-{step}"
    if bench.done(key) and (step != "formats" or (output / "manifest.json").exists()):
        return
    download = bench.download(size)
    print(f"{key}: build {' '.join(extra)}", flush=True)
    shutil.rmtree(output, ignore_errors=True)
    result = bench.measure(build_command(download, output, *extra), archives(download))
    if result["returncode"] != 0:
        raise SystemExit(f"{key}: the build exited with {result['returncode']}")
    result.update(manifest_facts(output), output=disk_usage(output), options=extra)
    result["archive_bytes"] = sum(
        (download / n).stat().st_size
        for n in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
    )
    bench.record(key, result)
    if step != "formats" and not bench.keep:
        shutil.rmtree(output, ignore_errors=True)


def needs_formats(bench: Bench, size: str) -> Path:
    """The all-formats build of ``size``, made (and measured) again when it was deleted."""
    output = bench.work / f"{size}-formats"
    if not (output / "manifest.json").exists():
        bench.results.pop(f"{size}/formats", None)
        bench.ran.discard(f"{size}/formats")
        step_build(bench, size, "formats", ["--formats", ALL_FORMATS])
    return output


def step_verify(bench: Bench, size: str) -> None:
    key = f"{size}/verify"
    if bench.done(key):
        return
    output = needs_formats(bench, size)
    print(f"{key}: verify", flush=True)
    result = bench.measure([PY, "-m", "imagenet_prep", "verify", str(output), "--quiet"], [])
    if result["returncode"] != 0:
        raise SystemExit(f"{key}: verify exited with {result['returncode']}")
    result.update(manifest_facts(output))
    bench.record(key, result)
    release_formats(bench, size)


def step_report(bench: Bench, size: str) -> None:
    """``imagenet-prep report`` of the all-formats build (its image folder, the default:
    every image decoded for the exact mean and std), 2 workers (issue 22)."""
    key = f"{size}/report"
    if bench.done(key):
        return
    output = needs_formats(bench, size)
    print(f"{key}: report", flush=True)
    command = [PY, "-m", "imagenet_prep", "report", str(output), "--workers", str(WORKERS)]
    result = bench.measure([*command, "--quiet"], [])
    if result["returncode"] != 0:
        raise SystemExit(f"{key}: report exited with {result['returncode']}")
    result.update(manifest_facts(output))
    bench.record(key, result)
    release_formats(bench, size)


def release_formats(bench: Bench, size: str) -> None:
    """Delete the all-formats build once ``verify``, ``loaders`` and ``report`` have used it
    (at full count about 19 GB: the resize build after them needs the room)."""
    used_by = ("verify", "loaders", "report")
    if not bench.keep and all(bench.done(f"{size}/{s}") for s in used_by):
        shutil.rmtree(bench.work / f"{size}-formats", ignore_errors=True)


def epoch(bench: Bench, key: str, command: list[str], shards: list[Path]) -> dict[str, Any]:
    result = bench.measure(command, shards)
    if result["returncode"] != 0:
        raise SystemExit(f"{key}: the loader exited with {result['returncode']}")
    result["epoch"] = json.loads(result["stdout"].strip().splitlines()[-1])
    return result


def step_loaders(bench: Bench, size: str) -> None:
    key = f"{size}/loaders"
    if bench.done(key):
        return
    output = needs_formats(bench, size)
    runs: dict[str, Any] = {}
    for split, transform in (("train", "train"), ("validation", "eval")):
        shards = sorted((output / "tfrecord").glob(f"{split}-*"))
        print(f"{key}: {split}, ImageNetLoader, {WORKERS} workers, {transform}", flush=True)
        command = [PY, "-c", TORCH_EPOCH, str(output), split, "tfrecord", str(WORKERS)]
        command += [transform, str(LOADER_PIXELS), str(LOADER_BATCH)]
        runs[f"torch/{split}"] = epoch(bench, key, command, shards)
        print(f"{key}: {split}, iterate, one process", flush=True)
        command = [PY, "-c", PLAIN_EPOCH, str(output), split, "tfrecord"]
        runs[f"plain/{split}"] = epoch(bench, key, command, shards)
    bench.record(key, {"runs": runs, **manifest_facts(output)})
    release_formats(bench, size)


def one_process_rates(download: Path, spec: ResizeSpec) -> dict[str, Any]:
    """Pillow's decode-LANCZOS-encode and imagenet-prep's resize path in this process, on
    ``BASELINE_IMAGES`` images of ``download`` (bench/resize.py's code): images/s, best of 3,
    each timed in turn."""
    images = load_images(download, BASELINE_IMAGES)
    started = load()
    pillow = rate(lambda d: pillow_path(d, spec), images, 3)
    fast = rate(lambda d: ours(d, spec), images, 3)
    return {
        "images": len(images),
        "pillow": pillow,
        "ours": fast,
        "load_start": started,
        "load_end": load(),
    }


def step_resize(bench: Bench, size: str) -> None:
    key = f"{size}/resize"
    if bench.done(key):
        return
    shorter = RESIZE[size]
    download = bench.download(size)
    output = bench.work / f"{size}-resize"
    print(f"{key}: build --resize-shorter {shorter}", flush=True)
    shutil.rmtree(output, ignore_errors=True)
    command = build_command(download, output, "--resize-shorter", str(shorter))
    result = bench.measure(command, archives(download))
    if result["returncode"] != 0:
        raise SystemExit(f"{key}: the build exited with {result['returncode']}")
    result.update(manifest_facts(output), output=disk_usage(output), shorter=shorter)
    if not bench.keep:
        shutil.rmtree(output, ignore_errors=True)
    print(f"{key}: Pillow and imagenet-prep's resize, one process", flush=True)
    result["one_process"] = one_process_rates(download, ResizeSpec(shorter=shorter, quality=90))
    bench.record(key, result)


def run_steps(bench: Bench, steps: list[str], sizes: list[str]) -> None:
    actions: dict[str, Callable[[str], None]] = {
        "build": lambda s: step_build(bench, s, "build", []),
        "formats": lambda s: step_build(bench, s, "formats", ["--formats", ALL_FORMATS]),
        "verify": lambda s: step_verify(bench, s),
        "loaders": lambda s: step_loaders(bench, s),
        "report": lambda s: step_report(bench, s),
        "resize": lambda s: step_resize(bench, s),
    }
    for step in steps:
        for size in sizes:
            actions[step](size)


# -- the report ---------------------------------------------------------------------------


@dataclass
class Row:
    """One measured run as the report shows it."""

    step: str
    size: str
    images: int
    seconds: float  # the time images/s is taken over (an epoch's own, for the loaders)
    run: dict[str, Any]  # what ``Bench.measure`` recorded

    @property
    def cpu_us(self) -> float:
        return float(self.run["cpu_s"]) / self.images * 1e6

    @property
    def wall_us(self) -> float:
        return self.seconds / self.images * 1e6


LOADER_RUNS = {
    "torch/train": "loader: ImageNetLoader, train split, `train` 224 px, 2 workers",
    "torch/validation": "loader: ImageNetLoader, validation split, `eval` 224 px, 2 workers",
    "plain/train": "loader: `iterate`, train split, no transform, one process",
    "plain/validation": "loader: `iterate`, validation split, no transform, one process",
}


def step_label(step: str, size: str) -> str:
    return {
        "build": "build (tfrecord + box CSV)",
        "formats": "build, all four formats",
        "verify": "verify (the all-formats build)",
        "report": "report (the all-formats build's image folder, 2 workers)",
        "resize": f"build --resize-shorter {RESIZE.get(size, '')}",
    }.get(step, LOADER_RUNS.get(step, step))


def rows(results: dict[str, Any]) -> list[Row]:
    out: list[Row] = []
    for step in ("build", "formats", "verify", *LOADER_RUNS, "report", "resize"):
        for size in SIZES:
            if step in LOADER_RUNS:
                got = results.get(f"{size}/loaders", {}).get("runs", {}).get(step)
                if got:
                    ep = got["epoch"]
                    out.append(Row(step, size, ep["images"], ep["epoch_s"], got))
                continue
            got = results.get(f"{size}/{step}")
            if got:
                out.append(Row(step, size, got["images"], got["seconds"], got))
    return out


def find(table: list[Row], step: str, size: str) -> Row | None:
    return next((r for r in table if r.step == step and r.size == size), None)


def gb(n: float) -> str:
    return f"{n / 1e9:,.2f}"


def run_table(table: list[Row]) -> list[str]:
    lines = [
        "| step | download | images | wall s | images/s | CPU s | CPU us an image "
        "| peak MB, all processes | output GB on disk | load at start -> end | others' CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        run = r.run
        output = run.get("output")
        wall = f"{run['seconds']:,.1f}"
        if r.step in LOADER_RUNS:
            wall += f" (epoch {r.seconds:,.1f})"
        lines.append(
            f"| {step_label(r.step, r.size)} | {WHAT[r.size]} | {r.images:,} | {wall} "
            f"| {r.images / r.seconds:,.0f} | {run['cpu_s']:,.1f} | {r.cpu_us:,.0f} "
            f"| {run['peak_mb']:,.0f} ({run['processes']}) "
            f"| {gb(output['disk']) if output else ''} "
            f"| {run['load_start'].split()[0]} -> {run['load_end'].split()[0]} "
            f"| {run['others_cpu_s']:,.1f} |"
        )
    return lines


def growth_table(table: list[Row]) -> list[str]:
    lines = [
        "| step | us an image, 21k | us an image, 1.35 M | growth (wall) "
        "| CPU us an image, 21k | 1.35 M | growth (CPU) | peak MB, 21k -> 1.35 M |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        if r.size != "full" or (small := find(table, r.step, "small")) is None:
            continue
        lines.append(
            f"| {step_label(r.step, r.size)} | {small.wall_us:,.1f} | {r.wall_us:,.1f} "
            f"| {r.wall_us / small.wall_us:.2f}x | {small.cpu_us:,.1f} | {r.cpu_us:,.1f} "
            f"| {r.cpu_us / small.cpu_us:.2f}x "
            f"| {small.run['peak_mb']:,.0f} -> {r.run['peak_mb']:,.0f} |"
        )
    return lines


PHASES = ("inputs", "plan", "shards", "finish", "total")


def phase_table(results: dict[str, Any]) -> list[str]:
    """The builds' own phases (manifest.json's timings) at both counts, per image."""
    lines = [
        "| build | phase | 21k s | 1.35 M s | us an image, 21k | 1.35 M | growth |",
        "|---|---|---|---|---|---|---|",
    ]
    for step in ("build", "formats", "resize"):
        small, full = results.get(f"small/{step}"), results.get(f"full/{step}")
        if not small or not full:
            continue
        for phase in PHASES:
            a = small["timings"]["seconds"].get(phase, 0.0)
            b = full["timings"]["seconds"].get(phase, 0.0)
            ua, ub = a / small["images"] * 1e6, b / full["images"] * 1e6
            ratio = f"{ub / ua:.2f}x" if ua else ""
            lines.append(
                f"| {step_label(step, 'full')} | {phase} | {a:,.2f} | {b:,.2f} "
                f"| {ua:,.1f} | {ub:,.1f} | {ratio} |"
            )
    return lines


def output_table(results: dict[str, Any]) -> list[str]:
    """What the all-formats build wrote at full count, per top-level entry, and the same
    for ImageNet-1k: its images' bytes plus each format's bytes beyond them per image."""
    full = results.get("full/formats")
    if not full:
        return []
    images, image_bytes = full["images"], full["image_bytes"]
    real = real_image_bytes(results)
    lines = [
        f"The all-formats build at full count: {images:,} images, {gb(image_bytes)} GB of "
        f"image data. ImageNet-1k: {REAL_IMAGES:,} images, about {gb(real)} GB of image data "
        f"(its archives' {gb(REAL_ARCHIVES)} GB less {tar_overhead(results):,.0f} bytes of tar "
        "headers and padding an image, as in the generated archives).",
        "",
        "| output | files | GB on disk | GB (bytes) | bytes an image beyond the image "
        "| ImageNet-1k, GB on disk |",
        "|---|---|---|---|---|---|",
    ]
    for name, (disk, size, files) in sorted(full["output"]["parts"].items()):
        if name in FORMAT_NAMES:
            extra = (size - image_bytes) / images
            # a file's last block is half empty on average: 2 KiB of 4 KiB blocks a file
            blocks = files * 2048 if files > 1000 else 0
            projected = f"{gb(real + extra * REAL_IMAGES + blocks)}"
            beyond = f"{extra:,.0f}"
        else:
            per = size / images
            projected = f"{gb(per * REAL_IMAGES)}" if size > 1e6 else "(small)"
            beyond = f"{per:,.0f} (all of it)"
        lines.append(f"| {name} | {files:,} | {gb(disk)} | {gb(size)} | {beyond} | {projected} |")
    return lines


FORMAT_NAMES = ("tfrecord", "webdataset", "mds", "imagefolder")


def real_image_bytes(results: dict[str, Any]) -> float:
    return REAL_ARCHIVES - tar_overhead(results) * REAL_IMAGES


def tar_overhead(results: dict[str, Any]) -> float:
    """Bytes of the image archives an image beyond the image's own (tar headers, padding,
    the class tars' own headers), in the full-count download."""
    full = results.get("full/build")
    if not full or not full.get("archive_bytes"):
        return 0.0
    return float((full["archive_bytes"] - full["image_bytes"]) / full["images"])


def workers_of(run: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The loader's main process and its DataLoader workers (python children of it)."""
    procs = run["procs"]
    main = next(p for p in procs if p["parent"] == 0)
    workers = [p for p in procs if p["parent"] == main["pid"] and "python" in p["name"].split()[0]]
    return main, workers


def loader_memory(results: dict[str, Any]) -> tuple[list[str], list[tuple[str, bool]]]:
    """Each loader process's peak memory at both counts, and the per-worker check."""
    lines = [
        "| loader run | download | images | main process MB (anon / file / shmem) "
        "| each worker MB, the largest (anon / file / shmem) |",
        "|---|---|---|---|---|",
    ]
    checks: list[tuple[str, bool]] = []
    for name in ("torch/train", "torch/validation"):
        seen: dict[str, tuple[int, float, float]] = {}
        for size in ("small", "ref", "full"):
            run = results.get(f"{size}/loaders", {}).get("runs", {}).get(name)
            if not run:
                continue
            main, workers = workers_of(run)
            worst = max(workers, key=lambda p: p["rss_mb"]) if workers else None
            lines.append(
                f"| {LOADER_RUNS[name]} | {WHAT[size]} | {run['epoch']['images']:,} "
                f"| {fmt_proc(main)} | {fmt_proc(worst) if worst else 'none'} |"
            )
            if worst:
                seen[size] = (run["epoch"]["images"], worst["anon_mb"], worst["rss_mb"])
        if "small" in seen and "full" in seen:
            (n0, a0, r0), (n1, a1, r1) = seen["small"], seen["full"]
            allowed = LOADER_BYTES_PER_IMAGE * (n1 - n0) / 1e6 + LOADER_NOISE_MB
            checks.append(
                (
                    f"a DataLoader worker's own memory does not grow with the split "
                    f"({name.split('/')[1]}): its peak RssAnon {a0:,.1f} MB at {n0:,} images, "
                    f"{a1:,.1f} MB at {n1:,}, {a1 - a0:+,.1f} MB (allowed: "
                    f"{LOADER_BYTES_PER_IMAGE} bytes an image and {LOADER_NOISE_MB} MB, "
                    f"{allowed:,.1f} MB); its whole RSS, with the batch buffers it touched and "
                    f"the shards' mapped pages, {r0:,.0f} -> {r1:,.0f} MB",
                    a1 - a0 <= allowed,
                )
            )
    return lines, checks


def fmt_proc(p: dict[str, Any]) -> str:
    return f"{p['rss_mb']:,.0f} ({p['anon_mb']:,.0f} / {p['file_mb']:,.0f} / {p['shmem_mb']:,.0f})"


def resize_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| download | target | build wall s | images/s | images/s a core (CPU) "
        "| Pillow, one process, img/s | imagenet-prep's resize, one process, img/s "
        "| resize path / Pillow | build a core / Pillow |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size in SIZES:
        r = results.get(f"{size}/resize")
        if not r:
            continue
        one = r["one_process"]
        per_core = r["images"] / r["cpu_s"]
        lines.append(
            f"| {WHAT[size]} | `--resize-shorter {r['shorter']}` | {r['seconds']:,.1f} "
            f"| {r['images'] / r['seconds']:,.0f} | {per_core:,.0f} | {one['pillow']:,.0f} "
            f"| {one['ours']:,.0f} | {one['ours'] / one['pillow']:.2f}x "
            f"| {per_core / one['pillow']:.2f}x |"
        )
    return lines


def hours(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:,.1f} h"
    if seconds >= 90:
        return f"{seconds / 60:,.0f} min"
    return f"{seconds:,.0f} s"


def resize_projection(results: dict[str, Any]) -> list[str]:
    r = results.get("ref/resize")
    if not r:
        return []
    cpu = r["cpu_s"] / r["images"]
    pillow = 1 / r["one_process"]["pillow"]
    cells = " | ".join(
        f"{hours(REAL_IMAGES * cpu / n)} (Pillow alone {hours(REAL_IMAGES * pillow / n)})"
        for n in CORES
    )
    return [
        f"ImageNet-1k ({REAL_IMAGES:,} images) with `--resize-shorter 160`, from the 500x375 "
        f"build's {cpu * 1e3:.2f} ms of CPU an image (every process of the build: reading, "
        "checking, resizing, writing) spread over N cores; beside it Pillow's "
        "decode-LANCZOS-encode alone (no reading or writing) at its one-process rate:",
        "",
        "| cores | " + " | ".join(str(n) for n in CORES) + " |",
        "|---|" + "---|" * len(CORES),
        f"| wall | {cells} |",
        "",
        "The generated images are 500x375 (187,500 pixels, 93 KB), ImageNet's average is "
        "smaller in pixels (about 400x350) and larger in bytes (about 110 KB); the figures are "
        "not scaled for either. FFCV's ImageNet writer (`max_resolution=256`) is reported to "
        "take over 6 hours (libffcv/ffcv#400, cores not given).",
    ]


def model(results: dict[str, Any], step: str) -> tuple[float, float, dict[str, Any]] | None:
    """CPU seconds an image = a + b x image bytes: b (per byte) from the 21k downloads at
    64x48 and at 500x375, a from the full count (so that what grows with the count is in).
    Returns (a, b, the full-count run)."""
    runs = {}
    for size in SIZES:
        if step in LOADER_RUNS:
            got = results.get(f"{size}/loaders")
            run = got["runs"].get(step) if got else None
            if not got or not run:
                return None
            images = run["epoch"]["images"]
            runs[size] = (run["cpu_s"] / images, got["image_bytes"] / got["images"], run)
        else:
            got = results.get(f"{size}/{step}")
            if not got:
                return None
            runs[size] = (got["cpu_s"] / got["images"], got["image_bytes"] / got["images"], got)
    (cs, bs, _), (cr, br, _), (cf, _, full) = runs["small"], runs["ref"], runs["full"]
    b = (cr - cs) / (br - bs)
    return cf - b * bs, b, full


def peak_of(results: dict[str, Any], step: str, size: str) -> float:
    if step in LOADER_RUNS:
        run = results.get(f"{size}/loaders", {}).get("runs", {}).get(step)
    else:
        run = results.get(f"{size}/{step}")
    return float(run["peak_mb"]) if run else float("nan")


def pool_workers(run: dict[str, Any]) -> list[dict[str, Any]]:
    """A build's pool workers: the fork server's children that lived through most of the run
    (not the short-lived helpers: the training split's index, the devkit, the MD5s)."""
    root = next(p["pid"] for p in run["procs"] if p["parent"] == 0)
    return [
        p
        for p in run["procs"]
        if p["parent"] not in (0, root) and p["to_s"] - p["from_s"] >= 0.8 * run["seconds"]
    ]


def real_peak(results: dict[str, Any], step: str) -> float:
    """ImageNet-1k's peak memory for ``step``, estimated (see ``projection``'s notes)."""
    full, ref, small = (results.get(f"{size}/{step}") for size in ("full", "ref", "small"))
    if step in ("build", "formats", "resize") and full and ref:
        minus = sum(float(p["rss_mb"]) for p in pool_workers(full))
        plus = sum(float(p["rss_mb"]) for p in pool_workers(ref))
        return float(full["peak_mb"]) - minus + plus
    if step == "verify" and full and ref and small:
        level = statistics.median(float(m) for _, m, _ in full["trace"])
        base = statistics.median(float(m) for _, m, _ in small["trace"])
        return float(ref["peak_mb"]) + max(0.0, level - base)
    return peak_of(results, step, "full") + max(
        0.0, peak_of(results, step, "ref") - peak_of(results, step, "small")
    )


def projection(results: dict[str, Any]) -> list[str]:
    """ImageNet-1k on N cores, from the model above."""
    real = real_image_bytes(results)
    per_image = real / REAL_IMAGES
    lines = [
        "| step | CPU ms an image, ImageNet-1k | CPU h in all | "
        + " | ".join(f"wall, {n} cores" for n in CORES)
        + " | peak MB at 1.35 M | ImageNet-1k, peak MB |",
        "|---|---|---|" + "---|" * len(CORES) + "---|---|",
    ]
    notes = []
    for step in ("build", "formats", "verify", "torch/train"):
        fitted = model(results, step)
        if fitted is None:
            continue
        a, b, full = fitted
        each = a + b * per_image
        images = REAL_TRAIN if step == "torch/train" else REAL_IMAGES
        cpu = each * images
        if step in ("build", "formats"):
            t = full["timings"]["seconds"]
            serial = t.get("inputs", 0.0) + t.get("plan", 0.0) + t.get("finish", 0.0)
            walls = [serial + max(0.0, cpu - serial) / n for n in CORES]
            check = serial + max(0.0, full["cpu_s"] - serial) / WORKERS
            notes.append(
                f"- {step_label(step, 'full')}: the main process's own phases (inputs, plan, "
                f"finish) at full count, {serial:,.0f} s, then the rest of the CPU over the "
                f"cores (N workers); this formula gives {check:,.0f} s for the full-count "
                f"run measured here in {full['seconds']:,.0f} s."
            )
        elif step == "verify":
            walls = [cpu] * len(CORES)
            notes.append("- verify runs in one process: its time does not change with cores.")
        else:
            walls = [cpu / n for n in CORES]
            notes.append(
                "- loader: one epoch of the training split, N DataLoader workers "
                "(`train`, 224 px), each at the CPU rate per image measured with 2."
            )
        peak = real_peak(results, step)
        lines.append(
            f"| {step_label(step, 'full')} | {each * 1e3:.3f} | {cpu / 3600:,.1f} | "
            + " | ".join(hours(w) for w in walls)
            + f" | {peak_of(results, step, 'full'):,.0f} | {peak:,.0f} |"
        )
    return [
        *lines,
        "",
        f"How: CPU seconds an image = a + b x bytes. b, the cost of a byte of image, is the "
        "difference between the 21k runs at 500x375 and at 64x48 over the difference of their "
        "bytes an image; a, the cost of an image whatever its size, is the full-count run's "
        "less its bytes' share, so what grows with the count is in it. ImageNet-1k then costs "
        f"a + b x {per_image / 1e3:,.0f} KB an image. Peak memory, ImageNet-1k: for a build, "
        "the full-count run's peak with its pool workers' peaks replaced by the 500x375 run's "
        "(a worker's memory follows its shard's records: a WebDataset shard of about 1 GB of "
        "input holds 433,333 images of 64x48 but about 9,000 of ImageNet's); for verify, the "
        "500x375 run's peak (one WebDataset shard of ImageNet-sized images read whole) plus what "
        "the count added to the level verify holds through the run (median of its samples); "
        "for the loader, the full-count run's plus what the 500x375 images added at 21k. The "
        "page cache was warm: a real run reads "
        f"{gb(REAL_ARCHIVES)} GB from disk and writes about as much per format, so it takes "
        "no less than the disk needs for that (at 1 GB/s, 2.6 min to read; at 200 MB/s, 13 min).",
        *notes,
    ]


def targets(results: dict[str, Any], table: list[Row]) -> list[tuple[str, bool]]:
    checks: list[tuple[str, bool]] = []
    for step in ("build", "formats", "resize"):
        r = find(table, step, "full")
        if r:
            checks.append(
                (
                    f"{step_label(step, 'full')}, {WORKERS} workers, at full count: peak "
                    f"{r.run['peak_mb']:,.0f} MB summed over {r.run['processes']} processes "
                    f"(under {BUILD_LIMIT_MB} MB)",
                    r.run["peak_mb"] < BUILD_LIMIT_MB,
                )
            )
    r = find(table, "verify", "full")
    if r:
        checks.append(
            (
                f"verify at full count: peak {r.run['peak_mb']:,.0f} MB (under "
                f"{VERIFY_LIMIT_MB} MB)",
                r.run["peak_mb"] < VERIFY_LIMIT_MB,
            )
        )
    r, small = find(table, "build", "full"), find(table, "build", "small")
    if r and small:
        g = r.wall_us / small.wall_us
        checks.append(
            (
                f"the build's time an image at full count within {GROWTH_LIMIT}x of 21k's: "
                f"{g:.2f}x (CPU {r.cpu_us / small.cpu_us:.2f}x)",
                g <= GROWTH_LIMIT,
            )
        )
    return checks


def report(results: dict[str, Any]) -> str:
    table = rows(results)
    memory_lines, loader_checks = loader_memory(results)
    checks = targets(results, table) + loader_checks
    made = [
        f"{WHAT[s]}: {r['seconds']:,.0f} s ({r['cpu_s']:,.0f} CPU s), {gb(r['output']['disk'])} GB"
        for s in SIZES
        if (r := results.get(f"{s}/download"))
    ]
    lines = [
        "Downloads: 1.35 M = `imagenet-prep fixture --classes 1000 --per-class 1300 "
        "--val-per-class 50 --image-size 64x48` (1,300,000 training images in 1000 class "
        "tars, 50,000 validation, box XMLs for 42.5% of the training images); 21k, 64x48 = "
        "`--classes 100 --per-class 200 --val-per-class 10 --image-size 64x48`; 21k, 500x375 = "
        "the build suite's download (bench/out/download-100x200x10, ImageNet-sized images)."
        + (f" Made in: {'; '.join(made)}." if made else ""),
        "",
        "Each run: page cache warm (its input read twice), free memory filled with clean page "
        "cache as bench/memstate.py does, as far as this host's proactive reclaim lets it "
        "(its bounded fill), one run each. CPU s: user + system of the command's whole "
        "process tree (getrusage of the reaped children). Peak MB: the largest sum of the "
        "tree's resident memory, sampled every 20 ms (processes in parentheses). Load: the "
        "1-minute load average when the run started and ended; others' CPU s: what the rest of "
        "the machine used during the run (other engineers' jobs on this shared 2-core host, "
        "and kernel threads such as writeback and reclaim). Loaders: images/s over the epoch "
        "itself, from the loader's creation to its last batch (the wall time also holds the "
        "import of torch and the start of the workers).",
        "",
        *run_table(table),
        "",
        "Growth, full count against 21k at the same image size (per image; above 1 is worse):",
        "",
        *growth_table(table),
        "",
        "Below 1 is not work getting cheaper: at 21k each run's fixed costs (the interpreter, "
        "the pool's start, PyTorch's import, 1,152 shards of 18 images each) weigh on every "
        "image; at full count they are spread over 64 times as many. The phases below show "
        "where the time goes.",
        "",
        "The builds' phases (manifest.json's `timings`: inputs = indexing the archives and "
        "reading the boxes, plan, shards, finish = the formats' side files and the manifest):",
        "",
        *phase_table(results),
        "",
        *output_table(results),
        "",
        "Loader memory, each process's peak (a DataLoader worker's RSS holds the shared-memory "
        "batch buffers it has touched, `shmem`, and the mapped shards' pages it reads, `file`):",
        "",
        *memory_lines,
        "",
        "Resizing (builds with 2 workers; images/s a core = images over the build's CPU "
        f"seconds; one process = {BASELINE_IMAGES:,} images of the same download, best of 3):",
        "",
        *resize_table(results),
        "",
        *resize_projection(results),
        "",
        "ImageNet-1k, projected from these runs:",
        "",
        *projection(results),
        "",
        "Targets (issue 21):",
        "",
        *[f"- {'PASS' if ok else 'FAIL'}: {text}" for text, ok in checks],
    ]
    return "\n".join(lines)


def all_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every measured run in the results, the loaders' epochs one by one."""
    out: list[dict[str, Any]] = []
    for got in results.values():
        out.extend(got["runs"].values() if "runs" in got else [got])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default=",".join(STEPS), help="comma list (%(default)s)")
    parser.add_argument("--sizes", default="small,ref,full", help="comma list (%(default)s)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument("--redo", action="store_true", help="measure recorded steps again")
    parser.add_argument("--keep", action="store_true", help="keep every output")
    parser.add_argument(
        "--wait",
        type=float,
        default=120,
        help="seconds to wait at most, before each run, while other processes keep more than "
        "half a core busy (default: %(default)s)",
    )
    parser.add_argument("--report-only", action="store_true", help="only print the report")
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    sizes = [s for s in args.sizes.split(",") if s]
    for s in steps:
        if s not in STEPS:
            parser.error(f"unknown step {s!r}: one of {', '.join(STEPS)}")
    for s in sizes:
        if s not in SIZES:
            parser.error(f"unknown size {s!r}: one of {', '.join(SIZES)}")
    bench = Bench(args.out, args.redo, args.keep, args.wait)
    if not args.report_only:
        print(f"start: load {load()}", flush=True)
        become_subreaper()
        # so that a kill runs the ``finally`` below (the fill file is removed)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            run_steps(bench, steps, sizes)
        finally:
            bench.fill.close()
        print(f"end: load {load()}", flush=True)
    text = report(bench.results)
    print(text)
    if args.write_docs:
        whens = sorted(when for r in all_runs(bench.results) if (when := r.get("when")))
        span = f"runs from {whens[0]} to {whens[-1]}, " if whens else ""
        write_section(
            "full-scale-bench",
            f"## At full count (`bench/full_scale.py`)\n\nMachine: {machine()}. "
            f"Date: {date.today()}. Command: `python bench/full_scale.py --write-docs` "
            f"(`make bench-full`; {span}resumed step by step from "
            f"bench/out/full-scale/results.json).\n\n{text}",
        )
        print(json.dumps({"wrote": str(DOCS)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
