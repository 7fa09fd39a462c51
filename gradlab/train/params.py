"""Typed parameters of a training scenario: checked values, command-line flags, help lines.

The app builds a scenario's form and ``gradlab train`` its flags from these
declarations; :meth:`check` keeps a value in range and :meth:`parse` reads
one from the command line, both with a message that says what is allowed.
:func:`param_field` says, once for both, how a parameter is offered: its kind,
label, bounds, increment, choices, default and help (the page and the CLI
only map it onto a widget or a flag).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from gradlab.core.errors import GradLabError

ParamValue: TypeAlias = int | float | str | bool
ParamKind: TypeAlias = Literal["int", "float", "choice", "bool"]


class PluginError(GradLabError):
    """A parameter value or a plugin does not fit the protocol."""


@dataclass(frozen=True)
class IntParam:
    """An integer between ``low`` and ``high`` (inclusive)."""

    name: str
    default: int
    low: int
    high: int
    help: str = ""
    kind: ClassVar[ParamKind] = "int"

    def check(self, value: object) -> int:
        """``value`` as an int in range, or a :class:`PluginError` that says why not."""
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise PluginError(f"{self.name} must be a whole number, not {value!r}.")
        number = int(value)
        if not self.low <= number <= self.high:
            raise PluginError(
                f"{self.name} must be between {self.low} and {self.high}; got {number}."
            )
        return number

    def parse(self, text: str) -> int:
        """Read a command-line value."""
        try:
            return self.check(int(text))
        except ValueError:
            raise PluginError(f"{self.name} must be a whole number, not '{text}'.") from None


@dataclass(frozen=True)
class FloatParam:
    """A real number between ``low`` and ``high``; ``log`` suggests a log-scale control."""

    name: str
    default: float
    low: float
    high: float
    help: str = ""
    log: bool = False
    kind: ClassVar[ParamKind] = "float"

    def check(self, value: object) -> float:
        """``value`` as a finite float in range, or a :class:`PluginError`."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise PluginError(f"{self.name} must be a number, not {value!r}.")
        number = float(value)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            raise PluginError(
                f"{self.name} must be between {self.low} and {self.high}; got {value}."
            )
        return number

    def parse(self, text: str) -> float:
        """Read a command-line value."""
        try:
            return self.check(float(text))
        except ValueError:
            raise PluginError(f"{self.name} must be a number, not '{text}'.") from None


@dataclass(frozen=True)
class ChoiceParam:
    """One of a few strings."""

    name: str
    default: str
    choices: tuple[str, ...]
    help: str = ""
    kind: ClassVar[ParamKind] = "choice"

    def check(self, value: object) -> str:
        """``value`` if it is one of the choices, else a :class:`PluginError` listing them."""
        if value not in self.choices:
            raise PluginError(
                f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}."
            )
        return str(value)

    def parse(self, text: str) -> str:
        """Read a command-line value."""
        return self.check(text)


@dataclass(frozen=True)
class BoolParam:
    """On or off."""

    name: str
    default: bool
    help: str = ""
    kind: ClassVar[ParamKind] = "bool"

    def check(self, value: object) -> bool:
        """``value`` if it is a bool, else a :class:`PluginError`."""
        if not isinstance(value, bool):
            raise PluginError(f"{self.name} must be true or false, not {value!r}.")
        return value

    def parse(self, text: str) -> bool:
        """Read ``true/false``, ``yes/no``, ``on/off`` or ``1/0``."""
        word = text.strip().lower()
        if word in ("true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
        raise PluginError(f"{self.name} must be true or false, not '{text}'.")


Param: TypeAlias = IntParam | FloatParam | ChoiceParam | BoolParam


def param_problems(params: Sequence[object]) -> list[str]:
    """What is wrong with a list of parameter declarations (empty when all is well)."""
    problems: list[str] = []
    seen: set[str] = set()
    for p in params:
        if not isinstance(p, IntParam | FloatParam | ChoiceParam | BoolParam):
            problems.append(
                f"parameter {p!r} is not an IntParam, FloatParam, ChoiceParam or BoolParam"
            )
            continue
        if not p.name.isidentifier() or p.name in seen:
            problems.append(f"parameter name {p.name!r} is not a unique identifier")
        seen.add(p.name)
        if isinstance(p, IntParam | FloatParam) and p.low > p.high:
            problems.append(f"parameter {p.name}: low {p.low} is above high {p.high}")
        if isinstance(p, ChoiceParam) and not p.choices:
            problems.append(f"parameter {p.name} has no choices")
        try:
            p.check(p.default)
        except PluginError as exc:
            problems.append(f"default of {exc}")
    return problems


def flag(param: Param) -> str:
    """The command-line flag of a parameter: ``batch_size`` is ``--batch-size``."""
    return "--" + param.name.replace("_", "-")


def to_flags(params: Iterable[Param], values: Mapping[str, ParamValue]) -> list[str]:
    """``values`` as command-line arguments that :meth:`IntParam.parse` and the others read."""
    args: list[str] = []
    for p in params:
        value = values[p.name]
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        args += [flag(p), text]
    return args


def describe_params(params: Iterable[Param]) -> list[str]:
    """One line per parameter for help texts: ``lr (float, 0.0001..10, default 0.1): ...``."""
    return [param_field(p).summary for p in params]


@dataclass(frozen=True)
class ParamField:
    """How a form or a command line offers one parameter: what a widget or a flag needs.

    ``kind`` picks the control: a number box (``int``, ``float``) from ``low``
    to ``high`` in steps of ``step``, shown with the printf ``format``
    (``None``: the control's own), a choice among ``choices``, or a checkbox.
    ``metavar`` and ``summary`` are the flag's placeholder and help line in
    ``gradlab train NAME --help``.
    """

    name: str
    label: str  # "batch size"
    flag: str  # "--batch-size"
    kind: ParamKind
    default: ParamValue  # a float parameter's as a float
    help: str
    metavar: str  # INT, NUMBER, {a,b}, {true,false}
    summary: str  # "lr (float, 0.0001..10, default 0.1): step size"
    low: int | float | None = None
    high: int | float | None = None
    step: int | float | None = None
    format: str | None = None
    choices: tuple[str, ...] = ()


def param_field(p: Param) -> ParamField:
    """What a form control or a command-line flag needs to offer ``p``.

    A float's number box steps by a tenth of its default (0.1 when the default is 0).

    Examples
    --------
    >>> f = param_field(FloatParam("lr", 0.1, 1e-4, 2.0, "step size", log=True))
    >>> f.kind, f.label, f.flag, f.low, f.high, f.step, f.metavar
    ('float', 'lr', '--lr', 0.0001, 2.0, 0.01, 'NUMBER')
    >>> f.summary
    'lr (float, 0.0001..2.0, default 0.1): step size'
    >>> param_field(ChoiceParam("data_set", "moons", ("moons", "xor"))).metavar
    '{moons,xor}'
    """
    label, summary = p.name.replace("_", " "), _summary(p)
    if isinstance(p, IntParam):
        return ParamField(
            p.name, label, flag(p), p.kind, p.default, p.help, "INT", summary,
            low=p.low, high=p.high, step=1,
        )  # fmt: skip
    if isinstance(p, FloatParam):
        return ParamField(
            p.name, label, flag(p), p.kind, float(p.default), p.help, "NUMBER", summary,
            low=float(p.low), high=float(p.high), step=p.default / 10 if p.default else 0.1,
            format="%g",
        )  # fmt: skip
    if isinstance(p, ChoiceParam):
        metavar = "{" + ",".join(p.choices) + "}"
        return ParamField(
            p.name, label, flag(p), p.kind, p.default, p.help, metavar, summary, choices=p.choices
        )
    return ParamField(p.name, label, flag(p), p.kind, p.default, p.help, "{true,false}", summary)


def _summary(p: Param) -> str:
    if isinstance(p, IntParam | FloatParam):
        what = f"{p.kind}, {p.low}..{p.high}"
    elif isinstance(p, ChoiceParam):
        what = " | ".join(p.choices)
    else:
        what = "true | false"
    return f"{p.name} ({what}, default {p.default}){': ' + p.help if p.help else ''}"
