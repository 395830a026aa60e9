"""Writes the PyTorch files of tests/test_torch_state.py (run once, in a venv with torch; not part of
the test suite, which needs no torch):

    python -m venv /tmp/tv && /tmp/tv/bin/pip install torch==2.13.0 numpy
    /tmp/tv/bin/python tests/data/make_torch_files.py

* ``mlp_9_7_4_4_2_1.pth``: the state dict of an MLP of ML-STIM's architecture (Linear 9-7-4-4-2-1,
  keys fc1.weight ... fc5.bias) with PyTorch's default random initialisation, seed 0. Our own file:
  no parameter of ML-STIM's published model is in it.
* ``odd_tensors.pth``: tensors that exercise strides, offsets, shared storages and dtypes.
* ``torch_reference.npz``: what ``torch.load(weights_only=True)`` returns for both (keys
  ``<file stem>/<tensor name>``), and the MLP's sigmoid output on ``inputs`` (``mlp_output``).
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).parent


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(9, 7), nn.Linear(7, 4), nn.Linear(4, 4)
        self.fc4, self.fc5 = nn.Linear(4, 2), nn.Linear(2, 1)

    def forward(self, x):
        for fc in (self.fc1, self.fc2, self.fc3, self.fc4):
            x = torch.tanh(fc(x))
        return self.fc5(x)


torch.manual_seed(0)
mlp = MLP()
torch.save(mlp.state_dict(), HERE / "mlp_9_7_4_4_2_1.pth")
base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
odd = {"transposed": base.t(), "offset_view": base[1:, 2:], "shares_storage": base,
       "double": torch.linspace(-1, 1, 5, dtype=torch.float64), "long": torch.tensor([3, -2, 7]),
       "scalar": torch.tensor(2.5), "boolean": torch.tensor([True, False])}
torch.save(odd, HERE / "odd_tensors.pth")
ref = {}
for stem in ("mlp_9_7_4_4_2_1", "odd_tensors"):
    for k, v in torch.load(HERE / f"{stem}.pth", weights_only=True).items():
        ref[f"{stem}/{k}"] = v.numpy()
x = torch.rand(16, 9, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    ref["inputs"] = x.numpy()
    ref["mlp_output"] = torch.sigmoid(mlp(x)).numpy()
np.savez(HERE / "torch_reference.npz", **ref)
