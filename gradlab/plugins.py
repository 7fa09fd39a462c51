"""Everything a training scenario needs, in one import.

A plugin is one :class:`Scenario`: a name, a title, a description, typed
parameters (:class:`IntParam`, :class:`FloatParam`, :class:`ChoiceParam`,
:class:`BoolParam`) from which the app builds its form and ``gradlab train``
its flags, and a ``build`` function that makes the :class:`Parts` of a run
from a :class:`Setup`: model, batches, loss, optimizer, optionally a
learning-rate schedule, a ``step`` of its own (a function of a
:class:`StepContext`), an evaluation and pictures. GradLab owns the loop and
every hook; a plugin never registers one. A package publishes scenarios
through the entry-point group ``gradlab.plugins``; :func:`discover` finds
them, with the built-ins.

The contract is :mod:`gradlab.train.scenario`, one file (with the typed
parameters of :mod:`gradlab.train.params`); discovery is
:mod:`gradlab.train.discover`. This module is the door plugins use (the
built-in ones too): :class:`StepContext` is a Protocol, what a step may use.
"""

from gradlab.train.discover import (
    ENTRY_POINT_GROUP,
    ENV_DISABLE_AUTOLOAD,
    ENV_PLUGINS,
    LoadError,
    Plugins,
    discover,
)
from gradlab.train.scenario import (
    PROCESSES,
    Batch,
    BoolParam,
    ChoiceParam,
    FloatParam,
    IntParam,
    Param,
    ParamValue,
    Parts,
    Picture,
    PluginError,
    Scenario,
    Setup,
    StepContext,
    check_scenario,
    describe_params,
    flag,
    to_flags,
)

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
    "StepContext",
    "check_scenario",
    "describe_params",
    "discover",
    "flag",
    "to_flags",
]
