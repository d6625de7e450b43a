#!/usr/bin/env python3
"""PyTorch twin of `xent bench`: the same workloads, measured the same way.

Random data of the right shape, steady state after warm-up, float32. Prints
one JSON object per line: the workload, threads, training images/s, training
GFLOP/s (three forward passes' worth of conv and linear FLOPs per image, as
xent counts them), batch-1 latency (median of 1,000 calls) and batch-256
throughput.

    python bench/torch_bench.py --threads 2 --seconds 2
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn


def workloads():
    """The same definitions as `src/bench.rs`."""
    return {
        "W1": (lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), 64, "sgd", 0.0, False),
        "W2": (
            lambda: nn.Sequential(
                nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                nn.Linear(256, 10),
            ),
            128, "adam", 0.0, True,
        ),
        "W3s": (
            lambda: nn.Sequential(
                nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(1568, 10),
            ),
            128, "sgd", 0.9, True,
        ),
        "W3": (
            lambda: nn.Sequential(
                nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10),
            ),
            64, "sgd", 0.9, True,
        ),
    }


def forward_flops(model, batch):
    """2 × multiply-adds of the conv and linear layers for one batch."""
    total, shape = 0, (batch, 1, 28, 28)
    x = torch.zeros(shape)
    for layer in model:
        y = layer(x)
        if isinstance(layer, nn.Conv2d):
            k = layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
            total += 2 * y.numel() * k
        elif isinstance(layer, nn.Linear):
            total += 2 * y.numel() * layer.in_features
        x = y
    return total


def measure(name, seconds):
    make, batch, opt, momentum, inference = workloads()[name]
    torch.manual_seed(0)
    model = make()
    if opt == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=momentum)
    x = torch.rand(batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (batch,))

    def step():
        optimizer.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    steps, started = 0, time.perf_counter()
    while steps < 5 or time.perf_counter() - started < seconds:
        step()
        steps += 1
    rate = steps * batch / (time.perf_counter() - started)
    result = {
        "workload": name,
        "threads": torch.get_num_threads(),
        "train_images_per_second": rate,
        "train_gflops": rate * 3 * forward_flops(model, 1) / 1e9,
    }

    if inference:
        model.eval()
        with torch.inference_mode():
            one = torch.rand(1, 1, 28, 28)
            for _ in range(20):
                model(one)
            times = []
            for _ in range(1000):
                t = time.perf_counter()
                model(one)
                times.append((time.perf_counter() - t) * 1e3)
            result["infer_b1_latency_ms"] = statistics.median(times)
            many = torch.rand(256, 1, 28, 28)
            model(many)
            calls, started = 0, time.perf_counter()
            while calls < 3 or time.perf_counter() - started < 1.0:
                model(many)
                calls += 1
            result["infer_b256_images_per_second"] = calls * 256 / (time.perf_counter() - started)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--workload", default="W1,W2,W3s,W3")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.workload.split(","):
        print(json.dumps(measure(name, args.seconds)), flush=True)


if __name__ == "__main__":
    main()
