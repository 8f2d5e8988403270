"""``imagenet-prep report OUT``: look at a finished build before training on it.

One parallel pass over the records of one output (:mod:`.scan`: sizes from the headers,
boxes, exact per-channel pixel histograms, thumbnails) and the manifest give the numbers
(:mod:`.stats`, written to ``stats.json``), the plots (:mod:`.plots`, matplotlib, the
``report`` extra), thumbnails and contact sheets (:mod:`.thumbs`), the build's record as
tables (:mod:`.tables`) and one static page (:mod:`.page`). :func:`make_report` (:mod:`.run`)
ties them together.
"""

from __future__ import annotations

from .options import REPORT_DIR, Progress, ReportOptions
from .plots import INSTALL_HINT, require_matplotlib
from .run import ReportResult, default_format, make_report

__all__ = [
    "INSTALL_HINT",
    "REPORT_DIR",
    "Progress",
    "ReportOptions",
    "ReportResult",
    "default_format",
    "make_report",
    "require_matplotlib",
]
