"""What the debugger reports: a :class:`Finding`, pinned to graph nodes, with the fix."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

Severity: TypeAlias = Literal["error", "warning", "info"]
Family: TypeAlias = Literal[
    "no_gradient", "nonfinite", "scale", "loop", "shapes", "autograd_error", "gradcheck"
]
# The kinds as a type, for mypy. Each is reported by one check, declared with
# @check(kinds=...) in gradlab/diagnose/checks.py's table; a test checks the two agree.
Kind: TypeAlias = Literal[
    # 1. no gradient
    "no_gradient",  # a parameter or input that requires grad received none
    "frozen",  # parameters with requires_grad=False (info: fine when fine-tuning)
    # 2. NaN / Inf
    "nonfinite_forward",  # the first op, in forward order, that produced a NaN or an Inf
    "nonfinite_backward",  # the first op, in backward order, that sent a NaN or an Inf
    # 3. scale
    "vanishing",
    "exploding",
    "saturated",  # sigmoid / tanh outputs stuck near their limits
    "dead_relu",
    # 4. training loop, across steps
    "missing_zero_grad",
    "lr_too_high",
    "not_in_optimizer",
    "loss_flat",  # from step records alone: the loss does not move
    # 5. silent shape traps
    "broadcast_loss",
    "wrong_loss_input",  # CrossEntropyLoss fed probabilities, and relatives
    # 6. autograd errors as lessons
    "autograd_error",
    # 7. gradient check
    "gradcheck",
]

#: Each kind's family, in the order the checks run: filled by
#: :func:`gradlab.diagnose.checks.check` from the kinds each check declares.
FAMILY: dict[Kind, Family] = {}

_RANK: dict[Severity, int] = {"error": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One problem: what, how bad, where on the graph, why, and the fix.

    ``nodes`` are ids of :func:`gradlab.trace`'s graph of the same loss
    (``"fn12"``, ``"leaf3"``), the first one where the problem starts; empty
    when the problem has no node (an unused parameter is not in the graph).
    ``where`` names the place for a person (a parameter, a module, an op).
    ``cause`` is a short machine-readable reason within the kind (``"detach"``,
    ``"log"``, or for autograd errors the :func:`gradlab.teach.explain` kind).
    """

    kind: Kind
    severity: Severity
    nodes: tuple[str, ...]
    title: str
    explanation: str
    fix: str
    where: str = ""
    cause: str = ""

    @property
    def family(self) -> Family:
        """Which of the seven families of problems this finding belongs to."""
        return FAMILY[self.kind]


def by_severity(findings: Iterable[Finding]) -> list[Finding]:
    """Errors first, then warnings, then notes; the order within a severity is kept."""
    return sorted(findings, key=lambda f: _RANK[f.severity])


def worst(findings: Iterable[Finding]) -> Severity | None:
    """The most severe level among ``findings``; ``None`` when there are none."""
    levels = sorted((f.severity for f in findings), key=_RANK.__getitem__)
    return levels[0] if levels else None
