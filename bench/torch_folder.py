#!/usr/bin/env python3
"""Reads an image folder once with torchvision, as `xent` imports it: every
image of `train/` and `test/` decoded to a tensor, through `ImageFolder` and a
`DataLoader`. Prints the wall time, for comparison with `xent data inspect`.

    python bench/torch_folder.py $XENT_DATA/cifar10-jpg --workers 2
"""

import argparse
import json
import os
import time

STARTED = time.perf_counter()

import torch  # noqa: E402
from torchvision import datasets, transforms  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)

    images = 0
    read_started = time.perf_counter()
    for split in ("train", "test"):
        folder = datasets.ImageFolder(os.path.join(args.root, split), transform=transforms.ToTensor())
        loader = torch.utils.data.DataLoader(
            folder, batch_size=args.batch_size, num_workers=args.workers)
        for batch, _ in loader:
            images += len(batch)
    now = time.perf_counter()
    print(json.dumps({"images": images, "read_seconds": now - read_started,
                      "process_seconds": now - STARTED, "workers": args.workers}))


if __name__ == "__main__":
    main()
