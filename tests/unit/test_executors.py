"""The process executor: one-off tasks beside the pool, and what happens when a run fails."""

from __future__ import annotations

import math
import operator
import time

import pytest

from imagenet_prep.executors import InlineExecutor, ProcessExecutor
from imagenet_prep.executors.local import _processes


def test_pool_and_aside_results() -> None:
    with ProcessExecutor(2) as pool:
        aside = pool.run_aside(operator.add, 2, 3)
        squares = sorted(pool.map_unordered(math.isqrt, [1, 4, 9, 16, 25]))
        assert aside.result(timeout=60) == 5
    assert squares == [1, 2, 3, 4, 5]


def test_release_stops_the_workers_and_keeps_the_aside_running() -> None:
    with ProcessExecutor(2) as pool:
        aside = pool.run_aside(_sleep_then, 2.0, "md5")
        assert sorted(pool.map_unordered(math.isqrt, [1, 4, 9])) == [1, 2, 3]
        assert pool._pool is not None
        workers = _processes(pool._pool)
        assert len(workers) == 2
        pool.release()
        assert pool._pool is None and not any(p.is_alive() for p in workers)
        assert not aside.done()  # the one-off task runs on
        assert aside.result(timeout=60) == "md5"
        # A later map starts workers again.
        assert sorted(pool.map_unordered(math.isqrt, [16])) == [4]


def _sleep_then(seconds: float, value: str) -> str:
    time.sleep(seconds)
    return value


def test_an_aside_error_reaches_the_caller() -> None:
    with ProcessExecutor(1) as pool:
        future = pool.run_aside(math.sqrt, -1.0)
        with pytest.raises(ValueError, match="math domain error"):
            future.result(timeout=60)


def test_a_failed_run_stops_a_long_aside_task() -> None:
    """Neither waited for nor left running after the run: its result has no use."""
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="stop"), ProcessExecutor(1) as pool:
        pool.run_aside(time.sleep, 60)
        time.sleep(1.0)  # the helper process is running the task by now
        helpers = [p for _pool, started_ones in pool._aside for p in started_ones]
        assert helpers and all(p.is_alive() for p in helpers)
        raise RuntimeError("stop")
    assert time.monotonic() - started < 30
    assert not any(p.is_alive() for p in helpers)


def test_inline_aside_runs_at_once() -> None:
    with InlineExecutor() as pool:
        assert pool.run_aside(operator.mul, 6, 7).result() == 42
        with pytest.raises(ValueError):
            pool.run_aside(math.sqrt, -1.0).result()
