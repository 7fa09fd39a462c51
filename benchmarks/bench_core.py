"""Core costs on the 1,000-layer MLP (5,001 autograd nodes), as ratios to baselines.

Run: python benchmarks/bench_core.py [--depth 1000] [--repeat 15]

Every subject and its baseline are timed in the same run, interleaved, and the
table shows medians. Ratios matter, not absolute times: the machine may be
shared.

* trace: ``gradlab.trace`` with shapes, names and module paths (a recorded
  forward, ``values=False``) against a bare walk of ``next_functions`` that
  builds a networkx graph with op names only, and against torchviz's
  ``make_dot`` (recursion limit raised); the names come from ``model=`` (found
  by walking the model on every call) and, in a second line, from the same
  ``params=`` dict torchviz is given; ``trace`` with value summaries too.
* capture: forward + ``gradlab.backward`` (every node's gradient and step, every
  edge's gradient) against a plain forward + ``backward()``; the capture needs a
  traced graph, so the line with trace counts that as well.
* record: a forward inside ``gradlab.record()`` against a plain forward, on the
  MLP and on models whose ops do more work (LeNet on 64 images, the ResNet-18-like
  CNN on 16, a 4-layer transformer encoder on 8 x 32 tokens).
* floors, the machinery each design stands on, with GradLab's own work left out:
  a post-hook on every node that only keeps what it is given (capture), an empty
  ``TorchDispatchMode`` and the global module hooks alone (record).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import torch
from timing import bare_walk, compare, timed
from torch.nn.modules import module as nn_module
from torch.utils._python_dispatch import TorchDispatchMode

import gradlab
from gradlab.core.walk import walk as gradlab_walk
from gradlab.zoo import models
from gradlab.zoo.models import mlp


class _EmptyMode(TorchDispatchMode):  # type: ignore[misc]
    """Calls every op and does nothing else: the floor of a dispatch-mode recorder."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        return func(*args, **(kwargs or {}))


def hooked_step(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Forward + backward with a post-hook on every node that keeps what it is given."""
    out = model(x).sum()
    fns, _ = gradlab_walk([out.grad_fn])
    kept: list[object] = []
    handles = [fn.register_hook(lambda sent, got: kept.append((sent, got))) for fn in fns]
    out.backward()
    for handle in handles:
        handle.remove()


def module_hooks_forward(model: torch.nn.Module, x: torch.Tensor) -> None:
    """A forward with a global forward pre-hook and forward hook that do nothing."""
    handles = [
        nn_module.register_module_forward_pre_hook(lambda m, a: None),
        nn_module.register_module_forward_hook(lambda m, a, o: None, always_call=True),
    ]
    try:
        model(x)
    finally:
        for handle in handles:
            handle.remove()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    sys.setrecursionlimit(100_000)  # torchviz walks recursively
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torchviz

    torch.manual_seed(0)
    model = mlp(args.depth, args.width, inputs=args.width)
    x = torch.randn(args.batch, args.width)
    params = dict(model.named_parameters())
    with gradlab.record():
        recorded = model(x).sum()
    nodes = len(gradlab.op_nodes(gradlab.trace(recorded, values=False)))

    def plain_step() -> None:
        model(x).sum().backward()

    def captured_step() -> None:
        out = model(x).sum()
        gradlab.backward(out, gradlab.trace(out, values=False))

    def capture_only() -> float:
        """Forward and the capturing backward, without the trace between them."""
        start = time.perf_counter()
        out = model(x).sum()
        forward_done = time.perf_counter()
        G = gradlab.trace(out, values=False)
        backward_start = time.perf_counter()
        gradlab.backward(out, G)
        return forward_done - start + time.perf_counter() - backward_start

    def forward() -> None:
        model(x)

    def recorded_forward() -> None:
        with gradlab.record():
            model(x)

    trace = compare(
        {
            "bare walk": timed(lambda: bare_walk(recorded)),
            "trace (shapes, names, modules)": timed(
                lambda: gradlab.trace(recorded, model=model, values=False)
            ),
            "the same, names from params= as torchviz": timed(
                lambda: gradlab.trace(recorded, params=params, values=False)
            ),
            "trace with value summaries": timed(lambda: gradlab.trace(recorded, model=model)),
            "torchviz make_dot": timed(lambda: torchviz.make_dot(recorded, params=params)),
        },
        args.repeat,
    )
    capture = compare(
        {
            "plain forward + backward": timed(plain_step),
            "forward + backward with capture": capture_only,
            "forward + trace + backward with capture": timed(captured_step),
        },
        args.repeat,
    )
    record = compare(
        {"plain forward": timed(forward), "forward inside record()": timed(recorded_forward)},
        args.repeat,
    )

    def empty_mode_forward() -> None:
        with _EmptyMode():
            model(x)

    floors = compare(
        {
            "plain forward + backward": timed(plain_step),
            "a post-hook on every node": timed(lambda: hooked_step(model, x)),
            "plain forward": timed(forward),
            "an empty TorchDispatchMode": timed(empty_mode_forward),
            "global module hooks alone": timed(lambda: module_hooks_forward(model, x)),
        },
        args.repeat,
    )
    working = {
        "LeNet, batch 64": (models.LeNet(), torch.randn(64, 1, 32, 32)),
        "ResNet-18-like, batch 16": (models.ResNet(width=16), torch.randn(16, 3, 32, 32)),
        "transformer, 4 layers, 8 x 32 tokens": (
            models.TransformerEncoder(4, 128, heads=4),
            torch.randn(8, 32, 128),
        ),
    }
    record_work = {name: _record_ratio(m, b, args.repeat) for name, (m, b) in working.items()}

    print(
        f"MLP {args.depth} layers x {args.width} wide, batch {args.batch}: {nodes} autograd nodes"
    )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, medians of {args.repeat}\n"
    )
    rows = [
        ("trace", trace, "bare walk"),
        ("capture", capture, "plain forward + backward"),
        ("record", record, "plain forward"),
    ]
    print(f"{'measure':<42} {'ms':>9} {'ratio':>7}")
    for title, table, baseline in rows:
        print(f"-- {title}")
        for name, (seconds, _) in table.items():
            ratio = seconds / table[baseline][0]
            print(f"{name:<42} {seconds * 1000:9.1f} {ratio:6.2f}x")
    print("-- floors (capture: against plain forward + backward; record: against plain forward)")
    for name, (seconds, _) in floors.items():
        base = (
            "plain forward + backward" if name == "a post-hook on every node" else "plain forward"
        )
        if name.startswith("plain"):
            continue
        print(f"{name:<42} {seconds * 1000:9.1f} {seconds / floors[base][0]:6.2f}x")
    print("-- record on models whose ops do more work (forward inside record() / plain)")
    for name, (plain_s, ratio) in record_work.items():
        print(f"{name:<42} {plain_s * 1000:9.1f} {ratio:6.2f}x")


def _record_ratio(model: torch.nn.Module, batch: torch.Tensor, repeat: int) -> tuple[float, float]:
    """(plain forward seconds, forward inside record() / plain forward) for one model."""

    def recorded() -> None:
        with gradlab.record():
            model(batch)

    table = compare({"plain": timed(lambda: model(batch)), "record": timed(recorded)}, repeat)
    return table["plain"][0], table["record"][0] / table["plain"][0]


if __name__ == "__main__":
    main()
