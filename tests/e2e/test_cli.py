"""The command line as a user runs it: exit codes, one-line errors, no TensorFlow needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from tests.helpers import run_cli

from imagenet_prep.config import BuildConfig
from imagenet_prep.errors import UsageError


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_build_and_verify_without_tensorflow(small_download: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    (blocker / "tensorflow").mkdir(parents=True)
    (blocker / "tensorflow" / "__init__.py").write_text(
        "raise ImportError('tensorflow is blocked in this test')\n"
    )
    env = {"PYTHONPATH": os.pathsep.join([str(blocker), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "out"
    proc = run_cli(
        "build",
        "--source",
        small_download,
        "--output",
        out,
        "--train-shards",
        "3",
        "--validation-shards",
        "2",
        "--workers",
        "2",
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "train 36 images" in proc.stderr or "built " in proc.stderr
    assert (out / "manifest.json").is_file()
    proc = run_cli("verify", out, "--decode", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "all match the manifest" in proc.stderr


def test_missing_archive_folder(tmp_path: Path) -> None:
    proc = run_cli("build", "--source", tmp_path / "nope", "--output", tmp_path / "out")
    assert_one_line_error(proc, 1, str(tmp_path / "nope"), "does not exist")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_html_page_saved_as_tar(small_download: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ILSVRC2012_img_train.tar").write_text("<html><body>Access denied</body></html>\n" * 40)
    (src / "ILSVRC2012_img_val.tar").symlink_to(small_download / "ILSVRC2012_img_val.tar")
    out = tmp_path / "out"
    proc = run_cli("build", "--source", src, "--output", out, "--workers", "1")
    assert_one_line_error(proc, 1, "ILSVRC2012_img_train.tar", "not a tar archive")
    assert not (out / "manifest.json").exists()


def test_truncated_archive(small_download: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    data = (small_download / "ILSVRC2012_img_val.tar").read_bytes()
    (src / "ILSVRC2012_img_val.tar").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    proc = run_cli("build", "--source", src, "--output", out, "--splits", "validation")
    assert_one_line_error(proc, 1, "ILSVRC2012_img_val.tar", "truncated")
    assert not (out / "manifest.json").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_archive(small_download: Path, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    archive = src / "ILSVRC2012_img_val.tar"
    archive.write_bytes((small_download / "ILSVRC2012_img_val.tar").read_bytes())
    archive.chmod(0)
    proc = run_cli("build", "--source", src, "--output", tmp_path / "out", "--splits", "validation")
    assert_one_line_error(proc, 1, "ILSVRC2012_img_val.tar", "cannot read")


def test_archive_that_is_a_broken_link(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "ILSVRC2012_img_val.tar").symlink_to(tmp_path / "elsewhere" / "val.tar")
    proc = run_cli("build", "--source", src, "--output", tmp_path / "out", "--splits", "validation")
    assert_one_line_error(proc, 1, "ILSVRC2012_img_val.tar", "cannot read", "missing")


def test_archive_that_is_a_folder(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "ILSVRC2012_img_val.tar").mkdir(parents=True)
    proc = run_cli("build", "--source", src, "--output", tmp_path / "out", "--splits", "validation")
    assert_one_line_error(proc, 1, "ILSVRC2012_img_val.tar", "not a regular file")


def test_output_path_is_a_file(small_download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.write_text("hello")
    proc = run_cli("build", "--source", small_download, "--output", out)
    assert_one_line_error(proc, 2, str(out), "not a folder")


def test_bad_options_are_usage_errors(small_download: Path, tmp_path: Path) -> None:
    proc = run_cli(
        "build", "--source", small_download, "--output", tmp_path / "o", "--formats", "parquet"
    )
    assert_one_line_error(proc, 2, "parquet")
    proc = run_cli("build", "--source", small_download, "--output", tmp_path / "o", "--splits", "")
    assert_one_line_error(proc, 2, "split")


@pytest.mark.parametrize(
    "options",
    [{"formats": "parquet"}, {"splits": ""}, {"workers": 0}, {"quality": 101}],
)
def test_build_config_raises_usage_error(tmp_path: Path, options: dict[str, object]) -> None:
    """The library's own error for bad options, as ``build()`` documents (still a ValueError)."""
    with pytest.raises(UsageError):
        BuildConfig(source=tmp_path, output=tmp_path / "o", **options)  # type: ignore[arg-type]


def test_verify_names_a_damaged_shard(small_download: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = run_cli(
        "build",
        "--source",
        small_download,
        "--output",
        out,
        "--train-shards",
        "2",
        "--validation-shards",
        "1",
        "--workers",
        "1",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    shard = out / "tfrecord" / "train-00001-of-00002"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x55
    shard.write_bytes(bytes(data))
    proc = run_cli("verify", out)
    assert proc.returncode == 1
    assert "train-00001-of-00002" in proc.stderr
    assert "train-00000-of-00002" not in proc.stderr
    assert "Traceback" not in proc.stderr


def test_verify_without_manifest(tmp_path: Path) -> None:
    proc = run_cli("verify", tmp_path)
    assert_one_line_error(proc, 1, "manifest")
