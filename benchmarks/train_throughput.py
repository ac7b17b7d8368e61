#!/usr/bin/env python3
"""Training throughput of a face backbone on whatever device is present.

Measures images per second of full training steps (forward, CosFace head,
backward, SGD) for IResNet-18 at 112×112 by default, with automatic mixed
precision, channels-last memory and pinned host batches on CUDA. Prints one
JSON object. Run it on a GPU machine as is:

    python benchmarks/train_throughput.py --backbone iresnet18 --batch-size 256 --steps 50
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from clients.training.heads import margin_head
from clients.training.models import build_backbone, parameter_count
from clients.training.train import resolve_device


def measure(
    *,
    backbone: str,
    batch_size: int,
    steps: int,
    warmup: int,
    image_size: int,
    classes: int,
    device: str,
) -> dict[str, object]:
    """Run warm-up and timed steps; returns the figures."""
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    torch.manual_seed(0)
    model = build_backbone(backbone, embedding_dim=512, in_channels=3, image_size=image_size).to(
        dev
    )
    head = margin_head("cosface", 512, classes).to(dev)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        list(model.parameters()) + list(head.parameters()), lr=0.1, momentum=0.9
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda)
    images = (
        torch.randn(batch_size, 3, image_size, image_size).pin_memory()
        if cuda
        else torch.randn(batch_size, 3, image_size, image_size)
    )
    labels = torch.randint(0, classes, (batch_size,))

    def step() -> None:
        x = images.to(dev, non_blocking=True)
        if cuda:
            x = x.to(memory_format=torch.channels_last)
        y = labels.to(dev, non_blocking=True)
        with torch.autocast(
            dev.type, dtype=torch.float16 if cuda else torch.bfloat16, enabled=cuda
        ):
            loss = torch.nn.functional.cross_entropy(head(model(x), y).float(), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        scaler.step(optimizer)
        scaler.update()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "backbone": backbone,
        "parameters": parameter_count(model),
        "image_size": image_size,
        "batch_size": batch_size,
        "steps": steps,
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu",
        "amp": cuda,
        "seconds": seconds,
        "images_per_s": steps * batch_size / seconds,
        "torch": torch.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="iresnet18")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    print(
        json.dumps(
            measure(
                backbone=args.backbone,
                batch_size=args.batch_size,
                steps=args.steps,
                warmup=args.warmup,
                image_size=args.image_size,
                classes=args.classes,
                device=args.device,
            )
        )
    )


if __name__ == "__main__":
    main()
