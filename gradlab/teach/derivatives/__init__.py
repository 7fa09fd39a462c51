"""The local derivative rules of PyTorch's autograd ops, as text and as torch code.

One :data:`Builder` per autograd class name (``"MulBackward0"``) turns the
facts of one node (:class:`Facts`: its saved scalar arguments, input shapes,
module) into a :class:`Spec`: the forward formula and one :class:`Term` per
input slot. Formulas are templates over *roles*: ``{g}`` is the incoming
gradient (∂L/∂output), the op's output and inputs have roles of their own
(``{z}``, ``{a}``, ``{b}``). :mod:`gradlab.teach.chain` writes the roles as symbols
(or the tensors' names) for the formula, and as numbers for the plugged-in
line, and runs each term's ``compute`` on the stored values to check it
against what the engine sent.

The rules follow PyTorch's own (``tools/autograd/derivatives.yaml``) but are
written out here from the mathematics, with plain torch operations; the tests
compare every one with the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from gradlab.core.graph import Arg
from gradlab.core.text import number

#: Stored values by role; a missing role raises :class:`Missing`.
Values = Mapping[str, torch.Tensor]
Compute = Callable[[Values], torch.Tensor]


class Missing(KeyError):
    """A value a rule needs is not known (not recorded, too big to keep, or not saved)."""


class Known(dict[str, torch.Tensor]):
    """Values by role, raising :class:`Missing` for a role not known."""

    def __missing__(self, key: str) -> torch.Tensor:
        raise Missing(key)


@dataclass(frozen=True)
class Term:
    """The rule for one input slot: ``∂L/∂<input> = rhs``."""

    slot: int
    rhs: str  # template over roles: "{g} ⊙ {b}"
    compute: Compute | None = None  # the rhs in torch, from the values by role


@dataclass(frozen=True)
class Derived:
    """A value the rules need that is not an input or output: a mask, a target, indices."""

    role: str
    how: str  # where it comes from, shown in the card's note
    compute: Compute


@dataclass(frozen=True)
class Spec:
    """What a card says about one op."""

    title: str  # "Multiply"
    forward: str  # template: "{z} = {a} ⊙ {b}"
    roles: tuple[str, ...]  # role of each input slot, in slot order
    out: str  # role of the output
    terms: tuple[Term, ...]
    note: str = ""
    derived: tuple[Derived, ...] = ()
    symbols: Mapping[str, str] = field(default_factory=dict)  # role -> default symbol


@dataclass(frozen=True)
class Facts:
    """What a builder may read of one op node."""

    op: str
    args: Mapping[str, Any]  # the node's ``args`` (JSON values: each builder knows its own)
    slots: frozenset[int]  # input slots that have a producer in the graph
    shapes: Mapping[int, list[int]]  # input shape per slot, where known
    out_shape: list[int] | None
    module_type: str | None
    saved: Mapping[str, torch.Tensor]  # saved tensors kept in the graph (show_saved=True)
    inputs: Mapping[int, str]  # op name of the producer per slot


Builder = Callable[[Facts], Spec]
RULES: dict[str, Builder] = {}


def rule(*ops: str) -> Callable[[Builder], Builder]:
    """Register a builder for the autograd classes ``ops``."""

    def register(build: Builder) -> Builder:
        for op in ops:
            RULES[op] = build
        return build

    return register


def num(x: object) -> str:
    """A scalar argument as formula text: ``2``, ``0.1``, ``-1``."""
    if isinstance(x, list):
        return "(" + ", ".join(num(v) for v in x) + ")"
    if isinstance(x, float) and x == int(x) and abs(x) < 1e6:
        return str(int(x))
    return number(x) if isinstance(x, int | float) else str(x)


def saved(facts: Facts, attr: str, role: str, what: str) -> tuple[Derived, ...]:
    """A saved tensor as a derived value, when the graph kept it."""
    t = facts.saved.get(attr)
    if t is None:
        return ()
    return (Derived(role, f"{role}: {what}, saved by the op", lambda v: t),)


def dims(value: Arg | None, ndim: int) -> list[int]:
    """Reduction dims as non-negative ints (``None`` or ``[]``: every dim)."""
    if value is None or value == []:
        return list(range(ndim))
    items = value if isinstance(value, list) else [value]
    return sorted(int(d) % ndim for d in items)  # type: ignore[arg-type]


def _load() -> None:
    from gradlab.teach.derivatives import (  # noqa: F401  (they register their rules)
        elementwise,
        layers,
        reductions,
        tensors,
    )


_load()
