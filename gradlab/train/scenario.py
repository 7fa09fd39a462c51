"""The plugin contract: what a training scenario is, what it builds and what its step may use.

A plugin is one :class:`Scenario`: a name, a title, a description, typed
parameters (:class:`IntParam`, :class:`FloatParam`, :class:`ChoiceParam`,
:class:`BoolParam`, from :mod:`gradlab.train.params`) from which the app builds its form and
``gradlab train`` its flags, and a ``build`` function that makes the :class:`Parts` of a run
from a :class:`Setup` (the checked values, the device, the seed, the rank):
model, batches, loss, optimizer, optionally a learning-rate schedule, a step
of its own (a function of a :class:`StepContext`), an evaluation and
pictures. :func:`check_scenario` says what a scenario that breaks the
contract gets wrong. The core (:mod:`gradlab.train.loop`) owns the loop and
every hook; a plugin never registers one.

This module is the whole contract and imports nothing of the loop; where
scenarios come from (the built-ins, entry points) is
:mod:`gradlab.train.discover`. Plugin authors import all of it from
:mod:`gradlab.plugins`.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeAlias

import torch
from torch import nn

from gradlab.train.params import (
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    Param,
    ParamValue,
    PluginError,
    describe_params,
    flag,
    param_problems,
    to_flags,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

#: The int parameter a distributed scenario must declare: how many processes torchrun starts.
PROCESSES = "processes"

Batch: TypeAlias = tuple[torch.Tensor, torch.Tensor]  # (inputs, target)
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class Setup:
    """What ``build`` gets: checked parameter values, the device, the seed, the process's rank.

    ``generator`` is seeded with ``seed``: draw data, shuffles and
    initialisations after ``build`` from it, so that runs side by side in one
    process stay repeatable. (The global generator is also seeded, under a
    lock, while ``build`` runs: layers may initialise from it.)
    """

    params: Mapping[str, ParamValue]
    device: torch.device
    seed: int
    generator: torch.Generator
    rank: int = 0
    world_size: int = 1

    def integer(self, name: str) -> int:
        """An int parameter's value."""
        value = self.params[name]
        assert isinstance(value, int) and not isinstance(value, bool), name
        return value

    def number(self, name: str) -> float:
        """A float parameter's value."""
        value = self.params[name]
        assert isinstance(value, int | float) and not isinstance(value, bool), name
        return float(value)

    def choice(self, name: str) -> str:
        """A choice parameter's value."""
        value = self.params[name]
        assert isinstance(value, str), name
        return value

    def flag(self, name: str) -> bool:
        """A bool parameter's value."""
        value = self.params[name]
        assert isinstance(value, bool), name
        return value


@dataclass(frozen=True)
class Picture:
    """A scenario's own view of the run (a fitted line, a decision boundary): a Plotly figure."""

    title: str
    figure: go.Figure


class StepContext(Protocol):
    """What a scenario's own ``step`` may use: batches, the loss, the core's backward, metrics.

    The core hands one to :attr:`Parts.step` every step. The step takes its
    batches with :meth:`batch`, calls :meth:`backward` for every backward pass
    (the first watched one of a captured step is captured), may :meth:`log`
    metrics, steps the optimizer itself and returns the step's loss.
    """

    @property
    def parts(self) -> Parts:
        """The run's parts, as ``build`` made them."""

    @property
    def device(self) -> torch.device:
        """The device the run trains on."""

    @property
    def step(self) -> int:
        """This step's index, from 0."""

    @property
    def captured(self) -> bool:
        """Whether this step's first watched backward is captured."""

    @property
    def samples(self) -> int:
        """How many samples this step's batches have held so far."""

    def batch(self) -> Batch:
        """The next ``(inputs, target)`` batch on the device (the data repeat as epochs)."""

    def loss(self, batch: Batch) -> torch.Tensor:
        """``loss_fn(model(inputs), target)``."""

    def backward(self, loss: torch.Tensor, *, watch: bool = True) -> None:
        """``loss.backward()``; on a captured step the first call with ``watch`` is captured."""

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """Add a metric to this step's record; tensors leave the device with the loss."""


@dataclass(frozen=True)
class Parts:
    """What ``build`` makes for one run; live objects, on the setup's device.

    ``batches`` is iterated again when it runs out (an epoch); the core moves
    each batch to the device. The default step is ``optimizer.zero_grad()``,
    ``loss_fn(model(inputs), target)``, the core's backward, then
    ``optimizer.step()``. A scenario that needs its own (an LBFGS closure,
    gradient accumulation, several models) gives ``step``: it receives a
    :class:`StepContext`, must call ``ctx.backward(loss)`` for
    every backward pass, steps the optimizer itself and returns the step's
    loss. The core steps ``scheduler`` after every step. ``evaluate`` returns
    metrics (accuracy, ...) and runs every ``evaluate_every`` steps and after
    the last; ``illustrate`` returns pictures for the app, drawn at most
    twice a second.
    """

    model: nn.Module
    batches: Iterable[Batch]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    step: Callable[[StepContext], torch.Tensor] | None = None
    evaluate: Callable[[], Mapping[str, float]] | None = None
    evaluate_every: int = 10
    illustrate: Callable[[], Sequence[Picture]] | None = None


@dataclass(frozen=True)
class Scenario:
    """One training scenario: the whole plugin protocol.

    ``name`` is lowercase letters, digits and underscores (``gradlab train
    NAME``); ``description`` is Markdown. ``steps`` and ``every`` suggest the
    run length and the capture interval. A ``distributed`` scenario runs in
    several processes launched with ``torchrun`` and must declare an
    :class:`IntParam` named ``"processes"``; ``build`` then gets each
    process's rank and the process group is already initialised.
    """

    name: str
    title: str
    description: str
    build: Callable[[Setup], Parts]
    params: tuple[Param, ...] = ()
    steps: int = 100
    every: int = 1
    distributed: bool = False
    param_by_name: Mapping[str, Param] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "param_by_name", {p.name: p for p in self.params})

    def resolve(self, given: Mapping[str, object] | None = None) -> dict[str, ParamValue]:
        """Every parameter's value: ``given`` ones checked, the rest their defaults."""
        given = dict(given or {})
        unknown = sorted(set(given) - set(self.param_by_name))
        if unknown:
            known = ", ".join(self.param_by_name) or "none"
            raise PluginError(
                f"Scenario '{self.name}' has no parameter {', '.join(unknown)}. Its parameters: "
                f"{known}."
            )
        return {
            p.name: p.check(given[p.name]) if p.name in given else p.default for p in self.params
        }


def check_scenario(obj: object, plugin: str) -> Scenario:
    """``obj`` if it keeps the protocol, else a :class:`PluginError` naming what is wrong."""
    if not isinstance(obj, Scenario):
        raise PluginError(
            f"plugin '{plugin}' gave a {type(obj).__name__}, not a gradlab.plugins.Scenario"
        )
    problems: list[str] = []
    if not _NAME.match(obj.name):
        problems.append(f"name {obj.name!r} is not lowercase letters, digits and underscores")
    if not obj.title.strip():
        problems.append("the title is empty")
    if not callable(obj.build) or not _takes_one_argument(obj.build):
        problems.append("build must be a function taking one argument (a Setup)")
    if obj.steps < 1 or obj.every < 0:
        problems.append("steps must be at least 1 and every at least 0")
    problems += param_problems(obj.params)
    if obj.distributed and not isinstance(obj.param_by_name.get(PROCESSES), IntParam):
        problems.append(f"a distributed scenario needs an IntParam named '{PROCESSES}'")
    if problems:
        raise PluginError(
            f"scenario '{obj.name}' breaks the plugin protocol: {'; '.join(problems)}"
        )
    return obj


def _takes_one_argument(func: Callable[..., object]) -> bool:
    try:
        inspect.signature(func).bind(None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True



__all__ = [
    "PROCESSES",
    "Batch",
    "BoolParam",
    "ChoiceParam",
    "FloatParam",
    "IntParam",
    "Param",
    "ParamValue",
    "Parts",
    "Picture",
    "PluginError",
    "Scenario",
    "Setup",
    "StepContext",
    "check_scenario",
    "describe_params",
    "flag",
    "to_flags",
]
