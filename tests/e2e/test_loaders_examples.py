"""examples/train.py trains (the loss falls), resumes exactly; examples/evaluate.py reports."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("torchvision")

from imagenet_prep import BuildConfig, build

ROOT = Path(__file__).resolve().parents[2]


def example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders_examples") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord",),
            train_shards=4,
            validation_shards=2,
            workers=1,
        )
    )
    return out


def train(
    built: Path, checkpoint: Path, steps: int, capsys: pytest.CaptureFixture[str], *extra: str
) -> list[dict[str, float]]:
    args = [
        "--data", str(built),
        "--arch", "resnet18",
        "--image-size", "32",
        "--batch-size", "8",
        "--lr", "0.16",  # 0.005 for this batch of 8
        "--workers", "0",
        "--epochs", "4",
        "--max-steps", str(steps),
        "--log-every", "1",
        "--checkpoint", str(checkpoint),
        "--json",
        *extra,
    ]  # fmt: skip
    assert example("train").main(args) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [line for line in lines if "loss" in line]


@pytest.mark.slow
def test_training_loss_falls_resumes_and_evaluates(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    full = train(built, tmp_path / "full.pt", 12, capsys)
    losses = [r["loss"] for r in full]
    assert [r["step"] for r in full] == list(range(1, 13))
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses
    # Interrupted after 5 steps (mid-epoch: 6 steps per epoch), then resumed.
    part = tmp_path / "part.pt"
    first = train(built, part, 5, capsys)
    rest = train(built, part, 12, capsys, "--resume")
    assert [r["step"] for r in first + rest] == list(range(1, 13))
    assert [r["epoch"] for r in first + rest] == [r["epoch"] for r in full]
    for a, b in zip(first + rest, full, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-3, abs=1e-4)

    evaluate = example("evaluate")
    args = ["--data", str(built), "--checkpoint", str(tmp_path / "full.pt"), "--workers", "0"]
    args += ["--batch-size", "5", "--image-size", "32", "--json"]
    assert evaluate.main(args) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["images"] == 12
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
