"""The example GPT (examples/train_gpt.py) trained by a Lightning ``Trainer`` (bf16-mixed; no perfkit import).

    python scripts/stacks/lightning_gpt.py [--steps 30] [--size 100m]

Lightning's automatic optimisation runs forward and backward inside
``optimizer.step(closure)``. Without a GPU the tiny size runs on the CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import train_gpt  # noqa: E402


class Module(L.LightningModule):
    def __init__(self, model: torch.nn.Module, vocab: int):
        super().__init__()
        self.model, self.vocab = model, vocab

    def training_step(self, batch: torch.Tensor, i: int) -> torch.Tensor:
        x, y = batch[:, :-1], batch[:, 1:]
        return F.cross_entropy(self.model(x).reshape(-1, self.vocab).float(), y.reshape(-1))

    def configure_optimizers(self):  # type: ignore[no-untyped-def]
        return torch.optim.AdamW(self.parameters(), lr=3e-4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--size", default="auto")
    args = ap.parse_args()
    model, _opt, loader, cfg = train_gpt.build(args.size, steps=args.steps)
    cuda = cfg["cuda"]
    trainer = L.Trainer(
        max_steps=args.steps, accelerator="gpu" if cuda else "cpu", devices=1,
        precision="bf16-mixed" if cuda else "32-true", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(Module(model.cpu(), cfg["vocab"]), loader)
    print(f"trained {args.steps} steps")


if __name__ == "__main__":
    main()
