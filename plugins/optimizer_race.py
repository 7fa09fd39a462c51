"""Optimizer race: nine optimizers train copies of one network on the same data and seed."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import torch
from torch import nn

from gradlab.plugins import FloatParam, IntParam, Parts, Scenario, Setup, StepContext
from gradlab.zoo.data import points
from gradlab.zoo.models import mlp

Make = Callable[[list[nn.Parameter], float], torch.optim.Optimizer]
# Each optimizer with a learning rate that suits it on this problem (times the `lr_scale`).
RACERS: dict[str, tuple[float, Make]] = {
    "sgd": (0.5, lambda p, lr: torch.optim.SGD(p, lr=lr)),
    "momentum": (0.1, lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)),
    "adam": (0.01, lambda p, lr: torch.optim.Adam(p, lr=lr)),
    "adagrad": (0.1, lambda p, lr: torch.optim.Adagrad(p, lr=lr)),
    "adamax": (0.02, lambda p, lr: torch.optim.Adamax(p, lr=lr)),
    "asgd": (0.5, lambda p, lr: torch.optim.ASGD(p, lr=lr)),
    "rmsprop": (0.005, lambda p, lr: torch.optim.RMSprop(p, lr=lr)),
    "rprop": (0.01, lambda p, lr: torch.optim.Rprop(p, lr=lr)),
    "lbfgs": (0.5, lambda p, lr: torch.optim.LBFGS(p, lr=lr, max_iter=4, history_size=10)),
}


def build(setup: Setup) -> Parts:
    """One MLP, copied once per optimizer so that every racer starts from the same weights."""
    x, y = points("moons", setup.integer("points"), 0.1, setup.generator)
    first = mlp(2, setup.integer("width"), inputs=2, outputs=2, activation="tanh")
    models = nn.ModuleDict({name: copy.deepcopy(first) for name in RACERS}).to(setup.device)
    scale = setup.number("lr_scale")
    optimizers = {
        name: make(list(models[name].parameters()), lr * scale)
        for name, (lr, make) in RACERS.items()
    }
    loss_fn = nn.CrossEntropyLoss()

    def step(ctx: StepContext) -> torch.Tensor:
        inputs, target = ctx.batch()
        losses: dict[str, torch.Tensor] = {}
        for name, optimizer in optimizers.items():
            model = models[name]
            closure = functools.partial(
                _loss, ctx, model, optimizer, loss_fn, inputs, target, watch=name == "sgd"
            )
            if isinstance(optimizer, torch.optim.LBFGS):
                # LBFGS calls the closure several times (torch leaves its step untyped)
                losses[name] = optimizer.step(closure)  # type: ignore[no-untyped-call]
            else:
                losses[name] = closure()
                optimizer.step()
            ctx.log(f"loss_{name}", losses[name])
        return losses["sgd"]

    return Parts(
        model=models,
        batches=[(x, y)],
        loss_fn=loss_fn,
        optimizer=optimizers["sgd"],
        step=step,
    )


def _loss(
    ctx: StepContext,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: nn.Module,
    inputs: torch.Tensor,
    target: torch.Tensor,
    watch: bool,
) -> torch.Tensor:
    """zero_grad, forward, loss, backward: the closure LBFGS needs (the graph shown is SGD's)."""
    optimizer.zero_grad()
    loss: torch.Tensor = loss_fn(model(inputs), target)
    ctx.backward(loss, watch=watch)
    return loss


SCENARIO = Scenario(
    name="optimizer_race",
    title="Optimizer race",
    description=(
        "SGD, SGD with momentum, Adam, Adagrad, Adamax, ASGD, RMSprop, Rprop and LBFGS each "
        "train their own copy of the same MLP (same initial weights, same seed, same full batch "
        "of moons). Every step records each optimizer's loss as `loss_<name>`, so the curves "
        "overlay. LBFGS needs a closure: `optimizer.step(closure)` re-evaluates the loss up to "
        "4 times per step. The step's loss, learning rate and captured graph are plain SGD's."
    ),
    build=build,
    params=(
        IntParam("points", 200, 20, 5000, "how many moons points"),
        IntParam("width", 16, 2, 128, "units per hidden layer"),
        FloatParam(
            "lr_scale", 1.0, 0.01, 10.0, "multiplies every optimizer's learning rate", log=True
        ),
    ),
    steps=100,
    every=10,
)
