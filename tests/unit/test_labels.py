"""Label numbering, shipped label files and devkit parsing."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from imagenet_prep import labels
from imagenet_prep.errors import DataError


def test_shipped_files() -> None:
    synsets = labels.load_synsets()
    assert len(synsets) == 1000
    assert list(synsets.wnids) == sorted(synsets.wnids)
    assert synsets.wnids[0] == "n01440764" and synsets.index("n01440764") == 0
    assert synsets.wnids[-1] == "n15075141"
    assert synsets.text("n01440764") == "tench, Tinca tinca"
    val = labels.shipped_validation_labels()
    assert len(val) == 50_000 and val[0] == "n01751748"
    assert set(val) == set(synsets.wnids)
    assert len(labels.all_synset_texts()) == 21842


def _devkit(tmp_path: Path, leaves: list[tuple[int, str]], truth: list[int]) -> Path:
    fields = [
        "ILSVRC2012_ID",
        "WNID",
        "words",
        "gloss",
        "num_children",
        "children",
        "wordnet_height",
        "num_train_images",
    ]
    rows = np.zeros((len(leaves) + 1, 1), dtype=[(f, "O") for f in fields])
    for i, (ident, wnid) in enumerate(leaves):
        rows[i, 0] = (ident, wnid, "w", "g", 0, np.zeros((1, 0)), 0, 1300)
    rows[len(leaves), 0] = (9999, "n00001740", "entity", "g", 2, np.array([[1, 2]]), 5, 0)
    meta = io.BytesIO()
    savemat(meta, {"synsets": rows})
    gt = "".join(f"{t}\n" for t in truth).encode()
    path = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in [
            (labels.DEVKIT_META, meta.getvalue()),
            (labels.DEVKIT_GROUND_TRUTH, gt),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_devkit_ids_map_through_meta_not_by_position(tmp_path: Path) -> None:
    shipped = labels.shipped_validation_labels()
    wnids = sorted(set(shipped))
    # IDs in reverse sorted order: position-based mapping would get every label wrong.
    ids = {w: 1000 - i for i, w in enumerate(wnids)}
    path = _devkit(tmp_path, [(i, w) for w, i in ids.items()], [ids[w] for w in shipped])
    devkit = labels.read_devkit(path)
    assert len(devkit.synsets) == 1001
    assert labels.validation_labels(devkit) == shipped


def test_devkit_disagreeing_with_shipped_labels_is_an_error(tmp_path: Path) -> None:
    shipped = labels.shipped_validation_labels()
    wnids = sorted(set(shipped))
    ids = {w: i + 1 for i, w in enumerate(wnids)}
    truth = [ids[w] for w in shipped]
    truth[41] = truth[41] % 1000 + 1
    devkit = labels.read_devkit(_devkit(tmp_path, [(i, w) for w, i in ids.items()], truth))
    with pytest.raises(DataError, match="validation image 42"):
        labels.validation_labels(devkit)


def test_damaged_devkit(tmp_path: Path) -> None:
    bad = tmp_path / "ILSVRC2012_devkit_t12.tar.gz"
    bad.write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="devkit"):
        labels.read_devkit(bad)
