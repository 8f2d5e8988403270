"""The README's PyTorch and TensorFlow training inputs (loaders) run as written, scaled down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_prep import BuildConfig, build

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "README.md"
PLACEHOLDER = 'ROOT = "/data/imagenet-prepared"'


def blocks() -> dict[str, str]:
    """The doc's complete examples (the Python blocks that set ROOT), by framework."""
    found = re.findall(r"```python\n(.*?)```", DOCS.read_text("utf-8"), flags=re.S)
    examples = [b for b in found if PLACEHOLDER in b]
    return {("tensorflow" if "import tensorflow" in b else "torch"): b for b in examples}


def scaled(code: str, out: Path, checkpoint: Path) -> str:
    """The example with this test's build and small sizes in place of the real ones."""
    values = {
        "ROOT": repr(str(out)),
        "BATCH": "8",
        "WORKERS": "2",
        "IMAGE_SIZE": "32",
        "EPOCHS": "1",
        "CHECKPOINT": repr(str(checkpoint)),
    }
    for name, value in values.items():
        code = re.sub(rf"^{name} = .*$", f"{name} = {value}", code, count=1, flags=re.M)
    # Smaller networks of the same kind, so that a CPU runs the examples in seconds.
    code = code.replace("torchvision.models.resnet50(", "torchvision.models.resnet18(")
    return code.replace(
        "tf.keras.applications.ResNet50(", "tf.keras.applications.MobileNetV3Small("
    )


def run(code: str, cwd: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def built(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders_docs") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord", "webdataset"),
            train_shards=4,
            validation_shards=2,
            shard_size=10,
            workers=1,
        )
    )
    return out


def test_the_doc_has_both_examples() -> None:
    assert set(blocks()) == {"torch", "tensorflow"}


@pytest.mark.slow
def test_pytorch_example_trains_and_resumes(built: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pt"
    code = scaled(blocks()["torch"], built, checkpoint)
    first = run(code, tmp_path)
    assert "epoch 0: loss" in first and "validation top-1" in first
    assert checkpoint.exists()
    # Run again: it resumes from the checkpoint written after the first step of epoch 0.
    second = run(code, tmp_path)
    assert "epoch 0: loss" in second


@pytest.mark.slow
def test_tensorflow_example_trains(built: Path, tmp_path: Path) -> None:
    out = run(scaled(blocks()["tensorflow"], built, tmp_path / "unused"), tmp_path)
    assert "accuracy" in out
