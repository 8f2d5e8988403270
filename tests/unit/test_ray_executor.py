"""RayExecutor against a real Ray head on 127.0.0.1: results, retries of transient I/O errors
and of dead workers, errors raised as the task raised them, the nodes' check, the errors of a
missing Ray and of an unreachable cluster."""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.raycluster import free_port

from imagenet_prep.errors import DataError, UsageError, WorkerDied

ray = pytest.importorskip("ray")
from imagenet_prep.executors.ray_executor import RayExecutor, import_ray  # noqa: E402

pytestmark = pytest.mark.slow

# The task functions below live in this test module, which Ray's workers cannot import: they
# travel by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])

NO_PAUSES = (0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def connected(ray_cluster: str) -> Iterator[RayExecutor]:
    """An executor connected to the test cluster for the module; the others made while it is
    connected use its connection."""
    with RayExecutor(address=ray_cluster, pauses=NO_PAUSES) as executor:
        yield executor


def square(n: int) -> int:
    return n * n


def count(path: Path) -> int:
    """Count one attempt in ``path``; how many there were before this one."""
    before = int(path.read_text()) if path.exists() else 0
    path.write_text(str(before + 1))
    return before


def fails_twice(path: Path) -> str:
    if count(path) < 2:
        raise OSError(errno.ESTALE, "Stale file handle", str(path))
    return "done"


def always_eio(path: Path) -> None:
    count(path)
    raise OSError(errno.EIO, "Input/output error", str(path))


def damaged(path: Path) -> None:
    count(path)
    raise DataError(f"{path}: not a JPEG image")


def dies_once(path: Path) -> int:
    if count(path) == 0:
        os._exit(1)
    return os.getpid()


def always_dies(path: Path) -> None:
    count(path)
    os._exit(1)


def test_every_result_comes_back(connected: RayExecutor) -> None:
    assert sorted(connected.map_unordered(square, range(50))) == [n * n for n in range(50)]
    assert connected.workers == 2  # the cluster's CPUs


def test_a_transient_io_error_is_tried_again(connected: RayExecutor, tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    assert list(connected.map_unordered(fails_twice, [tries])) == ["done"]
    assert tries.read_text() == "3"


def test_a_lasting_io_error_is_raised_after_the_bound(
    connected: RayExecutor, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"
    with pytest.raises(OSError) as caught:
        list(connected.map_unordered(always_eio, [tries]))
    assert caught.value.errno == errno.EIO and caught.value.filename == str(tries)
    assert tries.read_text() == str(len(NO_PAUSES) + 1)


def test_a_data_error_is_raised_once_as_the_task_raised_it(
    connected: RayExecutor, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"
    with pytest.raises(DataError, match=r"tries: not a JPEG image$"):
        list(connected.map_unordered(damaged, [tries]))
    assert tries.read_text() == "1"


def test_a_dead_worker_is_replaced_and_its_task_run_again(
    connected: RayExecutor, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"
    (pid,) = connected.map_unordered(dies_once, [tries])
    assert tries.read_text() == "2" and pid != os.getpid()


def test_a_task_that_keeps_killing_its_worker_ends_the_run(
    connected: RayExecutor, tmp_path: Path
) -> None:
    tries = tmp_path / "tries"
    with (
        RayExecutor(retries=1, pauses=NO_PAUSES) as executor,
        pytest.raises(WorkerDied, match="failed 2 times"),
    ):
        list(executor.map_unordered(always_dies, [tries]))
    assert tries.read_text() == "2"


def test_run_aside_gives_the_result_or_the_error(connected: RayExecutor, tmp_path: Path) -> None:
    assert connected.run_aside(square, 7).result(timeout=60) == 49
    future = connected.run_aside(damaged, tmp_path / "tries")
    with pytest.raises(DataError, match="not a JPEG image"):
        future.result(timeout=60)


def test_a_node_that_cannot_see_a_shared_path_is_named(
    connected: RayExecutor, tmp_path: Path
) -> None:
    missing = tmp_path / "not-mounted"
    with (
        pytest.raises(UsageError, match=r"Ray node 127\.0\.0\.1 .*cannot see .*not-mounted: every"),
        RayExecutor(shared=[tmp_path, missing]),
    ):
        pass


def test_without_ray_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(UsageError, match=r"pip install 'imagenet-prep\[ray\]'"):
        import_ray()


def test_a_connection_to_another_cluster_is_refused(connected: RayExecutor) -> None:
    address = f"127.0.0.1:{free_port()}"
    with (
        pytest.raises(
            UsageError, match=rf"already connected to the Ray cluster at .*, not {address}"
        ),
        RayExecutor(address=address),
    ):
        pass
