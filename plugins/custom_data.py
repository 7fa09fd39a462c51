"""A custom Dataset and DataLoader: batch size and shuffle change the loss curve."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gradlab.plugins import BoolParam, IntParam, Parts, Scenario, Setup

Transform = Callable[[torch.Tensor], torch.Tensor]


class NoisyLine(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """``n`` points of y = 3x + 2 with noise; ``transform`` is applied to each input."""

    def __init__(
        self, n: int, generator: torch.Generator, transform: Transform | None = None
    ) -> None:
        self.x = torch.linspace(-2, 2, n).unsqueeze(1)  # (n, 1), sorted: order matters unshuffled
        self.y = 3 * self.x + 2 + 0.5 * torch.randn(n, 1, generator=generator)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[i]
        return (self.transform(x) if self.transform else x), self.y[i]


def build(setup: Setup) -> Parts:
    """``NoisyLine`` read by ``DataLoader(batch_size, shuffle)``; ``nn.Linear(1, 1)``, SGD."""
    data = NoisyLine(setup.integer("points"), setup.generator, transform=lambda x: x / 2)
    loader = DataLoader(
        data,
        batch_size=setup.integer("batch_size"),
        shuffle=setup.flag("shuffle"),
        generator=setup.generator,
    )
    model = nn.Linear(1, 1).to(setup.device)
    return Parts(
        model=model,
        batches=loader,
        loss_fn=nn.MSELoss(),
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
    )


SCENARIO = Scenario(
    name="custom_data",
    title="Custom Dataset and DataLoader",
    description=(
        "A `Dataset` subclass with `__len__` and `__getitem__` (and a transform that halves each "
        "input) read by a `DataLoader`. One step is one batch; after the last batch the loader "
        "starts the next epoch. Small batches make a noisy curve; without `shuffle` the sorted "
        "points arrive in the same order every epoch and the curve repeats a saw-tooth."
    ),
    build=build,
    params=(
        IntParam("points", 64, 4, 10_000, "points in the dataset"),
        IntParam("batch_size", 4, 1, 1024, "DataLoader batch size"),
        BoolParam("shuffle", True, "DataLoader shuffle"),
    ),
    steps=100,
    every=10,
)
