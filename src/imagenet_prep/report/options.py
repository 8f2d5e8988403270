"""``ReportOptions``: what ``imagenet-prep report`` is asked for, validated once."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ..config import DEFAULT_SEED, default_workers
from ..formats import NAMES
from ..storage import is_url

REPORT_DIR = "report"
_WNID = re.compile(r"n\d{8}")


class Progress(Protocol):
    """Receives the report's progress: the CLI draws a bar, the library stays silent."""

    def start(self, total: int) -> None: ...

    def update(self, images: int) -> None: ...

    def close(self) -> None: ...


class Silent:
    def start(self, total: int) -> None:
        pass

    def update(self, images: int) -> None:
        pass

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class ReportOptions:
    """Options of a report on the build in ``output``.

    ``to``: the report's folder (default ``OUT/report``; required for a build in an object
    store). ``format``: the output to read (default: the one holding the original bytes,
    ``imagefolder`` when built, else the first built). ``sample``: count the pixels of that
    many images per split, drawn with ``seed``, instead of every image. ``contact_classes``:
    the classes of the contact sheets (default ``contact_sheets`` drawn with ``seed``), each
    with up to ``contact_images`` images per split.

    >>> ReportOptions("out").to
    PosixPath('out/report')
    >>> ReportOptions("out", sample=0)
    Traceback (most recent call last):
    ...
    ValueError: sample must be at least 1 image, not 0
    """

    output: Path | str
    to: Path | None = None
    format: str | None = None
    workers: int = field(default_factory=default_workers)
    sample: int | None = None
    seed: int = DEFAULT_SEED
    contact_classes: tuple[str, ...] | None = None
    contact_sheets: int = 4
    contact_images: int = 24

    def __post_init__(self) -> None:
        output = self.output if is_url(str(self.output)) else Path(self.output)
        object.__setattr__(self, "output", output)
        if self.to is None:
            if is_url(str(output)):
                raise ValueError(
                    f"{output} is in an object store: give a local folder for the report (--to DIR)"
                )
            object.__setattr__(self, "to", Path(output) / REPORT_DIR)
        else:
            object.__setattr__(self, "to", Path(self.to))
        if self.format is not None and self.format not in NAMES:
            raise ValueError(f"format must be one of {', '.join(NAMES)}, not {self.format!r}")
        if self.workers < 1:
            raise ValueError(f"workers must be at least 1, not {self.workers}")
        if self.sample is not None and self.sample < 1:
            raise ValueError(f"sample must be at least 1 image, not {self.sample}")
        if self.contact_classes is not None:
            bad = [w for w in self.contact_classes if not _WNID.fullmatch(w)]
            if bad:
                raise ValueError(
                    f"contact classes are WordNet IDs such as n01440764, not {', '.join(bad)}"
                )
        if self.contact_sheets < 0:
            raise ValueError(f"contact_sheets must be 0 or more, not {self.contact_sheets}")
        if not 1 <= self.contact_images <= 400:
            raise ValueError(f"contact_images must be 1 to 400, not {self.contact_images}")

    @property
    def folder(self) -> Path:
        """The report's folder."""
        return self.to if self.to is not None else Path(self.output) / REPORT_DIR
