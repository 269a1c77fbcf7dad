"""A tiny torch.compile'd MLP training loop (CPU), profiled to make the fixture beside this file.

Made with (torch 2.13 CPU, about 30 s of compilation on a 2-core machine):

    python -m perfkit profile --skip-first 5 --warmup 2 --active 3 --out OUT tests/data/compiled_mlp/compile_mlp.py

then OUT/rank0.pt.trace.json.gz and OUT/rank0.pt.trace.stacks.json.gz copied here unchanged.
"""

import torch
import torch.nn as nn

torch.manual_seed(0)


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(256, 1024)
        self.fc2 = nn.Linear(1024, 10)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)) * 0.5 + 1.0)


model = MLP()
cmodel = torch.compile(model)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x = torch.randn(512, 256)
y = torch.randint(0, 10, (512,))
for i in range(12):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(cmodel(x), y)
    loss.backward()
    opt.step()
