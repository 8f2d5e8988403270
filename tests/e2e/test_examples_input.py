"""The README's PyTorch training inputs run as written on a generated build."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_prep import BuildConfig, build

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def prepared(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("examples") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("webdataset", "imagefolder"),
            shard_size=10,
            train_shards=2,
            validation_shards=1,
            workers=1,
        )
    )
    return out


@pytest.mark.parametrize("script", ["input_webdataset.py", "input_imagefolder.py"])
def test_training_input_example(prepared: Path, script: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / script),
            str(prepared),
            "--batch-size",
            "4",
            "--workers",
            "2",
            "--image-size",
            "64",
            "--steps",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 3
    assert all("(4, 3, 64, 64) torch.uint8" in line for line in steps)
