"""Training: one loop that steps a scenario and captures its gradients.

:mod:`gradlab.train.scenario` is the plugin contract (a :class:`Scenario`
builds :class:`Parts` from a :class:`Setup`; its step may use a
:class:`StepContext`; its knobs are the params of :mod:`gradlab.train.params`),
:mod:`gradlab.train.discover` finds the scenarios; :mod:`gradlab.train.loop` steps one
(:func:`train`, :class:`Trainer`), capturing per-node gradient norms through
:mod:`gradlab.core`; :mod:`gradlab.train.background` runs it in a thread for
the app, :mod:`gradlab.train.launch` under ``torchrun``; every step becomes a
:class:`~gradlab.train.records.StepRecord` kept by the
:class:`~gradlab.train.store.RunStore`. Plugin authors import from
:mod:`gradlab.plugins`; ``from gradlab.train import train`` stays the
script's door.
"""

from gradlab.train.loop import (
    Trainer,
    TrainingError,
    TrainResult,
    check_device,
    configure,
    devices,
    drive,
    train,
)
from gradlab.train.records import RunConfig, RunInfo, StepRecord
from gradlab.train.scenario import StepContext
from gradlab.train.store import RunStore

__all__ = [
    "RunConfig",
    "RunInfo",
    "RunStore",
    "StepContext",
    "StepRecord",
    "TrainResult",
    "Trainer",
    "TrainingError",
    "check_device",
    "configure",
    "devices",
    "drive",
    "train",
]
