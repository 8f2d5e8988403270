"""`build --executor ray` on a real Ray head on 127.0.0.1: the same bytes as local processes, a
Ray worker killed mid-build (its task is run again), the driver killed and the build resumed,
damaged images under both --on-error policies, a Ray instance started for the run, and the
errors of a missing Ray and a wrong address."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from tests.raycluster import free_port, tasks_running
from tests.sessions import in_session, kill_session, wait_until_gone

from imagenet_prep.fixture import FixtureConfig, generate
from imagenet_prep.manifest import STATE_DIR

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

FORMATS = "tfrecord,imagefolder,webdataset,mds"


@pytest.fixture(scope="module")
def download(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough images that a build with --decode-check keeps two workers busy a second or two,
    in several tasks (about 256 images each) per split."""
    out = tmp_path_factory.mktemp("ray") / "download"
    generate(
        FixtureConfig(out=out, classes=4, per_class=150, val_per_class=8, seed=5, pool_size=24)
    )
    return out


def command(src: Path, out: Path, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "imagenet_prep",
        "build",
        "--source",
        str(src),
        "--output",
        str(out),
        "--formats",
        FORMATS,
        "--train-shards",
        "24",
        "--validation-shards",
        "4",
        "--shard-size",
        "20",
        "--dali-index",
        "--decode-check",
        "--workers",
        "2",
        "--quiet",
        *more,
    ]


def snapshot(out: Path) -> dict[str, bytes]:
    """Every file a build wrote but its bookkeeping, by relative path; the manifest without
    the time it was written."""
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and STATE_DIR not in p.relative_to(out).parts
    }
    manifest = json.loads(files.pop("manifest.json"))
    manifest.pop("created")
    manifest.pop("timings")
    files["manifest.json"] = json.dumps(manifest, sort_keys=True).encode()
    return files


@pytest.fixture(scope="module")
def local_build(download: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The output of --executor local, what every Ray build here must equal."""
    out = tmp_path_factory.mktemp("local") / "out"
    subprocess.run(command(download, out), check=True, timeout=300)
    return snapshot(out)


def test_ray_writes_the_same_bytes_as_local_processes(
    download: Path, local_build: dict[str, bytes], ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    subprocess.run(
        command(download, out, "--executor", "ray", "--ray-address", ray_cluster),
        check=True,
        timeout=300,
    )
    built = snapshot(out)
    assert sorted(built) == sorted(local_build)  # every file, no more, no fewer
    assert [name for name in built if built[name] != local_build[name]] == []
    verify = subprocess.run(
        [sys.executable, "-m", "imagenet_prep", "verify", str(out)], capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stderr


def test_a_ray_worker_killed_mid_build_has_its_task_run_again(
    download: Path, local_build: dict[str, bytes], ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    killed: list[int] = []
    done = threading.Event()

    def kill_first_shard_task() -> None:
        while not done.is_set():
            for pid in tasks_running("process_shards"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.002)

    killer = threading.Thread(target=kill_first_shard_task)
    killer.start()
    try:
        build = subprocess.run(
            [c for c in command(download, out, "--executor", "ray", "--ray-address", ray_cluster)]
            + ["--on-error", "raise"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        done.set()
        killer.join()
    assert killed, "no shard task was seen running"
    assert build.returncode == 0, build.stderr
    assert "Traceback" not in build.stderr
    assert snapshot(out) == local_build
    assert not list(out.rglob("*.incomplete"))


def progress(out: Path) -> tuple[int, int]:
    """(shards the driver journaled as finished, TFRecord shards being written) now."""
    try:
        journaled = (out / STATE_DIR / "journal.jsonl").read_bytes().count(b"\n")
        names = os.listdir(out / "tfrecord")
    except FileNotFoundError:
        return 0, 0
    return journaled, sum(1 for n in names if n.endswith(".incomplete"))


def test_a_killed_driver_is_resumed_by_running_the_command_again(
    download: Path, local_build: dict[str, bytes], ray_cluster: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = command(download, out, "--executor", "ray", "--ray-address", ray_cluster)
    driver = subprocess.Popen(args, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            finished, partial = progress(out)
            if finished >= 1 and partial >= 1:
                break
            assert driver.poll() is None, f"the build ended before the kill ({finished} shards)"
            assert time.monotonic() < deadline, "the kill point was never reached"
            time.sleep(0.002)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    assert not (out / "manifest.json").exists()
    # Ray ends the tasks of a driver that is gone: nothing writes into OUT any more.
    deadline = time.monotonic() + 30
    while tasks_running("process_shards"):
        assert time.monotonic() < deadline, "the killed driver's tasks still run"
        time.sleep(0.05)
    assert progress(out)[0] < 28

    loud = [c for c in args if c != "--quiet"]
    rerun = subprocess.run(loud, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert "kept from the earlier run" in rerun.stderr
    assert snapshot(out) == local_build
    assert not list(out.rglob("*.incomplete"))


@pytest.fixture(scope="module")
def damaged(download: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The download extracted, with one training image cut short."""
    src = tmp_path_factory.mktemp("damaged") / "src"
    shutil.copytree(download, src)
    subprocess.run(
        [sys.executable, "-m", "imagenet_prep", "fixture", str(src / "tree"), "--layout",
         "extracted", "--classes", "4", "--per-class", "30", "--val-per-class", "4"],
        check=True,
        capture_output=True,
        timeout=300,
    )  # fmt: skip
    tree = src / "tree"
    victim = sorted((tree / "train").rglob("*.JPEG"))[7]
    victim.write_bytes(victim.read_bytes()[:2000])
    return tree, victim


def test_a_damaged_image_stops_a_ray_build_naming_it(
    damaged: tuple[Path, Path], ray_cluster: str, tmp_path: Path
) -> None:
    src, victim = damaged
    out = tmp_path / "out"
    build = subprocess.run(
        command(src, out, "--executor", "ray", "--ray-address", ray_cluster),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 1
    assert "Traceback" not in build.stderr
    errors = [line for line in build.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(victim) in errors[0], build.stderr
    assert not (out / "manifest.json").exists()


def test_a_damaged_image_skipped_on_ray_as_on_local_processes(
    damaged: tuple[Path, Path], ray_cluster: str, tmp_path: Path
) -> None:
    src, victim = damaged
    outs = {}
    for executor in ("local", "ray"):
        outs[executor] = tmp_path / executor
        more = ["--executor", executor, "--on-error", "skip"]
        if executor == "ray":
            more += ["--ray-address", ray_cluster]
        build = subprocess.run(
            command(src, outs[executor], *more), capture_output=True, text=True, timeout=300
        )
        assert build.returncode == 0, build.stderr
    manifest = json.loads((outs["ray"] / "manifest.json").read_text())
    assert [item["image"] for item in manifest["skipped"]] == [str(victim)]
    assert snapshot(outs["ray"]) == snapshot(outs["local"])


def test_a_ray_instance_started_for_the_run_is_stopped_after_it(
    download: Path, local_build: dict[str, bytes], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen(
        [c for c in command(download, out, "--executor", "ray") if c != "--quiet"],
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        _, stderr = driver.communicate(timeout=300)
        assert driver.returncode == 0, stderr
        assert "Ray: a local instance, 2 CPUs on 1 node, ready in" in stderr
        assert snapshot(out) == local_build
        took, left = wait_until_gone(driver.pid, 30)
        assert not left, f"Ray processes left {took:.0f} s after the build: {left}"
    finally:
        if in_session(driver.pid):
            kill_session(driver.pid)


def test_without_ray_installed_the_error_says_what_to_install(
    small_download: Path, tmp_path: Path
) -> None:
    shadow = tmp_path / "no-ray" / "ray"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError(\"No module named 'ray'\")\n")
    build = subprocess.run(
        command(small_download, tmp_path / "out", "--executor", "ray"),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(shadow.parent)},
        timeout=120,
    )
    assert build.returncode == 2
    assert build.stderr.splitlines() == [
        "imagenet-prep build: error: --executor ray needs Ray, which is not installed here (No "
        "module named 'ray'): pip install 'imagenet-prep[ray]'"
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--ray-address", "127.0.0.1:1"], "ray-address is for --executor ray"),
        (
            ["--executor", "ray", "--ray-address", "127.0.0.1:{port}"],
            "cannot reach the Ray cluster at 127.0.0.1:{port} (Connection refused): start it",
        ),
    ],
)
def test_a_wrong_address_is_a_one_line_usage_error(
    small_download: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    port = str(free_port())
    options = [o.replace("{port}", port) for o in options]
    started = time.monotonic()
    build = subprocess.run(
        command(small_download, tmp_path / "out", *options),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert time.monotonic() - started < 30
    assert build.returncode == 2
    (line,) = build.stderr.splitlines()
    assert line.startswith("imagenet-prep build: error: ")
    assert message.replace("{port}", port) in line
