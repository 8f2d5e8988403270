#!/usr/bin/env python3
"""Object storage benchmark: `imagenet-prep build --source s3://bucket/prefix` on an S3 server
on 127.0.0.1 (moto's) against `--source` on local disk: requests, bytes, throughput, time.

    python bench/objstore.py [--download bench/out/download-10x50x5] [--runs 3]
                             [--workers 2] [--memory full|free] [--write-docs]
                             [--docs docs/BENCHMARKS.md]

The source side only: a build cannot write its output to an object store yet (issue 20), so
both builds write to local disk. On the generated download (made with `imagenet-prep fixture`
when missing: 10 classes of 50 images, 550 in all; a small one, see the report), page cache
warm:

1. a moto S3 server on 127.0.0.1 in a session of its own (tests/s3server.py's `moto_server`,
   killed with its whole session at the end); the download's files uploaded into a bucket
   (boto3's `upload_file`, its default multipart and threads), timed apart from the builds;
2. moto's cost of one request: a 1-byte ranged GET of each uploaded object, the median of a
   few (moto's server reads the whole object for every ranged GET, so it grows with the
   object, which S3's does not);
3. the default build (tfrecord + box CSV, --workers, not --quiet: its summary's
   `object store:` line gives the requests and bytes) from the local folder and from
   `s3://BUCKET/PREFIX`, taking turns, --runs each, in the memory state that --memory names
   (bench/memstate.py, as bench/run.py and bench/ab.py do); both with the same environment
   (this one's, without its AWS_ variables, and the server's endpoint and keys); the median
   wall time of each, images/s and MB/s of image input, their ratio, the server's CPU time
   (its session's processes in /proc) and peak memory during each run, and the outputs of
   the last runs compared (every file but manifest.json and .imagenet-prep/).

moto is a Python server on the same cores as the build: the S3 row is a floor for the
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # tests.s3server
from docsection import DOCS, machine, write_section
from memstate import MODES, MemoryState
from peak_memory import tree_rss
from run import (
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
from tests.s3server import S3Endpoint, moto_server
from tests.sessions import in_session

OUT = ROOT / "bench" / "out"
# A small download: moto's cost of a ranged GET grows with the object (see the report).
DEFAULT_DOWNLOAD = OUT / "download-10x50x5"
# Its sizes, for --download when it is missing.
FIXTURE_SIZES = argparse.Namespace(classes=10, per_class=50, val_per_class=5)
BUCKET = "imagenet-bench"
PROBES = 5  # ranged GETs of each object to time moto's cost of one request
TICK = os.sysconf("SC_CLK_TCK")

# The summary's lines (cli/build.py's _summary).
WRITTEN = re.compile(r"images written in ([\d.]+) s")
STORE = re.compile(
    r"object store: ([\d,]+) requests read ([\d,]+) MB to index the archives(?:, [\d,]+ per GB)?;"
    r" ([\d,]+) requests read ([\d,]+) MB of images"
)


@dataclass
class Build(Row):
    """A build's runs (Row's lists), with what its summary and the server said of each."""

    own: list[float] = field(default_factory=list)  # the summary's "written in" seconds
    # (index requests, index MB, image requests, image MB) from the `object store:` line
    store: list[tuple[int, int, int, int]] = field(default_factory=list)
    server_cpu: list[float] = field(default_factory=list)  # moto's CPU seconds
    server_peak: list[float] = field(default_factory=list)  # moto's peak RSS, MB


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
    if (m := WRITTEN.search(text)) is not None:
        row.own.append(float(m.group(1)))
    if (m := STORE.search(text)) is not None:
        a, b, c, d = (int(g.replace(",", "")) for g in m.groups())
        row.store.append((a, b, c, d))


def take_turns(
    group: list[tuple[Build, Callable[[Path], list[str]]]],
    runs: int,
    scratch: Path,
    memory: MemoryState,
    env: dict[str, str],
    sid: int,
) -> None:
    """``runs`` rounds of one run of each build, each into a folder of its own under
    ``scratch`` (deleted after the group); the memory and the outputs handled as bench/run.py's
    ``timed`` does; each run's stderr kept for its summary, the server watched."""
    shutil.rmtree(scratch, ignore_errors=True)
    memory.before_group(runs * len(group))
    try:
        for run_no in range(runs):
            for i, (row, command) in enumerate(group):
                if row.error:
                    continue
                out = scratch / f"{i}-run-{run_no}"
                out.mkdir(parents=True)
                log = scratch / f"{i}-run-{run_no}.stderr"
                server = session_cpu(sid)
                busy = busy_seconds()
                with peak_rss(sid) as peak, open(log, "wb") as err:
                    started = time.perf_counter()
                    done = subprocess.run(
                        command(out / "out"),
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=err,
                        cwd=ROOT,
                        env=env,
                    )
                    seconds = time.perf_counter() - started
                busy = busy_seconds() - busy
                server = session_cpu(sid) - server
                text = log.read_text(errors="replace")
                if done.returncode != 0:
                    tail = " | ".join(text.strip().splitlines()[-3:])
                    row.error = f"run {run_no + 1} exited with {done.returncode}: {tail}"
                    print(f"  {row.name} run {run_no + 1}: {row.error}", flush=True)
                    continue
                row.seconds.append(seconds)
                row.cpu.append(busy)
                row.server_cpu.append(server)
                row.server_peak.append(peak[0])
                parse_summary(text, row)
                print(
                    f"  {row.name} run {run_no + 1}: {seconds:.2f} s (moto CPU {server:.2f} s)",
                    flush=True,
                )
                if run_no == runs - 1:  # before --memory free truncates it
                    row.digests = digest(out / "out")
                memory.after_run(out)
                memory.top_up()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    args: argparse.Namespace,
    local: Build,
    s3: Build,
    url: str,
    images: int,
    nbytes: int,
    sent: dict[str, float],
    probes: list[tuple[str, int, float]],
) -> str:
    lines = [
        f"{images:,} images, {nbytes / 1e9:.2f} GB of image data ({nbytes / images / 1e3:.0f} KB "
        f"an image); default build (tfrecord + box CSV), --workers {args.workers}, summary on "
        f"(not --quiet); the source on local disk against `{url}` on a moto S3 server "
        f"(tests/s3server.py) on 127.0.0.1; the output on local disk in both (writing it to "
        f"an object store is not implemented yet: this measures the source side only); page "
        f"cache warm; memory {args.memory} (bench/memstate.py); median of {args.runs} "
        f"run{'' if args.runs == 1 else 's'} each, taking turns.",
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
    if s3.seconds and local.seconds:
        lines += [
            f"Output, S3 source against local source (last runs): {same_output(local, s3)}.",
            "",
        ]
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
        "moto is a Python server on the same "
        f"{os.cpu_count()} cores as the build: the S3 row's extra time is a floor for the "
        "client's overhead (signing, HTTP, s3fs) plus moto's own cost, not a measure of S3's "
        "speed, which depends on the network and on how many requests run at once.",
        "",
        "Why a small download by default, not the suite's 21,000 images: there the training "
        "tar is 1.87 GB, so each of a build's about 21,000 ranged GETs (one per image: a "
        "shuffled shard's images lie far apart) would cost moto about 1 s of reading the "
        "whole object, 5 to 6 hours a build, which measures moto and not the build. "
        "`--download` takes any other download.",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--download",
        type=Path,
        default=DEFAULT_DOWNLOAD,
        help="a generated download, made when missing (default: %(default)s)",
    )
    parser.add_argument("--runs", type=int, default=3, help="builds of each source (default: 3)")
    parser.add_argument("--workers", type=int, default=2, help="build --workers (default: 2)")
    parser.add_argument(
        "--memory",
        choices=MODES,
        default="full",
        help="the memory state every run starts in (bench/memstate.py): full of clean page "
        "cache (default), or free",
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
    os.chdir(ROOT)

    images, nbytes = image_stats(download)
    print(f"download: {images:,} images, {nbytes / 1e9:.2f} GB of image data", flush=True)
    scratch = OUT / "scratch-objstore"
    prefix = download.name
    url = f"s3://{BUCKET}/{prefix}"
    workers = ["--workers", str(args.workers)]
    base = [PY, "-m", "imagenet_prep", "build", *workers]
    local = Build("local disk", "", "ours")
    s3 = Build(f"`{url}` (moto, loopback)", "", "ours")
    memory = MemoryState(args.memory, OUT, sum(p.stat().st_size for p in archives(download)))
    try:
        with moto_server() as endpoint:
            print(f"moto S3 server at {endpoint.url}", flush=True)
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
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            env.update(endpoint.env)
            warm(download)
            take_turns(
                [
                    (local, lambda out: [*base, "--source", str(download), "--output", str(out)]),
                    (s3, lambda out: [*base, "--source", url, "--output", str(out)]),
                ],
                args.runs,
                scratch,
                memory,
                env,
                endpoint.sid,
            )
    finally:
        memory.close()
    text = report(args, local, s3, url, images, nbytes, sent, probes)
    print(text)
    if args.write_docs:
        command = "python bench/objstore.py " + " ".join(sys.argv[1:])
        write_section(
            "objstore-bench",
            f"## Object storage (`bench/objstore.py`)\n\nMachine: {machine()}. Date: "
            f"{date.today()}. Command: `{command}` (`make bench`).\n\n{text}",
            args.docs,
        )
        print(json.dumps({"wrote": str(args.docs)}))
    matched = bool(local.digests) and local.digests == s3.digests
    return 0 if not (local.error or s3.error) and matched else 1


if __name__ == "__main__":
    sys.exit(main())
