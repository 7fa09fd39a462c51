"""Preset models with a batch and a loss, ready to trace.

Every preset builds a :class:`Case`: a model, an input batch, a target and a
loss function, made with a fixed seed (the global random state is left as it
was). ``gradlab export --preset NAME`` and the app's Model graph page use
them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
from torch import nn

from gradlab.core.errors import GradLabError
from gradlab.zoo import models


@dataclass(frozen=True)
class Param:
    """An integer knob of a preset, with its range."""

    name: str
    default: int
    low: int
    high: int
    help: str


@dataclass
class Case:
    """A model with a batch: live objects, for tracing and training."""

    model: nn.Module
    inputs: torch.Tensor
    target: torch.Tensor
    loss_fn: nn.Module

    def loss(self) -> torch.Tensor:
        """Forward the batch and return the loss (a scalar with a grad_fn)."""
        out: torch.Tensor = self.loss_fn(self.model(self.inputs), self.target)
        return out


@dataclass(frozen=True)
class Preset:
    """A named model from the lessons, with its knobs."""

    name: str
    title: str
    description: str
    params: tuple[Param, ...]
    make: Callable[..., Case]

    def build(self, seed: int = 0, **params: int) -> Case:
        """Build the case with ``params`` (defaults for the rest), checking their ranges."""
        values = {p.name: p.default for p in self.params}
        for name, value in params.items():
            spec = next((p for p in self.params if p.name == name), None)
            if spec is None:
                known = ", ".join(p.name for p in self.params) or "none"
                raise GradLabError(
                    f"Preset '{self.name}' has no parameter '{name}' (it has: {known})."
                )
            if not spec.low <= value <= spec.high:
                raise GradLabError(
                    f"Preset '{self.name}': {name}={value} is out of range "
                    f"[{spec.low}, {spec.high}]."
                )
            values[name] = value
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return self.make(**values)


def _linear() -> Case:
    x = torch.randn(100, 1)
    y = 3 * x + 2 + torch.randn(100, 1)  # noisy y = 3x + 2
    return Case(nn.Linear(1, 1), x, y, nn.MSELoss())


def _lenet() -> Case:
    return Case(models.LeNet(), torch.randn(1, 1, 32, 32), torch.tensor([3]), nn.CrossEntropyLoss())


def _mlp(depth: int, width: int) -> Case:
    x = torch.randn(16, width)
    return Case(models.mlp(depth, width, inputs=width), x, torch.randn(16, 1), nn.MSELoss())


def _transformer(layers: int, d_model: int) -> Case:
    if d_model % 4:
        raise GradLabError(f"d_model={d_model} must be a multiple of the 4 attention heads.")
    model = models.TransformerEncoder(layers, d_model, heads=4)
    x = torch.randn(2, 8, d_model)  # (B, T, C)
    # A random target: zeros right after the last LayerNorm would make mean(y ** 2) = 1
    # whatever the weights before it, so every gradient there would vanish.
    return Case(model, x, torch.randn(2, 8, d_model), nn.MSELoss())


def _resnet_block() -> Case:
    x = torch.randn(2, 16, 8, 8)
    return Case(models.BasicBlock(16, 16), x, torch.zeros(2, 16, 8, 8), nn.MSELoss())


def _resnet18(width: int) -> Case:
    x = torch.randn(2, 3, 32, 32)
    return Case(models.ResNet(width=width), x, torch.tensor([1, 7]), nn.CrossEntropyLoss())


def _lstm(steps: int) -> Case:
    x = torch.randn(4, steps, 4)  # (B, T, features)
    return Case(models.LSTMRegressor(), x, torch.randn(4, 1), nn.MSELoss())


PRESETS: Mapping[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "linear",
            "Linear regression",
            "nn.Linear(1, 1) on 100 noisy points of y = 3x + 2, MSE loss.",
            (),
            _linear,
        ),
        Preset(
            "lenet",
            "LeNet-like CNN",
            "conv(1→6) ReLU pool, conv(6→16) ReLU pool, 576→120→84→10, on a 1×1×32×32 "
            "image, cross-entropy.",
            (),
            _lenet,
        ),
        Preset(
            "mlp",
            "MLP",
            "depth × (Linear + ReLU), then Linear to 1, MSE loss on a batch of 16.",
            (
                Param("depth", 3, 1, 1000, "hidden layers"),
                Param("width", 32, 1, 512, "units per hidden layer"),
            ),
            _mlp,
        ),
        Preset(
            "transformer",
            "Transformer encoder",
            "Encoder layers (4-head self-attention, MLP, layer norm) on a batch of 2 "
            "sequences of 8 tokens.",
            (
                Param("layers", 1, 1, 32, "encoder layers"),
                Param("d_model", 32, 4, 256, "model width (a multiple of 4)"),
            ),
            _transformer,
        ),
        Preset(
            "resnet_block",
            "ResNet basic block",
            "Two 3×3 convolutions with batch norm and the identity shortcut, 16 channels.",
            (),
            _resnet_block,
        ),
        Preset(
            "resnet18",
            "ResNet-18-like",
            "Stem, four stages of two basic blocks, global pooling, 10 classes.",
            (Param("width", 16, 4, 64, "channels of the first stage"),),
            _resnet18,
        ),
        Preset(
            "lstm",
            "LSTM",
            "One LSTM layer (16 hidden) over a sequence, its last state through a Linear.",
            (Param("steps", 10, 1, 200, "sequence length"),),
            _lstm,
        ),
    )
}


def get(name: str) -> Preset:
    """The preset called ``name``; an unknown name lists the known ones."""
    preset = PRESETS.get(name)
    if preset is None:
        raise GradLabError(f"Unknown preset '{name}'. Known presets: {', '.join(PRESETS)}.")
    return preset
