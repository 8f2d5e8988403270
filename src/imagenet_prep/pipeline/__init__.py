"""``build``: the whole flow, in four phases with typed hand-overs.

1. :mod:`.inputs`: index the splits, parse the boxes, start the MD5s and the devkit
   (:mod:`.checks`) beside the build -> :class:`~.inputs.Inputs`;
2. :mod:`.resume`: plan the shards, find those an earlier run finished, check the disk
   -> :class:`~.resume.ResumePoint`;
3. :mod:`.shards`: map the shard jobs left over the executor, journaling each;
4. :mod:`.finish`: the checks that ran beside, the formats' final files, the manifest
   -> :class:`~.report.BuildResult`.
"""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import time
from dataclasses import dataclass

from ..config import BuildConfig
from ..errors import DataError, UsageError
from ..executors import Executor, executor_for, refuse_while_importing_main
from ..labels import load_synsets
from ..manifest import OutputState, read_manifest
from ..outdir import (
    make_output,
    out_of_space,
    prepare_output,
    recorded_options,
    remove_temporaries,
)
from ..sources import SourceLayout, discover
from ..sources.layout import expected_input
from .finish import finish
from .inputs import gather
from .report import BuildResult, Reporter, Silent
from .resume import planned_files, resume
from .shards import write_shards

__all__ = ["BuildResult", "Reporter", "build"]

log = logging.getLogger(__name__)


def build(
    config: BuildConfig,
    *,
    executor: Executor | None = None,
    reporter: Reporter | None = None,
) -> BuildResult:
    """Run the whole flow for ``config``; return a summary.

    Raises :class:`DataError` for bad input, :class:`UsageError` for options or an output
    folder that cannot be used, :class:`ResourceError` when the disk is too small. A run
    that stops leaves every finished shard in place; the same call again resumes.
    """
    # First: in a worker importing a script that calls this unguarded, it must touch nothing.
    refuse_while_importing_main("imagenet_prep.build()")
    started = time.perf_counter()
    out = config.output
    layout = discover(config.source, config.layout)
    for split in config.splits:
        if layout.images(split) is None:
            raise DataError(
                f"{config.source}: the {split} split was requested but its input is missing "
                f"in the {layout.name} layout ({expected_input(layout.name, split)})"
            )
    make_output(out)
    with OutputState(out).lock():
        if prepare_output(config, recorded_options(config, layout)):
            return _complete_result(config, started)
        remove_temporaries(out)
        log.info("source: %s", layout.describe())  # the first line of a build that starts
        need = _Need()
        try:
            # Entering the executor starts its workers, which boot while the inputs are indexed.
            with executor or executor_for(config) as pool:
                return _build(config, layout, pool, reporter or Silent(), started, need)
        except OSError as exc:
            raise _os_error(config, exc, need.bytes) from None


def _return_free_memory() -> None:
    """Give the C allocator's free pages back to the system (glibc's ``malloc_trim``).

    The inputs phase peaks above what the build keeps (an archive's members parsed, the
    index handed over, the box CSV made); glibc keeps most of the freed memory mapped, about
    20 MB at full count. Elsewhere (not Linux, musl) this does nothing.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    gc.collect()
    trim(0)


@dataclass
class _Need:
    """What the build still had to write when it started its shard work (for messages)."""

    bytes: int = 0


def _build(
    config: BuildConfig,
    layout: SourceLayout,
    executor: Executor,
    reporter: Reporter,
    started: float,
    need: _Need,
) -> BuildResult:
    phases: dict[str, float] = {}
    clock = time.perf_counter()
    synsets = load_synsets()
    state = OutputState(config.output)
    inputs = gather(config, layout, executor, state, synsets)
    phases["inputs"], clock = time.perf_counter() - clock, time.perf_counter()
    journal = state.journal()
    point = resume(config, layout, inputs.indexes, synsets, state, journal)
    need.bytes = point.need
    state.record_outputs(planned_files(config, inputs.indexes, synsets, point.plans))
    phases["plan"], clock = time.perf_counter() - clock, time.perf_counter()
    _return_free_memory()  # the inputs phase's peak, held through the shards otherwise
    results = write_shards(config, inputs, synsets, point, executor, reporter, journal, state)
    phases["shards"] = time.perf_counter() - clock
    # The pool's workers are done: their memory is freed before the finish (joining the
    # original sizes, the manifest). The one-off tasks (the MD5s) run on.
    executor.release()
    inputs.boxes.clear()  # only the shard jobs needed them (50 MB at full count)
    return finish(config, layout, inputs, synsets, point, results, state, journal, started, phases)


def _os_error(config: BuildConfig, exc: OSError, need: int) -> Exception:
    """One line for an error of the file system that no earlier check turned into one."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return out_of_space(config, exc, need)
    where = exc.filename if exc.filename is not None else config.output
    inside = str(where).startswith(str(config.output))
    what = "cannot write" if inside else "cannot read"
    error = f"{where}: {what} ({exc.strerror or exc})"
    return UsageError(error) if inside else DataError(error)


def _complete_result(config: BuildConfig, started: float) -> BuildResult:
    manifest = read_manifest(config.output)
    return BuildResult(
        output=config.output,
        images={s: v["images"] for s, v in manifest.splits.items()},
        shards_written=0,
        shards_reused=sum(v["shards"] for v in manifest.splits.values()),
        reencoded=manifest.reencoded,
        skipped=manifest.skipped,
        warnings=manifest.warnings,
        seconds=time.perf_counter() - started,
        bytes_in=0,
        images_written=0,
        already_complete=True,
        manifest=manifest,
    )
