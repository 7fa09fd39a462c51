"""Training scenarios as plugins: the protocol and discovery (typed parameters re-exported).

A plugin is one :class:`Scenario`: a name, a title, a description, typed
parameters (:class:`IntParam`, :class:`FloatParam`, :class:`ChoiceParam`,
:class:`BoolParam`, from :mod:`gradlab.train.params`) from which the app builds its form and
``gradlab train`` its flags, and a ``build`` function that makes the :class:`Parts` of a run for
a device: model, batches, loss, optimizer, optionally a learning-rate schedule,
a step of its own, an evaluation and pictures. The core
(:mod:`gradlab.train.loop`) owns the loop and every hook; a plugin never registers
one.

Where scenarios come from (:func:`discover`):

* the built-ins, one file each in the source checkout's ``plugins/`` folder or
  the installed wheel's ``gradlab_plugins`` folder, loaded by file path;
* third-party packages, through the entry-point group ``gradlab.plugins``
  (each entry point names a :class:`Scenario` object).

``GRADLAB_DISABLE_PLUGIN_AUTOLOAD=1`` stops third-party entry points from
loading by themselves; ``GRADLAB_PLUGINS=a,b`` loads only the plugins named
(built-in scenario names, which are their file names, or entry-point names), third-party ones
included even when autoloading is disabled. A plugin that fails to import or
breaks the protocol becomes a :class:`LoadError` naming it; the others load.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

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

    from gradlab.train.loop import StepContext

ENTRY_POINT_GROUP = "gradlab.plugins"
ENV_DISABLE_AUTOLOAD = "GRADLAB_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "GRADLAB_PLUGINS"
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


@dataclass(frozen=True)
class Parts:
    """What ``build`` makes for one run; live objects, on the setup's device.

    ``batches`` is iterated again when it runs out (an epoch); the core moves
    each batch to the device. The default step is ``optimizer.zero_grad()``,
    ``loss_fn(model(inputs), target)``, the core's backward, then
    ``optimizer.step()``. A scenario that needs its own (an LBFGS closure,
    gradient accumulation, several models) gives ``step``: it receives a
    :class:`gradlab.plugins.StepContext`, must call ``ctx.backward(loss)`` for
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


@dataclass(frozen=True)
class LoadError:
    """A plugin that could not be used: its name, where it came from, and why."""

    name: str
    source: str
    message: str


@dataclass(frozen=True)
class Plugins:
    """What :func:`discover` found: scenarios by name, where each came from, and failures."""

    scenarios: Mapping[str, Scenario]
    sources: Mapping[str, str]
    errors: tuple[LoadError, ...]

    def get(self, name: str) -> Scenario:
        """The scenario ``name``; a clear error lists the known ones and any load failure."""
        scenario = self.scenarios.get(name)
        if scenario is not None:
            return scenario
        failed = [e for e in self.errors if e.name == name]
        if failed:
            raise PluginError(f"The plugin '{name}' failed to load: {failed[0].message}")
        known = ", ".join(sorted(self.scenarios)) or "none"
        raise PluginError(f"Unknown scenario '{name}'. Installed scenarios: {known}.")


def discover(refresh: bool = False) -> Plugins:
    """Load the built-in scenarios and the installed plugins (cached per environment).

    Examples
    --------
    >>> plugins = discover()
    >>> plugins.get("linear_regression").title
    'Linear regression'
    """
    key = (os.environ.get(ENV_DISABLE_AUTOLOAD, ""), os.environ.get(ENV_PLUGINS, ""))
    if refresh:
        _discover.cache_clear()
    return _discover(key)


@functools.cache
def _discover(key: tuple[str, str]) -> Plugins:
    disabled, wanted_text = key
    wanted = {w.strip() for w in wanted_text.split(",") if w.strip()} or None
    autoload = disabled.strip().lower() not in ("1", "true", "yes")
    found: list[tuple[str, str, Callable[[], object]]] = []  # (name, source, loader)
    for path in builtin_files():
        if wanted is None or path.stem in wanted:
            found.append((path.stem, f"built-in {path.name}", functools.partial(_load_file, path)))
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if (autoload and wanted is None) or (wanted is not None and ep.name in wanted):
            dist = ep.dist.name if ep.dist is not None else "?"
            found.append((ep.name, f"entry point {ep.value} ({dist})", ep.load))
    scenarios: dict[str, Scenario] = {}
    sources: dict[str, str] = {}
    errors: list[LoadError] = []
    for name, source, load in found:
        try:
            scenario = check_scenario(load(), name)
        except Exception as exc:  # a broken plugin must not take the others down
            errors.append(LoadError(name, source, _describe(exc)))
            continue
        if scenario.name in scenarios:
            message = f"the name '{scenario.name}' is already taken by {sources[scenario.name]}"
            errors.append(LoadError(name, source, message))
            continue
        scenarios[scenario.name] = scenario
        sources[scenario.name] = source
    names = {n for n, _, _ in found} | set(scenarios)
    for missing in sorted((wanted or set()) - names):
        errors.append(
            LoadError(missing, ENV_PLUGINS, "no built-in or installed plugin has this name")
        )
    return Plugins(scenarios, sources, tuple(errors))


def builtin_files() -> list[Path]:
    """The built-in scenario files: the checkout's ``plugins/``, else the wheel's
    ``gradlab_plugins/`` (found without importing it)."""
    root = Path(__file__).resolve().parents[1]  # the checkout, or site-packages
    is_checkout = (root / "pyproject.toml").is_file() and (root / "plugins").is_dir()
    folder: Path | None = root / "plugins" if is_checkout else None
    if folder is None:
        spec = importlib.util.find_spec("gradlab_plugins")
        if spec is not None and spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations)))
    if folder is None:
        return []
    return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))


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


def _load_file(path: Path) -> object:
    """Import a built-in scenario file by path and return its ``SCENARIO``."""
    module_name = f"gradlab_plugins.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    if not hasattr(module, "SCENARIO"):
        raise PluginError(f"{path.name} defines no SCENARIO")
    return module.SCENARIO


def _describe(exc: BaseException) -> str:
    """One line: the exception, and the plugin's own line that raised it when there is one."""
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    own = [f for f in frames if "importlib" not in f.filename and f.filename != __file__]
    if own and not isinstance(exc, PluginError):
        text += f" ({Path(own[-1].filename).name}, line {own[-1].lineno})"
    return text


__all__ = [
    "ENTRY_POINT_GROUP",
    "ENV_DISABLE_AUTOLOAD",
    "ENV_PLUGINS",
    "PROCESSES",
    "Batch",
    "BoolParam",
    "ChoiceParam",
    "FloatParam",
    "IntParam",
    "LoadError",
    "Param",
    "ParamValue",
    "Parts",
    "Picture",
    "PluginError",
    "Plugins",
    "Scenario",
    "Setup",
    "check_scenario",
    "describe_params",
    "discover",
    "flag",
    "to_flags",
]
