"""Pathology: the step waits for its batch: slow samples loaded in the main process.

Each sample costs storage latency (a sleep) plus CPU decoding (NumPy work), and
the DataLoader runs with ``num_workers=0``, so every batch is read and decoded
in the training process between two steps while the GPU has nothing queued.
The loading cost is set from the measured GPU step (``--load-factor`` x the
step, 1.5 by default) so the demonstration holds on any GPU; ``--load-ms`` sets
the per-batch cost directly.

Expected perfkit finding: ``dataloader_bound`` first.

Fix (``--fixed``): load in parallel and ahead: ``num_workers=4``,
``pin_memory=True``, ``prefetch_factor=4``, ``persistent_workers=True``, and
``.to(device, non_blocking=True)``. Four workers hide a load of up to ~4x the
step.

    python examples/pathologies/slow_loader.py [--fixed] [--steps 12] [--small] [--load-factor 1.5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class EncodedImages(Dataset):
    """Synthetic "encoded images": each item waits for storage, then decodes on the CPU."""

    def __init__(self, n: int, size: int, io_ms: float = 0.0):
        self.n, self.io_ms = n, io_ms
        self.files = np.random.default_rng(0).integers(0, 256, (16, size, size, 3), dtype=np.uint8)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self.io_ms > 0:
            time.sleep(self.io_ms / 1000.0)  # read from storage
        raw = self.files[i % len(self.files)]  # "decode": bytes -> normalised float image
        img = np.multiply(raw, 4 / 255, dtype=np.float32) - 2.0
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), i % 10


def convnet(width: int) -> nn.Module:
    c = [3, width, 2 * width, 4 * width]
    layers: list[nn.Module] = []
    for a, b in zip(c, c[1:]):
        layers += [nn.Conv2d(a, b, 3, stride=2, padding=1), nn.BatchNorm2d(b), nn.ReLU(),
                   nn.Conv2d(b, b, 3, padding=1), nn.BatchNorm2d(b), nn.ReLU()]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c[-1], 10))


def measure_ms(fn, repeat: int = 5, cuda: bool = False) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        times.append(1000 * (time.perf_counter() - t))
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fixed", action="store_true", help="parallel, pinned, prefetched loading")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--small", action="store_true", help="CPU-sized model and images")
    ap.add_argument("--load-factor", type=float, default=1.5, help="batch load time / measured step time")
    ap.add_argument("--load-ms", type=float, default=None, help="batch load time in ms (overrides --load-factor)")
    args = ap.parse_args()

    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    batch, size, width = (16, 32, 16) if args.small else (128, 96, 192)
    torch.manual_seed(0)
    model = convnet(width).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)

    # Size the loading cost against this machine's step (forward + backward; no optimizer step here).
    xb, yb = torch.randn(batch, 3, size, size, device=device), torch.randint(0, 10, (batch,), device=device)
    step_ms = measure_ms(lambda: F.cross_entropy(model(xb), yb).backward(), cuda=cuda)
    model.zero_grad(set_to_none=True)
    probe = EncodedImages(batch, size)
    decode_ms = measure_ms(lambda: [probe[i] for i in range(batch)])
    load_ms = args.load_ms if args.load_ms is not None else args.load_factor * step_ms
    data = EncodedImages(batch * args.steps, size, io_ms=max(load_ms - decode_ms, 0.0) / batch)
    print(f"step {step_ms:.1f} ms, batch load {max(load_ms, decode_ms):.1f} ms (decode {decode_ms:.1f} ms) on {device}")

    if args.fixed:
        loader = DataLoader(data, batch_size=batch, num_workers=4, pin_memory=cuda, prefetch_factor=4,
                            persistent_workers=True)
    else:
        loader = DataLoader(data, batch_size=batch, num_workers=0)

    t0 = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():.4f}")
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print(f"{args.steps} steps in {dt:.2f} s ({1000 * dt / args.steps:.1f} ms/step)")


if __name__ == "__main__":
    main()
