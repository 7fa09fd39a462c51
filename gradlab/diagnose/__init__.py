"""The graph debugger: why a gradient is None, NaN, vanishing or exploding.

:func:`diagnose` looks at a model with a batch, a function returning a loss,
a tensor program or a traced graph, and returns :class:`Finding` records,
errors first, each pinned to the node of ``gradlab.trace(loss)`` where the
problem starts, with a plain explanation and the fix. :func:`examine` returns
the same findings with the graph they point into, the gradient along the
depth and the gradient check, for drawing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gradlab.core._gc import paused_gc
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph

# Importing a check module registers its check (gradlab.diagnose.checks.CHECKS).
from gradlab.diagnose import gradcheck as _gradcheck
from gradlab.diagnose import gradients, lessons, loop, nonfinite, scale, shapes  # noqa: F401
from gradlab.diagnose.checks import run_checks
from gradlab.diagnose.evidence import Evidence, NodeIndex
from gradlab.diagnose.finding import FAMILY, Finding, Kind, Severity, by_severity, worst
from gradlab.diagnose.look import look_callable, look_graph, look_model, look_program
from gradlab.diagnose.loop import LoopWatch
from gradlab.diagnose.measures import Agreement, OptimizerStep
from gradlab.diagnose.scale import Layer
from gradlab.train.records import StepRecord
from gradlab.zoo.presets import Case

__all__ = [
    "FAMILY",
    "Agreement",
    "Finding",
    "Kind",
    "Layer",
    "LoopWatch",
    "OptimizerStep",
    "Report",
    "Severity",
    "Step",
    "by_severity",
    "diagnose",
    "examine",
    "run_checks",
    "worst",
]

#: The old name of :class:`OptimizerStep`, kept for code that imports it.
Step = OptimizerStep


@dataclass(frozen=True)
class Report:
    """What :func:`examine` found, and the graph its findings point into."""

    findings: tuple[Finding, ...]
    graph: Graph | None = None
    layers: tuple[Layer, ...] = ()  # gradient RMS along the depth, input side first
    agreements: tuple[Agreement, ...] = ()  # the gradient check, when asked for
    steps: tuple[OptimizerStep, ...] = ()  # optimizer steps the code made


def diagnose(
    subject: Any,
    batch: Any = None,
    *,
    target: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    gradcheck: bool = False,
    seed: int = 0,
) -> list[Finding]:
    """Find why gradients are None, NaN, vanishing or exploding; errors first.

    ``subject`` is one of: an ``nn.Module`` with ``batch`` (its input) and
    ``loss_fn(output, target)`` (without ``loss_fn`` the output is the loss);
    a :class:`gradlab.zoo.presets.Case`; a function taking no arguments that
    returns the loss or ``(model, loss)`` and may train for some steps; the
    source of a tensor program (run by the safe interpreter); a graph from
    :func:`gradlab.trace` (facts only: the NaN checks); or a training run (a
    :func:`gradlab.train.train` result or its ``StepRecord`` list: the loop
    checks). The model's ``.grad`` are left holding this batch's gradients.
    ``gradcheck`` also compares autograd with finite differences (models only).

    Examples
    --------
    >>> import torch, gradlab
    >>> [f.kind for f in gradlab.diagnose("x = torch.tensor([0., 1.], requires_grad=True)\\n"
    ...                                  "x.log().sum().backward()")]
    ['nonfinite_forward']
    """
    _, findings = _look_and_check(subject, batch, target, loss_fn, gradcheck, False, seed)
    return by_severity(findings)


def examine(
    subject: Any,
    batch: Any = None,
    *,
    target: Any = None,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    gradcheck: bool = False,
    graph: bool = False,
    seed: int = 0,
) -> Report:
    """:func:`diagnose`, with the graph (``graph=True``: values and gradients on every node)."""
    ev, findings = _look_and_check(subject, batch, target, loss_fn, gradcheck, graph, seed)
    return Report(
        tuple(by_severity(findings)),
        ev.graph,
        tuple(scale.profile(ev)),
        tuple(ev.agreements),
        tuple(ev.steps),
    )


def _look_and_check(
    subject: Any, batch: Any, target: Any, loss_fn: Any, gradcheck: bool, graph: bool, seed: int
) -> tuple[Evidence, list[Finding]]:
    look = _looker(subject, batch, target, loss_fn, seed)
    ev = look(graph)
    with paused_gc():  # the checks make many small objects and no garbage cycles
        findings = run_checks(ev)
    if not graph and _needs_deep_look(ev, findings):
        ev = look(True)
        with paused_gc():
            findings = run_checks(ev)
    if gradcheck:  # compared on the last look only; its check is the last one
        ev.agreements = _check(subject, batch, target, loss_fn, ev)
        findings += _gradcheck.find(ev)
    return ev, findings


def _needs_deep_look(ev: Evidence, findings: list[Finding]) -> bool:
    """A finite loss with non-finite gradients whose start the light look could not find."""
    if ev.error is not None or any(f.family == "nonfinite" for f in findings):
        return False
    return nonfinite.loss_is_finite(ev) and not nonfinite.grads_are_finite(ev)


def _looker(
    subject: Any, batch: Any, target: Any, loss_fn: Any, seed: int
) -> Callable[[bool], Evidence]:
    if isinstance(subject, Case):
        case = subject
        return lambda deep: look_model(
            case.model, case.inputs, case.target, case.loss_fn, deep=deep, seed=seed
        )
    if isinstance(subject, nn.Module):
        module = subject
        if batch is None:
            raise GradLabError("diagnose(model, batch): give the model a batch of inputs.")
        return lambda deep: look_model(module, batch, target, loss_fn, deep=deep, seed=seed)
    records = _run_records(subject)
    if records is not None:
        G = getattr(subject, "graph", None)
        return lambda deep: Evidence(steps=loop.steps_of_run(records), graph=G)
    if isinstance(subject, str):
        source = subject
        return lambda deep: look_program(source)
    if isinstance(subject, Graph):  # type: ignore[misc]
        G = subject
        return lambda deep: look_graph(G)
    if callable(subject):
        func = subject
        return lambda deep: look_callable(func, deep=deep, seed=seed)
    raise GradLabError(
        f"diagnose() cannot look at a {type(subject).__name__}: give it a model and a batch, "
        "a function returning the loss, a program's source or a traced graph."
    )


def _run_records(subject: Any) -> list[Any] | None:
    """A training run's step records: a ``TrainResult``, or a list of ``StepRecord``."""
    records = getattr(subject, "records", subject)
    if (
        isinstance(records, list | tuple)
        and records
        and all(isinstance(r, StepRecord) for r in records)
    ):
        return list(records)
    return None


def _check(subject: Any, batch: Any, target: Any, loss_fn: Any, ev: Evidence) -> list[Agreement]:
    if isinstance(subject, Case):
        subject, batch, target, loss_fn = subject.model, subject.inputs, subject.target, (
            subject.loss_fn)  # fmt: skip
    if not isinstance(subject, nn.Module):
        raise GradLabError("The gradient check needs a model and a batch: diagnose(model, x, ...).")
    index = ev.index if ev.loss is not None else NodeIndex()
    nodes = {n: index.tensor(p) for n, p in subject.named_parameters()}
    return _gradcheck.check_model(subject, batch, target, loss_fn, nodes)
