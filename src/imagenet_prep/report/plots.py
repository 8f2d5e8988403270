"""The report's plots, as PNG files beside its page (matplotlib's Agg canvas: no display,
no pyplot state)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import UsageError
from ..labels import Synsets
from ..manifest import OriginalSizes
from .scan import SplitScan
from .stats import box_heatmap

INSTALL_HINT = "pip install 'imagenet-prep[report]'"
_DPI = 100
_STORED = "#3b6ea8"
_ORIGINAL = "#d9822b"
_RGB = ("#d62728", "#2ca02c", "#1f77b4")


def require_matplotlib() -> None:
    """A UsageError naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"the report draws its plots with matplotlib: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class Plot:
    """A PNG the page shows: its file name in the report folder, a title and a caption."""

    file: str
    title: str
    caption: str


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    return figure


def _save(figure: Any, folder: Path, name: str) -> None:
    figure.savefig(folder / name, format="png", metadata={"Software": None})


def class_counts(folder: Path, counts: dict[str, dict[str, int]], synsets: Synsets) -> list[Plot]:
    """Per labelled split: images per class, sorted, the ends named."""
    plots = []
    for split, per_class in counts.items():
        if not per_class:
            continue
        ordered = sorted(per_class.items(), key=lambda item: (-item[1], item[0]))
        values = np.array([n for _, n in ordered])
        figure = _figure(10, 3.4)
        ax = figure.add_subplot()
        ax.bar(
            np.arange(len(values)), values, width=1.0 if len(values) > 50 else 0.8, color=_STORED
        )
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.set_ylabel("images")
        ax.set_xlabel(f"{len(values)} classes, most images first")
        if len(values) <= 20:
            ax.set_xticks(
                np.arange(len(values)), [w for w, _ in ordered], rotation=45, ha="right", fontsize=8
            )
        else:
            ax.set_ylim(0, values.max() * 1.3)  # room above the bars for the names
            for rank, (x, ha) in ((0, (0.2, "left")), (len(values) - 1, (0.8, "right"))):
                wnid, n = ordered[rank]
                ax.annotate(
                    f"{'largest' if rank == 0 else 'smallest'}: {wnid} "
                    f"{_short(synsets.text(wnid))}, {n:,}",
                    xy=(rank, n),
                    xytext=(x, 0.92),
                    textcoords="axes fraction",
                    ha=ha,
                    fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "#555555", "lw": 0.8},
                )
        ax.set_title(f"{split}: images per class (min {values.min():,}, max {values.max():,})")
        name = f"classes-{split}.png"
        _save(figure, folder, name)
        plots.append(
            Plot(
                name,
                f"{split}: images per class",
                "Classes sorted by their number of images; the smallest and largest are named.",
            )
        )
    return plots


def _short(text: str, limit: int = 28) -> str:
    """A synset's first name, cut to ``limit`` characters.

    >>> _short("tench, Tinca tinca")
    'tench'
    """
    first = text.split(",")[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _hist(
    ax: Any, values: np.ndarray, bins: Any, color: str, label: str, log: bool = False
) -> None:
    if values.size:
        ax.hist(values, bins=bins, color=color, alpha=0.75, label=label, log=log)


def sizes(folder: Path, scan: SplitScan, originals: OriginalSizes | None) -> list[Plot]:
    """A split's width, height, aspect ratio and file size histograms (the original sizes
    beside the stored ones when the build resized), and its width x height density."""
    split = scan.split
    ok = (scan.widths > 0) & (scan.heights > 0)
    w, h, nbytes = scan.widths[ok], scan.heights[ok], scan.nbytes
    o_w = np.asarray(originals.widths, np.int64) if originals is not None else None
    o_h = np.asarray(originals.heights, np.int64) if originals is not None else None
    stored = "stored" if originals is not None else "images"
    figure = _figure(10, 6.2)
    axes = figure.subplots(2, 2)
    for ax, values, extra, what in (
        (axes[0, 0], w, o_w, "width (pixels)"),
        (axes[0, 1], h, o_h, "height (pixels)"),
    ):
        both = values if extra is None else np.concatenate([values, extra])
        top = _shown_top(both)
        bins = np.linspace(0, top, 61)
        _hist(ax, np.minimum(values, top), bins, _STORED, stored)
        if extra is not None:
            _hist(ax, np.minimum(extra, top), bins, _ORIGINAL, "original")
            ax.legend(fontsize=8)
        over = int((both > top).sum())
        ax.set_xlabel(what + (f"; the last bar holds {over:,} above {top:,}" if over else ""))
        ax.set_ylabel("images")
    aspect = w / np.maximum(h, 1)
    bins = np.geomspace(0.2, 5.0, 61)
    ax = axes[1, 0]
    _hist(ax, np.clip(aspect, 0.2, 5.0), bins, _STORED, stored)
    if o_w is not None and o_h is not None:
        _hist(ax, np.clip(o_w / np.maximum(o_h, 1), 0.2, 5.0), bins, _ORIGINAL, "original")
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_xticks(
        [0.25, 0.5, 0.75, 1, 4 / 3, 2, 4], ["1:4", "1:2", "3:4", "1:1", "4:3", "2:1", "4:1"]
    )
    ax.minorticks_off()
    ax.set_xlabel("aspect ratio (width : height)")
    ax.set_ylabel("images")
    ax = axes[1, 1]
    kb = nbytes / 1e3
    if kb.size:
        low, high = max(kb.min(), 0.1), max(kb.max(), 1.0)
        _hist(ax, np.clip(kb, low, high), np.geomspace(low, high * 1.001, 60), _STORED, stored)
    ax.set_xscale("log")
    ax.set_xlabel("file size (kB)")
    ax.set_ylabel("images")
    figure.suptitle(f"{split}: image sizes ({len(scan):,} images)")
    name = f"sizes-{split}.png"
    _save(figure, folder, name)
    plots = [
        Plot(
            name,
            f"{split}: width, height, aspect ratio, file size",
            "Histograms over every image of the split"
            + (", stored (resized) and original." if originals is not None else "."),
        )
    ]
    plots.append(_density(folder, split, w, h, o_w, o_h))
    return plots


def _shown_top(values: np.ndarray) -> int:
    """Where a size histogram's axis ends: past the 99.5th percentile, so that a few huge
    images (ImageNet has some of several thousand pixels) do not squash the rest into a bar;
    larger values go into the last bar.

    >>> _shown_top(np.array([500] * 999 + [5000]))
    575
    >>> _shown_top(np.array([40, 500]))
    501
    """
    if values.size == 0:
        return 1
    high = int(values.max())
    top = int(np.ceil(np.percentile(values, 99.5) * 1.15))
    return high + 1 if top >= high else top


def _density(
    folder: Path,
    split: str,
    w: np.ndarray,
    h: np.ndarray,
    o_w: np.ndarray | None,
    o_h: np.ndarray | None,
) -> Plot:
    from matplotlib.colors import LogNorm

    pairs = [("stored" if o_w is not None else "images", w, h)]
    if o_w is not None and o_h is not None:
        pairs.append(("original", o_w, o_h))
    figure = _figure(5 * len(pairs) + 0.6, 4.4)
    axes = figure.subplots(1, len(pairs), squeeze=False)[0]
    for ax, (label, x, y) in zip(axes, pairs, strict=True):
        top = max(_shown_top(np.concatenate([x, y])), 64)
        bins = np.linspace(0, top, 81)
        counts, xe, ye = np.histogram2d(
            np.minimum(x, top - 1), np.minimum(y, top - 1), bins=[bins, bins]
        )
        counts = np.ma.masked_equal(counts.T, 0)
        mesh = ax.pcolormesh(
            xe, ye, counts, norm=LogNorm(vmin=1, vmax=max(counts.max(), 1)), cmap="viridis"
        )
        ax.plot([0, top], [0, top], color="#999999", lw=0.6, ls="--")
        ax.set_xlabel("width (pixels)")
        ax.set_ylabel("height (pixels)")
        ax.set_title(label, fontsize=10)
        ax.set_aspect("equal")
        figure.colorbar(mesh, ax=ax, label="images", shrink=0.85)
    figure.suptitle(f"{split}: width x height")
    name = f"density-{split}.png"
    _save(figure, folder, name)
    return Plot(
        name,
        f"{split}: width x height density",
        "Images per width x height cell (log colour scale); the dashed line is square.",
    )


def boxes(folder: Path, scan: SplitScan) -> list[Plot]:
    """A split's boxes: per image, their area relative to the image, where they lie."""
    if not len(scan.boxes):
        return []
    b = scan.boxes.astype(np.float64)
    figure = _figure(12, 3.8)
    axes = figure.subplots(1, 3)
    counts = np.bincount(scan.nboxes)[1:]
    top = min(len(counts), 15)
    shown = list(counts[:top]) + ([int(counts[top:].sum())] if len(counts) > top else [])
    labels = [str(n) for n in range(1, top + 1)] + ([f">{top}"] if len(counts) > top else [])
    axes[0].bar(np.arange(len(shown)), shown, color=_STORED)
    axes[0].set_xticks(np.arange(len(shown)), labels)
    axes[0].set_xlabel("boxes per image (images with boxes)")
    axes[0].set_ylabel("images")
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    axes[1].hist(area, bins=np.linspace(0, 1, 41), color=_STORED)
    axes[1].set_xlabel("box area / image area")
    axes[1].set_ylabel("boxes")
    grid = box_heatmap(b)
    shown_grid = axes[2].imshow(
        grid / max(grid.max(), 1), extent=(0, 1, 1, 0), cmap="magma", vmin=0, vmax=1
    )
    axes[2].set_xlabel("x (normalized)")
    axes[2].set_ylabel("y (normalized)")
    axes[2].set_title("where boxes lie", fontsize=10)
    figure.colorbar(shown_grid, ax=axes[2], label="share of the busiest cell", shrink=0.85)
    with_boxes = int((scan.nboxes > 0).sum())
    figure.suptitle(f"{scan.split}: {len(b):,} boxes on {with_boxes:,} of {len(scan):,} images")
    name = f"boxes-{scan.split}.png"
    _save(figure, folder, name)
    return [
        Plot(
            name,
            f"{scan.split}: boxes",
            "Boxes per image, their area relative to the image, and how often each part "
            "of the (normalized) image lies inside a box.",
        )
    ]


def pixels(folder: Path, scans: Sequence[SplitScan]) -> list[Plot]:
    """Per split whose pixels were counted: the histogram of each channel's values."""
    counted = [s for s in scans if s.moments is not None and s.moments.images]
    if not counted:
        return []
    figure = _figure(5 * len(counted), 3.6)
    axes = figure.subplots(1, len(counted), squeeze=False)[0]
    for ax, scan in zip(axes, counted, strict=True):
        assert scan.moments is not None
        m = scan.moments
        share = m.histogram / max(m.pixels, 1)
        mean, std = m.mean(), m.std()
        x = np.arange(256) / 255
        for c, name in enumerate("RGB"):
            ax.plot(
                x,
                share[c],
                color=_RGB[c],
                lw=1.1,
                label=f"{name}: mean {mean[c]:.3f}, std {std[c]:.3f}",
            )
            ax.axvline(mean[c], color=_RGB[c], lw=0.7, ls="--")
        ax.set_xlabel("pixel value / 255")
        ax.set_ylabel("share of pixels")
        ax.set_title(f"{scan.split}: {m.images:,} images", fontsize=10)
        ax.legend(fontsize=8)
    name = "pixels.png"
    _save(figure, folder, name)
    return [
        Plot(
            name,
            "Pixel values per channel",
            "The distribution of each RGB channel's values; dashed lines are the means.",
        )
    ]
