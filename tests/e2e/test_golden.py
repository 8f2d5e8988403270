"""Golden outputs: a fresh build of a committed download gives the bytes the code gave before.

The guard of refactors that must not change outputs (issue 15): ``tests/data/golden/download/``
is a small generated download, committed so that another Pillow cannot change the inputs, and
``tests/data/golden/outputs.json`` holds what the code made of it (every output file's size and
XXH3-128, the manifest less its time, paths and version, the counts of the build, of
``verify(decode=True)`` and of a resumed build), written by ``tests/data/golden/make.py``, whose
docstring says when and how to regenerate it (only for an intended output change).

Re-encoded images (CMYK, PNG) are encoded by Pillow's libjpeg and ``metadata.parquet`` is
written by pyarrow: if only those differ after a dependency upgrade, the cause is the upgrade,
not the code; the failure message shows the versions recorded and the ones installed.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from imagenet_prep import build, verify

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden"


def _load_make() -> ModuleType:
    spec = importlib.util.spec_from_file_location("golden_make", GOLDEN / "make.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make = _load_make()
RECORDED: dict[str, Any] = json.loads((GOLDEN / "outputs.json").read_text())
BUILDS = {b["name"]: b for b in RECORDED["builds"]}


def _environment_note() -> str:
    now = make.environment()
    then = RECORDED.get("environment", {})
    if now == then:
        return ""
    changed = ", ".join(
        f"{k} {then.get(k)} -> {now.get(k)}" for k in sorted(now) if now[k] != then.get(k)
    )
    return f"\n(recorded with other versions: {changed})"


def diff_files(expected: dict[str, list[Any]], actual: dict[str, list[Any]]) -> list[str]:
    """One line per path that is missing, extra or has another [size, xxh3]."""
    lines = [f"missing: {p}" for p in sorted(expected.keys() - actual.keys())]
    lines += [f"extra: {p}" for p in sorted(actual.keys() - expected.keys())]
    for path in sorted(expected.keys() & actual.keys()):
        if expected[path] != actual[path]:
            (s0, h0), (s1, h1) = expected[path], actual[path]
            lines.append(f"differs: {path} ({s0} bytes {h0} -> {s1} bytes {h1})")
    return lines


def diff_tree(expected: Any, actual: Any, where: str = "") -> list[str]:
    """The key paths (``formats.tfrecord.shards[1].xxh3_128``) where two JSON values differ."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        lines = []
        for key in sorted(expected.keys() | actual.keys()):
            path = f"{where}.{key}" if where else str(key)
            if key not in actual:
                lines.append(f"missing: {path}")
            elif key not in expected:
                lines.append(f"extra: {path}")
            else:
                lines += diff_tree(expected[key], actual[key], path)
        return lines
    if isinstance(expected, list) and isinstance(actual, list) and len(expected) == len(actual):
        return [
            line
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for line in diff_tree(e, a, f"{where}[{i}]")
        ]
    if expected != actual:
        return [f"differs: {where or '(top)'}: {_short(expected)} -> {_short(actual)}"]
    return []


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 120 else text[:117] + "..."


def assert_same(kind: str, lines: list[str]) -> None:
    __tracebackhide__ = True
    if lines:
        shown = "\n  ".join(lines[:40]) + (
            f"\n  ... and {len(lines) - 40} more" if len(lines) > 40 else ""
        )
        pytest.fail(
            f"{kind} differ from tests/data/golden/outputs.json:\n  {shown}{_environment_note()}"
        )


def assert_golden(out: Path, golden: dict[str, Any], when: str) -> None:
    """Every output file and the manifest's lasting parts as recorded (one failure for both)."""
    __tracebackhide__ = True
    manifest = json.loads((out / "manifest.json").read_text())
    files = diff_files(golden["files"], make.hashes(out))
    parts = diff_tree(golden["manifest"], make.manifest_parts(manifest, make.DOWNLOAD))
    assert_same(
        f"{when}: output files and manifest",
        [f"file {line}" for line in files] + [f"manifest {line}" for line in parts],
    )


def test_the_committed_download_is_unchanged() -> None:
    """The inputs are the committed bytes (not regenerated, not an LFS pointer, no eol change)."""
    assert_same("download/ files", diff_files(RECORDED["download"], make.hashes(make.DOWNLOAD)))


@pytest.mark.parametrize("name", list(BUILDS))
def test_build_gives_the_golden_outputs(name: str, tmp_path: Path) -> None:
    golden = BUILDS[name]
    out = tmp_path / "out"
    config = make.config(golden["options"], out)

    result = build(config)
    assert_golden(out, golden, "build")
    assert_same("build: counts", diff_tree(golden["result"], make.result_parts(result)))

    checked = verify(out, decode=True)
    assert checked.ok, checked.problems
    assert {"files_checked": checked.files_checked, "records": checked.records} == golden["verify"]

    deleted = golden["resume"]["delete"]
    if not deleted:
        return
    # Resume: some shards and the manifest gone, the same build again.
    for rel in [*deleted, "manifest.json"]:
        (out / rel).unlink()
    rerun = build(config)
    assert_golden(out, golden, "resumed build")
    assert_same(
        "resumed build: counts", diff_tree(golden["resume"]["result"], make.result_parts(rerun))
    )
    assert verify(out, decode=True).ok

    # verify names a changed file (or, for an image folder's image, its class folder).
    files = sorted(golden["files"])
    tampered = [
        next(f for f in files if f.startswith(prefix))
        for prefix in (
            "tfrecord/",
            "webdataset/train-",
            "imagefolder/train/n",
            "dali-index/",
            "labels.txt",
        )
    ]
    for rel in tampered:
        path = out / rel
        data = path.read_bytes()
        changed = bytearray(data)
        changed[len(changed) // 2] ^= 1
        path.write_bytes(changed)
        try:
            found = verify(out)
        finally:
            path.write_bytes(data)
        names = (str(path), str(path.parent)) if rel.startswith("imagefolder/") else (str(path),)
        assert not found.ok, f"verify missed a changed byte in {rel}"
        assert any(n in p for p in found.problems for n in names), (rel, found.problems)
    assert verify(out).ok


class _Stop(Exception):
    pass


class _StopAtFirstShard:
    """A reporter that stops the build when the first finished shards are reported."""

    def start(self, images: int, nbytes: int, done_images: int, done_bytes: int) -> None:
        pass

    def update(self, images: float, nbytes: float) -> None:
        raise _Stop

    def close(self) -> None:
        pass


def test_an_interrupted_build_resumes_to_the_golden_outputs(tmp_path: Path) -> None:
    golden = BUILDS["all-formats"]
    out = tmp_path / "out"
    config = make.config(golden["options"], out)
    with pytest.raises(_Stop):
        build(config, reporter=_StopAtFirstShard())
    assert not (out / "manifest.json").exists()

    result = build(config)
    assert_golden(out, golden, "build resumed after an interruption")
    jobs = golden["result"]["shards_written"]
    assert result.shards_reused >= 1, "the shards finished before the interruption were made again"
    assert result.shards_written + result.shards_reused == jobs
    assert result.files_written + result.files_reused == golden["result"]["files_written"]
