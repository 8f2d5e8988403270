#!/usr/bin/env python3
"""Resize benchmark: imagenet-prep's resize path against Pillow's decode-resize(LANCZOS)-encode.

Per worker (one process), on the JPEGs of a generated download, for each target size: images/s
of Pillow's plain path (full decode, LANCZOS, quality-90 encode) and of ours
(imagenet_prep.resize.resize_jpeg), the speed-up, and the quality of ours as PSNR against
Pillow's LANCZOS resize of the full decode (mean and worst). Also times a whole
`imagenet-prep build --resize-shorter N` against the same build without resizing.

    python bench/resize.py --download bench/out/download-100x200x10 [--images 1000] [--write-docs]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from docsection import machine, write_section

from imagenet_prep.imagefix import fix, inspect
from imagenet_prep.resize import ResizeSpec, resize_jpeg

TARGETS = (("shorter", 256), ("shorter", 160), ("longer", 384))


def load_images(download: Path, limit: int) -> list[bytes]:
    """JPEGs as the build would resize them: the validation images, fixed (CMYK/PNG to RGB)."""
    images = []
    with tarfile.open(download / "ILSVRC2012_img_val.tar") as tar:
        for member in tar:
            f = tar.extractfile(member)
            if f is None:
                continue
            images.append(fix(f.read(), member.name).data)
    with tarfile.open(download / "ILSVRC2012_img_train.tar") as outer:
        for member in outer:
            f = outer.extractfile(member)
            if f is None or len(images) >= limit:
                break
            with tarfile.open(fileobj=f) as inner:
                for m in inner:
                    g = inner.extractfile(m)
                    if g is not None and len(images) < limit:
                        images.append(fix(g.read(), m.name).data)
    return images[:limit]


def pillow_path(data: bytes, spec: ResizeSpec) -> tuple[bytes, np.ndarray]:
    """The baseline: full decode, LANCZOS, encode at the same quality."""
    with Image.open(io.BytesIO(data)) as im:
        rgb = im.convert("RGB")
    target = spec.target(*rgb.size)
    if target is not None:
        rgb = rgb.resize(target, Image.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=spec.quality)
    return out.getvalue(), np.asarray(rgb)


def ours(data: bytes, spec: ResizeSpec) -> bytes:
    info = inspect(data, "bench")
    done = resize_jpeg(data, info.width, info.height, spec, "bench")
    return data if done is None else done[0]


def rate(fn: Callable[[bytes], object], images: list[bytes], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for data in images:
            fn(data)
        best = min(best, time.perf_counter() - start)
    return len(images) / best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-12)))


def measure_sizes(images: list[bytes], runs: int) -> list[dict[str, float | str]]:
    rows: list[dict[str, float | str]] = []
    for mode, size in TARGETS:
        spec = ResizeSpec(**{mode: size}, quality=90)  # type: ignore[arg-type]
        base = rate(lambda d, s=spec: pillow_path(d, s), images, runs)
        fast = rate(lambda d, s=spec: ours(d, s), images, runs)
        scores = []
        for data in images:
            info = inspect(data, "bench")
            if spec.target(info.width, info.height) is None:
                continue
            _, reference = pillow_path(data, spec)
            with Image.open(io.BytesIO(ours(data, spec))) as im:
                got = np.asarray(im.convert("RGB"))
            if got.shape == reference.shape:
                scores.append(psnr(got, reference))
        rows.append(
            {
                "target": f"--resize-{mode} {size}",
                "pillow": base,
                "ours": fast,
                "speedup": fast / base,
                "psnr_mean": float(np.mean(scores)) if scores else float("nan"),
                "psnr_min": float(np.min(scores)) if scores else float("nan"),
                "resized": len(scores),
            }
        )
    return rows


def build_seconds(download: Path, extra: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        out = Path(tempfile.mkdtemp(prefix="resize-bench-"))
        try:
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "imagenet_prep",
                    "build",
                    "--source",
                    str(download),
                    "--output",
                    str(out / "o"),
                    "--workers",
                    "2",
                    "--quiet",
                    *extra,
                ],
                check=True,
            )
            times.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(out, ignore_errors=True)
    return float(np.median(times))


def report(rows: list[dict[str, float | str]], builds: dict[str, float], images: int) -> str:
    lines = [
        f"Resize path, one process, {images} images of the generated download "
        "(quality 90, 4:2:0; PSNR against Pillow's LANCZOS resize of the full decode):",
        "",
        "| target | Pillow decode+LANCZOS+encode img/s | imagenet-prep img/s | speed-up "
        "| PSNR mean dB | PSNR worst dB | images resized |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['target']}` | {r['pillow']:,.0f} | {r['ours']:,.0f} | {r['speedup']:.2f}x "
            f"| {r['psnr_mean']:.1f} | {r['psnr_min']:.1f} | {r['resized']} |"
        )
    lines += ["", "Whole `imagenet-prep build` (tfrecord, 2 workers, median):", ""]
    lines += ["| build | seconds |", "|---|---|"]
    lines += [f"| `{name}` | {seconds:.2f} |" for name, seconds in builds.items()]
    ok = all(float(r["speedup"]) >= 1.5 and float(r["psnr_mean"]) >= 30 for r in rows)
    lines += [
        "",
        f"Targets (>= 1.5x Pillow per worker, mean PSNR >= 30 dB): {'PASS' if ok else 'FAIL'}",
    ]
    return "\n".join(lines)


def write_docs(text: str, command: str) -> None:
    write_section(
        "resize-bench",
        f"## Resizing at write time\n\nMachine: {machine()}; {date.today()}.\n"
        f"Command: `{command}`\n\n{text}",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--download", type=Path, required=True, help="a generated download")
    parser.add_argument("--images", type=int, default=1000, help="images per measurement")
    parser.add_argument("--runs", type=int, default=3, help="repeats (best is kept)")
    parser.add_argument("--build-runs", type=int, default=3, help="whole-build repeats (median)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/BENCHMARKS.md")
    args = parser.parse_args()
    images = load_images(args.download, args.images)
    rows = measure_sizes(images, args.runs)
    builds = {
        "build": build_seconds(args.download, [], args.build_runs),
        "build --resize-shorter 160": build_seconds(
            args.download, ["--resize-shorter", "160"], args.build_runs
        ),
    }
    text = report(rows, builds, len(images))
    print(text)
    if args.write_docs:
        write_docs(text, "python " + " ".join(sys.argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
