"""A complete PyTorch training input on imagenet-prep's ImageFolder output (torchvision).

    python examples/input_imagefolder.py OUT [--batch-size 256] [--workers 8] [--steps 10]

OUT is a `imagenet-prep build --formats imagefolder` output: `OUT/imagefolder/train/<wnid>/`
and `OUT/imagefolder/val/<wnid>/`, the layout torchvision's ImageFolder reads. With all 1000
classes present, its sorted folder order gives the same 0-based labels as `labels.txt`
with `--label-offset 0`.
"""

from __future__ import annotations

import argparse
import os

import torch
from torchvision import datasets, transforms


def loaders(
    out: str, batch_size: int, workers: int, image_size: int = 224
) -> tuple[torch.utils.data.DataLoader, torch.utils.data.DataLoader]:
    train = datasets.ImageFolder(
        os.path.join(out, "imagefolder", "train"),
        transforms.Compose(
            [
                transforms.RandomResizedCrop(image_size),
                transforms.RandomHorizontalFlip(),
                transforms.PILToTensor(),  # uint8 CHW; normalize on the GPU
            ]
        ),
    )
    val = datasets.ImageFolder(
        os.path.join(out, "imagefolder", "val"),
        transforms.Compose(
            [
                transforms.Resize(round(image_size / 0.875)),
                transforms.CenterCrop(image_size),
                transforms.PILToTensor(),
            ]
        ),
    )
    sampler = (
        torch.utils.data.distributed.DistributedSampler(train)
        if torch.distributed.is_available() and torch.distributed.is_initialized()
        else None
    )
    train_loader = torch.utils.data.DataLoader(
        train,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available(),
        drop_last=True,
        persistent_workers=workers > 0,
    )
    val_loader = torch.utils.data.DataLoader(val, batch_size=batch_size, num_workers=workers)
    return train_loader, val_loader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    train_loader, val_loader = loaders(args.out, args.batch_size, args.workers, args.image_size)
    for step, (images, labels) in enumerate(train_loader):
        print(f"step {step}: {tuple(images.shape)} {images.dtype}, labels {labels[:8].tolist()}")
        if step + 1 >= args.steps:
            break
    images, labels = next(iter(val_loader))
    print(f"validation batch: {tuple(images.shape)}, labels {labels[:8].tolist()}")


if __name__ == "__main__":
    main()
