"""The work of one shard, run in a worker process: read, check, fix, resize, write.

Everything here is picklable and knows nothing of the plan or the other shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from . import imagefix
from .errors import DataError
from .formats import get_sink
from .formats.base import Sink, SinkOptions
from .manifest import OriginalSizes, OutputState, ShardResult
from .plan import ShardSpec
from .resize import ResizeSpec, resize_jpeg
from .sample import ImageRef, Sample
from .sources.container import OpenFiles, read
from .sources.splitindex import RefBlock
from .storage import is_url, tally, tally_writes


@dataclass(frozen=True)
class ShardJob:
    """One unit of work: a shard's images, where to write them, and the error policy."""

    spec: ShardSpec
    refs: Sequence[ImageRef]  # a RefBlock from the index, or any sequence
    formats: tuple[str, ...]
    options: SinkOptions
    skip_bad: bool = False
    decode_check: bool = False
    resize: ResizeSpec | None = None
    max_pixels: int = imagefix.MAX_PIXELS
    # Keep each image's width and height before resizing (one plan group's jobs do).
    original_sizes: bool = False


def _read_fixed(
    files: OpenFiles, ref: ImageRef, decode_check: bool, max_pixels: int
) -> tuple[bytes, imagefix.FixedImage]:
    raw = read(ref, files)
    info = imagefix.examine(raw, ref.origin, max_pixels)
    if decode_check:
        imagefix.decode_check(raw, ref.origin)
    return raw, imagefix.fix(raw, ref.origin, info=info)


def process_shard(
    job: ShardJob,
    files: OpenFiles | None = None,
    made: dict[tuple[str, SinkOptions], Sink] | None = None,
) -> ShardResult:
    """Read a shard's images, fix their bytes, and hand each to every format's writer.

    ``files`` and ``made`` are shared by the shards of one task: sources stay open, and
    each format's sink (stateless between shards) is made once.
    """
    if files is None:
        with OpenFiles() as own:
            return process_shard(job, own, made)
    refs = job.refs.loaded() if isinstance(job.refs, RefBlock) else job.refs
    sinks = _sinks(job, made if made is not None else {})
    writers = [s.open_shard(job.spec) for s in sinks]
    reencoded: list[list[str]] = []
    skipped: list[list[str]] = []
    # What the job keeps per image stays bytes (a shard may hold 433,000 small images).
    sizes = bytearray() if job.original_sizes else None
    bytes_in = 0
    requests, fetched = tally()
    writes, stored = tally_writes()
    try:
        files.prefetch(refs)  # members in an object store: by range, neighbours together
        for ref in refs:
            if not is_url(ref.path):
                files.fd(ref.path, ref.origin)  # an unreadable source stops the run
            try:
                sample, original = _sample(job, files, ref)
            except DataError as exc:
                if not job.skip_bad:
                    raise
                skipped.append([ref.origin, str(exc)])
                continue
            bytes_in += len(sample.raw)
            if sample.reencoded is not None:
                reencoded.append([ref.origin, sample.reencoded])
            for writer in writers:
                writer.add(sample)
            if sizes is not None:
                sizes += OriginalSizes.part_line(ref.key, *original)
        if sizes is not None:  # before the shard is finished: a part without it is redone
            OutputState(job.options.out).write_sizes_part(job.spec.name, sizes)
        outputs = {s.name: w.commit() for s, w in zip(sinks, writers, strict=True)}
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    requests_after, fetched_after = tally()
    writes_after, stored_after = tally_writes()
    return ShardResult(
        shard=job.spec.name,
        split=job.spec.split,
        images=len(refs) - len(skipped),
        bytes_in=bytes_in,
        reencoded=reencoded,
        skipped=skipped,
        outputs=outputs,
        requests=requests_after - requests,
        bytes_fetched=fetched_after - fetched,
        writes=writes_after - writes,
        bytes_stored=stored_after - stored,
    )


def _sinks(job: ShardJob, made: dict[tuple[str, SinkOptions], Sink]) -> list[Sink]:
    """Each format's sink for ``job``, made once per task (``made`` keeps them)."""
    for name in job.formats:
        if (name, job.options) not in made:
            made[name, job.options] = get_sink(name, job.options)
    return [made[name, job.options] for name in job.formats]


def _sample(job: ShardJob, files: OpenFiles, ref: ImageRef) -> tuple[Sample, tuple[int, int]]:
    """One image as the formats write it: read, checked, fixed, resized when asked; and its
    width and height before resizing. A DataError names the image."""
    raw, fixed = _read_fixed(files, ref, job.decode_check, job.max_pixels)
    resized = None
    if job.resize is not None:  # its decode may find damage: the same policy
        resized = resize_jpeg(fixed.data, fixed.width, fixed.height, job.resize, ref.origin)
    data, width, height = resized or (fixed.data, fixed.width, fixed.height)
    sample = Sample(
        ref=ref,
        raw=raw,
        data=data,
        width=width,
        height=height,
        reencoded=fixed.reencoded,
        resized=resized is not None,
    )
    return sample, (fixed.width, fixed.height)


def process_shards(jobs: tuple[ShardJob, ...]) -> list[ShardResult]:
    """Several small shards in one task, to spare a round trip per tiny shard.

    Each shard is still finished (renamed into place) on its own; the caller records them
    one by one, so the shard stays the unit of resume.
    """
    made: dict[tuple[str, SinkOptions], Sink] = {}
    with OpenFiles() as files:
        return [process_shard(job, files, made) for job in jobs]
