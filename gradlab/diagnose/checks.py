"""The debugger's checks, as one table: what each finds, in what order, and what silences it.

A check is a function ``find(ev) -> list[Finding]`` over one look's
:class:`~gradlab.diagnose.evidence.Evidence`, declared with :func:`check` in
the module that knows its reasons, the way :func:`gradlab.teach.derivatives.rule`
declares a chain-rule card::

    @check(kinds=("vanishing", "exploding", "saturated", "dead_relu"), family="scale",
           order=60, unless=("nonfinite", "loop"))
    def find(ev: Evidence) -> list[Finding]: ...

:data:`CHECKS` is the table, in ``order``; :func:`run_checks` walks it, and
:data:`gradlab.diagnose.finding.FAMILY` (each kind's family) is filled from it.

A cause is not repeated as its effects: the checks that find causes come
first, and a later check says which findings explain its own (``unless``: kinds
or families found before it; it then does not run) or which earlier findings
its own errors explain (``explains``: their ``cause``; they are then dropped).

Examples
--------
>>> from gradlab.diagnose.checks import CHECKS
>>> [(c.order, c.family) for c in CHECKS]  # doctest: +NORMALIZE_WHITESPACE
[(10, 'autograd_error'), (20, 'no_gradient'), (30, 'loop'), (40, 'nonfinite'),
 (50, 'shapes'), (60, 'scale'), (70, 'gradcheck')]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import get_args

from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import FAMILY, Family, Finding, Kind

Find = Callable[[Evidence], list[Finding]]


@dataclass(frozen=True)
class Check:
    """One registered check: the function, the kinds it reports and when it runs."""

    find: Find
    kinds: tuple[Kind, ...]
    family: Family
    order: int  # checks run, and their findings are listed, in this order
    unless: tuple[Kind | Family, ...] = ()  # found before it, these explain its effects
    explains: tuple[str, ...] = ()  # causes of earlier findings that its errors explain

    @property
    def name(self) -> str:
        """``module.function``, for messages."""
        return f"{self.find.__module__}.{self.find.__qualname__}"


#: Every check, in ``order``; filled as :mod:`gradlab.diagnose` imports the check modules.
CHECKS: list[Check] = []


def check(
    *,
    kinds: tuple[Kind, ...],
    family: Family,
    order: int,
    unless: tuple[Kind | Family, ...] = (),
    explains: tuple[str, ...] = (),
) -> Callable[[Find], Find]:
    """Register the decorated ``find`` as the check that reports ``kinds``, all of ``family``.

    Refused with a :class:`ValueError` naming the check when the module loads:
    a kind or family missing from the ``Kind``/``Family`` literals of
    :mod:`gradlab.diagnose.finding`, a kind another check reports, an order
    another check has, an ``unless`` that is no kind or family. Registering the
    same function again (a module reloaded) replaces it.
    """

    def register(find: Find) -> Find:
        entry = Check(find, tuple(kinds), family, order, tuple(unless), tuple(explains))
        others = [c for c in CHECKS if c.name != entry.name]
        _refuse_clashes(entry, others)
        CHECKS[:] = sorted([*others, entry], key=lambda c: c.order)
        FAMILY.clear()
        FAMILY.update({k: c.family for c in CHECKS for k in c.kinds})
        return find

    return register


def _refuse_clashes(entry: Check, others: list[Check]) -> None:
    kinds, families = get_args(Kind), get_args(Family)
    problems = [f"kind {k!r} is not in the Kind literal" for k in entry.kinds if k not in kinds]
    if entry.family not in families:
        problems.append(f"family {entry.family!r} is not in the Family literal")
    if not entry.kinds:
        problems.append("it names no kind")
    for other in others:
        problems += [f"kind {k!r} is {other.name}'s" for k in entry.kinds if k in other.kinds]
        if other.order == entry.order:
            problems.append(f"order {entry.order} is {other.name}'s")
    problems += [f"unless {u!r} is no kind or family" for u in entry.unless
                 if u not in kinds and u not in families]  # fmt: skip
    if problems:
        raise ValueError(f"@check on {entry.name}: " + "; ".join(problems) + ".")


def run_checks(ev: Evidence) -> list[Finding]:
    """Every check on one look's evidence, without repeating a cause as its effects."""
    found: list[Finding] = []
    for c in CHECKS:
        if any(f.kind in c.unless or f.family in c.unless for f in found):
            continue  # a finding before it explains what this check would report
        new = c.find(ev)
        if c.explains and any(f.severity == "error" for f in new):
            found = [f for f in found if f.cause not in c.explains]
        found += new
    return found
