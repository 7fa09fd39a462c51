"""Broken models and training functions for the gallery: Python that programs cannot express.

Each ``make_*`` builds a :class:`gradlab.zoo.presets.Case` (a model with a batch
and a loss); each ``train_*`` is a function that takes no arguments, trains
for a few steps and returns ``(model, loss)``, as ``gradlab doctor`` expects.
Every one is deterministic (fixed seeds).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from gradlab.zoo.presets import Case


class TwoHeads(nn.Module):
    """A body and two heads; forward() forgets the second head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)
        self.aux_head = nn.Linear(8, 1)  # made, never called

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(torch.relu(self.body(x)))
        return out


class NumpyScaler(nn.Module):
    """A Linear whose output is squashed in NumPy, which records no graph."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(4, 8)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        squashed = torch.tensor(h.detach().numpy().clip(-1.0, 1.0))  # a NumPy round trip
        out: torch.Tensor = self.head(squashed)
        return out


class Cube(torch.autograd.Function):
    """x ** 3 with a wrong hand-written backward (2x instead of 3x²)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        cube: torch.Tensor = x**3
        return cube

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        wrong: torch.Tensor = grad * 2 * x  # d(x³)/dx is 3x²
        return wrong


class CubeLayer(nn.Module):
    """Applies :class:`Cube`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = Cube.apply(x)  # type: ignore[no-untyped-call]
        return out


def _seeded() -> None:
    torch.manual_seed(0)


def _regression(n: int = 32, features: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, features)
    return x, x.sum(dim=1, keepdim=True) * 0.5


def make_unused_layer() -> Case:
    """A layer made in __init__ and never called."""
    _seeded()
    x, y = _regression()
    return Case(TwoHeads(), x, y, nn.MSELoss())


def make_numpy() -> Case:
    """The encoder's output goes through NumPy and back."""
    _seeded()
    x, y = _regression()
    return Case(NumpyScaler(), x, y, nn.MSELoss())


def make_frozen() -> Case:
    """Every parameter frozen, nothing new to train."""
    _seeded()
    x, y = _regression()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    model.requires_grad_(False)
    return Case(model, x, y, nn.MSELoss())


def make_vanishing() -> Case:
    """Twelve sigmoid layers: every one multiplies the gradient by at most 0.25."""
    _seeded()
    layers: list[nn.Module] = []
    for _ in range(12):
        layers += [nn.Linear(16, 16), nn.Sigmoid()]
    x, _ = _regression(32, 16)
    return Case(nn.Sequential(*layers, nn.Linear(16, 1)), x, torch.randn(32, 1), nn.MSELoss())


def make_exploding() -> Case:
    """Twelve linear layers whose weights are four times too large."""
    _seeded()
    layers: list[nn.Module] = []
    for _ in range(12):
        linear = nn.Linear(16, 16)
        nn.init.normal_(linear.weight, std=4.0 / 16**0.5)
        layers.append(linear)
    x, _ = _regression(32, 16)
    return Case(nn.Sequential(*layers, nn.Linear(16, 1)), x, torch.randn(32, 1), nn.MSELoss())


def make_saturated() -> Case:
    """tanh fed unnormalised inputs (hundreds), so nearly every output is ±1."""
    _seeded()
    model = nn.Sequential(nn.Linear(4, 32), nn.Tanh(), nn.Linear(32, 1))
    x, y = _regression()
    return Case(model, x * 300, y, nn.MSELoss())


def make_dead_relu() -> Case:
    """A first layer with biases of -10: its ReLUs are zero for every sample."""
    _seeded()
    first = nn.Linear(4, 32)
    nn.init.constant_(first.bias, -10.0)
    model = nn.Sequential(first, nn.ReLU(), nn.Linear(32, 1))
    x, y = _regression()
    return Case(model, x, y, nn.MSELoss())


def make_wrong_backward() -> Case:
    """A custom autograd.Function whose backward is not the derivative of its forward."""
    _seeded()
    model = nn.Sequential(nn.Linear(4, 8), CubeLayer(), nn.Linear(8, 1))
    x, y = _regression(8)
    return Case(model, x, y, nn.MSELoss())


def train_loop(
    lr: float, steps: int = 8, zero_grad: bool = True, optimizer_over: str = "model"
) -> tuple[nn.Module, torch.Tensor]:
    """A Tanh MLP trained with SGD on a regression batch; the knobs break it."""
    _seeded()
    x, y = _regression()
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    params = model.parameters() if optimizer_over == "model" else model[2].parameters()
    optimizer = torch.optim.SGD(params, lr=lr)
    loss_fn = nn.MSELoss()
    loss = loss_fn(model(x), y)
    for _ in range(steps):
        if zero_grad:
            optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
    return model, loss


def train_without_zero_grad() -> tuple[nn.Module, torch.Tensor]:
    """SGD for eight steps, and optimizer.zero_grad() is never called."""
    return train_loop(lr=0.01, zero_grad=False)


def train_with_huge_lr() -> tuple[nn.Module, torch.Tensor]:
    """SGD with lr=3: each step overshoots further."""
    return train_loop(lr=3.0)


def train_head_only() -> tuple[nn.Module, torch.Tensor]:
    """The optimizer was built over the last layer only; the first never moves."""
    return train_loop(lr=0.05, optimizer_over="head")


def train_with_zero_lr() -> tuple[nn.Module, torch.Tensor]:
    """SGD with lr=0: the steps run and change nothing."""
    return train_loop(lr=0.0)


def train_healthy() -> tuple[nn.Module, torch.Tensor]:
    """The same loop done right: zero_grad, backward, step with a modest lr."""
    return train_loop(lr=0.05)
