#!/usr/bin/env python3
"""Train a torchvision model (ResNet-50, AlexNet, ...) on a build with imagenet_prep's loaders.

Plain PyTorch: SGD with momentum and a cosine learning rate (after an optional linear
warm-up), mixed precision when on a GPU, checkpoints that include the loader's position, so
``--resume`` continues mid-epoch with exactly the batches that would have come next.

    python examples/train.py --data /data/imagenet-prepared --arch resnet50 \\
        --epochs 90 --batch-size 256 --workers 8
    python examples/train.py --data /data/imagenet-prepared --arch alexnet --lr 0.01
    torchrun --nproc-per-node 8 examples/train.py --data /data/imagenet-prepared --arch resnet50

Under ``torchrun`` each process trains one GPU with DistributedDataParallel; ``--batch-size``
is per process and the learning rate is scaled by the total batch / 256. Images arrive as
uint8 (N, 3, H, W) tensors and become normalized floats on the device.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torchvision

from imagenet_prep.loaders.torch import ImageNetLoader

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="an imagenet-prep build folder")
    p.add_argument("--format", default=None, help="tfrecord, webdataset or imagefolder")
    p.add_argument("--arch", default="resnet50", help="a torchvision.models name")
    p.add_argument("--num-classes", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=90)
    p.add_argument("--batch-size", type=int, default=256, help="per process")
    p.add_argument("--lr", type=float, default=0.1, help="for a total batch of 256")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--warmup-epochs", type=float, default=0.0)
    p.add_argument("--workers", type=int, default=8, help="DataLoader workers per process")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--transform", default="train", choices=("train", "train-inception"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="checkpoint.pt", help="where checkpoints go")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps; 0: epochs only")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps")
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--json", action="store_true", help="log JSON lines")
    p.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    return p.parse_args(argv)


def setup_distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); initializes the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))
    return 0, 1, 0


def log(args: argparse.Namespace, rank: int, **fields: Any) -> None:
    if rank != 0:
        return
    if args.json:
        print(json.dumps(fields), flush=True)
    else:
        print(
            "  ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in fields.items()
            ),
            flush=True,
        )


def save(path: Path, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically: a crash never leaves half a file under ``path``."""
    tmp = path.with_name(f".{path.name}.incomplete")
    torch.save(state, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rank, world, local_rank = setup_distributed()
    if args.device:
        device = torch.device(args.device)
    elif torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    cuda = device.type == "cuda"
    torch.manual_seed(args.seed)

    # drop: every rank takes the same number of steps (DDP needs that); each worker batches
    # its own share and drops its own last partial batch.
    loader = ImageNetLoader(
        args.data,
        "train",
        format=args.format,
        batch_size=args.batch_size,
        num_workers=args.workers,
        transform=args.transform,
        image_size=args.image_size,
        seed=args.seed,
        balance="drop",
        drop_last=True,
        pin_memory=cuda,
    )
    steps_per_epoch = len(loader)
    if steps_per_epoch == 0:
        raise SystemExit("the training split has fewer images than one batch per worker")

    model = torchvision.models.get_model(args.arch, weights=None, num_classes=args.num_classes)
    memory_format = torch.channels_last if cuda else torch.contiguous_format
    model = model.to(device, memory_format=memory_format)
    lr = args.lr * args.batch_size * world / 256
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)  # no decay on biases and norms
    optimizer = torch.optim.SGD(
        [
            {"params": decay, "weight_decay": args.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        momentum=args.momentum,
    )
    total_steps = args.epochs * steps_per_epoch
    warmup = int(args.warmup_epochs * steps_per_epoch)

    def lr_factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor)
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)

    checkpoint = Path(args.checkpoint)
    step = 0
    if args.resume and checkpoint.exists():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        loader.load_state_dict(state["loader"])
        step = state["step"]
        log(args, rank, event="resumed", step=step, epoch=loader.epoch)

    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if cuda else None
        )
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

    def checkpoint_now() -> None:
        if rank == 0:
            save(
                checkpoint,
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "loader": loader.state_dict(),
                    "step": step,
                    "arch": args.arch,
                    "num_classes": args.num_classes,
                },
            )

    net.train()
    for epoch in range(loader.epoch, args.epochs):
        loader.set_epoch(epoch)  # keeps a resumed position inside this epoch
        seen, start = 0, time.perf_counter()
        for images, labels in loader:
            images = images.to(device, non_blocking=True).contiguous(memory_format=memory_format)
            labels = labels.to(device, non_blocking=True)
            images = (images.float() - mean) / std
            with torch.autocast(device.type, dtype=torch.float16, enabled=cuda):
                loss = criterion(net(images), labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step += 1
            seen += len(labels)
            if step % args.log_every == 0 or step == args.max_steps:
                rate = seen * world / (time.perf_counter() - start)
                log(
                    args,
                    rank,
                    epoch=epoch,
                    step=step,
                    loss=loss.item(),
                    lr=scheduler.get_last_lr()[0],
                    images_per_s=rate,
                )
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                checkpoint_now()
            if step == args.max_steps:
                checkpoint_now()
                return 0
        checkpoint_now()
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
