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
