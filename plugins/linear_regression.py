"""Linear regression on noisy y = 3x + 2: weight, bias, the fitted line, the prediction at x = 4."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from torch import nn

from gradlab.plugins import FloatParam, IntParam, Parts, Picture, Scenario, Setup


def build(setup: Setup) -> Parts:
    """``nn.Linear(1, 1)``, ``MSELoss`` and SGD on one full batch of noisy points."""
    g = setup.generator
    n = setup.integer("points")
    x = torch.randn(n, 1, generator=g)
    y = 3 * x + 2 + setup.number("noise") * torch.randn(n, 1, generator=g)
    model = nn.Linear(1, 1).to(setup.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=setup.number("lr"))
    four = torch.tensor([[4.0]], device=setup.device)

    def evaluate() -> dict[str, float]:
        return {
            "weight": model.weight.item(),
            "bias": model.bias.item(),
            "prediction_at_4": model(four).item(),
        }

    def illustrate() -> list[Picture]:
        line = torch.linspace(float(x.min()), float(x.max()), 2).unsqueeze(1)
        fitted = model(line.to(setup.device)).cpu()
        figure = go.Figure(
            [
                go.Scatter(x=x[:, 0].tolist(), y=y[:, 0].tolist(), mode="markers", name="data"),
                go.Scatter(x=line[:, 0].tolist(), y=fitted[:, 0].tolist(), name="fitted line"),
            ]
        )
        figure.update_layout(xaxis_title="x", yaxis_title="y", height=320)
        return [Picture("Fitted line", figure)]

    return Parts(
        model=model,
        batches=[(x, y)],
        loss_fn=nn.MSELoss(),
        optimizer=optimizer,
        evaluate=evaluate,
        evaluate_every=1,
        illustrate=illustrate,
    )


SCENARIO = Scenario(
    name="linear_regression",
    title="Linear regression",
    description=(
        "100 points `x ~ randn(100, 1)`, `y = 3x + 2 + noise`; `nn.Linear(1, 1)`, `nn.MSELoss()`, "
        "SGD. The weight goes to about 3, the bias to about 2, and the prediction at x = 4 to "
        "about 14."
    ),
    build=build,
    params=(
        IntParam("points", 100, 2, 10_000, "how many noisy points"),
        FloatParam("noise", 1.0, 0.0, 10.0, "standard deviation of the noise"),
        FloatParam("lr", 0.1, 1e-4, 2.0, "SGD learning rate (above 1 it diverges)", log=True),
    ),
    steps=100,
    every=1,
)
