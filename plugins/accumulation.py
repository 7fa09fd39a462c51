"""Gradient accumulation and checkpointing: the big batch's gradients, less memory."""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from gradlab.plugins import BoolParam, IntParam, Parts, Picture, Scenario, Setup, StepContext
from gradlab.zoo.data import points


class Deep(nn.Module):
    """An MLP whose hidden stack can run under ``torch.utils.checkpoint``."""

    def __init__(self, width: int, depth: int, checkpointed: bool) -> None:
        super().__init__()
        self.first = nn.Linear(2, width)
        self.hidden = nn.Sequential(
            *(m for _ in range(depth) for m in (nn.Linear(width, width), nn.Tanh()))
        )
        self.last = nn.Linear(width, 2)
        self.checkpointed = checkpointed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.first(x))  # (B, width)
        # Checkpointed, only the stack's input is kept; its activations are recomputed in backward.
        h = checkpoint(self.hidden, h, use_reentrant=False) if self.checkpointed else self.hidden(h)
        out: torch.Tensor = self.last(h)
        return out


def saved_bytes(fn: object) -> tuple[object, int]:
    """Call ``fn()`` and count the bytes autograd saves for backward meanwhile."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()  # type: ignore[operator]
    return out, total


def build(setup: Setup) -> Parts:
    """A deep MLP on moons; each step splits the batch into micro-batches."""
    x, y = points("moons", setup.integer("batch"), 0.1, setup.generator)
    model = Deep(64, setup.integer("depth"), setup.flag("checkpoint")).to(setup.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    parts_count = setup.integer("micro_batches")

    def step(ctx: StepContext) -> torch.Tensor:
        inputs, target = ctx.batch()
        params = [p for p in model.parameters()]
        # The reference: the whole batch at once, by autograd.grad (leaves .grad alone).
        full = torch.autograd.grad(loss_fn(model(inputs), target), params)
        optimizer.zero_grad()
        total = torch.zeros((), device=inputs.device)
        for i, (xs, ys) in enumerate(
            zip(inputs.chunk(parts_count), target.chunk(parts_count), strict=True)
        ):
            loss, saved = saved_bytes(
                lambda xs=xs, ys=ys: loss_fn(model(xs), ys) * len(xs) / len(inputs)
            )
            assert isinstance(loss, torch.Tensor)
            ctx.backward(loss, watch=i == 0)  # .grad adds up over the micro-batches
            total += loss.detach()
            if i == 0:
                ctx.log("saved_kib_per_micro_batch", saved / 1024)
        diff = max((p.grad - g).abs().max() for p, g in zip(params, full, strict=True))  # type: ignore[operator]
        ctx.log("max_grad_diff_vs_full_batch", diff)
        optimizer.step()
        return total

    def illustrate() -> list[Picture]:
        xs = x[: max(1, len(x) // parts_count)].to(setup.device)
        return [Picture("Saved for backward, one micro-batch", memory_figure(model, xs))]

    return Parts(
        model=model,
        batches=[(x, y)],
        loss_fn=loss_fn,
        optimizer=optimizer,
        step=step,
        illustrate=illustrate,
    )


def memory_figure(model: Deep, xs: torch.Tensor) -> go.Figure:
    """Bytes autograd saves for one forward, without and with checkpointing, side by side."""
    chosen = model.checkpointed
    kib = {}
    with torch.enable_grad():  # pictures are drawn under no_grad: nothing would be saved
        for label, flag in (("plain", False), ("checkpointed", True)):
            model.checkpointed = flag
            kib[label] = saved_bytes(lambda: model(xs))[1] / 1024
    model.checkpointed = chosen
    colours = ["#c0392b" if (label == "checkpointed") == chosen else "#95a5a6" for label in kib]
    figure = go.Figure(go.Bar(x=list(kib), y=list(kib.values()), marker_color=colours))
    figure.update_layout(yaxis_title="KiB saved for backward", height=300)
    return figure


SCENARIO = Scenario(
    name="accumulation",
    title="Gradient accumulation and checkpointing",
    description=(
        "Each step splits one batch into `micro_batches` parts and calls `backward()` on each, "
        "scaled by its share of the batch; `.grad` adds up and `optimizer.step()` runs once. "
        "The record's `max_grad_diff_vs_full_batch` compares the summed gradients with those "
        "of the whole batch at once (rounding only). With `checkpoint` on, the hidden stack runs "
        "under `torch.utils.checkpoint`: its activations are not saved but recomputed during "
        "backward, and `saved_kib_per_micro_batch` (bytes autograd saved for one micro-batch) "
        "drops; a bar chart shows both, side by side, for the model as it trains."
    ),
    build=build,
    params=(
        IntParam("batch", 256, 8, 8192, "examples in the big batch"),
        IntParam("micro_batches", 4, 1, 64, "parts the batch is split into"),
        IntParam("depth", 4, 1, 32, "hidden layers of 64 under the checkpoint"),
        BoolParam("checkpoint", False, "recompute the hidden activations during backward"),
    ),
    steps=60,
    every=10,
)
