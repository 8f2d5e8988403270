"""Dataset cards so that Hugging Face ``datasets.load_dataset(folder)`` reads an output as it is.

``OUT/webdataset/README.md`` and ``OUT/imagefolder/README.md`` start with the YAML the Hub
writes for a dataset: ``configs`` (one ``default`` config with the ``data_files`` of each
split) and ``dataset_info.features``. With the features stated, nothing is inferred from the
first rows. Inferring fails here: validation images never have boxes, so their boxes would
get the type ``list<null>`` and the training rows would not fit it.

The label is a ``ClassLabel`` over the 1000 WordNet IDs in label order (the sorted synset
list, 0-based), so its integers are this package's label numbers and ``int2str`` gives the
wnid, like the folder names. Human-readable names cannot be used: ``crane`` names two
synsets, and ``ClassLabel`` refuses duplicate names. A test image has no class: its label is
-1, which ``ClassLabel`` takes for "no label" (as the Hub's ``imagenet-1k`` has it).

WebDataset: the builder honours ``dataset_info.features``. The columns are the members
(``cls``, ``jpg``, ``json``) plus ``__key__`` and ``__url__``, which the builder adds to
every sample; a column the features do not declare is dropped, and so is a ``json`` key.

ImageFolder: each split folder gets a :data:`METADATA_NAME` (one row per image, ``file_name``
relative to it), and the builder takes every row, label included, from it instead of from the
folder names. This builder ignores ``dataset_info.features``. It uses the config's
``features`` (datasets 3.0.2 and later), so the card gives them there too. But first,
whatever the card says, it infers the types of the first rows of each split's metadata file
and refuses files whose types differ: in JSON lines, boxes that are ``[]`` in every validation
row are typed ``list<null>`` and never match the training file's. So the metadata is Parquet,
written with one explicit schema (:func:`write_metadata`), boxes typed as lists of 4 float32
in both splits. torchvision's ``ImageFolder`` only looks at class folders and their image
files, so a file beside the class folders changes nothing for it.

The YAML is written here by hand and always comes out the same, so the package needs neither
``datasets`` nor a YAML library; the tests parse the output with both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import BinaryIO

from ..labels import load_synsets

CARD_NAME = "README.md"
METADATA_NAME = "metadata.parquet"
SPLITS = ("train", "validation", "test")
FLAT_SPLITS = ("test",)  # no classes: the image folder holds its images without class folders

# The keys of the WebDataset ``.json`` member that the card declares (webdataset.py writes them).
WEBDATASET_JSON_KEYS = ("boxes", "filename", "height", "text", "width", "wnid")

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_./*-]*")
_YAML_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null"}

Feature = tuple[str, list[str]]  # a column's name and its YAML lines under "- name: ..."

_BOXES = ["list:", "  list: float32", "  length: 4"]
_STRING = ["dtype: string"]
_INT32 = ["dtype: int32"]
_IMAGE = ["dtype: image"]


def _scalar(text: str) -> str:
    """``text`` as a YAML scalar: plain when that reads back as the same string, else quoted.

    >>> _scalar("n01440764"), _scalar("train-*.tar"), _scalar("0"), _scalar("no")
    ('n01440764', 'train-*.tar', "'0'", '"no"')
    >>> print(_scalar("it's: here"))
    "it's: here"
    """
    if _PLAIN.fullmatch(text) and text.lower() not in _YAML_WORDS:
        return text
    if text.isdigit():
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False)


def _class_label() -> list[str]:
    """A ``ClassLabel`` over the wnids, as ``DatasetInfo._to_yaml_dict()`` spells it."""
    wnids = load_synsets().wnids
    names = [f"      {_scalar(str(i))}: {_scalar(w)}" for i, w in enumerate(wnids)]
    return ["dtype:", "  class_label:", "    names:", *names]


def _features(features: Sequence[Feature], indent: str) -> list[str]:
    lines = []
    for name, body in features:
        lines.append(f"{indent}- name: {_scalar(name)}")
        lines.extend(f"{indent}  {line}" for line in body)
    return lines


def _webdataset_features() -> list[Feature]:
    json_types = {
        "boxes": _BOXES,
        "filename": _STRING,
        "height": _INT32,
        "text": _STRING,
        "width": _INT32,
        "wnid": _STRING,
    }
    return [
        ("cls", _class_label()),
        ("jpg", _IMAGE),
        ("json", ["struct:", *_features([(k, json_types[k]) for k in WEBDATASET_JSON_KEYS], "")]),
        ("__key__", _STRING),
        ("__url__", _STRING),
    ]


def _imagefolder_features() -> list[Feature]:
    return [
        ("image", _IMAGE),
        ("label", _class_label()),
        ("wnid", _STRING),
        ("filename", _STRING),
        ("width", _INT32),
        ("height", _INT32),
        ("boxes", _BOXES),
    ]


def _check_splits(splits: Iterable[str]) -> list[str]:
    names = list(splits)
    if not names or len(set(names)) != len(names) or not set(names) <= set(SPLITS):
        raise ValueError(f"splits must be some of {SPLITS}, each once; got {names}")
    return sorted(names, key=SPLITS.index)


def _front_matter(
    data_files: Mapping[str, Sequence[str]],
    features: Sequence[Feature],
    *,
    config_features: bool,
) -> str:
    lines = [
        "---",
        "pretty_name: ImageNet (ILSVRC2012)",
        "license: other",
        "license_name: imagenet",
        "license_link: https://image-net.org/download.php",
        "task_categories:",
        "- image-classification",
        "configs:",
        "- config_name: default",
        "  data_files:",
    ]
    for split, paths in data_files.items():
        lines += [f"  - split: {split}", "    path:", *(f"    - {_scalar(p)}" for p in paths)]
    if config_features:
        lines += ["  features:", *_features(features, "  ")]
    lines += ["dataset_info:", "  features:", *_features(features, "  "), "---", ""]
    return "\n".join(lines)


def webdataset_patterns(split: str) -> list[str]:
    """The ``data_files`` of one split of ``OUT/webdataset``: every shard named for it.

    >>> webdataset_patterns("validation")
    ['validation-*.tar']
    """
    return [f"{split}-*.tar"]


def imagefolder_patterns(folder: str, *, flat: bool = False) -> list[str]:
    """The ``data_files`` of one split of ``OUT/imagefolder``: its metadata and its images
    (in class folders, or in the split folder itself when ``flat``: the test split).

    The rows come from the metadata file alone. The images are listed too because
    ``datasets`` picks the builder by the most common file extension.

    >>> imagefolder_patterns("val")
    ['val/metadata.parquet', 'val/*/*']
    >>> imagefolder_patterns("test", flat=True)
    ['test/metadata.parquet', 'test/*']
    """
    return [f"{folder}/{METADATA_NAME}", f"{folder}/*" if flat else f"{folder}/*/*"]


_LOAD = """```python
import datasets
ds = datasets.load_dataset("path/to/this/folder")
```"""


def webdataset_card(splits: Iterable[str]) -> str:
    """The text of ``OUT/webdataset/README.md`` for a build of ``splits``.

    >>> card = webdataset_card(["validation"])
    >>> card.startswith("---\\n"), "- validation-*.tar\\n" in card, "- train-*.tar" in card
    (True, True, False)
    """
    names = _check_splits(splits)
    front = _front_matter(
        {s: webdataset_patterns(s) for s in names}, _webdataset_features(), config_features=False
    )
    return f"""{front}
# ImageNet (ILSVRC2012) as WebDataset shards

Written by imagenet-prep: `<split>-NNNNNN.tar` for the splits {_listing(names)}. Each
sample `<key>` has `<key>.cls` (the label), `<key>.jpg` (the image) and `<key>.json`
(`wnid`, `text`, `width`, `height`, `filename`, `boxes`).

{_LOAD}

`cls` is the 0-based index of the image's WordNet ID in the sorted list of the 1000
ILSVRC2012 synsets: `ds["train"].features["cls"].int2str(0)` is `n01440764`. `json.boxes` holds
`[xmin, ymin, xmax, ymax]` boxes normalized to the image's width and height; validation images
have none.
{_test_note(names, "cls")}"""


def _test_note(names: Sequence[str], label: str) -> str:
    """The card's words on the test split, when the build has it (else nothing)."""
    if "test" not in names:
        return ""
    return f"""
The test split has no labels (ILSVRC2012 never published them): its `{label}` is -1, which
`ClassLabel` reads as "no label", and its images have no WordNet ID, text or boxes.
"""


def imagefolder_card(splits: Mapping[str, str]) -> str:
    """The text of ``OUT/imagefolder/README.md``; ``splits`` maps a split to its folder.

    >>> card = imagefolder_card({"validation": "val"})
    >>> "  - split: validation\\n    path:\\n    - val/metadata.parquet\\n    - val/*/*\\n" in card
    True
    """
    names = _check_splits(splits)
    for split in names:
        if not _PLAIN.fullmatch(splits[split]) or "/" in splits[split]:
            raise ValueError(f"the folder of split {split} must be a plain name: {splits[split]!r}")
    front = _front_matter(
        {s: imagefolder_patterns(splits[s], flat=s in FLAT_SPLITS) for s in names},
        _imagefolder_features(),
        config_features=True,
    )
    folders = _listing(f"{splits[s]}/" for s in names if s not in FLAT_SPLITS)
    flat = _listing(f"{splits[s]}/" for s in names if s in FLAT_SPLITS)
    if not flat:
        where = f"{folders} hold one folder per WordNet ID with its images, and a"
    elif not folders:
        where = f"{flat} holds the test images without class folders, and a"
    else:
        where = (
            f"{folders} hold one folder per WordNet ID with its images and {flat}\n"
            "the test images without class folders; each split folder also holds a"
        )
    return f"""{front}
# ImageNet (ILSVRC2012) as an image folder

Written by imagenet-prep: {where}
`{METADATA_NAME}` that Hugging Face `datasets` reads the rows from (`file_name`, `label`,
`wnid`, `filename`, `width`, `height`, `boxes`).

{_LOAD}

`label` is the 0-based index of the image's WordNet ID in the sorted list of the 1000
ILSVRC2012 synsets: `ds["train"].features["label"].int2str(0)` is `n01440764`. This is also
the index torchvision's `ImageFolder` gives the class folders of a full build. `boxes` holds
`[xmin, ymin, xmax, ymax]` boxes normalized to the image's width and height; validation images
have none.
{_test_note(names, "label")}"""


def _listing(items: Iterable[str]) -> str:
    return ", ".join(f"`{item}`" for item in items)


def metadata_line(
    file_name: str,
    label: int,
    wnid: str,
    width: int,
    height: int,
    boxes: Sequence[tuple[float, float, float, float]],
) -> bytes:
    """One image's metadata row as a JSON line: a shard gathers its rows in such lines, and
    :func:`write_metadata` turns a split's lines into its :data:`METADATA_NAME`.
    ``file_name`` is relative to the split folder.

    >>> line = metadata_line("n01440764/n01440764_10026.JPEG", 0, "n01440764", 250, 188,
    ...                      [(0.1, 0.2, 0.9, 1.0)])
    >>> line[:62]
    b'{"file_name":"n01440764/n01440764_10026.JPEG","label":0,"wnid"'
    >>> json.loads(line)["boxes"], line.endswith(b"}\\n")
    ([[0.1, 0.2, 0.9, 1.0]], True)
    """
    if file_name.startswith("/") or ".." in file_name.split("/"):
        raise ValueError(f"file_name must be a relative path: {file_name!r}")
    coords = [[float(v) for v in box] for box in boxes]
    if any(len(box) != 4 for box in coords):
        raise ValueError(f"{file_name}: a box must have 4 coordinates: {boxes!r}")
    row = {
        "file_name": file_name,
        "label": label,
        "wnid": wnid,
        "filename": file_name.rsplit("/", 1)[-1],
        "width": width,
        "height": height,
        "boxes": coords,
    }
    return json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


# The metadata's columns: the card's, with ``file_name`` in place of the image.
METADATA_COLUMNS = ("file_name", "label", "wnid", "filename", "width", "height", "boxes")


def write_metadata(chunks: Iterable[bytes], out: BinaryIO) -> int:
    """Write a split's :data:`METADATA_NAME` to ``out`` from chunks of :func:`metadata_line`
    lines (one row group per chunk, one explicit schema); the number of rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("file_name", pa.string()),
            ("label", pa.int64()),
            ("wnid", pa.string()),
            ("filename", pa.string()),
            ("width", pa.int32()),
            ("height", pa.int32()),
            ("boxes", pa.list_(pa.list_(pa.float32(), 4))),
        ]
    )
    rows = 0
    with pq.ParquetWriter(out, schema, compression="zstd") as writer:
        for chunk in chunks:
            records = [json.loads(line) for line in chunk.splitlines()]
            if records:
                columns = {name: [r[name] for r in records] for name in METADATA_COLUMNS}
                writer.write_table(pa.table(columns, schema=schema))
                rows += len(records)
        if not rows:  # no image written: the file still holds the schema
            writer.write_table(schema.empty_table())
    return rows
