"""Finding 4: training-loop mistakes that only show across steps.

:class:`LoopWatch` watches every ``optimizer.step()`` its thread makes inside
it (global optimizer hooks, installed once, that look for a watch of the
calling thread): the loss that ``backward()`` last ran from
(read from a :class:`~gradlab.diagnose.observe.CallWatch` log), the norm of the
gradients the optimizer holds, and how far the step moved its parameters.
:func:`find` reads those steps:

* gradients that grow at every step: ``zero_grad()`` is missing, so each
  ``backward()`` adds to the last one's gradients;
* a loss that grows tenfold or turns non-finite: the learning rate is too high;
* model parameters that get gradients but are in no optimizer (they never
  move), or a loss that does not move at all.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Sequence
from typing import Any

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding, Severity
from gradlab.diagnose.measures import OptimizerStep
from gradlab.diagnose.observe import Call, CallWatch

MIN_STEPS = 4
GROWTH = 3.0  # last gradient norm over the first, growing at every step
DIVERGE = 10.0  # last loss over the first


_local = threading.local()
_install = threading.Lock()
_installed = False


def _on_pre(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    watch: LoopWatch | None = getattr(_local, "watch", None)
    if watch is not None:
        watch._pre(optimizer)


def _on_post(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    watch: LoopWatch | None = getattr(_local, "watch", None)
    if watch is not None:
        watch._post(optimizer)


def _install_hooks() -> None:
    # Installed once and kept: another thread may be iterating the global hook
    # dict inside optimizer.step(), so it is never changed again. Each call
    # looks for a watch of its own thread.
    global _installed
    with _install:
        if not _installed:
            register_optimizer_step_pre_hook(_on_pre)
            register_optimizer_step_post_hook(_on_post)
            _installed = True


class LoopWatch:
    """Record every optimizer step this thread makes inside the ``with`` block."""

    def __init__(self, calls: CallWatch | None = None) -> None:
        self.steps: list[OptimizerStep] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self._calls = calls
        self._seen = 0  # calls already read for backward()
        self._mark = 0  # where the previous step's calls begin in the log
        self._loss: float | None = None
        self._before: list[torch.Tensor] = []
        self._grad = 0.0
        self._zeroed: bool | None = None
        self._outer: LoopWatch | None = None

    def __enter__(self) -> LoopWatch:
        _install_hooks()
        self._outer = getattr(_local, "watch", None)
        _local.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.watch = self._outer

    def _params(self, optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
        return [p for group in optimizer.param_groups for p in group["params"]]

    def _pre(self, optimizer: torch.optim.Optimizer) -> None:
        if all(o is not optimizer for o in self.optimizers):
            self.optimizers.append(optimizer)
        with torch.no_grad():
            params = self._params(optimizer)
            grads = [p.grad for p in params if p.grad is not None]
            self._grad = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads))
            self._before = [p.detach().clone() for p in params]
        self._loss, self._zeroed = self._since_last_step()

    def _post(self, optimizer: torch.optim.Optimizer) -> None:
        if not self._before:
            return
        with torch.no_grad():
            params = self._params(optimizer)
            moved = math.sqrt(sum(
                float((p.detach() - b).double().pow(2).sum())
                for p, b in zip(params, self._before, strict=True)
            ))  # fmt: skip
        lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
        self._before = []
        rate = float(lr) if lr is not None else None
        self.steps.append(OptimizerStep(self._loss, self._grad, moved, rate, self._zeroed))

    def _since_last_step(self) -> tuple[float | None, bool | None]:
        """The loss backward() last ran from, and whether gradients were reset meanwhile.

        The log then forgets what came before the previous step: a long training
        loop keeps about two steps of calls (enough for the last step's checks),
        not every activation it ever made.
        """
        if self._calls is None:
            return None, None
        calls = self._calls.calls
        start = self._seen  # this step's calls begin here
        found, zeroed = None, False
        for call in calls[start:]:
            if call.name == "backward" and call.args and isinstance(call.args[0], torch.Tensor):
                root = call.args[0]
                if root.numel() == 1:
                    found = float(root.detach())
            zeroed = zeroed or _resets(call)
        del calls[: self._mark]  # everything before the previous step's calls
        self._mark = start - self._mark
        self._seen = len(calls)
        return (found if found is not None else self._loss), zeroed


_GRAD = torch.Tensor.grad


def _resets(call: Call) -> bool:
    """optimizer.zero_grad() (its profiler label), or ``p.grad = None`` (module.zero_grad())."""
    if call.name == "_record_function_enter_new" and call.args:
        return str(call.args[0]).startswith("Optimizer.zero_grad")
    return call.name == "__set__" and getattr(call.func, "__self__", None) is _GRAD


def steps_of_run(records: Sequence[Any]) -> list[OptimizerStep]:
    """Steps from a training run's :class:`gradlab.train.records.StepRecord` list.

    The gradient norm and the move are known on captured steps only (``nan``
    elsewhere); the move is the change of the parameters' norms, a lower bound.
    The trainer resets gradients itself, so ``zeroed`` is not known.
    """
    steps: list[OptimizerStep] = []
    before: dict[str, float] = {}
    for record in records:
        grads = [p.grad_norm for p in record.params if p.grad_norm is not None]
        norm = math.sqrt(sum(g * g for g in grads)) if record.params else math.nan
        now = {p.name: p.norm for p in record.params}
        moved = (
            math.sqrt(sum((now[n] - before[n]) ** 2 for n in now if n in before))
            if now and before else math.nan
        )  # fmt: skip
        before = now or before
        steps.append(OptimizerStep(float(record.loss), norm, moved, float(record.lr)))
    return steps


@check(
    kinds=("missing_zero_grad", "lr_too_high", "not_in_optimizer", "loss_flat"),
    family="loop", order=30,
)  # fmt: skip
def find(ev: Evidence) -> list[Finding]:
    """Findings across the recorded steps; none when the code raised or made under MIN_STEPS."""
    steps: list[OptimizerStep] = ev.steps
    if ev.error is not None or len(steps) < MIN_STEPS:
        return []
    outside = _outside_optimizer(ev)
    if outside:
        return [outside]
    nodes = _held_nodes(ev)
    grads = [s.grad_norm for s in steps]
    if all(s.zeroed is False for s in steps[1:]):  # the call log saw no reset at all
        return [_zero_grad(grads, nodes)]
    losses = [s.loss for s in steps if s.loss is not None]
    if len(losses) >= MIN_STEPS:
        first, last = losses[0], losses[-1]
        if math.isfinite(first) and (not math.isfinite(last) or last > DIVERGE * max(first, 1e-12)):
            return [_diverges(steps, losses, nodes)]
        if max(losses) - min(losses) <= 1e-9 * max(abs(first), 1.0):
            return [_flat(steps, losses, nodes)]
    known = [g for g in grads if math.isfinite(g)]
    growing = len(known) >= MIN_STEPS and all(b > a * 1.01 for a, b in itertools.pairwise(known))
    unknown = any(s.zeroed is None for s in steps[1:])  # no call log: growth is the only sign
    if unknown and growing and known[0] > 0 and known[-1] / known[0] >= GROWTH:
        return [_zero_grad(known, nodes)]
    return []


def _held_nodes(ev: Evidence) -> tuple[str, ...]:
    """The leaves of the parameters the optimizers hold, as nodes of the loss's graph."""
    held = [p for o in ev.optimizers for g in o.param_groups for p in g["params"]]
    return tuple(n for p in held if (n := ev.index.tensor(p)) is not None)[:8]


def _outside_optimizer(ev: Evidence) -> Finding | None:
    if ev.model is None or not ev.optimizers:
        return None
    held = {id(p) for o in ev.optimizers for g in o.param_groups for p in g["params"]}
    names = [
        n for n, p in ev.model.named_parameters()
        if p.requires_grad and p.grad is not None and id(p) not in held
    ]  # fmt: skip
    if not names:
        return None
    params = dict(ev.model.named_parameters())
    nodes = tuple(n for name in names if (n := ev.index.tensor(params[name])) is not None)
    losses = [s.loss for s in ev.steps if s.loss is not None]
    trend = f" The loss went {losses[0]:.4g} → {losses[-1]:.4g}." if losses else ""
    every = "None of the model's parameters are" if len(names) == len(params) else (
        f"{len(names)} of the model's {len(params)} parameters are not")  # fmt: skip
    return Finding(
        "not_in_optimizer", "error", nodes[:8],
        "Parameters that get gradients but are in no optimizer",
        f"{every} in the optimizer: {', '.join(f'`{n}`' for n in names[:6])}. backward() "
        f"computes their gradients, but optimizer.step() never changes them.{trend}",
        "Build the optimizer from the model you train: torch.optim.SGD(model.parameters(), "
        "lr=...); add new layers' parameters with optimizer.add_param_group.",
        ", ".join(names), "missing",
    )  # fmt: skip


def _zero_grad(grads: list[float], nodes: tuple[str, ...]) -> Finding:
    shown = ", ".join(f"{g:.3g}" for g in grads[:6])
    return Finding(
        "missing_zero_grad", "warning", nodes,
        "Gradients keep growing: zero_grad() is missing",
        f"No gradient was reset between any of the {len(grads)} optimizer steps, and the "
        f"gradient norm went {shown}, … {grads[-1]:.3g}. backward() adds to .grad; without "
        "optimizer.zero_grad() each step's gradient is the sum of all the steps so far, and the "
        "updates grow with it.",
        "Call optimizer.zero_grad() before loss.backward() in every step (or after "
        "optimizer.step()).",
        "optimizer.step()", "accumulating",
    )  # fmt: skip


def _diverges(steps: list[OptimizerStep], losses: list[float], nodes: tuple[str, ...]) -> Finding:
    lr = steps[0].lr
    shown = ", ".join(f"{v:.3g}" for v in losses[:5])
    severity: Severity = "warning" if math.isfinite(losses[-1]) else "error"
    return Finding(
        "lr_too_high", severity, nodes,
        "The loss diverges: the learning rate is too high",
        f"The loss grew from {losses[0]:.4g} to {losses[-1]:.4g} over {len(losses)} steps "
        f"({shown}, …) with lr={lr}. Each step jumps past the minimum and lands higher up the "
        "other side, so the steps grow.",
        f"Lower the learning rate (try lr={lr / 10 if lr else 0.01:g}), normalise the inputs, "
        "or clip the gradients.",
        "optimizer", "diverging",
    )  # fmt: skip


def _flat(steps: list[OptimizerStep], losses: list[float], nodes: tuple[str, ...]) -> Finding:
    moved = max((s.moved for s in steps if math.isfinite(s.moved)), default=0.0)
    why = "the steps did not move the parameters" if moved == 0 else "the loss ignored the steps"
    return Finding(
        "loss_flat", "warning", nodes,
        "The loss does not move",
        f"The loss stayed at {losses[0]:.6g} for {len(losses)} steps: {why} (lr={steps[0].lr}).",
        "Check that the optimizer holds the model's parameters and that lr > 0.",
        "optimizer", "flat",
    )  # fmt: skip
