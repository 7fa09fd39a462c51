"""Learning-rate schedules: constant, step, cosine annealing, one-cycle; the lr is plotted."""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import lr_scheduler

from gradlab.plugins import ChoiceParam, FloatParam, IntParam, Parts, Scenario, Setup
from gradlab.zoo.data import points
from gradlab.zoo.models import mlp

SCHEDULES = ("constant", "step", "cosine", "one_cycle")


def schedule(
    name: str, optimizer: torch.optim.Optimizer, steps: int
) -> lr_scheduler.LRScheduler | None:
    """The torch scheduler for ``name`` over a run of ``steps`` steps (None: constant lr)."""
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, steps // 4), gamma=0.5)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    if name == "one_cycle":
        lr = float(optimizer.param_groups[0]["lr"])
        return lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps + 1)
    return None


def build(setup: Setup) -> Parts:
    """An MLP on moons with SGD, and the chosen schedule stepped once per step."""
    x, y = points("moons", 200, 0.1, setup.generator)
    model = mlp(2, 16, inputs=2, outputs=2, activation="tanh").to(setup.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=setup.number("lr"), momentum=0.9)
    return Parts(
        model=model,
        batches=[(x, y)],
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        scheduler=schedule(setup.choice("schedule"), optimizer, setup.integer("horizon")),
    )


SCENARIO = Scenario(
    name="lr_schedules",
    title="Learning-rate schedules",
    description=(
        "The same MLP and moons with SGD (momentum 0.9), under a schedule that changes the "
        "learning rate after every step: `StepLR` halves it every quarter of the horizon, "
        "`CosineAnnealingLR` follows half a cosine down to 0, `OneCycleLR` warms up to the "
        "given lr and anneals. Each step records the lr it used: plot `lr` against `step`."
    ),
    build=build,
    params=(
        ChoiceParam("schedule", "cosine", SCHEDULES, "which schedule"),
        FloatParam("lr", 0.1, 1e-4, 1.0, "starting (one-cycle: peak) learning rate", log=True),
        IntParam("horizon", 200, 2, 100_000, "steps the schedule spans (set it to the run's)"),
    ),
    steps=200,
    every=10,
)
