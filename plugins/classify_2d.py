"""2-D classification: moons, circles, spiral or XOR, an MLP, the decision boundary."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from torch import nn

from gradlab.plugins import ChoiceParam, FloatParam, IntParam, Parts, Picture, Scenario, Setup
from gradlab.zoo.data import POINTS, points, split
from gradlab.zoo.models import ACTIVATIONS, mlp

GRID = 60  # decision-boundary grid cells per side


def build(setup: Setup) -> Parts:
    """Points made in torch, an MLP of the chosen depth, width and activation, Adam."""
    g = setup.generator
    x, y = points(setup.choice("dataset"), setup.integer("points"), setup.number("noise"), g)  # type: ignore[arg-type]
    (x_train, y_train), (x_test, y_test) = split(x, y, 0.25, g)
    model = mlp(
        setup.integer("depth"),
        setup.integer("width"),
        inputs=2,
        outputs=2,
        activation=setup.choice("activation"),  # type: ignore[arg-type]
    ).to(setup.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.number("lr"))
    x_test, y_test = x_test.to(setup.device), y_test.to(setup.device)

    def evaluate() -> dict[str, float]:
        correct = (model(x_test).argmax(1) == y_test).float().mean()
        return {"accuracy": correct.item()}

    def illustrate() -> list[Picture]:
        return [Picture("Decision boundary", boundary(model, x, y, setup.device))]

    return Parts(
        model=model,
        batches=[(x_train, y_train)],
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        evaluate=evaluate,
        evaluate_every=10,
        illustrate=illustrate,
    )


def boundary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> go.Figure:
    """The probability of class 1 over a grid around the points, with the points on top."""
    low, high = x.min(0).values - 0.5, x.max(0).values + 0.5
    u = torch.linspace(float(low[0]), float(high[0]), GRID)
    v = torch.linspace(float(low[1]), float(high[1]), GRID)
    grid = torch.cartesian_prod(v, u).flip(1)  # (GRID * GRID, 2): x varies fastest
    p = model(grid.to(device)).softmax(1)[:, 1].reshape(GRID, GRID).cpu()
    figure = go.Figure(
        [
            go.Contour(
                x=u.tolist(),
                y=v.tolist(),
                z=p.tolist(),
                colorscale="RdBu",
                opacity=0.6,
                showscale=False,
                contours={"start": 0, "end": 1, "size": 0.1},
            ),
            go.Scatter(
                x=x[:, 0].tolist(),
                y=x[:, 1].tolist(),
                mode="markers",
                marker={"color": y.tolist(), "colorscale": "RdBu", "line": {"width": 1}},
            ),
        ]
    )
    figure.update_layout(height=360, showlegend=False, margin={"t": 10, "b": 10})
    return figure


SCENARIO = Scenario(
    name="classify_2d",
    title="2-D classification",
    description=(
        "Two classes of 2-D points (moons, circles, a two-arm spiral or XOR), made in torch from "
        "the run's seed; an MLP with the chosen depth, width and activation; cross-entropy and "
        "Adam. A quarter of the points is held out for the accuracy; the decision boundary is "
        "redrawn as it trains."
    ),
    build=build,
    params=(
        ChoiceParam("dataset", "moons", POINTS, "which point set"),
        IntParam("points", 400, 20, 5000, "how many points"),
        FloatParam("noise", 0.1, 0.0, 1.0, "standard deviation of the noise"),
        IntParam("depth", 2, 1, 8, "hidden layers"),
        IntParam("width", 16, 2, 256, "units per hidden layer"),
        ChoiceParam("activation", "relu", tuple(ACTIVATIONS), "activation after each hidden layer"),
        FloatParam("lr", 0.01, 1e-4, 1.0, "Adam learning rate", log=True),
    ),
    steps=300,
    every=10,
)
