"""Synsets, names, validation ground truth, the devkit: the only place label numbers are made.

Label numbers are the 0-based index of a WordNet ID in the sorted list of the 1000
ILSVRC2012 synsets (``imagenet_lsvrc_2015_synsets.txt``). Sinks add their own offset
(the TFRecords' ``--label-offset``, 1 by default as in the reference scripts).
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

from .errors import DataError, one_line

SYNSETS_FILE = "imagenet_lsvrc_2015_synsets.txt"
METADATA_FILE = "imagenet_metadata.txt"
VALIDATION_LABELS_FILE = "imagenet_2012_validation_synset_labels.txt"

NUM_CLASSES = 1000
NUM_VALIDATION = 50_000

DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
DEVKIT_GROUND_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"

_GZIP_MAGIC = b"\x1f\x8b"

_WNID_RE = re.compile(r"^n\d{8}$")
_VAL_NAME_RE = re.compile(r"^ILSVRC2012_val_(\d{8})$")


def is_wnid(text: str) -> bool:
    """True for a WordNet ID such as ``n01440764``.

    >>> is_wnid("n01440764"), is_wnid("Scottish_deerhound")
    (True, False)
    """
    return _WNID_RE.match(text) is not None


def validation_number(stem: str) -> int | None:
    """The 1-based number of a validation image from its file stem, or None.

    >>> validation_number("ILSVRC2012_val_00000001"), validation_number("n01440764_1")
    (1, None)
    """
    m = _VAL_NAME_RE.match(stem)
    return int(m.group(1)) if m else None


def _read_data(name: str) -> str:
    return resources.files("imagenet_prep").joinpath("data", name).read_text("ascii")


@dataclass(frozen=True)
class Synsets:
    """The 1000 challenge synsets in label order, with their human-readable names."""

    wnids: tuple[str, ...]
    texts: Mapping[str, str]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {w: i for i, w in enumerate(self.wnids)})

    def index(self, wnid: str) -> int:
        """0-based label of ``wnid``; KeyError when it is not a challenge synset."""
        return self._index[wnid]  # type: ignore[attr-defined,no-any-return]

    def __contains__(self, wnid: object) -> bool:
        return wnid in self._index  # type: ignore[attr-defined]

    def __len__(self) -> int:
        return len(self.wnids)

    def text(self, wnid: str) -> str:
        return self.texts[wnid]


@cache
def all_synset_texts() -> Mapping[str, str]:
    """WordNet ID -> human-readable text for all 21,842 ImageNet synsets."""
    out: dict[str, str] = {}
    for line in _read_data(METADATA_FILE).splitlines():
        wnid, _, text = line.partition("\t")
        out[wnid] = text
    return out


@cache
def load_synsets() -> Synsets:
    """The shipped 1000 challenge synsets (sorted) and their names."""
    wnids = tuple(_read_data(SYNSETS_FILE).split())
    texts = all_synset_texts()
    return Synsets(wnids=wnids, texts={w: texts[w] for w in wnids})


@cache
def shipped_validation_labels() -> tuple[str, ...]:
    """WordNet ID of validation image *i* at index *i - 1*, from the shipped label file."""
    labels = tuple(_read_data(VALIDATION_LABELS_FILE).split())
    if len(labels) != NUM_VALIDATION:  # pragma: no cover - package data is fixed
        raise DataError(
            f"{VALIDATION_LABELS_FILE}: {len(labels)} labels, expected {NUM_VALIDATION}"
        )
    return labels


@dataclass(frozen=True)
class DevkitSynset:
    """One entry of the devkit's ``meta.mat`` ``synsets`` struct array."""

    ilsvrc2012_id: int
    wnid: str
    words: str
    gloss: str
    num_children: int
    children: tuple[int, ...]
    wordnet_height: int
    num_train_images: int


@dataclass(frozen=True)
class Devkit:
    """What the build needs from ``ILSVRC2012_devkit_t12``."""

    source: str
    synsets: tuple[DevkitSynset, ...]
    validation_ids: tuple[int, ...]

    def leaf_wnids(self) -> dict[int, str]:
        """ILSVRC2012_ID -> WordNet ID for the leaves (the classes), never by position."""
        return {s.ilsvrc2012_id: s.wnid for s in self.synsets if s.num_children == 0}

    def validation_wnids(self) -> tuple[str, ...]:
        """WordNet ID of each validation image, in image-number order."""
        leaves = self.leaf_wnids()
        out = []
        for line_no, ident in enumerate(self.validation_ids, start=1):
            wnid = leaves.get(ident)
            if wnid is None:
                raise DataError(
                    f"{self.source}: validation ground truth line {line_no} names ILSVRC2012_ID "
                    f"{ident}, which is not a leaf synset in meta.mat"
                )
            out.append(wnid)
        return tuple(out)


def _scalar(value: object) -> object:
    """Unwrap the nested 1x1 arrays scipy returns for MATLAB struct fields."""
    import numpy as np

    while isinstance(value, np.ndarray):
        if value.size != 1:
            break
        value = value.reshape(-1)[0]
    return value


def _int_list(value: object) -> tuple[int, ...]:
    import numpy as np

    arr = np.asarray(value).reshape(-1)
    return tuple(int(v) for v in arr)


def parse_meta_mat(data: bytes, source: str) -> tuple[DevkitSynset, ...]:
    """Parse ``meta.mat`` bytes into its synset entries (leaves and inner nodes)."""
    from scipy.io import loadmat

    try:
        mat = loadmat(io.BytesIO(data), squeeze_me=False, struct_as_record=True)
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DataError(f"{source}: not a readable MATLAB file ({exc})") from None
    if "synsets" not in mat:
        raise DataError(f"{source}: no 'synsets' variable in meta.mat")
    table = mat["synsets"].reshape(-1)
    names = table.dtype.names or ()
    needed = ("ILSVRC2012_ID", "WNID", "num_children", "children")
    missing = [n for n in needed if n not in names]
    if missing:
        raise DataError(f"{source}: meta.mat synsets lack the fields {', '.join(missing)}")
    out = []
    for row in table:

        def field(name: str, row: object = row) -> object:
            return _scalar(row[name]) if name in names else ""  # type: ignore[index]

        out.append(
            DevkitSynset(
                ilsvrc2012_id=int(field("ILSVRC2012_ID")),  # type: ignore[call-overload]
                wnid=str(field("WNID")),
                words=str(field("words")),
                gloss=str(field("gloss")),
                num_children=int(field("num_children")),  # type: ignore[call-overload]
                children=_int_list(row["children"]),
                wordnet_height=int(field("wordnet_height") or 0),  # type: ignore[call-overload]
                num_train_images=int(field("num_train_images") or 0),  # type: ignore[call-overload]
            )
        )
    return tuple(out)


def parse_ground_truth(text: str, source: str) -> tuple[int, ...]:
    """One ILSVRC2012_ID per line, line *i* for validation image *i*."""
    ids = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        try:
            ids.append(int(line))
        except ValueError:
            raise DataError(f"{source}: line {line_no} is not an integer: {line[:40]!r}") from None
    return tuple(ids)


def read_devkit(path: Path) -> Devkit:
    """Read meta.mat and the validation ground truth from the devkit archive or folder.

    ``path`` is ``ILSVRC2012_devkit_t12.tar.gz`` or an extracted ``ILSVRC2012_devkit_t12/``.
    """
    meta_name = DEVKIT_META
    truth_name = DEVKIT_GROUND_TRUTH
    if path.is_dir():
        root = path.parent
        try:
            meta = (root / meta_name).read_bytes()
            truth = (root / truth_name).read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: incomplete devkit ({exc.strerror}: {exc.filename})") from None
        truth_source = str(root / truth_name)
    else:
        meta, truth = _read_devkit_archive(path, meta_name, truth_name)
        truth_source = f"{path}:{truth_name}"
    source = str(path)
    return Devkit(
        source=source,
        synsets=parse_meta_mat(meta, f"{path}:{meta_name}"),
        validation_ids=parse_ground_truth(_ascii(truth, truth_source), truth_source),
    )


def _ascii(data: bytes, source: str) -> str:
    """``data`` as ASCII text; a DataError naming the line of the first other byte."""
    try:
        return data.decode("ascii")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            f"{source}: line {line} is not ASCII text (byte {data[exc.start]:#04x} at offset "
            f"{exc.start})"
        ) from None


def _read_devkit_archive(path: Path, meta_name: str, truth_name: str) -> tuple[bytes, bytes]:
    """The two members' bytes from the devkit archive (gzip'd as published, or a plain tar).

    A gzip'd archive is decompressed whole first (a few MB), so that its CRC and length are
    checked: tarfile stops at the tar's end blocks and never reaches the gzip trailer, which
    let damaged bytes through to the labels unnoticed.
    """
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    gzipped = data.startswith(_GZIP_MAGIC)
    if gzipped:
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                data = gz.read()
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: damaged gzip stream ({one_line(exc)})") from None
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if name in (meta_name, truth_name) and member.isfile():
                    f = tar.extractfile(member)
                    assert f is not None  # isfile() guarantees a file object
                    found[name] = f.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        what = "the tar inside the gzip stream" if gzipped else "neither gzip'd nor a tar"
        raise DataError(
            f"{path}: not a readable devkit archive ({what}: {one_line(exc)})"
        ) from None
    for name in (meta_name, truth_name):
        if name not in found:
            raise DataError(f"{path}: devkit archive has no {name}")
    return found[meta_name], found[truth_name]


def validation_labels(devkit: Devkit | None) -> tuple[str, ...]:
    """Validation WordNet IDs by image number: the devkit's when present, else the shipped file.

    When both exist they must agree; a disagreement is an error, never a silent choice.
    """
    shipped = shipped_validation_labels()
    if devkit is None:
        return shipped
    from_devkit = devkit.validation_wnids()
    if len(from_devkit) != len(shipped):
        raise DataError(
            f"{devkit.source}: validation ground truth has {len(from_devkit)} lines, "
            f"the shipped label file {len(shipped)}"
        )
    for number, (a, b) in enumerate(zip(from_devkit, shipped, strict=True), start=1):
        if a != b:
            raise DataError(
                f"{devkit.source}: validation image {number} is {a} in the devkit but {b} in "
                f"the shipped {VALIDATION_LABELS_FILE}"
            )
    return from_devkit


# --- Kaggle's label files ----------------------------------------------------------------

KAGGLE_VAL_HEADER = "ImageId,PredictionString"


def kaggle_validation_labels(data: bytes, source: str) -> tuple[str, ...]:
    """Validation WordNet IDs by image number from Kaggle's ``LOC_val_solution.csv`` (the
    first synset of each row's ``PredictionString``), checked against the shipped labels.

    The result has an entry for every number of the shipped labels, ``""`` for an image the
    file has no row for. A row that disagrees with the shipped labels is an error, never a
    silent choice, as with the devkit.
    """
    shipped = shipped_validation_labels()
    text = _ascii(data, source)
    lines = text.splitlines()
    if not lines or lines[0].strip().lstrip("\ufeff") != KAGGLE_VAL_HEADER:
        raise DataError(
            f"{source}: not Kaggle's validation solution (no {KAGGLE_VAL_HEADER} header)"
        )
    found = [""] * len(shipped)
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        image, comma, prediction = line.partition(",")
        words = prediction.split()
        number = validation_number(image.strip())
        if not comma or number is None or not words or not is_wnid(words[0]):
            raise DataError(
                f"{source}: line {line_no}: expected ILSVRC2012_val_<number>,<wnid> <box>..., "
                f"not {line[:60]!r}"
            )
        if not 1 <= number <= len(shipped):
            raise DataError(
                f"{source}: line {line_no}: validation image number {number} is out of range "
                f"(there are labels for 1..{len(shipped)})"
            )
        if found[number - 1]:
            raise DataError(f"{source}: line {line_no}: a second row for {image.strip()}")
        if words[0] != shipped[number - 1]:
            raise DataError(
                f"{source}: line {line_no}: validation image {number} is {words[0]} here but "
                f"{shipped[number - 1]} in the shipped {VALIDATION_LABELS_FILE}"
            )
        found[number - 1] = words[0]
    return tuple(found)


def check_synset_mapping(data: bytes, source: str, synsets: Synsets) -> None:
    """Check Kaggle's ``LOC_synset_mapping.txt`` (``<wnid> <names>`` per class, in label
    order) lists the shipped classes in the same order: its line numbers are Kaggle users'
    class numbers, so another order would give other labels."""
    text = data.decode("utf-8", errors="replace").lstrip("\ufeff")
    wnids = [line.split(maxsplit=1)[0] for line in text.splitlines() if line.strip()]
    common = min(len(wnids), len(synsets.wnids))
    pairs = zip(wnids[:common], synsets.wnids[:common], strict=True)
    for line_no, (found, shipped) in enumerate(pairs, start=1):
        if found != shipped:
            raise DataError(
                f"{source}: line {line_no}: {found}, where the ILSVRC2012 classes in order "
                f"have {shipped}"
            )
    if len(wnids) != len(synsets.wnids):
        raise DataError(f"{source}: {len(wnids)} classes, ILSVRC2012 has {len(synsets.wnids)}")
