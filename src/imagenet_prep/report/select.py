"""What the report reads and shows: tasks over a split's units, the images sampled for the
pixel statistics, the classes and images of the contact sheets. Pure functions, seeded."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import xxhash


def unit_ranges(sizes: Sequence[int] | np.ndarray, records: int) -> list[tuple[int, int]]:
    """Consecutive units grouped into tasks of at least ``records`` records each (a unit
    larger than that is a task of its own): ``(first, stop)`` unit ranges.

    >>> unit_ranges([1] * 5, 2)
    [(0, 2), (2, 4), (4, 5)]
    >>> unit_ranges([1250, 1250, 3], 512)
    [(0, 1), (1, 2), (2, 3)]
    >>> unit_ranges([], 512)
    []
    """
    ranges: list[tuple[int, int]] = []
    start = count = 0
    for unit, size in enumerate(sizes):
        count += int(size)
        if count >= records:
            ranges.append((start, unit + 1))
            start, count = unit + 1, 0
    if start < len(sizes):
        ranges.append((start, len(sizes)))
    return ranges


def sample_positions(total: int, sample: int | None, seed: int) -> np.ndarray | None:
    """The positions (in the split's record order) of the images whose pixels are counted:
    ``sample`` of ``total`` drawn without replacement with ``seed``, sorted; None for all.

    >>> sample_positions(10, 3, 0).tolist()
    [5, 6, 9]
    >>> sample_positions(10, None, 0) is None, sample_positions(10, 50, 0) is None
    (True, True)
    """
    if sample is None or sample >= total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=sample, replace=False)).astype(np.int64)


def contact_classes(wnids: Sequence[str], count: int, seed: int) -> list[str]:
    """``count`` of the classes ``wnids`` drawn with ``seed``, in label (sorted) order.

    >>> contact_classes(["n3", "n1", "n2"], 2, 7)
    ['n2', 'n3']
    >>> contact_classes(["n1"], 4, 7)
    ['n1']
    """
    ordered = sorted(wnids)
    if count >= len(ordered):
        return ordered
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(ordered), size=count, replace=False)
    return [ordered[i] for i in sorted(picked)]


def draw_rank(seed: int, key: str) -> int:
    """An image's place in the seeded draw of a contact sheet: the sheet of a class shows
    its images of lowest rank, whatever the format, the shard order or the task that read them.

    >>> draw_rank(0, "n01440764_10026") == draw_rank(0, "n01440764_10026")
    True
    >>> draw_rank(0, "a") != draw_rank(1, "a")
    True
    """
    return xxhash.xxh3_64_intdigest(key.encode("utf-8"), seed=seed & 0xFFFFFFFFFFFFFFFF)


_KEY_CHARS = re.compile(r"[.\\]")


def key_of(name: str) -> str:
    """The key a reader gives the image a manifest names by its origin (``archive:member``,
    a path, a zip member): the file stem, with ``.`` and ``\\`` made ``_`` as the WebDataset
    keys have them.

    >>> key_of("dl/ILSVRC2012_img_train.tar:n01440764.tar:n01440764_10026.JPEG")
    'n01440764_10026'
    >>> key_of("/data/val/ILSVRC2012_val_00000001.JPEG"), key_of("n02105855_77.v2.JPEG")
    ('ILSVRC2012_val_00000001', 'n02105855_77_v2')
    """
    base = name.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return normal_key(stem)


def normal_key(key: str) -> str:
    """A reader's key in the one spelling every format agrees on.

    >>> normal_key("n02105855_77.v2")
    'n02105855_77_v2'
    """
    return _KEY_CHARS.sub("_", key)
