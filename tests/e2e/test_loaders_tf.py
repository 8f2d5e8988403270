"""The tf.data loader (in a TensorFlow client process) against the Python and PyTorch loaders."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.clients import run_client

from imagenet_prep import BuildConfig, build
from imagenet_prep.loaders import iterate


@pytest.fixture(scope="module")
def built(small_download: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders_tf") / "out"
    build(
        BuildConfig(
            source=small_download,
            output=out,
            formats=("tfrecord",),
            train_shards=4,
            validation_shards=2,
            workers=1,
            label_offset=1,
        )
    )
    return out


def test_tf_data_python_and_pytorch_loaders_deliver_the_same_labels(built: Path) -> None:
    report = run_client("loaders_tf", str(built))
    for split in ("train", "validation"):
        ours = [(key, label) for _, label, key in iterate(built, split, decoder="pillow")]
        unshuffled = [
            (key, label) for _, label, key in iterate(built, split, decoder="pillow", shuffle=False)
        ]
        for transform in ("None", "train", "train-inception", "eval"):
            rows = report[f"{split}/{transform}"]
            theirs = [(key, label) for key, label, _, _ in rows]
            assert sorted(theirs) == sorted(ours), (split, transform)
            assert all(dtype == "uint8" and shape[2] == 3 for _, _, shape, dtype in rows)
            if transform != "None":
                assert all(shape == [40, 40, 3] for _, _, shape, _ in rows)
        if split == "validation":  # not shuffled: the files' order, as ours
            assert theirs == unshuffled
    # The PyTorch adapter: the same labels, in the same order where neither shuffles.
    torch_loaders = pytest.importorskip("imagenet_prep.loaders.torch")
    unshuffled_tf = [label for _, label, _, _ in report["validation/eval"]]
    dataset = torch_loaders.ImageNetDataset(built, "validation", transform="eval", image_size=40)
    assert [label for _, label in dataset] == unshuffled_tf
    loader = torch_loaders.ImageNetLoader(
        built, "train", batch_size=5, transform="train", image_size=40, num_workers=2
    )
    from_torch = sorted(int(label) for _, labels in loader for label in labels)
    assert from_torch == sorted(label for _, label, _, _ in report["train/train"])
    # Ranks split the epoch as the Python loader's ranks do.
    for rank, keys in enumerate(report["ranks"]):
        ours_rank = {key for _, _, key in iterate(built, "train", rank=rank, world_size=2)}
        assert set(keys) == ours_rank
    assert [b[0] for b in report["batches"]] == [[16, 40, 40, 3]] * 3
    assert all(b[1:] == ["uint8", "int64"] for b in report["batches"])
    # The same centre region as the Python loader's eval crop; only the resize filter differs.
    assert report["eval_diff"] < 15
