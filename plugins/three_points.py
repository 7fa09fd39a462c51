"""Three points, y = 2x: MSELoss with reduction mean, sum or none."""

from __future__ import annotations

import torch
from torch import nn

from gradlab.plugins import ChoiceParam, FloatParam, Parts, Scenario, Setup, StepContext


def build(setup: Setup) -> Parts:
    """``nn.Linear(1, 1)`` on x = 1, 2, 3 and y = 2, 4, 6, SGD, the chosen ``reduction``."""
    x = torch.tensor([[1.0], [2.0], [3.0]])
    y = torch.tensor([[2.0], [4.0], [6.0]])
    model = nn.Linear(1, 1).to(setup.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=setup.number("lr"))
    reduction = setup.choice("reduction")
    loss_fn = nn.MSELoss(reduction=reduction)

    def step(ctx: StepContext) -> torch.Tensor:
        optimizer.zero_grad()
        per_point: torch.Tensor = loss_fn(model(ctx.batch()[0]), y.to(ctx.device))
        if reduction == "none":
            # (3, 1): one loss per point. backward() needs one number, so reduce it here.
            for i, value in enumerate(per_point.detach().flatten()):
                ctx.log(f"loss_point{i}", value)
            loss = per_point.sum()
        else:
            loss = per_point
        ctx.backward(loss)
        optimizer.step()
        return loss

    def evaluate() -> dict[str, float]:
        return {"weight": model.weight.item(), "bias": model.bias.item()}

    return Parts(
        model=model,
        batches=[(x, y)],
        loss_fn=loss_fn,
        optimizer=optimizer,
        step=step,
        evaluate=evaluate,
        evaluate_every=1,
    )


SCENARIO = Scenario(
    name="three_points",
    title="Three points",
    description=(
        "`x = [[1], [2], [3]]`, `y = [[2], [4], [6]]`, `nn.Linear(1, 1)`, SGD with lr 0.05 for "
        "about 50 steps: the weight goes to 2 and the bias to 0.\n\n"
        "`reduction='sum'` (the old `size_average=False`) adds the squared errors, `'mean'` "
        "averages them (gradients three times smaller, so learning is slower at the same lr). "
        "`'none'` keeps one loss per point: a tensor of shape (3, 1), which `backward()` "
        "refuses (*grad can be implicitly created only for scalar outputs*). With `none` this "
        "scenario records each point's loss and then sums them itself before `backward()`."
    ),
    build=build,
    params=(
        ChoiceParam("reduction", "sum", ("sum", "mean", "none"), "how MSELoss reduces"),
        FloatParam("lr", 0.05, 1e-4, 0.07, "SGD learning rate (above 0.07 sum diverges)", log=True),
    ),
    steps=100,
    every=1,
)
