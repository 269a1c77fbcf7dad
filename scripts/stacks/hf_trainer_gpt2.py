"""GPT-2 124M trained by a Hugging Face ``Trainer`` (random init, bf16, random tokens; no perfkit import).

    python scripts/stacks/hf_trainer_gpt2.py [--steps 30] [--batch 8] [--seq 1024]

On a machine without a GPU it shrinks to 2 layers, d_model 64 (seconds on a CPU).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments


class Tokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seq: int, vocab: int):
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    cfg = GPT2Config() if cuda else GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=256, n_positions=128)
    seq = args.seq if cuda else min(args.seq, 64)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(cfg)
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch, max_steps=args.steps, bf16=cuda,
            use_cpu=not cuda, report_to=[], save_strategy="no", logging_strategy="no",
            dataloader_num_workers=0, disable_tqdm=True, learning_rate=3e-4,
        )
        Trainer(model=model, args=targs, train_dataset=Tokens(args.batch * args.steps, seq, cfg.vocab_size)).train()
    print(f"trained {args.steps} steps")


if __name__ == "__main__":
    main()
