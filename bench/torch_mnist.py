#!/usr/bin/env python3
"""PyTorch twin of `xent train --dataset mnist`: the same model, recipe and
data, timed as a whole process, for time-to-accuracy and peak memory.

Reads the MNIST IDX files (raw or .gz) from $XENT_DATA/mnist, normalises with
the training set's mean and standard deviation, trains with Adam under
OneCycleLR (or another recipe given by flags), evaluates after every epoch and
prints one JSON object per epoch, then a summary with the wall time since the
process started and the peak resident memory.

    python bench/torch_mnist.py --model lenet --epochs 3
"""

import time

STARTED = time.perf_counter()

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

MODELS = {
    "lenet": lambda: nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ),
    "lenet-bn": lambda: nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10),
    ),
    "w3s": lambda: nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1568, 10),
    ),
    "mlp": lambda: nn.Sequential(
        nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
        nn.Linear(256, 10),
    ),
}


def read_idx(path):
    for candidate in (path, path + ".gz"):
        if os.path.exists(candidate):
            opener = gzip.open if candidate.endswith(".gz") else open
            with opener(candidate, "rb") as f:
                data = f.read()
            dims = data[3]
            shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
            return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)
    raise FileNotFoundError(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet", choices=sorted(MODELS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--schedule", default="onecycle", choices=["onecycle", "constant"])
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", type=float, default=0.99)
    parser.add_argument("--label-smoothing", type=float, default=0.0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    root = os.path.join(os.environ.get("XENT_DATA", "."), "mnist")
    def load(split):
        images = read_idx(os.path.join(root, f"{split}-images-idx3-ubyte"))
        labels = read_idx(os.path.join(root, f"{split}-labels-idx1-ubyte"))
        return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))
    train_x, train_y = load("train")
    test_x, test_y = load("t10k")
    scaled = train_x.float() / 255
    mean, std = scaled.mean().item(), scaled.std(unbiased=False).item()
    def normalise(x):
        return ((x.float() / 255 - mean) / std).unsqueeze(1)
    test_batch = normalise(test_x)

    model = MODELS[args.model]()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = (len(train_y) + args.batch_size - 1) // args.batch_size
    scheduler = None
    if args.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=args.lr, total_steps=args.epochs * steps_per_epoch)

    reached = None
    for epoch in range(1, args.epochs + 1):
        generator = torch.Generator().manual_seed(args.seed * 1000 + epoch)
        order = torch.randperm(len(train_y), generator=generator)
        model.train()
        epoch_started = time.perf_counter()
        for start in range(0, len(order), args.batch_size):
            batch = order[start:start + args.batch_size]
            optimizer.zero_grad()
            logits = model(normalise(train_x[batch]))
            loss = nn.functional.cross_entropy(
                logits, train_y[batch], label_smoothing=args.label_smoothing)
            loss.backward()
            optimizer.step()
            if scheduler:
                scheduler.step()
        seconds = time.perf_counter() - epoch_started
        model.eval()
        with torch.inference_mode():
            accuracy = (model(test_batch).argmax(1) == test_y).float().mean().item()
        wall = time.perf_counter() - STARTED
        if reached is None and accuracy >= args.target:
            reached = wall
        print(json.dumps({"epoch": epoch, "test_accuracy": accuracy, "seconds": seconds,
                          "images_per_second": len(order) / seconds, "wall": wall}), flush=True)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"done": True, "wall": time.perf_counter() - STARTED,
                      "seconds_to_target": reached, "target": args.target,
                      "peak_rss_mb": peak_mb}))


if __name__ == "__main__":
    main()
