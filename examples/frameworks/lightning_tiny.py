"""A tiny PyTorch Lightning run on CPU (automatic optimisation, Adam), no perfkit import.

    perfkit profile examples/frameworks/lightning_tiny.py [--steps 12] [--callback]

With ``--callback`` the script profiles itself with
``perfkit.integrations.lightning.PerfkitCallback`` instead (run it with plain
``python``). Random data, a small MLP: finishes in seconds on a laptop CPU.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--callback", action="store_true", help="profile with perfkit's Lightning callback")
    ap.add_argument("--out", default=None, help="run directory for --callback")
    args = ap.parse_args()

    import lightning.pytorch as pl

    class Tiny(pl.LightningModule):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                                     nn.Linear(width, 1))

        def training_step(self, batch, batch_idx):  # type: ignore[no-untyped-def]
            x, y = batch
            loss = nn.functional.mse_loss(self.net(x), y)
            return loss

        def configure_optimizers(self):  # type: ignore[no-untyped-def]
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    torch.manual_seed(0)
    n = args.steps * 32
    data = torch.utils.data.TensorDataset(torch.randn(n, 64), torch.randn(n, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    callbacks = []
    if args.callback:
        from perfkit.integrations.lightning import PerfkitCallback

        callbacks.append(PerfkitCallback(out=args.out))
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(Tiny(args.width), loader)
    print(f"done: {trainer.global_step} steps")


if __name__ == "__main__":
    main()
