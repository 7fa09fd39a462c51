"""Small models from introductory courses, built by hand (no torchvision)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Activation = Literal["relu", "tanh", "sigmoid", "gelu", "leaky_relu"]
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leaky_relu": nn.LeakyReLU,
}


class LeNet(nn.Module):
    """conv(1->6, 3x3), ReLU, pool, conv(6->16, 3x3), ReLU, pool, 576 -> 120 -> 84 -> classes.

    On a 32x32 input the second pool leaves 16 maps of 6x6 = 576 features.
    Inputs smaller than 16x16 (scikit-learn's 8x8 digits) get padding 1 in
    both convolutions: 16 maps of 2x2 = 64 features.
    """

    def __init__(self, classes: int = 10, size: int = 32) -> None:
        super().__init__()
        padding = 1 if size < 16 else 0
        self.conv1 = nn.Conv2d(1, 6, 3, padding=padding)
        self.conv2 = nn.Conv2d(6, 16, 3, padding=padding)
        side = _lenet_side(size, padding)
        self.fc1 = nn.Linear(16 * side * side, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, classes)
        self.pool = nn.MaxPool2d(2)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.conv1(x)))  # (B, 6, 15, 15) on 32x32
        x = self.pool(self.relu(self.conv2(x)))  # (B, 16, 6, 6)
        x = torch.flatten(x, 1)  # (B, 576)
        x = self.relu(self.fc1(x))
        x = self.relu(self.fc2(x))
        logits: torch.Tensor = self.fc3(x)  # (B, classes)
        return logits


def _lenet_side(size: int, padding: int) -> int:
    side = size
    for _ in range(2):
        side = (side + 2 * padding - 2) // 2  # 3x3 conv, then 2x2 pool
    return side


def mlp(
    depth: int = 3,
    width: int = 32,
    inputs: int = 32,
    outputs: int = 1,
    activation: Activation = "relu",
) -> nn.Sequential:
    """``depth`` hidden Linear + activation pairs, then a Linear to ``outputs``."""
    act = ACTIVATIONS[activation]
    layers: list[nn.Module] = []
    size = inputs
    for _ in range(depth):
        layers += [nn.Linear(size, width), act()]
        size = width
    layers.append(nn.Linear(size, outputs))
    return nn.Sequential(*layers)


class TransformerEncoder(nn.Module):
    """``layers`` standard encoder layers (self-attention + MLP, post-norm)."""

    def __init__(
        self, layers: int = 2, d_model: int = 32, heads: int = 4, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                d_model, heads, dim_feedforward=2 * d_model, dropout=dropout, batch_first=True
            )
            for _ in range(layers)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)  # (B, T, d_model)
        return x


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convs with batch norm, plus the shortcut."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels_out)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        summed: torch.Tensor = self.relu(out + self.shortcut(x))  # x's gradient: two paths
        return summed


class ResNet(nn.Module):
    """ResNet-18's shape (four stages of two basic blocks) at a chosen width."""

    def __init__(self, classes: int = 10, width: int = 16, blocks: int = 2) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()
        )
        stages: list[nn.Module] = []
        channels = width
        for i in range(4):
            out = width * 2**i
            for j in range(blocks):
                stages.append(BasicBlock(channels, out, stride=2 if i > 0 and j == 0 else 1))
                channels = out
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))  # (B, 8 * width, H / 8, W / 8)
        logits: torch.Tensor = self.head(x.mean(dim=(2, 3)))  # global average pool
        return logits


class LSTMRegressor(nn.Module):
    """An LSTM over a sequence, its last hidden state through a Linear."""

    def __init__(self, features: int = 4, hidden: int = 16, layers: int = 1) -> None:
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)  # (B, T, hidden)
        y: torch.Tensor = self.head(out[:, -1])  # (B, 1)
        return y
