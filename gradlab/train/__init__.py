"""Training: one driver that steps a scenario, captures its gradients and hands on each step.

:mod:`gradlab.train.scenario` is the plugin contract (a :class:`Scenario`
builds :class:`Parts` from a :class:`Setup`; its step may use a
:class:`StepContext`; its knobs are the params of :mod:`gradlab.train.params`),
and :mod:`gradlab.train.discover` finds the scenarios.
:mod:`gradlab.train.loop` steps one (:class:`Trainer`), capturing per-node
gradient norms through :mod:`gradlab.core`; :mod:`gradlab.train.driver` is
the one driver (:func:`drive`, :func:`train`) that steps it to the end and
hands every :class:`~gradlab.train.records.StepRecord` to sinks
(:mod:`gradlab.train.sinks`: the :class:`~gradlab.train.store.RunStore`, a
stream, a callback, memory), steered by :mod:`gradlab.train.controls`. It
runs in a thread for the app (:mod:`gradlab.train.background`), and each rank
of a ``torchrun`` launch (:mod:`gradlab.train.launch`) runs it too. Plugin
authors import from :mod:`gradlab.plugins`; ``from gradlab.train import
train`` stays the script's door.
"""

from gradlab.train.controls import Controls, Lease, Outcome
from gradlab.train.driver import TrainResult, drive, train
from gradlab.train.loop import (
    MAX_LIVE_STEPS,
    MAX_STEPS,
    Trainer,
    TrainingError,
    check_device,
    configure,
    devices,
)
from gradlab.train.records import RunConfig, RunInfo, StepRecord
from gradlab.train.scenario import StepContext
from gradlab.train.sinks import Sink
from gradlab.train.store import RunStore

__all__ = [
    "MAX_LIVE_STEPS",
    "MAX_STEPS",
    "Controls",
    "Lease",
    "Outcome",
    "RunConfig",
    "RunInfo",
    "RunStore",
    "Sink",
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
