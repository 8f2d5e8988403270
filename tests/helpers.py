"""Readers of generated downloads and build outputs that tests share."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imagenet_prep.formats.tfrecord.writer import read_examples


def run_cli(
    *args: object, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """``imagenet-prep ARGS`` as a user runs it, in a process of its own, output captured
    (``env`` is added to this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "imagenet_prep", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    """``image`` saved by Pillow as ``fmt`` ("JPEG", "PNG") with ``options``."""
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def source_images(download: Path, *, validation: bool = True) -> dict[str, bytes]:
    """Every image of a generated archive download, by file name, read with ``tarfile``."""
    out = {}
    with tarfile.open(download / "ILSVRC2012_img_train.tar") as outer:
        for member in outer:
            f = outer.extractfile(member)
            assert f is not None
            with tarfile.open(fileobj=f) as inner:
                for m in inner:
                    g = inner.extractfile(m)
                    assert g is not None
                    out[m.name] = g.read()
    if validation:
        with tarfile.open(download / "ILSVRC2012_img_val.tar") as val:
            for m in val:
                g = val.extractfile(m)
                assert g is not None
                out[m.name] = g.read()
    return out


def records_by_name(out: Path, split: str = "*") -> dict[str, dict[str, Any]]:
    """Every Example of a build's TFRecord shards (not their index files), by image file name."""
    records = {}
    for path in sorted((out / "tfrecord").glob(f"{split}-*-of-?????")):
        for ex in read_examples(path):
            records[ex["image/filename"].values[0].decode()] = ex
    return records


def assert_build_refused(
    src: Path, out: Path, named: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``build`` from the damaged ``src`` exits 1 with one error line that starts with the
    file ``named`` and says ``message``; no traceback, no manifest."""
    from imagenet_prep.cli import main

    args = ["build", "--source", str(src), "--output", str(out), "--quiet", "--workers", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"imagenet-prep build: error: {named}"), line
    assert message in line, line
    assert not (out / "manifest.json").exists()


def layout_downloads(root: Path, layouts: tuple[str, ...], seed: int) -> dict[str, Path]:
    """One small download with test images written in each of ``layouts`` from the same
    options, so the same images: what the cross-layout tests compare builds of."""
    from imagenet_prep.fixture import FixtureConfig, generate

    made = {}
    for layout in layouts:
        made[layout] = root / layout
        generate(
            FixtureConfig(
                out=made[layout],
                classes=4,
                per_class=12,
                val_per_class=3,
                seed=seed,
                pool_size=16,
                layout=layout,  # type: ignore[arg-type]
                test_images=5,
            )
        )
    return made


def build_every_split(src: Path, out: Path, **options: object) -> Path:
    """Build train, validation and test from ``src`` into ``out`` (small shard counts, two
    workers unless ``options`` say otherwise); check it with ``verify``."""
    from imagenet_prep import BuildConfig, build, verify

    settings: dict[str, object] = {"workers": 2, **options}
    build(
        BuildConfig(
            source=src,
            output=out,
            splits=("train", "validation", "test"),
            train_shards=2,
            validation_shards=2,
            test_shards=1,
            **settings,  # type: ignore[arg-type]
        )
    )
    assert verify(out).ok
    return out


def output_files(out: Path) -> list[str]:
    """Every file a build wrote in ``out`` but the manifest (which names the source) and the
    bookkeeping folder, relative to ``out``, sorted."""
    from imagenet_prep.manifest import STATE_DIR

    return sorted(
        str(p.relative_to(out))
        for p in out.rglob("*")
        if p.is_file() and p.name != "manifest.json" and STATE_DIR not in p.parts
    )
