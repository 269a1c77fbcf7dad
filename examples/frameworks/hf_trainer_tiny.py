"""A tiny GPT-2 fine-tuned by the Hugging Face ``Trainer`` on CPU, no perfkit import.

    perfkit profile examples/frameworks/hf_trainer_tiny.py [--steps 10] [--accum 1]
    python examples/frameworks/hf_trainer_tiny.py --callback [--out DIR]

Random initialisation (GPT2Config(n_layer=2, n_embd=64 or --embd, n_head=2, vocab_size=256):
no download), an in-memory dataset of random tokens, ``use_cpu=True``,
``report_to=[]``, nothing saved. ``--callback`` profiles with
``perfkit.integrations.transformers.PerfkitCallback`` instead (run it with plain
``python``). Needs ``pip install transformers accelerate``.
"""

from __future__ import annotations

import argparse
import tempfile

import torch


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n: int, seq: int, vocab: int) -> None:
        g = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (n, seq), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=32)
    ap.add_argument("--embd", type=int, default=64, help="n_embd (wider: longer matmuls)")
    ap.add_argument("--accum", type=int, default=1, help="gradient_accumulation_steps")
    ap.add_argument("--callback", action="store_true", help="profile with perfkit's TrainerCallback")
    ap.add_argument("--out", default=None, help="run directory for --callback")
    ap.add_argument("--skip-first", type=int, default=None, help="--callback: steps before profiling")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--active", type=int, default=None)
    args = ap.parse_args()

    from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

    torch.manual_seed(0)
    cfg = GPT2Config(n_layer=2, n_embd=args.embd, n_head=2, vocab_size=256, n_positions=max(args.seq, 64))
    model = GPT2LMHeadModel(cfg)
    data = RandomTokens(args.steps * args.batch * args.accum, args.seq, cfg.vocab_size)
    callbacks = []
    if args.callback:
        from perfkit.integrations.transformers import PerfkitCallback

        callbacks.append(PerfkitCallback(out=args.out, skip_first=args.skip_first, warmup=args.warmup,
                                         active=args.active))
    with tempfile.TemporaryDirectory() as scratch:
        targs = TrainingArguments(
            output_dir=scratch, per_device_train_batch_size=args.batch, gradient_accumulation_steps=args.accum,
            max_steps=args.steps, learning_rate=1e-3, use_cpu=True, report_to=[], save_strategy="no",
            logging_strategy="no", disable_tqdm=True, dataloader_num_workers=0,
        )
        trainer = Trainer(model=model, args=targs, train_dataset=data, callbacks=callbacks)
        trainer.train()
    print(f"done: {trainer.state.global_step} steps")


if __name__ == "__main__":
    main()
