"""Freezing and fine-tuning: a trained network's layers frozen, a new head learns."""

from __future__ import annotations

import torch
from torch import nn

from gradlab.plugins import BoolParam, FloatParam, IntParam, Parts, Scenario, Setup
from gradlab.zoo.data import points
from gradlab.zoo.models import mlp


def build(setup: Setup) -> Parts:
    """Train an MLP briefly on moons, freeze it, replace its last layer, train on circles."""
    g = setup.generator
    x, y = points("moons", 200, 0.1, g)
    model = mlp(2, 32, inputs=2, outputs=2, activation="tanh").to(setup.device)
    pretrain = torch.optim.Adam(model.parameters(), lr=0.01)
    x_d, y_d = x.to(setup.device), y.to(setup.device)
    for _ in range(setup.integer("pretrain_steps")):
        pretrain.zero_grad()
        torch.autograd.backward(nn.functional.cross_entropy(model(x_d), y_d))
        pretrain.step()
    pretrain.zero_grad(set_to_none=True)  # no gradients left over from pretraining
    if setup.flag("freeze"):
        for p in model.parameters():
            p.requires_grad = False
    model[-1] = nn.Linear(32, 2).to(setup.device)  # the new head: requires grad
    trainable = [p for p in model.parameters() if p.requires_grad]
    new_x, new_y = points("circles", 200, 0.05, g)
    return Parts(
        model=model,
        batches=[(new_x, new_y)],
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=torch.optim.Adam(trainable, lr=setup.number("lr")),
    )


SCENARIO = Scenario(
    name="fine_tune",
    title="Freezing and fine-tuning",
    description=(
        "An MLP (two hidden layers of 32, tanh) is trained for a few steps on moons. With "
        "`freeze` on, every parameter gets `requires_grad = False`; then the last layer is "
        "replaced by a new `nn.Linear(32, 2)` and the network trains on circles. The frozen "
        "layers drop out of the gradient graph: only the new head's weight and bias have "
        "`AccumulateGrad` nodes and receive gradients. Turn `freeze` off to fine-tune all."
    ),
    build=build,
    params=(
        BoolParam("freeze", True, "freeze the trained layers"),
        IntParam("pretrain_steps", 100, 0, 5000, "steps of training on moons first"),
        FloatParam("lr", 0.01, 1e-4, 1.0, "Adam learning rate for fine-tuning", log=True),
    ),
    steps=200,
    every=10,
)
