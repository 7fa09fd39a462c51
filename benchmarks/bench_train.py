"""Training-step cost of GradLab's loop with capture, as ratios to a plain PyTorch loop.

Run: python benchmarks/bench_train.py [--rounds 15] [--block 10] [--device cpu]

For each model the same optimizer, data and seed drive three loops, timed in
the same run and interleaved round by round (medians of ``--rounds`` rounds):

* plain: ``zero_grad``, forward, loss, ``backward()``, ``step()`` and
  ``loss.item()`` (the loss a loop logs every step);
* gradlab, capture every step: :class:`gradlab.train.Trainer` with
  ``every=1``: every node's gradient norm, every parameter's norm, mean and
  gradient norm, moved to the host in one transfer with the loss;
* gradlab, capture every 10th step: ``every=10``.

One round is ``--block`` steps (one captured step in ten for ``every=10``), so
each ratio is a cost per step. The first captured step also records the
forward and traces the graph once; that happens during warm-up and is not
timed. On the CPU the clock is this thread's CPU time (one torch thread), so
other work on a shared machine counts less; ratios matter, not absolute times.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from gradlab.plugins import Parts, Scenario, Setup
from gradlab.train import Trainer, configure
from gradlab.zoo.models import LeNet, TransformerEncoder

Model = Callable[[], tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]]


def lenet() -> tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]:
    """The classic LeNet-like CNN on 32x32 inputs, a batch of 16, cross-entropy."""
    return (
        LeNet(10, 32),
        torch.randn(16, 1, 32, 32),
        torch.randint(0, 10, (16,)),
        nn.CrossEntropyLoss(),
    )


class Regressor(nn.Module):
    """An 8-layer transformer encoder (d_model 64, 4 heads) with a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = TransformerEncoder(layers=8, d_model=64, heads=4, dropout=0.0)
        self.head = nn.Linear(64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.encoder(x))  # (B, T, 1)
        return out


def transformer() -> tuple[nn.Module, torch.Tensor, torch.Tensor, nn.Module]:
    """The encoder on a batch of 8 sequences of 32 tokens, mean-squared error."""
    return Regressor(), torch.randn(8, 32, 64), torch.randn(8, 32, 1), nn.MSELoss()


MODELS: dict[str, Model] = {"LeNet-like CNN": lenet, "Transformer encoder, 8 layers": transformer}


def plain_loop(make: Model, device: torch.device) -> Callable[[], None]:
    """One step of the loop everyone writes."""
    torch.manual_seed(0)
    model, x, y, loss_fn = make()
    model.to(device)
    x, y = x.to(device), y.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()

    return step


def gradlab_loop(make: Model, device: torch.device, every: int) -> Callable[[], None]:
    """One step of GradLab's loop on the same model, data and optimizer."""

    def build(setup: Setup) -> Parts:
        model, x, y, loss_fn = make()
        model.to(setup.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        return Parts(model, [(x, y)], loss_fn, optimizer)

    scenario = Scenario("bench", "Benchmark", "", build)
    trainer = Trainer(scenario, configure(scenario, steps=10**6, every=every, device=str(device)))

    def step() -> None:
        trainer.step()

    return step


def timed_block(step: Callable[[], None], block: int, device: torch.device) -> Callable[[], float]:
    """Seconds per step over ``block`` steps."""

    # On the CPU with one torch thread every op runs in this thread, so its CPU time is the
    # step's cost without the time other processes of a shared machine take; a GPU needs
    # wall time (and a synchronize).
    clock = time.perf_counter if device.type == "cuda" else time.thread_time

    def run() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = clock()
        for _ in range(block):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (clock() - start) / block

    return run


def measure(make: Model, device: torch.device, rounds: int, block: int) -> dict[str, float]:
    """Median seconds per step of the three loops, interleaved."""
    cases = {
        "plain": timed_block(plain_loop(make, device), block, device),
        "every step": timed_block(gradlab_loop(make, device, 1), block, device),
        "every 10th": timed_block(gradlab_loop(make, device, 10), block, device),
    }
    for run in cases.values():
        run()  # warm up: the first captured step traces the graph
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, run in cases.items():
            gc.collect()
            samples[name].append(run())
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--block", type=int, default=10, help="steps per timing (keep 10)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)  # one thread: steadier timings on a shared machine
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device}, {torch.get_num_threads()} threads\n")
    print("| model | plain step | capture every step | capture every 10th step |")
    print("|---|---|---|---|")
    for name, make in MODELS.items():
        t = measure(make, device, args.rounds, args.block)
        plain = t["plain"]
        print(
            f"| {name} | {plain * 1e3:.2f} ms | {t['every step'] / plain:.2f}x "
            f"({t['every step'] * 1e3:.2f} ms) | {t['every 10th'] / plain:.2f}x "
            f"({t['every 10th'] * 1e3:.2f} ms) |"
        )


if __name__ == "__main__":
    main()
