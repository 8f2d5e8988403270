"""``index.html``: one static page that opens from the file system. Images are files beside
it, referenced by relative names; no script, no font or style from anywhere else."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any

from .plots import Plot
from .tables import Table

_CSS = """
:root { color-scheme: light; --ink: #1d232b; --muted: #5b6673; --line: #dde2e8;
  --panel: #f6f8fa; --accent: #3b6ea8; --warn: #9a5b00; --bad: #b3261e; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
  sans-serif; color: var(--ink); background: #fff; }
header { background: #1d2b3a; color: #fff; padding: 20px 32px 16px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header p { margin: 0; color: #c9d4e0; font-size: 13px; }
nav { position: sticky; top: 0; background: #fff; border-bottom: 1px solid var(--line);
  padding: 8px 32px; font-size: 13px; z-index: 1; }
nav a { margin-right: 16px; color: var(--accent); text-decoration: none; }
main { padding: 8px 32px 48px; max-width: 1320px; }
h2 { margin: 32px 0 8px; font-size: 19px; border-bottom: 2px solid var(--line);
  padding-bottom: 4px; }
h3 { margin: 20px 0 6px; font-size: 15px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 16px 0; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 16px; min-width: 150px; }
.card b { display: block; font-size: 20px; }
.card span { color: var(--muted); font-size: 12px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
  vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, td.mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, monospace;
  font-size: 12.5px; }
pre { background: var(--panel); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 12px; overflow-x: auto; }
figure { margin: 12px 0 20px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 13px; }
.note { color: var(--muted); font-size: 13px; }
.problem { color: var(--bad); }
.warning { color: var(--warn); }
.thumbs { display: flex; flex-wrap: wrap; gap: 12px; }
.thumb { width: 176px; font-size: 12px; color: var(--muted); word-break: break-all; }
.thumb img { display: block; max-width: 160px; max-height: 160px; border: 1px solid var(--line);
  margin-bottom: 4px; background: var(--panel); }
.missing { width: 128px; height: 96px; display: flex; align-items: center;
  justify-content: center; background: var(--panel); border: 1px dashed var(--line); }
details { margin: 6px 0 12px; }
summary { cursor: pointer; color: var(--accent); }
"""


@dataclass(frozen=True)
class Thumb:
    """An image shown small: its thumbnail file (None: none could be made), its name and why."""

    file: str | None
    name: str
    reason: str


@dataclass(frozen=True)
class ContactSheet:
    wnid: str
    name: str
    split: str
    file: str
    shown: int
    images: int


@dataclass
class PageData:
    """Everything the page shows; :mod:`.run` fills it."""

    output: str
    format: str
    created: str
    seconds: float
    splits: dict[str, dict[str, Any]]
    plots: dict[str, list[Plot]]  # by section: classes, sizes, boxes, pixels
    label_ranges: dict[str, dict[str, Any]]
    reencoded: list[Thumb]
    skipped: list[Thumb]
    skipped_note: str | None
    sheets: list[ContactSheet]
    build_tables: list[Table]
    checksum_tables: list[Table]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | int) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"


def _table(table: Table, mono: tuple[int, ...] = (), numeric: bool = True) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in table.header if True)
    body = []
    for row in table.rows:
        cells = []
        for i, cell in enumerate(row):
            text = str(cell)
            number = numeric and text.replace(",", "").replace(".", "").isdigit()
            cls = "mono" if i in mono else ("num" if number else "")
            cells.append(f'<td class="{cls}">{_e(text)}</td>' if cls else f"<td>{_e(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    show_head = any(table.header)
    parts = ["<table>"]
    if show_head:
        parts.append(f"<thead><tr>{head}</tr></thead>")
    parts.append("<tbody>" + "".join(body) + "</tbody></table>")
    if table.note:
        parts.append(f'<p class="note">{_e(table.note)}</p>')
    return "".join(parts)


def _figure(plot: Plot) -> str:
    return (
        f'<figure id="{_e(plot.file.removesuffix(".png"))}"><img src="{_e(plot.file)}" '
        f'alt="{_e(plot.title)}"><figcaption><b>{_e(plot.title)}.</b> '
        f"{_e(plot.caption)}</figcaption></figure>"
    )


def _cards(data: PageData) -> str:
    cards = []
    for split, entry in data.splits.items():
        extra = f"{entry['classes']:,} classes" if "classes" in entry else "no labels"
        cards.append(
            f"<div class=card><b>{entry['images']:,}</b><span>{_e(split)} images, "
            f"{_e(extra)}</span></div>"
        )
    cards.append(f"<div class=card><b>{len(data.reencoded)}</b><span>re-encoded</span></div>")
    cards.append(f"<div class=card><b>{len(data.skipped)}</b><span>skipped</span></div>")
    return "<div class=cards>" + "".join(cards) + "</div>"


def _named(classes: list[list[Any]]) -> str:
    """Classes as ``wnid first-name (count)``, three at most.

    >>> _named([["n01440764", "tench, Tinca tinca", 1300]])
    'n01440764 tench (1,300)'
    """
    return "; ".join(f"{w} {n.split(',')[0]} ({c:,})" for w, n, c in classes[:3]) or "-"


def _counts(data: PageData) -> str:
    out = ["<h2 id=counts>Counts</h2>"]
    rows = []
    for split, entry in data.splits.items():
        counts = set(entry.get("per_class", {}).values())
        if len(counts) == 1:
            small = large = f"every class: {counts.pop():,} images"
        else:
            small, large = (_named(entry.get(end, [])) for end in ("smallest", "largest"))
        rows.append((split, f"{entry['images']:,}", f"{entry.get('classes', 0):,}", small, large))
    out.append(
        _table(
            Table("", ("split", "images", "classes", "smallest classes", "largest classes"), rows)
        )
    )
    out.extend(_figure(p) for p in data.plots.get("classes", []))
    out.append("<h3>Labels as each format stores them</h3>")
    label_rows = []
    for fmt, entry in data.label_ranges.items():
        for split, r in entry["splits"].items():
            span = f"{r['min']}" if r["min"] == r["max"] else f"{r['min']} … {r['max']}"
            label_rows.append((fmt, entry["field"], split, span, f"{r['classes']:,}"))
    out.append(
        _table(
            Table(
                "",
                ("format", "field", "split", "values", "classes"),
                label_rows,
                "TFRecords add --label-offset to the 0-based index in the sorted "
                "synset list (0 is background); the other formats store it as it is; "
                "the test split has no label (-1, or offset - 1 in TFRecords).",
            )
        )
    )
    for fmt, entry in data.label_ranges.items():
        classes = {r["classes"] for s, r in entry["splits"].items() if s != "test"}
        if fmt == "imagefolder" and classes and max(classes) < 1000:
            out.append(
                '<p class="warning">torchvision\'s <code>ImageFolder</code> numbers the class '
                "folders it finds from 0: with fewer than 1000 classes its labels are not the "
                "indices above (the loaders here, <code>imagenet_prep.loaders</code>, keep "
                "them).</p>"
            )
    return "".join(out)


def _size_table(data: PageData) -> str:
    rows = []
    for split, entry in data.splits.items():
        for kind in ("sizes", "original_sizes"):
            s = entry.get(kind)
            if not s:
                continue
            label = split + (" (original)" if kind == "original_sizes" else "")
            w, h, a = s.get("width") or {}, s.get("height") or {}, s.get("aspect") or {}
            b = s.get("bytes") or {}
            rows.append(
                (
                    label,
                    f"{w.get('min', 0):,.0f} / {w.get('median', 0):,.0f} / {w.get('max', 0):,.0f}",
                    f"{h.get('min', 0):,.0f} / {h.get('median', 0):,.0f} / {h.get('max', 0):,.0f}",
                    f"{a.get('median', 0):.3f}",
                    f"{b['median'] / 1e3:,.1f} kB" if b else "-",
                    ", ".join(f"{cw}x{ch} ({n:,})" for cw, ch, n in s.get("common", [])[:3]),
                )
            )
    return _table(
        Table(
            "",
            (
                "split",
                "width min / median / max",
                "height min / median / max",
                "median aspect",
                "median file",
                "most common sizes",
            ),
            rows,
        )
    )


def _pixels(data: PageData) -> str:
    out = ["<h2 id=pixels>Per-channel mean and standard deviation</h2>"]
    rows = []
    snippets = []
    for split, entry in data.splits.items():
        p = entry.get("pixels")
        if not p:
            continue
        how = "every image" if p["exact"] else f"{p['images']:,} images drawn with seed {p['seed']}"
        mean = ", ".join(f"{v:.4f}" for v in p["mean"])
        std = ", ".join(f"{v:.4f}" for v in p["std"])
        rows.append((split, mean, std, f"{p['pixels']:,}", how))
        if split == "train":
            snippets.append(_snippets(p["mean"], p["std"]))
    if not rows:
        out.append('<p class="note">Pixels were not counted.</p>')
        return "".join(out)
    out.append(
        _table(
            Table(
                "",
                ("split", "mean (R, G, B)", "std (R, G, B)", "pixels per channel", "over"),
                rows,
                "Decoded RGB pixels scaled to [0, 1] (grayscale and CMYK images as "
                "RGB, the stored pixel grid without EXIF rotation); population "
                "standard deviation. The common ImageNet figures are mean 0.485, "
                "0.456, 0.406 and std 0.229, 0.224, 0.225.",
            )
        )
    )
    out.extend(snippets)
    out.extend(_figure(p) for p in data.plots.get("pixels", []))
    return "".join(out)


def _snippets(mean: list[float], std: list[float]) -> str:
    m = ", ".join(f"{v:.4f}" for v in mean)
    s = ", ".join(f"{v:.4f}" for v in std)
    torch = (
        "from torchvision import transforms\n\n"
        f"normalize = transforms.Normalize(mean=[{m}], std=[{s}])"
    )
    tf = (
        "import tensorflow as tf\n\n"
        f"MEAN = tf.constant([{m}])\nSTD = tf.constant([{s}])\n"
        "image = (tf.cast(image, tf.float32) / 255.0 - MEAN) / STD"
    )
    return (
        "<p>Normalize with the training split's figures:</p>"
        f"<pre><code>{_e(torch)}</code></pre><pre><code>{_e(tf)}</code></pre>"
    )


def _place(origin: str) -> tuple[str, str]:
    """An image's file name and what holds it (an archive, a zip, a folder), for captions.

    >>> _place("/d/ILSVRC2012_img_train.tar:n02105855.tar:n02105855_2933.JPEG")
    ('n02105855_2933.JPEG', 'ILSVRC2012_img_train.tar: n02105855.tar')
    >>> _place("/data/train/n01440764/n01440764_10026.JPEG")
    ('n01440764_10026.JPEG', 'train/n01440764')
    """
    if ":" in origin:
        holder, _, member = origin.rpartition(":")
        parts = holder.split(":")
        parts[0] = parts[0].rsplit("/", 1)[-1]
        return member.rsplit("/", 1)[-1], ": ".join(parts)
    folder, _, name = origin.rpartition("/")
    return name, "/".join(folder.split("/")[-2:])


def _thumbs(items: list[Thumb]) -> str:
    cells = []
    for item in items:
        name, holder = _place(item.name)
        picture = (
            f'<img src="{_e(item.file)}" alt="{_e(name)}">'
            if item.file
            else '<div class="missing">no thumbnail</div>'
        )
        cells.append(
            f'<div class="thumb" title="{_e(item.name)}">{picture}<b>{_e(item.reason)}</b><br>'
            f"{_e(name)}<br><small>{_e(holder)}</small></div>"
        )
    return "<div class=thumbs>" + "".join(cells) + "</div>"


def _fixes(data: PageData) -> str:
    out = ["<h2 id=fixes>Re-encoded and skipped images</h2>"]
    out.append(
        f"<h3>Re-encoded ({len(data.reencoded)})</h3><p class=note>CMYK JPEGs and images that "
        f"are no JPEG were re-encoded to RGB JPEG (quality 100) in every format that stores "
        f"the fixed bytes; thumbnails from the {_e(data.format)} output.</p>"
    )
    out.append(_thumbs(data.reencoded) if data.reencoded else "<p>None.</p>")
    out.append(f"<h3>Skipped ({len(data.skipped)})</h3>")
    if data.skipped_note:
        out.append(f'<p class="warning">{_e(data.skipped_note)}</p>')
    out.append(_thumbs(data.skipped) if data.skipped else "<p>None.</p>")
    return "".join(out)


def _sheets(data: PageData) -> str:
    out = ["<h2 id=contact>Contact sheets</h2>"]
    if not data.sheets:
        out.append("<p>None asked for.</p>")
        return "".join(out)
    out.append(
        "<p class=note>Images of a few classes, drawn with the seed, with their wnid and "
        "name: labels and pictures should agree at a glance.</p>"
    )
    for sheet in data.sheets:
        title = f"{sheet.wnid} · {sheet.name} · {sheet.split}"
        out.append(
            f'<figure><img src="{_e(sheet.file)}" alt="{_e(title)}">'
            f"<figcaption><b>{_e(title)}</b>: {sheet.shown} of {sheet.images:,} images"
            "</figcaption></figure>"
        )
    return "".join(out)


def _build(data: PageData) -> str:
    out = ["<h2 id=build>The build</h2>"]
    for table in data.build_tables:
        out.append(f"<h3>{_e(table.title)}</h3>")
        timing = table.header and table.header[-1] == "seconds"
        out.append(_table(table, mono=() if timing else (1,), numeric=bool(timing)))
    out.append("<h3>Checksums</h3>")
    for table in data.checksum_tables:
        count = len(table.rows)
        out.append(
            f"<details><summary>{_e(table.title)} ({count:,} entries)</summary>"
            f"{_table(table, mono=(3,))}</details>"
        )
    return "".join(out)


def render(data: PageData) -> str:
    """The whole page."""
    sections = [
        ("counts", "Counts"),
        ("sizes", "Sizes"),
        ("boxes", "Boxes"),
        ("pixels", "Mean and std"),
        ("fixes", "Re-encoded and skipped"),
        ("contact", "Contact sheets"),
        ("build", "The build"),
    ]
    nav = "".join(f'<a href="#{anchor}">{_e(text)}</a>' for anchor, text in sections)
    body = [_cards(data)]
    for line in data.problems:
        body.append(f'<p class="problem">Problem: {_e(line)}</p>')
    for line in data.warnings:
        body.append(f'<p class="warning">Build warning: {_e(line)}</p>')
    for line in data.notes:
        body.append(f'<p class="note">{_e(line)}</p>')
    body.append(_counts(data))
    body.append("<h2 id=sizes>Image sizes</h2>")
    body.append(_size_table(data))
    body.extend(_figure(p) for p in data.plots.get("sizes", []))
    body.append("<h2 id=boxes>Bounding boxes</h2>")
    box_plots = data.plots.get("boxes", [])
    body.extend(_figure(p) for p in box_plots)
    if not box_plots:
        body.append(f"<p>The {_e(data.format)} records carry no boxes.</p>")
    body.append(_pixels(data))
    body.append(_fixes(data))
    body.append(_sheets(data))
    body.append(_build(data))
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>imagenet-prep report: {_e(data.output)}</title><style>{_CSS}</style></head>"
        "<body><header><h1>imagenet-prep report</h1>"
        f"<p>{_e(data.output)} · read from its {_e(data.format)} output · build finished "
        f"{_e(data.created)} · report made in {data.seconds:,.1f} s</p></header>"
        f"<nav>{nav}</nav><main>{''.join(body)}</main></body></html>\n"
    )
