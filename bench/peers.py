#!/usr/bin/env python3
"""Real peers preparing the same archives, each run in its own interpreter by bench/run.py.

    python bench/peers.py tfds DOWNLOAD WORKDIR         # TensorFlow Datasets' imagenet2012 builder
    python bench/peers.py torchvision DOWNLOAD WORKDIR  # torchvision.datasets.ImageNet

Prints one JSON line with the seconds the preparation took.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

ARCHIVES = (
    "ILSVRC2012_img_train.tar",
    "ILSVRC2012_img_val.tar",
    "ILSVRC2012_devkit_t12.tar.gz",
    "ILSVRC2012_bbox_train_v2.tar.gz",
)


def link_archives(download: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVES:
        if (download / name).exists() and not (root / name).exists():
            (root / name).symlink_to((download / name).resolve())


def run_tfds(download: Path, work: Path) -> float:
    """tfds.builder('imagenet2012').download_and_prepare with the archives as manual_dir."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow_datasets as tfds

    start = time.perf_counter()
    builder = tfds.builder("imagenet2012", data_dir=str(work / "tfds"))
    builder.download_and_prepare(
        download_dir=str(work / "downloads"),
        download_config=tfds.download.DownloadConfig(
            manual_dir=str(download), try_download_gcs=False
        ),
    )
    return time.perf_counter() - start


def run_torchvision(download: Path, work: Path) -> float:
    """torchvision.datasets.ImageNet's preparation: devkit, train and val archives into folders.

    These are the functions ``ImageNet(root, split=...)`` runs on first use. torchvision
    checks the official MD5s of the archives; a generated download has other sums, so that
    check is replaced by a no-op (the parsing itself is unchanged). The dataset objects are
    not built: with a subset of the classes, torchvision's val parsing makes folders for all
    1000 classes of the ground truth and ImageFolder refuses the empty ones.
    """
    import torchvision.datasets.imagenet as imagenet

    imagenet._verify_archive = lambda root, file, md5: None  # type: ignore[assignment]
    root = work / "torchvision"
    link_archives(download, root)
    start = time.perf_counter()
    imagenet.parse_devkit_archive(str(root))
    imagenet.parse_train_archive(str(root))
    imagenet.parse_val_archive(str(root))
    seconds = time.perf_counter() - start
    images = sum(len(files) for _d, _s, files in os.walk(root / "train"))
    if images == 0:
        raise RuntimeError("torchvision prepared no images")
    return seconds


def main() -> int:
    peer, download, work = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    seconds = {"tfds": run_tfds, "torchvision": run_torchvision}[peer](download, work)
    print(json.dumps({"peer": peer, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
