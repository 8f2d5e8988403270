"""A complete PyTorch training input on imagenet-prep's WebDataset shards (the webdataset library).

    python examples/input_webdataset.py OUT [--batch-size 256] [--workers 8] [--steps 10]

OUT is a `imagenet-prep build --formats webdataset` output. Shards are shuffled, split
between DataLoader workers (and torch.distributed ranks), decoded with PIL, cropped and
flipped as the standard ImageNet recipe does, and batched into uint8 tensors.
"""

from __future__ import annotations

import argparse
import glob
import os

import torch
import webdataset as wds
from torchvision import transforms


def train_loader(out: str, batch_size: int, workers: int, image_size: int = 224) -> wds.WebLoader:
    shards = sorted(glob.glob(os.path.join(out, "webdataset", "train-*.tar")))
    augment = transforms.Compose(
        [
            transforms.RandomResizedCrop(image_size),
            transforms.RandomHorizontalFlip(),
            transforms.PILToTensor(),  # uint8 CHW; normalize on the GPU
        ]
    )
    dataset = (
        wds.WebDataset(
            shards,
            shardshuffle=len(shards),
            nodesplitter=wds.split_by_node,
            workersplitter=wds.split_by_worker,
            empty_check=False,
        )
        .shuffle(5000)
        .decode("pil")
        .to_tuple("jpg", "cls")
        .map_tuple(lambda im: augment(im.convert("RGB")), int)
        .batched(batch_size, partial=False)
    )
    return wds.WebLoader(dataset, batch_size=None, num_workers=workers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    loader = train_loader(args.out, args.batch_size, args.workers, args.image_size)
    for step, (images, labels) in enumerate(loader):
        labels = torch.as_tensor(labels)
        print(f"step {step}: {tuple(images.shape)} {images.dtype}, labels {labels[:8].tolist()}")
        if step + 1 >= args.steps:
            break


if __name__ == "__main__":
    main()
