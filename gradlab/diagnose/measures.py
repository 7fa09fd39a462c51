"""What the debugger measures besides its findings: optimizer steps and the gradient check.

Plain frozen records, below everything else in :mod:`gradlab.diagnose`:
:class:`~gradlab.diagnose.evidence.Evidence` holds them,
:class:`~gradlab.diagnose.loop.LoopWatch` and :mod:`gradlab.diagnose.gradcheck`
make them, the checks read them, and a :class:`~gradlab.diagnose.Report`
carries them to the page and across the worker's wire.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OptimizerStep:
    """One ``optimizer.step()`` the code made, as seen from outside.

    Not a training run's :class:`gradlab.train.records.StepRecord`, nor a step
    of the backward pass (:class:`gradlab.teach.steps.Step`).
    """

    loss: float | None  # the loss backward() last ran from, before this step
    grad_norm: float  # of the gradients the optimizer held
    moved: float  # norm of the change the step made to its parameters
    lr: float | None
    zeroed: bool | None = None  # gradients reset since the last step (None: not known)


@dataclass(frozen=True)
class Agreement:
    """How well autograd and finite differences agree for one leaf."""

    name: str
    node: str | None  # the leaf's id in the graph of the diagnosed loss
    checked: int  # entries compared
    worst: float  # max |autograd - numeric| / (atol + rtol * |numeric|): at most 1 agrees
    autograd: float  # at the worst entry
    numeric: float

    @property
    def ok(self) -> bool:
        """Whether every compared entry agreed."""
        return self.worst <= 1.0
