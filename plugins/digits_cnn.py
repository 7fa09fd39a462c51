"""The LeNet-like CNN on scikit-learn's bundled 8x8 digits: accuracy and confusion matrix."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from torch import nn

from gradlab.plugins import FloatParam, IntParam, Parts, Picture, Scenario, Setup
from gradlab.zoo.data import digits, split
from gradlab.zoo.models import LeNet


def build(setup: Setup) -> Parts:
    """LeNet with padding for 8x8 inputs, cross-entropy, SGD with momentum, mini-batches."""
    g = setup.generator
    images, labels = digits()
    (x_train, y_train), (x_test, y_test) = split(images, labels, 0.2, g)
    size = setup.integer("batch_size")
    order = torch.randperm(len(x_train), generator=g)
    batches = [
        (x_train[order[i : i + size]], y_train[order[i : i + size]])
        for i in range(0, len(x_train), size)
    ]
    model = LeNet(classes=10, size=8).to(setup.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=setup.number("lr"), momentum=setup.number("momentum")
    )
    x_test, y_test = x_test.to(setup.device), y_test.to(setup.device)

    def predictions() -> torch.Tensor:
        guesses: torch.Tensor = model(x_test).argmax(1)
        return guesses

    def evaluate() -> dict[str, float]:
        return {"accuracy": (predictions() == y_test).float().mean().item()}

    def illustrate() -> list[Picture]:
        counts = torch.zeros(10, 10, dtype=torch.long)
        flat = (y_test.cpu() * 10 + predictions().cpu()).bincount(minlength=100)
        counts += flat.reshape(10, 10)
        figure = go.Figure(
            go.Heatmap(
                z=counts.tolist(),
                x=list(range(10)),
                y=list(range(10)),
                colorscale="Blues",
                text=counts.tolist(),
                texttemplate="%{text}",
            )
        )
        figure.update_layout(
            xaxis_title="predicted", yaxis_title="true", yaxis_autorange="reversed", height=360
        )
        return [Picture("Confusion matrix (test set)", figure)]

    return Parts(
        model=model,
        batches=batches,
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=optimizer,
        evaluate=evaluate,
        evaluate_every=20,
        illustrate=illustrate,
    )


SCENARIO = Scenario(
    name="digits_cnn",
    title="Digits CNN",
    description=(
        "The classic LeNet-like network (conv 1->6, ReLU, pool, conv 6->16, ReLU, pool, "
        "linear 120 -> 84 -> 10), with padding 1 so that scikit-learn's bundled 8x8 "
        "handwritten digits (1,797 real images, no download) fit: 16 maps of 2x2 = 64 features "
        "reach the first linear layer. Cross-entropy, SGD with momentum; a fifth of the images "
        "is held out for the accuracy and the confusion matrix."
    ),
    build=build,
    params=(
        IntParam("batch_size", 64, 1, 1437, "images per step"),
        FloatParam("lr", 0.05, 1e-4, 1.0, "SGD learning rate", log=True),
        FloatParam("momentum", 0.9, 0.0, 0.99, "SGD momentum"),
    ),
    steps=300,
    every=10,
)
