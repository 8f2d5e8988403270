"""What is in SRC: which layout holds the download (the official archives or their extracted
tree, Kaggle's zip or its extracted tree, Hugging Face's tar.gz archives or Parquet files), the
input of each split, and the names of its files. :func:`discover` finds it; :mod:`.official`,
:mod:`.kaggle` and :mod:`.hf` index it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError, UsageError, one_line
from ..storage import is_url, redact

TRAIN_ARCHIVE = "ILSVRC2012_img_train.tar"
VAL_ARCHIVE = "ILSVRC2012_img_val.tar"
TEST_ARCHIVE = "ILSVRC2012_img_test_v10102019.tar"
BOX_TRAIN_ARCHIVE = "ILSVRC2012_bbox_train_v2.tar.gz"
BOX_VAL_ARCHIVE = "ILSVRC2012_bbox_val_v3.tgz"
DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"
DEVKIT_DIR = "ILSVRC2012_devkit_t12"

KAGGLE_ZIP = "imagenet-object-localization-challenge.zip"
KAGGLE_DATA = "ILSVRC/Data/CLS-LOC"
KAGGLE_ANNOTATIONS = "ILSVRC/Annotations/CLS-LOC"
KAGGLE_SYNSET_MAPPING = "LOC_synset_mapping.txt"
KAGGLE_VAL_SOLUTION = "LOC_val_solution.csv"
KAGGLE_TRAIN_SOLUTION = "LOC_train_solution.csv"
#: Kaggle's folder of each split, under KAGGLE_DATA (and KAGGLE_ANNOTATIONS for boxes).
KAGGLE_SPLIT_DIRS = {"train": "train", "validation": "val", "test": "test"}

#: Hugging Face's imagenet-1k: ``train_images_<n>.tar.gz``, ``val_images.tar.gz`` and
#: ``test_images.tar.gz``, or Parquet files named by split (``train-00000-of-00294.parquet``).
HF_ARCHIVE_RE = re.compile(r"^(train_images_\d+|val_images|test_images)\.tar\.gz$")
HF_PARQUET_RE = re.compile(r"^(train|validation|val|test)[-_.].*\.parquet$")
_HF_DEPTH = 1
_HF_SPLITS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}

#: The layouts ``--layout`` names (the fixture's names); archives and extracted are one
#: family, which may be mixed (for each input the archive wins).
LAYOUTS = ("archives", "extracted", "kaggle", "kaggle-tree", "hf", "hf-parquet")

IMAGE_EXTENSIONS = frozenset({".jpeg", ".jpg", ".png"})
#: A tar header's name field: a WebDataset member ``<key>.<ext>`` must fit in it.
MAX_KEY_BYTES = 100
# 2: the nested tars are kept too, and the archives' ends were checked.
INDEX_VERSION = 2


def is_image_name(name: str) -> bool:
    """Image files are matched by extension in any case.

    >>> [is_image_name(n) for n in ("a.JPEG", "b.jpeg", "c.JpG", "d.png", "e.xml", "JPEG")]
    [True, True, True, True, False, False]
    """
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def stem(name: str) -> str:
    """File name without directory and extension.

    >>> stem("n01440764/n01440764_10026.JPEG")
    'n01440764_10026'
    """
    base = name[name.rfind("/") + 1 :] if os.sep == "/" else os.path.basename(name)
    dot = base.rfind(".")
    if dot > 0 and base[0] != ".":  # the common case, without os.path's general rules
        return base[:dot]
    return os.path.splitext(base)[0]


@dataclass(frozen=True)
class SourceLayout:
    """What one layout found in SRC: the input of each split's images and boxes, and the
    files that are evidence for the labels.

    An input is an archive (a tar, or Kaggle's zip, which then is the input of every part),
    or a folder. ``name`` is the layout (one of :data:`LAYOUTS`, or ``archives+extracted``
    when the official family is mixed).
    """

    name: str
    root: Path
    splits: Mapping[str, Path] = field(default_factory=dict)  # split -> its images' input
    boxes: Mapping[str, Path] = field(default_factory=dict)  # split -> its box XMLs' input
    devkit: Path | None = None
    labels: Mapping[str, Path] = field(default_factory=dict)  # file name -> the file holding it
    # split -> its files, when a split comes in several (Hugging Face's), sorted
    parts: Mapping[str, tuple[Path, ...]] = field(default_factory=dict)
    # what looks incomplete (a file of a numbered set missing), for the build's warnings
    warnings: tuple[str, ...] = ()

    def images(self, split: str) -> Path | None:
        """The input of ``split``'s images, if SRC has one (the folder of its files, when the
        split comes in several: :attr:`parts`)."""
        return self.splits.get(split)

    def files(self, split: str) -> list[Path]:
        """The files that hold ``split``'s images (none for a folder of image files)."""
        if split in self.parts:
            return list(self.parts[split])
        path = self.splits.get(split)
        return [path] if path is not None and path.is_file() else []

    def inputs(self) -> list[Path]:
        """Every input, once each, in a stable order."""
        found = [*self.splits.values(), *self.boxes.values(), *self.labels.values()]
        found.extend(p for files in self.parts.values() for p in files)
        if self.devkit is not None:
            found.append(self.devkit)
        return list(dict.fromkeys(found))

    def archives(self) -> list[Path]:
        """The inputs that are files (archives, Kaggle's zip and CSVs), for the manifest."""
        return [p for p in self.inputs() if p.is_file()]

    def describe(self) -> str:
        """One line for people: the layout and the inputs it found.

        >>> SourceLayout("kaggle", Path("/d"), {"train": Path("/d/k.zip")}).describe()
        'kaggle layout in /d: k.zip'
        """
        names = [_relative(p, self.root) for p in self.inputs()]
        return f"{self.name} layout in {self.root}: {', '.join(names)}"

    def entry(self) -> dict[str, object]:
        """The manifest's record of the layout and its files (paths relative to the root)."""

        def rel(p: Path) -> str:
            return _relative(p, self.root)

        return {
            "layout": self.name,
            "images": {split: rel(p) for split, p in self.splits.items()},
            "boxes": {split: rel(p) for split, p in self.boxes.items()},
            "labels": {name: rel(p) for name, p in self.labels.items()},
            "devkit": rel(self.devkit) if self.devkit is not None else None,
            **(
                {"parts": {s: [rel(p) for p in files] for s, files in self.parts.items()}}
                if self.parts
                else {}
            ),
        }


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root``: a local path's, or an object's key under the prefix."""
    if is_url(root):
        return path.relative_to(root).as_posix()
    return os.path.relpath(path, root)


def _regular_file(path: Path) -> Path:
    if path.is_symlink() and not path.exists():
        raise DataError(
            f"{path}: cannot read (a symbolic link to {os.readlink(path)}, which is missing)"
        )
    if not path.is_file():
        raise DataError(f"{path}: exists but is not a regular file (archives must be files)")
    return path


def _official(src: Path, archives: bool, folders: bool) -> SourceLayout | None:
    """The official family: per input the archive as downloaded (``archives``) wins over a
    folder of the extracted tree (``folders``)."""
    used: set[str] = set()

    def pick(archive: str | None, *names: str) -> Path | None:
        if archives and archive is not None:
            a = src / archive
            if a.exists() or a.is_symlink():
                used.add("archives")
                return _regular_file(a)
        if folders:
            for name in names:
                if (src / name).is_dir():
                    used.add("extracted")
                    return src / name
        return None

    splits = {
        "train": pick(TRAIN_ARCHIVE, "train"),
        "validation": pick(VAL_ARCHIVE, "validation", "val"),
        "test": pick(TEST_ARCHIVE, "test"),
    }
    found = {split: p for split, p in splits.items() if p is not None}
    if not found:
        return None
    train_boxes = pick(BOX_TRAIN_ARCHIVE, "bounding_boxes")
    val_boxes = pick(BOX_VAL_ARCHIVE)
    if val_boxes is None and train_boxes is not None and (train_boxes / "val").is_dir():
        val_boxes = train_boxes / "val"  # the val box archive extracted beside the train one
    boxes = {"train": train_boxes, "validation": val_boxes}
    devkit = pick(DEVKIT_ARCHIVE, DEVKIT_DIR)
    name = "+".join(n for n in ("archives", "extracted") if n in used)
    return SourceLayout(
        name=name,
        root=src,
        splits=found,
        boxes={split: p for split, p in boxes.items() if p is not None},
        devkit=devkit,
    )


def _kaggle_zip(src: Path) -> SourceLayout | None:
    path = src / KAGGLE_ZIP
    if not (path.exists() or path.is_symlink()):
        return None
    _regular_file(path)
    # What the zip holds is known once its central directory is read (:mod:`.kaggle`).
    return SourceLayout(
        name="kaggle",
        root=src,
        splits={split: path for split in KAGGLE_SPLIT_DIRS},
        boxes={"train": path, "validation": path},
        labels={KAGGLE_SYNSET_MAPPING: path, KAGGLE_VAL_SOLUTION: path},
    )


def _kaggle_tree(src: Path) -> SourceLayout | None:
    data = src / KAGGLE_DATA
    if not data.is_dir():
        return None
    splits = {s: data / d for s, d in KAGGLE_SPLIT_DIRS.items() if (data / d).is_dir()}
    notes = src / KAGGLE_ANNOTATIONS
    boxes = {s: notes / d for s, d in KAGGLE_SPLIT_DIRS.items() if (notes / d).is_dir()}
    labels = {
        name: src / name
        for name in (KAGGLE_SYNSET_MAPPING, KAGGLE_VAL_SOLUTION)
        if (src / name).exists()
    }
    return SourceLayout("kaggle-tree", src, splits, boxes, None, labels)


def _hf(src: Path, name: str, pattern: re.Pattern[str]) -> SourceLayout | None:
    """Hugging Face's files in ``src`` or in a folder in it (the Hub's ``data/`` folder, say),
    not deeper: an extracted tree's million files are not walked."""
    parts: dict[str, list[Path]] = {}
    for path in _shallow_files(src, _HF_DEPTH):
        m = pattern.match(path.name)
        if m is not None:
            split = _HF_SPLITS[m.group(1).split("_")[0]]
            parts.setdefault(split, []).append(_regular_file(path))
    if not parts:
        return None
    splits = {}
    for split, files in parts.items():
        files.sort()
        folders = {p.parent for p in files}
        splits[split] = folders.pop() if len(folders) == 1 else src
    return SourceLayout(
        name,
        src,
        splits,
        parts={split: tuple(files) for split, files in parts.items()},
        warnings=tuple(_missing_parts(src, parts)),
    )


def _shallow_files(src: Path, depth: int) -> Iterator[Path]:
    """The files in ``src`` and in its folders down to ``depth`` levels (hidden ones left
    out): a local folder's, or an object store prefix's."""
    if is_url(src):
        for entry in src.iterdir():
            if entry.is_dir():
                if depth > 0 and not entry.name.startswith("."):
                    yield from _shallow_files(entry, depth - 1)
            else:
                yield entry
        return
    for dirpath, dirnames, filenames in os.walk(src):
        level = len(Path(dirpath).relative_to(src).parts)
        dirnames[:] = [] if level >= depth else [d for d in dirnames if not d.startswith(".")]
        for file in filenames:
            yield Path(dirpath, file)


_NUMBERED = re.compile(r"^(?P<split>[a-z]+)-(?P<i>\d+)-of-(?P<n>\d+)\.parquet$")
_HF_TRAIN_ARCHIVES = 5


def _missing_parts(src: Path, parts: Mapping[str, list[Path]]) -> Iterator[str]:
    """The files of a numbered set that SRC lacks: the Hub's five training archives, or
    Parquet files named ``<split>-<i>-of-<n>.parquet``; their images would be left out."""
    for split, files in parts.items():
        names = {p.name for p in files}
        if any(HF_ARCHIVE_RE.match(n) for n in names) and split == "train":
            want = {f"train_images_{i}.tar.gz" for i in range(_HF_TRAIN_ARCHIVES)}
        else:
            numbered = [m for n in names if (m := _NUMBERED.match(n))]
            if not numbered:
                continue
            m = numbered[0]
            count, width = int(m["n"]), len(m["i"])
            want = {f"{m['split']}-{i:0{width}d}-of-{m['n']}.parquet" for i in range(count)}
        missing = sorted(want - names)
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            yield (
                f"{src}: the {split} split lacks {missing[0]}{more} of the Hub's {len(want)} "
                "files: their images are not in this build"
            )


def discover(src: Path, layout: str | None = None) -> SourceLayout:
    """Find the layout ``src`` holds, or take the one ``layout`` names.

    Two layouts that both hold images are an error naming both (``--layout`` picks one).
    """
    if layout is not None and layout not in LAYOUTS:
        raise UsageError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if is_url(src):
        return _in_store(src, layout)
    if not src.exists():
        raise DataError(f"{src}: source folder does not exist")
    if not src.is_dir():
        raise DataError(f"{src}: source must be a folder holding the download, not a file")
    finders = {
        "archives": lambda: _official(src, archives=True, folders=layout != "archives"),
        "extracted": lambda: _official(src, archives=False, folders=True),
        "kaggle": lambda: _kaggle_zip(src),
        "kaggle-tree": lambda: _kaggle_tree(src),
        "hf": lambda: _hf(src, "hf", HF_ARCHIVE_RE),
        "hf-parquet": lambda: _hf(src, "hf-parquet", HF_PARQUET_RE),
    }
    if layout is not None:
        found = finders[layout]()
        if found is None:
            raise DataError(
                f"{src}: holds no download in the {layout} layout ({_EXPECTED[layout]})"
            )
        return found
    candidates = [
        found
        for name in ("archives", "kaggle", "kaggle-tree", "hf", "hf-parquet")
        if (found := finders[name]()) is not None
    ]
    if not candidates:
        raise DataError(
            f"{src}: holds no ImageNet download (expected {_EXPECTED['archives']}; or "
            f"{_EXPECTED['kaggle']}; or {_EXPECTED['kaggle-tree']}; or Hugging Face's "
            f"{_EXPECTED['hf']}; or its {_EXPECTED['hf-parquet']})"
        )
    return _only_one(str(src), candidates)


def _only_one(where: str, found: list[SourceLayout]) -> SourceLayout:
    """The one layout found; two are an error naming both (``--layout`` picks one)."""
    if len(found) > 1:
        a, b = found[:2]
        raise DataError(
            f"{where}: holds two layouts, {a.name} ({_first_input(a)}) and {b.name} "
            f"({_first_input(b)}); pass --layout to pick one"
        )
    return found[0]


def _in_store(src: Path, layout: str | None) -> SourceLayout:
    """The layout of a download in an object store: image-net.org's archives or Kaggle's zip,
    read by range, never extracted. The other layouts are read from a local disk only, for
    now."""
    if layout not in (None, *STORE_LAYOUTS):
        raise UsageError(
            f"{redact(str(src))}: the {layout} layout is read from a local disk only; from an "
            f"object store, {' and '.join(STORE_LAYOUTS)} are"
        )
    from ..storage import open_store

    url = str(src)
    try:
        open_store(url).listing(url)  # a missing bucket, or no permission: one line, here
    except DataError as exc:
        if not str(exc).endswith(": no such object"):
            raise
        raise DataError(f"{redact(url)}: holds nothing (no object under this prefix)") from None
    finders = {
        "archives": lambda: _official(src, archives=True, folders=False),
        "kaggle": lambda: _kaggle_zip(src),
        "hf-parquet": lambda: _hf(src, "hf-parquet", HF_PARQUET_RE),
    }
    try:
        found = [f for name in STORE_LAYOUTS if layout in (None, name) and (f := finders[name]())]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{redact(url)}: cannot list ({one_line(exc)})") from None
    if not found:
        wanted = [_EXPECTED[n] for n in STORE_LAYOUTS if layout in (None, n)]
        raise DataError(f"{redact(url)}: holds no ImageNet download ({'; or '.join(wanted)})")
    return _only_one(redact(url), found)


#: The layouts read from an object store.
STORE_LAYOUTS = ("archives", "kaggle", "hf-parquet")


def _first_input(layout: SourceLayout) -> str:
    path = (
        next(iter(layout.parts.values()))[0] if layout.parts else next(iter(layout.splits.values()))
    )
    return os.path.relpath(path, layout.root)


_EXPECTED = {
    "archives": f"{TRAIN_ARCHIVE}, {VAL_ARCHIVE}, or train/ and val/ folders",
    "extracted": "train/, val/ or validation/ folders",
    "kaggle": KAGGLE_ZIP,
    "kaggle-tree": f"{KAGGLE_DATA}/train/ and val/ folders",
    "hf": "train_images_<n>.tar.gz, val_images.tar.gz or test_images.tar.gz",
    "hf-parquet": "train-*.parquet, validation-*.parquet or test-*.parquet",
}

#: What each layout holds for each split, for the message when a requested split is missing.
_EXPECTED_SPLIT = {
    "official": {
        "train": "ILSVRC2012_img_train.tar or a train/ folder",
        "validation": "ILSVRC2012_img_val.tar, or a validation/ or val/ folder",
        "test": "ILSVRC2012_img_test_v10102019.tar or a test/ folder",
    },
    "kaggle": {split: f"{KAGGLE_DATA}/{d}/" for split, d in KAGGLE_SPLIT_DIRS.items()},
    "hf": {
        "train": "train_images_<n>.tar.gz",
        "validation": "val_images.tar.gz",
        "test": "test_images.tar.gz",
    },
    "hf-parquet": {
        "train": "train-*.parquet",
        "validation": "validation-*.parquet",
        "test": "test-*.parquet",
    },
}


def expected_input(layout: str, split: str) -> str:
    """What the layout ``layout`` holds for ``split``, for messages.

    >>> expected_input("kaggle-tree", "validation"), expected_input("archives+extracted", "test")
    ('ILSVRC/Data/CLS-LOC/val/', 'ILSVRC2012_img_test_v10102019.tar or a test/ folder')
    """
    family = "kaggle" if layout.startswith("kaggle") else layout
    return _EXPECTED_SPLIT.get(family, _EXPECTED_SPLIT["official"])[split]
