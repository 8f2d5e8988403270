"""The work of one shard, run in a worker process: read, check, fix, resize, write.

Everything here is picklable and knows nothing of the plan or the other shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from . import imagefix
from .archive import read_at
from .errors import DataError
from .plan import ShardSpec
from .resize import ResizeSpec, resize_jpeg
from .sample import ImageRef, Sample
from .sinks import SinkOptions, get_sink


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


@dataclass(frozen=True)
class ShardResult:
    """What a finished shard reports back (and what its done marker keeps)."""

    shard: str
    split: str
    images: int
    bytes_in: int
    reencoded: list[list[str]]
    skipped: list[list[str]]
    outputs: dict[str, dict[str, Any]]


def _read_fixed(
    f: BinaryIO, ref: ImageRef, decode_check: bool
) -> tuple[bytes, imagefix.FixedImage]:
    raw = read_at(f, ref.offset, ref.size, ref.origin)
    info = imagefix.examine(raw, ref.origin)
    if decode_check:
        imagefix.decode_check(raw, ref.origin)
    return raw, imagefix.fix(raw, ref.origin, info=info)


def process_shard(job: ShardJob) -> ShardResult:
    """Read a shard's images, fix their bytes, and hand each to every format's writer."""
    sinks = [get_sink(name, job.options) for name in job.formats]
    writers = [s.open_shard(job.spec) for s in sinks]
    reencoded: list[list[str]] = []
    skipped: list[list[str]] = []
    bytes_in = 0
    written = 0
    current: tuple[str, BinaryIO] | None = None
    try:
        for ref in job.refs:
            if current is None or current[0] != ref.path:
                if current is not None:
                    current[1].close()
                    current = None
                try:
                    current = (ref.path, open(ref.path, "rb"))  # noqa: SIM115
                except OSError as exc:
                    raise DataError(f"{ref.origin}: cannot read ({exc.strerror})") from None
            try:
                raw, fixed = _read_fixed(current[1], ref, job.decode_check)
            except DataError as exc:
                if not job.skip_bad:
                    raise
                skipped.append([ref.origin, str(exc)])
                continue
            bytes_in += len(raw)
            if fixed.reencoded is not None:
                reencoded.append([ref.origin, fixed.reencoded])
            data, width, height = fixed.data, fixed.width, fixed.height
            resized = None
            if job.resize is not None:
                resized = resize_jpeg(data, width, height, job.resize, ref.origin)
                if resized is not None:
                    data, width, height = resized
            sample = Sample(
                ref=ref,
                raw=raw,
                data=data,
                width=width,
                height=height,
                reencoded=fixed.reencoded,
                resized=resized is not None,
            )
            for writer in writers:
                writer.add(sample)
            written += 1
        outputs = {s.name: w.commit() for s, w in zip(sinks, writers, strict=True)}
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    finally:
        if current is not None:
            current[1].close()
    return ShardResult(
        shard=job.spec.name,
        split=job.spec.split,
        images=written,
        bytes_in=bytes_in,
        reencoded=reencoded,
        skipped=skipped,
        outputs=outputs,
    )


def process_shards(jobs: tuple[ShardJob, ...]) -> list[ShardResult]:
    """Several small shards in one task, to spare a round trip per tiny shard.

    Each shard is still finished (renamed into place) on its own; the caller records them
    one by one, so the shard stays the unit of resume.
    """
    return [process_shard(job) for job in jobs]
