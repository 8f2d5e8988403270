"""Dataset cards for Hugging Face ``datasets``: the YAML, its features, and a real load."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from tests.clients import run_client

from imagenet_prep.formats import hfcard
from imagenet_prep.labels import load_synsets

yaml = pytest.importorskip("yaml")
datasets = pytest.importorskip("datasets")
hub = pytest.importorskip("huggingface_hub")

FOLDERS = {"train": "train", "validation": "val"}
BOXES = datasets.List(datasets.List(datasets.Value("float32"), length=4))


def _front(card: str) -> dict[str, Any]:
    assert card.startswith("---\n")
    data: dict[str, Any] = yaml.safe_load(card.split("---\n", 2)[1])
    return data


def _labels() -> Any:
    return datasets.ClassLabel(names=list(load_synsets().wnids))


def _yaml_features(features: Any) -> Any:
    """What ``datasets`` itself writes into ``dataset_info`` for ``features``."""
    return datasets.DatasetInfo(features=datasets.Features(features))._to_yaml_dict()["features"]


WEBDATASET = {
    "cls": _labels(),
    "jpg": datasets.Image(),
    "json": {
        "boxes": BOXES,
        "filename": datasets.Value("string"),
        "height": datasets.Value("int32"),
        "text": datasets.Value("string"),
        "width": datasets.Value("int32"),
        "wnid": datasets.Value("string"),
    },
    "__key__": datasets.Value("string"),
    "__url__": datasets.Value("string"),
}
IMAGEFOLDER = {
    "image": datasets.Image(),
    "label": _labels(),
    "wnid": datasets.Value("string"),
    "filename": datasets.Value("string"),
    "width": datasets.Value("int32"),
    "height": datasets.Value("int32"),
    "boxes": BOXES,
}


def test_webdataset_card_states_what_datasets_would_write() -> None:
    card = hfcard.webdataset_card(["validation", "train"])
    front = _front(card)
    assert front["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": ["train-*.tar"]},
                {"split": "validation", "path": ["validation-*.tar"]},
            ],
        }
    ]
    assert front["dataset_info"]["features"] == _yaml_features(WEBDATASET)
    assert list(WEBDATASET["json"]) == list(hfcard.WEBDATASET_JSON_KEYS)
    assert card == hfcard.webdataset_card(["train", "validation"])


def test_imagefolder_card_gives_the_features_to_the_config_too() -> None:
    front = _front(hfcard.imagefolder_card(FOLDERS))
    (config,) = front["configs"]
    assert config["data_files"] == [
        {"split": "train", "path": ["train/metadata.parquet", "train/*/*"]},
        {"split": "validation", "path": ["val/metadata.parquet", "val/*/*"]},
    ]
    assert config["features"] == front["dataset_info"]["features"] == _yaml_features(IMAGEFOLDER)


def test_datasets_and_the_hub_read_the_cards() -> None:
    from datasets.info import DatasetInfosDict
    from datasets.utils.metadata import MetadataConfigs

    for card, features in [
        (hfcard.webdataset_card(["train"]), WEBDATASET),
        (hfcard.imagefolder_card({"validation": "val"}), IMAGEFOLDER),
    ]:
        data = hub.DatasetCard(card).data
        infos = DatasetInfosDict.from_dataset_card_data(data)
        assert infos["default"].features == datasets.Features(features)
        configs = MetadataConfigs.from_dataset_card_data(data)
        assert len(configs["default"]["data_files"]) == 1
        names = infos["default"].features["cls" if "cls" in features else "label"]
        assert names.names == list(load_synsets().wnids)
        assert names.str2int("n01440764") == 0 and names.int2str(999) == "n15075141"


def test_splits_are_checked() -> None:
    assert "train-*.tar" not in hfcard.webdataset_card(["validation"])
    for bad in ([], ["holdout"], ["train", "train"]):
        with pytest.raises(ValueError, match="splits"):
            hfcard.webdataset_card(bad)
    with pytest.raises(ValueError, match="plain name"):
        hfcard.imagefolder_card({"train": "a/b"})


def test_metadata_is_parquet_with_typed_boxes_in_every_split(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    boxes = [(0.125, 0.25, 0.5, 1.0)]  # float32 holds these exactly
    lines = [
        hfcard.metadata_line("n1/a.JPEG", 3, "n1", 10, 20, boxes),
        hfcard.metadata_line("n1/b.JPEG", 3, "n1", 11, 21, []),
    ]
    schemas = []
    for name, chunks in [("train", [b"".join(lines), b""]), ("val", [lines[1]]), ("none", [])]:
        with open(tmp_path / name, "wb") as f:
            hfcard.write_metadata(chunks, f)
        table = pq.read_table(tmp_path / name)
        schemas.append(table.schema)
        assert table.column_names == list(hfcard.METADATA_COLUMNS)
    assert schemas[0] == schemas[1] == schemas[2]  # empty boxes do not change the type
    assert (
        str(schemas[0].field("boxes").type) == "list<element: fixed_size_list<element: float>[4]>"
    )
    rows = pq.read_table(tmp_path / "train").to_pylist()
    assert [r["filename"] for r in rows] == ["a.JPEG", "b.JPEG"]
    assert rows[0]["boxes"] == [list(boxes[0])] and rows[1]["boxes"] == []
    assert (rows[0]["label"], rows[0]["width"], rows[0]["height"]) == (3, 10, 20)


def test_metadata_line_round_trips() -> None:
    boxes = [(0.1, 0.25, 0.5, 1.0), (0.0, 0.0, 1.0, 1.0)]
    line = hfcard.metadata_line("n01440764/n01440764_7.v2.JPEG", 0, "n01440764", 50, 40, boxes)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    row = json.loads(line)
    assert row == {
        "file_name": "n01440764/n01440764_7.v2.JPEG",
        "label": 0,
        "wnid": "n01440764",
        "filename": "n01440764_7.v2.JPEG",
        "width": 50,
        "height": 40,
        "boxes": [list(b) for b in boxes],
    }
    assert json.loads(hfcard.metadata_line("n1/é.JPEG", 3, "n1", 1, 1, []))["boxes"] == []
    for name in ("/abs.JPEG", "../up.JPEG"):
        with pytest.raises(ValueError, match="relative"):
            hfcard.metadata_line(name, 0, "n1", 1, 1, [])
    with pytest.raises(ValueError, match="4 coordinates"):
        hfcard.metadata_line("a.JPEG", 0, "n1", 1, 1, [(0.1, 0.2, 0.3)])  # type: ignore[list-item]


# --- a hand-made tiny output, read by datasets.load_dataset in a process of its own -------


def _jpeg(size: tuple[int, int], shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (shade, 255 - shade, 90)).save(buf, "JPEG")
    return buf.getvalue()


def _images() -> dict[str, list[dict[str, Any]]]:
    """Per split: file name, wnid, size, boxes, bytes. Labels 0, 517 and 999, not 0, 1, 2."""
    wnids = load_synsets().wnids
    classes = [wnids[0], wnids[517], wnids[999]]
    out: dict[str, list[dict[str, Any]]] = {"train": [], "validation": []}
    for c, wnid in enumerate(classes):
        for i in range(2):
            size = (40 + 8 * c, 30 + 5 * i)
            boxes = [[0.125, 0.25, 0.5, 0.75]] * (c + i) if c != 1 else []
            name = f"{wnid}_{100 + i}.JPEG"
            out["train"].append({"name": name, "wnid": wnid, "size": size, "boxes": boxes})
        name = f"ILSVRC2012_val_{c + 1:08d}.JPEG"
        out["validation"].append({"name": name, "wnid": wnid, "size": (33, 44), "boxes": []})
    for split in out.values():
        for n, image in enumerate(split):
            image["data"] = _jpeg(image["size"], 20 * n)
    return out


def _member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_outputs(out: Path, images: dict[str, list[dict[str, Any]]]) -> None:
    synsets = load_synsets()
    wds = out / "webdataset"
    wds.mkdir(parents=True)
    for split, split_images in images.items():
        shards = [split_images[:3], split_images[3:]] if split == "train" else [split_images]
        for index, shard in enumerate(shards):
            with tarfile.open(wds / f"{split}-{index:06d}.tar", "w") as tar:
                for image in shard:
                    key = image["name"].rsplit(".", 1)[0]
                    meta = {
                        "boxes": image["boxes"],
                        "filename": image["name"],
                        "height": image["size"][1],
                        "text": synsets.text(image["wnid"]),
                        "width": image["size"][0],
                        "wnid": image["wnid"],
                    }
                    _member(tar, f"{key}.cls", str(synsets.index(image["wnid"])).encode())
                    _member(tar, f"{key}.jpg", image["data"])
                    _member(tar, f"{key}.json", json.dumps(meta, sort_keys=True).encode())
        folder = out / "imagefolder" / FOLDERS[split]
        lines = []
        for image in split_images:
            path = folder / image["wnid"] / image["name"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(image["data"])
            label = synsets.index(image["wnid"])
            relpath = f"{image['wnid']}/{image['name']}"
            width, height = image["size"]
            lines.append(
                hfcard.metadata_line(relpath, label, image["wnid"], width, height, image["boxes"])
            )
        with open(folder / hfcard.METADATA_NAME, "wb") as f:
            # Two chunks (row groups), as two shards give them.
            assert hfcard.write_metadata([b"".join(lines[:2]), b"".join(lines[2:])], f) == len(
                lines
            )
    (wds / hfcard.CARD_NAME).write_text(hfcard.webdataset_card(images))
    (out / "imagefolder" / hfcard.CARD_NAME).write_text(hfcard.imagefolder_card(FOLDERS))


def test_load_dataset_reads_both_outputs_with_no_other_argument(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _images()
    _write_outputs(tmp_path / "out", images)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    synsets = load_synsets()
    for fmt, label in [("webdataset", "cls"), ("imagefolder", "label")]:
        report = run_client("hf_load", str(tmp_path / "out" / fmt))
        assert sorted(report["splits"]) == ["train", "validation"]
        for split, got in report["splits"].items():
            want = images[split]
            assert got["rows"] == len(want)
            assert got["features"][label] == "ClassLabel(1000)"
            assert got["names"] == list(synsets.wnids)
            assert sorted(map(tuple, got["samples"])) == sorted(
                (image["name"], synsets.index(image["wnid"])) for image in want
            )
            for image in want:
                assert got["sizes"][image["name"]] == [*image["size"], *image["size"]]
                assert got["boxes"][image["name"]] == image["boxes"]
        assert any(report["splits"]["train"]["boxes"].values())
