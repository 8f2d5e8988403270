"""Output formats, one package each, joined by one registry.

A format's package holds its writer (``writer.py``: the sink that writes shards, its
``finalize`` and ``verify``), its reader for the loaders (``reader.py``) and a
:class:`Format` that says the rest: its folder, its size factor, how it counts its shards,
every path it owns in OUT. Everything else (the options, the output folder, the pipeline,
``verify``, the loaders) asks this registry. Adding a format is one package and one line
in :data:`FORMATS`.

The writers and readers are imported on first use: the registry itself is light.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from . import imagefolder, mds, tfrecord, webdataset
from .spec import Format

if TYPE_CHECKING:
    from .base import Sink, SinkOptions

#: Every output format, by name, in the order the CLI lists them.
FORMATS: Mapping[str, Format] = {
    f.name: f
    for f in (
        tfrecord.FORMAT,
        imagefolder.FORMAT,
        webdataset.FORMAT,
        mds.FORMAT,
    )
}
NAMES = tuple(FORMATS)


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown output format {name!r} (one of {', '.join(NAMES)})") from None


def get_sink(name: str, options: SinkOptions) -> Sink:
    """Make the writer of format ``name``."""
    return get_format(name).sink(options)


__all__ = ["FORMATS", "NAMES", "Format", "get_format", "get_sink"]
