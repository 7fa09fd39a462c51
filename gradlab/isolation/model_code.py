"""Trusted mode's child side: run pasted model code in the worker and make its facts.

The server side (:mod:`gradlab.isolation.trusted`) sends the code to a forked,
sandboxed worker child (:mod:`gradlab.isolation.worker`), which calls
:func:`execute` here: the code runs as real Python under :data:`FILENAME`, must
define ``model`` and ``x`` (and may define ``loss``), and the child replies
with facts only, a :class:`Reply` holding the
:class:`~gradlab.core.memory.ModelRun` (``task="inspect"``, the Model graph
page) or the debugger's :class:`~gradlab.diagnose.Report`
(``task="diagnose"``). Errors become a message naming the line of the code.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from gradlab.core.errors import GradLabError, out_of_memory
from gradlab.core.memory import ModelRun, inspect_model
from gradlab.diagnose import Report, examine

#: The name pasted code runs under; tracebacks show it.
FILENAME = "<model code>"

Status = Literal["ok", "error", "timeout", "memory", "cancelled", "crashed"]
#: What the child does with the model: the Model graph page's facts, or the debugger's report.
Task = Literal["inspect", "diagnose"]

EXAMPLE = """\
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.out = nn.Linear(8, 1)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(x)))


model = Net()               # required: an nn.Module
x = torch.randn(16, 4)      # required: the input batch (or a tuple of inputs)
loss = lambda out: out.pow(2).mean()   # optional: default is out.sum()
"""


@dataclass(frozen=True)
class Reply:
    """What the worker sends back: facts only."""

    status: Status
    run: ModelRun | None = None
    message: str = ""
    line: int | None = None
    report: Report | None = None


def execute(code: str, memory_mb: int, task: Task = "inspect") -> Reply:
    """Run pasted ``code`` here (in a worker) and make the facts of its model."""
    return _execute(code, memory_mb, task)


def _execute(code: str, memory_mb: int, task: Task = "inspect") -> Reply:
    try:
        compiled = compile(code, FILENAME, "exec")
    except SyntaxError as exc:
        return Reply("error", message=_syntax_message(exc, code), line=exc.lineno)
    namespace: dict[str, object] = {"__name__": "__gradlab_model__"}
    stage = ""
    try:
        exec(compiled, namespace)
        model, inputs, loss = _contract(namespace)
        stage = "model(x), the loss or backward failed: "
        if task == "diagnose":
            return Reply("ok", report=_diagnose(model, inputs, loss))
        run = inspect_model(model, inputs, loss)
    except MemoryError:
        return Reply("memory", message=memory_message(memory_mb))
    except GradLabError as exc:
        return Reply("error", message=str(exc), line=_user_line(exc))
    except BaseException as exc:  # the code's own errors, SystemExit included
        if out_of_memory(exc):
            return Reply("memory", message=memory_message(memory_mb), line=_user_line(exc))
        return Reply("error", message=_error_message(exc, code, stage), line=_user_line(exc))
    return Reply("ok", run=run)


def _diagnose(
    model: nn.Module,
    inputs: list[torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Report:
    """The debugger's report on the pasted model, its batch and its loss (default: sum)."""
    loss_fn = loss if loss is not None else _sum
    if len(inputs) == 1:
        return examine(model, inputs[0], loss_fn=loss_fn, graph=True)
    return examine(lambda: (model, loss_fn(model(*inputs))), graph=True)


def _sum(out: torch.Tensor) -> torch.Tensor:
    return out.sum()


def _contract(
    namespace: dict[str, object],
) -> tuple[nn.Module, list[torch.Tensor], Callable[[torch.Tensor], torch.Tensor] | None]:
    """``model``, the inputs and ``loss`` as the code defined them, checked."""
    model = namespace.get("model")
    if model is None:
        raise GradLabError("The code must define `model`, an nn.Module, e.g. `model = Net()`.")
    if not isinstance(model, nn.Module):
        hint = " (write `model = Net()`, with the parentheses)" if isinstance(model, type) else ""
        raise GradLabError(f"`model` is a {type(model).__name__}; it must be an nn.Module{hint}.")
    x = namespace.get("x")
    inputs = list(x) if isinstance(x, tuple | list) else [x]
    if x is None or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise GradLabError(
            "The code must define `x`, the input batch: a tensor such as "
            "`x = torch.randn(16, 4)`, or a tuple of tensors for `model(*x)`."
        )
    loss = namespace.get("loss")
    if loss is not None and not callable(loss):
        raise GradLabError(
            "`loss` must be a function of the model's output, e.g. "
            "`loss = lambda out: out.pow(2).mean()`."
        )
    return model, inputs, loss  # type: ignore[return-value]  # checked just above


def _user_line(exc: BaseException) -> int | None:
    """The line of the pasted code in the innermost frame of it in the traceback."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    return frames[-1].lineno if frames else None


def _error_message(exc: BaseException, code: str, stage: str) -> str:
    head = f"{type(exc).__name__}: {exc}".rstrip(": ")
    line = _user_line(exc)
    if line is None:
        return stage + head
    return f"Line {line}: {head}\n    {_source_line(code, line)}"


def _syntax_message(exc: SyntaxError, code: str) -> str:
    line = exc.lineno or 0
    text = _source_line(code, line)
    caret = " " * max((exc.offset or 1) - 1 - (len(text) - len(text.lstrip())), 0) + "^"
    return f"Line {line}: SyntaxError: {exc.msg}\n    {text.strip()}\n    {caret}"


def _source_line(code: str, line: int) -> str:
    lines = code.splitlines()
    return lines[line - 1].strip() if 0 < line <= len(lines) else ""


def memory_message(memory_mb: int) -> str:
    return f"The code ran out of memory: the limit is {memory_mb} MiB."
