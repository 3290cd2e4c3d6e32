"""The CNN of PyTorch's CIFAR-10 tutorial, fed 8x8 grey digits scaled up to its 3x32x32 input.

train.py fits it, evaluate.py and serve.py predict through `predict`: what is measured is
what is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CLASSES = list(range(10))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.MaxPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.conv1(x)))
        x = self.pool(F.relu(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def to_images(rows: Sequence[Sequence[float]]) -> torch.Tensor:
    """(N, 64) pixel values 0..16 -> (N, 3, 32, 32) in [-1, 1]: each pixel a 4x4 block, the
    grey repeated on three channels (the tutorial normalises CIFAR's RGB to [-1, 1] too)."""
    x = torch.as_tensor(rows, dtype=torch.float32).reshape(-1, 1, 8, 8) / 8.0 - 1.0
    x = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    return x.repeat(1, 3, 1, 1)


def load(path: Path) -> Net:
    net = Net()
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def predict(net: Net, rows: Sequence[Sequence[float]]) -> list[int]:
    with torch.inference_mode():
        return [int(c) for c in net(to_images(rows)).argmax(dim=1)]
