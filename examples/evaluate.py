#!/usr/bin/env python3
"""Top-1 / top-5 accuracy of a torchvision model on a build's validation split.

With published weights it confirms that the validation labels are right (ResNet-50's
``IMAGENET1K_V1`` weights give about 76.1% top-1 with the standard resize-256 /
centre-crop-224 evaluation, which is the loaders' ``eval`` transform):

    python examples/evaluate.py --data /data/imagenet-prepared --arch resnet50 \\
        --weights IMAGENET1K_V1
    python examples/evaluate.py --data /data/imagenet-prepared --checkpoint checkpoint.pt

``--weights`` downloads the weights through torchvision; ``--checkpoint`` reads one written
by ``examples/train.py``.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
import torchvision

from imagenet_prep.loaders.torch import ImageNetLoader

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="an imagenet-prep build folder")
    p.add_argument("--format", default=None, help="tfrecord, webdataset or imagefolder")
    p.add_argument("--arch", default=None, help="a torchvision.models name")
    p.add_argument("--weights", default=None, help="torchvision weights, e.g. IMAGENET1K_V1")
    p.add_argument("--checkpoint", default=None, help="a checkpoint of examples/train.py")
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p.parse_args(argv)


def load_model(args: argparse.Namespace) -> torch.nn.Module:
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        model = torchvision.models.get_model(
            args.arch or state["arch"], weights=None, num_classes=state["num_classes"]
        )
        model.load_state_dict(state["model"])
        return model
    if not args.arch:
        raise SystemExit("give --arch (with --weights) or --checkpoint")
    return torchvision.models.get_model(args.arch, weights=args.weights)


@torch.no_grad()
def evaluate(args: argparse.Namespace) -> dict[str, float | int]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    model = load_model(args).to(device).eval()
    loader = ImageNetLoader(
        args.data,
        "validation",
        format=args.format,
        batch_size=args.batch_size,
        num_workers=args.workers,
        transform="eval",
        image_size=args.image_size,
        shuffle=False,
        pin_memory=cuda,
    )
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255
    images_seen = top1 = top5 = 0
    for images, labels in loader:
        images = (images.to(device, non_blocking=True).float() - mean) / std
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
            logits = model(images)
        best = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hits = best == labels[:, None]
        top1 += int(hits[:, 0].sum())
        top5 += int(hits.any(dim=1).sum())
        images_seen += len(labels)
    return {
        "images": images_seen,
        "top1": top1 / max(1, images_seen),
        "top5": top5 / max(1, images_seen),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = evaluate(args)
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{result['images']} validation images: top-1 {result['top1']:.2%}, "
            f"top-5 {result['top5']:.2%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
