"""The Ray engine: the same tasks as the local pool, one Ray task each, on a local Ray instance
started for the run or on a running cluster.

Ray is an optional dependency (``pip install 'imagenet-prep[ray]'``); this module imports it
only when an executor is made. Tasks write only their own files (shards, caches) and return
picklable results; the caller (the driver) keeps every other record. Every node reads and
writes the same paths: a shared file system mounted at the same place on each.

Failures:

- a task whose worker process or node dies is run again by Ray, up to ``retries`` times
  (Ray's ``max_retries``), then :class:`~imagenet_prep.errors.WorkerDied`;
- a transient I/O error (:func:`transient`: a network file system's timeout, a stale handle)
  is retried in the task, after a pause, up to ``len(TRANSIENT_PAUSES)`` times, then raised;
- any other exception (a damaged image under ``--on-error raise``, a full disk) is raised as
  the task raised it, once, with no retry.
"""

from __future__ import annotations

import errno
import importlib
import logging
import os
import platform
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import closing
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

from ..errors import ImagenetPrepError, UsageError, WorkerDied, one_line
from .inflight import in_flight
from .local import PRELOAD

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger(__name__)

#: How often Ray runs a task again after its worker or node died.
TASK_RETRIES = 3
#: The pauses, in seconds, before each new attempt at a task that met a transient I/O error.
TRANSIENT_PAUSES = (0.5, 2.0, 5.0)
#: Error numbers of failures that may pass: a network file system that timed out or lost a
#: handle, a server that reset a connection, a resource busy for a moment.
TRANSIENT_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.EAGAIN,
        errno.EBUSY,
        errno.ETIMEDOUT,
        errno.ESTALE,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.ECONNREFUSED,
        errno.ENETDOWN,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.EHOSTUNREACH,
        errno.EREMOTEIO,
    }
)
#: How long the nodes have to answer the check made at the start (they may be starting).
PROBE_SECONDS = 120.0
#: How long to wait for a TCP connection to a cluster's address before calling it unreachable
#: (Ray itself retries for minutes, printing a warning every few seconds).
CONNECT_SECONDS = 10.0

INSTALL_HINT = "pip install 'imagenet-prep[ray]'"

#: Where an object store is, as the driver's environment says it, given to every task: the same
#: command then reads the same S3-compatible server on every node. Credentials are not among
#: them (a runtime environment is stored in the cluster in plain text): each node uses its own
#: chain, an instance role or its environment.
FORWARDED_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_DEFAULT_REGION", "AWS_REGION")


def import_ray() -> ModuleType:
    """The ``ray`` module, or a one-line error saying what to install."""
    try:
        import ray
    except ImportError as exc:
        raise UsageError(
            f"--executor ray needs Ray, which is not installed here ({one_line(exc)}): "
            f"{INSTALL_HINT}"
        ) from None
    return ray


def transient(exc: BaseException) -> bool:
    """Whether ``exc`` is an I/O error worth trying again after a pause.

    >>> transient(OSError(errno.ESTALE, "Stale file handle")), transient(TimeoutError())
    (True, True)
    >>> transient(FileNotFoundError(errno.ENOENT, "No such file")), transient(ValueError())
    (False, False)
    """
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    return isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS


def run_task(
    fn: Callable[..., R], args: tuple[Any, ...], pauses: Sequence[float] = TRANSIENT_PAUSES
) -> R:
    """``fn(*args)``, tried again after each of ``pauses`` while it fails with a transient
    I/O error (see :func:`transient`). What a Ray task runs.

    Every task here may be run twice: a shard is written under a temporary name and renamed,
    an index or a cache is replaced whole, so a second attempt writes the same bytes.
    """
    for pause in (*pauses, None):
        try:
            return fn(*args)
        except OSError as exc:
            if pause is None or not transient(exc):
                raise
            log.warning("%s: %s; trying again in %.1f s", _name(fn), one_line(exc), pause)
            time.sleep(pause)
    raise AssertionError("unreachable")  # pragma: no cover


def run_alone(
    fn: Callable[..., R], args: tuple[Any, ...], pauses: Sequence[float] = TRANSIENT_PAUSES
) -> R:
    """:func:`run_task` for a one-off task, whose worker process ends after it (a Ray remote
    function of its own: Ray keys a function's options by the function)."""
    return run_task(fn, args, pauses)


def warm_up(modules: Sequence[str]) -> None:
    """Import ``modules`` in this worker, ahead of the tasks that need them."""
    for name in modules:
        importlib.import_module(name)


def probe(paths: Sequence[str]) -> dict[str, Any]:
    """What a node says at the start: its name, imagenet-prep and Python versions, and
    which of ``paths`` it cannot see."""
    from .. import __version__

    return {
        "host": socket.gethostname(),
        "version": __version__,
        "python": platform.python_version(),
        "missing": [p for p in paths if not os.path.exists(p)],
    }


def _name(fn: Callable[..., object]) -> str:
    return str(getattr(fn, "__name__", None) or type(fn).__name__)


def _reachable(address: str) -> str | None:
    """Why ``address`` (host:port) takes no TCP connection, or None if it does (or if it is
    not a plain host:port: "auto", "local", a ``ray://`` URL are left to Ray)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_SECONDS):
            return None
    except OSError as exc:
        return exc.strerror or one_line(exc)


class RayExecutor:
    """Runs the tasks on Ray: ``address`` names a running cluster (``RAY_ADDRESS`` when None;
    "auto" is the cluster this machine belongs to); without either, a local Ray instance of
    ``workers`` CPUs is started for the run and stopped after it.

    ``shared`` are paths every node must see (the source and the output): each node is
    asked at the start, and one that cannot see them, or runs another version of
    imagenet-prep, stops the run with an error naming it. At most two tasks per CPU of the
    cluster are in flight. ``startup_seconds``: importing Ray, starting or connecting to it, and
    the nodes' check.
    """

    same_machine = False  # a task may run on another node

    def __init__(
        self,
        workers: int | None = None,
        address: str | None = None,
        *,
        shared: Sequence[Path | str] = (),
        retries: int = TASK_RETRIES,
        pauses: Sequence[float] = TRANSIENT_PAUSES,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        started = time.perf_counter()
        self._ray = import_ray()
        self._import_seconds = time.perf_counter() - started
        self._address = address or os.environ.get("RAY_ADDRESS") or None
        self.workers = workers or 1
        self._cpus = workers
        # An object store is reached by URL from every node: only paths are checked.
        self._shared = [str(Path(p).resolve()) for p in shared if "://" not in str(p)]
        self._retries = retries
        self._pauses = tuple(pauses)
        self._owned = False  # whether this executor connected (and so disconnects)
        self._aside: list[Any] = []  # ObjectRefs of the tasks run beside
        self._warm: list[Any] = []  # ObjectRefs of the warm-up tasks
        ray = self._ray
        self._task = ray.remote(max_retries=retries, retry_exceptions=False)(run_task)
        # A one-off task takes no CPU of the others', and its worker ends after it.
        self._alone = ray.remote(
            num_cpus=0, max_calls=1, max_retries=retries, retry_exceptions=False
        )(run_alone)
        self._probe = ray.remote(num_cpus=0, max_retries=retries)(probe)
        self.startup_seconds = 0.0

    @property
    def address(self) -> str:
        """Where the tasks run: the cluster's address, or "local"."""
        return self._address or "local"

    def __enter__(self) -> RayExecutor:
        ray = self._ray
        started = time.perf_counter()
        if not ray.is_initialized():
            self._connect()
        elif self._address not in (None, "auto"):
            # This process's connection serves (a driver started inside a Ray job, a notebook)
            # only when it is the one asked for.
            current = ray.get_runtime_context().gcs_address
            if self._address != current:
                raise UsageError(
                    f"this process is already connected to the Ray cluster at {current}, "
                    f"not {self._address}"
                )
        try:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 0)))
            nodes = self._check_nodes()
        except BaseException:
            self._disconnect()
            raise
        # The job's worker processes start, and import what the tasks need, while the caller
        # prepares the first tasks (the local pool's fork server does the same); nobody waits.
        self._warm = [
            self._task.options(name="warm_up").remote(warm_up, (PRELOAD,), ())
            for _ in range(self.workers)
        ]
        self.startup_seconds = self._import_seconds + time.perf_counter() - started
        if self._owned:
            log.info(
                "Ray: %s, %d CPUs on %d node%s, ready in %.1f s",
                "a local instance" if self.address == "local" else f"the cluster at {self.address}",
                self.workers,
                nodes,
                "" if nodes == 1 else "s",
                self.startup_seconds,
            )
        return self

    def _connect(self) -> None:
        ray = self._ray
        address = self.address
        if address != "local":
            why = _reachable(address)
            if why is not None:
                raise UsageError(
                    f"cannot reach the Ray cluster at {address} ({why}): start it (`ray start "
                    "--head` on its head node) or give its address with --ray-address"
                )
        options: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "logging_level": logging.WARNING,
        }
        if address == "local":
            options["num_cpus"] = self._cpus or len(os.sched_getaffinity(0))
        forwarded = {k: os.environ[k] for k in FORWARDED_ENV if os.environ.get(k)}
        if forwarded:
            options["runtime_env"] = {"env_vars": forwarded}
        # A new local instance turns on token authentication and says so at every start.
        logging.getLogger("ray._private.authentication").setLevel(logging.ERROR)
        try:
            ray.init(address=address, **options)
        except Exception as exc:  # ConnectionError, AuthenticationError, a version mismatch
            raise UsageError(f"cannot use the Ray cluster at {address}: {one_line(exc)}") from None
        self._owned = True

    def _disconnect(self) -> None:
        if self._owned:
            self._owned = False
            self._ray.shutdown()

    def _check_nodes(self) -> int:
        """Ask every node with CPUs what it runs and which shared paths it cannot see; how
        many there are."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from .. import __version__

        ray = self._ray
        nodes = [n for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0]
        refs = {
            self._probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(self._shared): node
            for node in nodes
        }
        ready, late = ray.wait(list(refs), num_returns=len(refs), timeout=PROBE_SECONDS)
        if late:
            node = refs[late[0]]
            raise WorkerDied(
                f"Ray node {node['NodeManagerAddress']} did not run a task within "
                f"{PROBE_SECONDS:.0f} s: is it overloaded, or short of memory?"
            )
        for ref in ready:
            node = refs[ref]
            where = f"Ray node {node['NodeManagerAddress']}"
            try:
                answer = ray.get(ref)
            except Exception as exc:  # imagenet_prep cannot even be imported there
                raise UsageError(
                    f"{where} cannot run imagenet-prep's tasks ({one_line(_cause(ray, exc))}): "
                    f"install imagenet-prep (`{INSTALL_HINT}`) on every node"
                ) from None
            where = f"{where} ({answer['host']})"
            if answer["version"] != __version__:
                raise UsageError(
                    f"{where} runs imagenet-prep {answer['version']}, this machine "
                    f"{__version__}: install the same version on every node"
                )
            if answer["missing"]:
                raise UsageError(
                    f"{where} cannot see {answer['missing'][0]}: every node must reach the "
                    "source and the output at the same path (a shared file system mounted at "
                    "the same place)"
                )
        return len(nodes)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            # The run failed: nobody will use what the tasks beside it produce (an MD5 of
            # 138 GB may have minutes left), so they are stopped.
            for ref in self._aside:
                self._cancel(ref)
        self._aside.clear()
        self._warm.clear()
        self._disconnect()

    def release(self) -> None:
        """Nothing to stop: Ray's workers are the cluster's (a local instance ends on exit)."""

    def _cancel(self, ref: Any) -> None:
        try:
            self._ray.cancel(ref, force=True)
        except Exception as exc:  # finished already, or Ray is going away
            log.debug("cancel: %s", exc)

    def map_unordered(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        ray = self._ray
        if not ray.is_initialized():
            with self:  # connects, so the call below finds Ray ready
                yield from self.map_unordered(fn, items)
            return
        task = self._task.options(name=_name(fn))  # the worker's process title: ray::NAME

        def submit(item: T) -> Any:
            return task.remote(fn, (item,), self._pauses)

        def finished(pending: list[Any]) -> tuple[list[Any], list[Any]]:
            done, rest = ray.wait(pending, num_returns=1)
            # And whatever else has finished meanwhile, without waiting.
            more, rest = ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
            return [*done, *more], rest

        with closing(in_flight(items, 2 * self.workers, submit, finished, self._cancel)) as done:
            for ref in done:
                yield self._get(ref)

    def _get(self, ref: Any) -> Any:
        try:
            return self._ray.get(ref)
        except Exception as exc:
            raise self._error(exc) from None

    def _error(self, exc: BaseException) -> BaseException:
        """The exception a task's failure is raised as: the task's own, or WorkerDied."""
        exceptions = self._ray.exceptions
        cause = _cause(self._ray, exc)
        if cause is not exc:
            return cause
        if isinstance(
            exc,
            (
                exceptions.WorkerCrashedError,
                exceptions.NodeDiedError,
                exceptions.OutOfMemoryError,
                exceptions.LocalRayletDiedError,
                exceptions.ObjectLostError,
            ),
        ):
            return WorkerDied(
                f"a Ray task failed {self._retries + 1} times: its worker process or node died "
                "(killed, out of memory, or the node lost); finished shards are kept, rerun the "
                "command to resume"
            )
        return ImagenetPrepError(f"Ray: {one_line(exc)}")

    def run_aside(self, fn: Callable[..., R], *args: object) -> Future[R]:
        """Run ``fn(*args)`` as a Ray task beside the others: it takes no CPU of theirs, and its
        worker process ends after it (a one-off task's memory is not kept)."""
        ref = self._alone.options(name=_name(fn)).remote(fn, args, self._pauses)
        self._aside.append(ref)
        outer: Future[R] = Future()
        outer.set_running_or_notify_cancel()

        def copy(done: Future[R]) -> None:
            try:
                outer.set_result(done.result())
            except Exception as exc:
                outer.set_exception(self._error(exc))

        ref.future().add_done_callback(copy)
        return outer


def _cause(ray: ModuleType, exc: BaseException) -> BaseException:
    """The exception a task raised, out of Ray's wrapper; ``exc`` itself if it is not one."""
    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            return cause
    return exc
