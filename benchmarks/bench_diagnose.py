"""What diagnosing costs, as ratios to a training step and to a plain forward + backward.

Run: python benchmarks/bench_diagnose.py [--layers 12] [--repeat 15]

Every subject and its baseline are timed in the same run, interleaved, and the
table shows medians and the best of the runs (the least disturbed on a shared
machine). Ratios matter, not absolute times.

* diagnose: ``gradlab.diagnose(model, x, target=y, loss_fn=mse)`` on a healthy
  12-layer transformer encoder whose traced graph has about 1,000 nodes, against
  one training step on it (zero_grad, forward, loss, backward, SGD step); a plain
  forward + backward, anomaly mode's, and ``examine(graph=True)`` (what the
  Debugger page draws: values and gradients on every node) alongside.
* first NaN: the same encoder with ``log(relu(x))`` after its middle layer
  (log 0 = -inf). ``gradlab.diagnose`` names the op and the range of its
  inputs; the baseline is a plain forward + backward, and PyTorch's anomaly mode
  (``detect_anomaly(check_nan=True)``, which raises naming the backward op)
  is timed alongside. With NaN and inf flowing through attention, PyTorch's own
  forward + backward is many times slower than on the healthy model, and anomaly
  mode can come out cheaper than the plain pass: it raises at the first NaN of the
  backward pass and skips the rest.
* backward NaN: ``torch.where`` masking ``sqrt`` of negatives in the same place
  (finite loss, NaN gradient). The light look's backward pass keeps the graph;
  a second pass over the layer where the gradient went bad finds the node. That
  pass alone is timed both ways: gradient edges in one ``autograd.grad`` call
  (what ``gradlab.diagnose`` uses) and a Python hook on each of its nodes.
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable
from typing import Any

import torch
from timing import compare, timed
from torch import nn
from torch.nn import functional as F

import gradlab
from gradlab.diagnose import examine, nonfinite
from gradlab.diagnose.look import look_model
from gradlab.zoo.models import TransformerEncoder


class LogOf(nn.Module):
    """log of the ReLU of its input (zeros give -inf).

    ``masked``: ``where(x > 0, sqrt(x), 0)`` instead, finite in forward, but the
    masked entries still send ``0 / (2 sqrt(x)) = NaN`` back through sqrt.
    """

    def __init__(self, masked: bool) -> None:
        super().__init__()
        self.masked = masked

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.masked:
            return torch.where(x > 0, torch.sqrt(x), torch.zeros_like(x))
        return torch.log(torch.relu(x))


class Poisoned(nn.Module):
    """The encoder with a :class:`LogOf` after its middle layer."""

    def __init__(self, encoder: TransformerEncoder, masked: bool) -> None:
        super().__init__()
        self.layers = encoder.layers
        self.log = LogOf(masked)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)  # (B, T, d_model)
            if i == len(self.layers) // 2:
                x = self.log(x)
        return x


def encoder(layers: int, d_model: int) -> TransformerEncoder:
    """A healthy encoder: fixed seed, dropout on as in training."""
    torch.manual_seed(0)
    return TransformerEncoder(layers, d_model, heads=4)


Rows = list[tuple[str, dict[str, tuple[float, float]], str]]


def plain(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """A plain forward and backward, the baseline of the NaN rows."""

    def run() -> None:
        m.zero_grad()
        F.mse_loss(m(x), y).backward()

    return run


def anomaly(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """PyTorch's anomaly mode over the same pass; it raises at the first NaN of backward."""

    def run() -> None:
        m.zero_grad()
        with warnings.catch_warnings():  # anomaly mode prints the forward's traceback
            warnings.simplefilter("ignore")
            try:
                with torch.autograd.detect_anomaly(check_nan=True):
                    F.mse_loss(m(x), y).backward()
            except RuntimeError:
                pass  # "Function 'SqrtBackward0' returned nan values in its 0th output."

    return run


def healthy_rows(layers: int, d_model: int, shape: tuple[int, int], repeat: int) -> Rows:
    """Diagnosing the healthy encoder, against one training step on it."""
    model = encoder(layers, d_model)
    x, y = torch.randn(*shape, d_model), torch.randn(*shape, d_model)  # (B, T, C)
    loss_fn = nn.MSELoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4)
    assert gradlab.diagnose(model, x, target=y, loss_fn=loss_fn) == []  # healthy: silent

    def train_step() -> None:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()

    clean = compare(
        {
            "one training step": timed(train_step),
            "plain forward + backward": timed(plain(model, x, y)),
            "anomaly mode forward + backward": timed(anomaly(model, x, y)),
            "gradlab.diagnose": timed(
                lambda: gradlab.diagnose(model, x, target=y, loss_fn=loss_fn)
            ),
            "examine(graph=True), for the page": timed(
                lambda: examine(model, x, target=y, loss_fn=loss_fn, graph=True)
            ),
        },
        repeat,
    )
    return [("healthy model", clean, "one training step")]


def nan_rows(layers: int, d_model: int, shape: tuple[int, int], repeat: int) -> Rows:
    """Finding the first NaN, made in forward and only in backward."""
    x, y = torch.randn(*shape, d_model), torch.randn(*shape, d_model)  # (B, T, C)
    loss_fn = nn.MSELoss()

    def first_nan(masked: bool, expected: tuple[str, str], label: str) -> tuple[Any, ...]:
        """The poisoned encoder, and its diagnosis timed against the plain and anomaly passes."""
        model = Poisoned(encoder(layers, d_model), masked=masked)
        (finding,) = gradlab.diagnose(model, x, target=y, loss_fn=loss_fn)
        assert (finding.kind, finding.cause) == expected, finding
        table = compare(
            {
                "plain forward + backward": timed(plain(model, x, y)),
                label: timed(lambda: gradlab.diagnose(model, x, target=y, loss_fn=loss_fn)),
                "anomaly mode forward + backward": timed(anomaly(model, x, y)),
            },
            repeat,
        )
        return model, finding, table

    _, _, forward_nan = first_nan(
        False, ("nonfinite_forward", "log"), "gradlab.diagnose: first NaN"
    )
    masked, finding, backward_nan = first_nan(
        True, ("nonfinite_backward", "sqrt"), "gradlab.diagnose: first NaN in backward"
    )

    ev = look_model(masked, x, y, loss_fn)
    region = nonfinite._region(ev)
    assert region is not None
    assert nonfinite._pass(ev, *region) == nonfinite._hooked_pass(ev, *region) == finding
    passes = compare(
        {
            "plain forward + backward": timed(plain(masked, x, y)),
            "second pass, gradient edges (used)": timed(lambda: nonfinite._pass(ev, *region)),
            "second pass, a hook on each of its nodes": timed(
                lambda: nonfinite._hooked_pass(ev, *region)
            ),
        },
        repeat,
    )
    return [
        ("NaN made in forward (log 0)", forward_nan, "plain forward + backward"),
        ("NaN only in backward (where + sqrt)", backward_nan, "plain forward + backward"),
        ("its second pass alone", passes, "plain forward + backward"),
    ]


def show(title: str, rows: Rows) -> None:
    print(f"\n{title}")
    print(f"{'measure':<44} {'median ms':>10} {'ratio':>7} {'best ms':>8} {'ratio':>7}")
    for heading, table, baseline in rows:
        print(f"-- {heading}")
        base_median, base_best = table[baseline]
        for name, (median, best) in table.items():
            print(
                f"{name:<44} {median * 1000:10.1f} {median / base_median:6.2f}x "
                f"{best * 1000:8.1f} {best / base_best:6.2f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: "
                        "steadier on a shared machine)")  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    toy = (2, 8)  # (batch, tokens): the ops are tiny, so Python's share is the largest
    work = (8, 32)
    model = encoder(args.layers, args.d_model)
    x = torch.randn(*toy, args.d_model)
    nodes = gradlab.trace(F.mse_loss(model(x), x), model=model, values=False).number_of_nodes()
    print(f"Transformer encoder, {args.layers} layers, d_model {args.d_model}: {nodes} graph nodes")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeat}")
    show(
        f"batch {toy[0]} x {toy[1]} tokens",
        healthy_rows(args.layers, args.d_model, toy, args.repeat)
        + nan_rows(args.layers, args.d_model, toy, args.repeat),
    )
    show(
        f"batch {work[0]} x {work[1]} tokens, d_model {4 * args.d_model}",
        nan_rows(args.layers, 4 * args.d_model, work, args.repeat),
    )


if __name__ == "__main__":
    main()
