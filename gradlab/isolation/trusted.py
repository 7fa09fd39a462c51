"""Trusted mode: run model code a person pasted, in a sandboxed worker.

Pasted ``nn.Module`` code is real Python, so it runs only when the person
who started the server asked for it (``gradlab app --trusted``, or the
environment variable ``GRADLAB_TRUSTED=1``) *and* the server listens on this
machine only (127.0.0.1, ::1 or localhost): nobody else can reach the code box.

It runs like every program, in a forked child of the warm worker
(:mod:`gradlab.isolation.worker`) inside the operating system's sandbox
(:mod:`gradlab.isolation.sandbox`), loosened only where model code needs it:
it may read files anywhere and load compiled extension modules; it may still
not write, create or remove a file, start a process, or reach the network.
Its limits are its CPU time and memory (:class:`Limits`); what it prints is
kept (up to 20,000 characters a stream).

The code must define ``model`` (an ``nn.Module``) and ``x`` (the input batch:
a tensor, or a tuple of tensors passed as ``model(*x)``), and may define
``loss``, a function from the model's output to a scalar (default: the sum of
the output). See :data:`EXAMPLE`. The worker runs
:func:`gradlab.core.memory.inspect_model` and sends back facts only (the
:class:`~gradlab.core.memory.ModelRun`: graph, saved tensors, parameter table, as
JSON; nothing is unpickled). Errors come back as a message naming the line
of the pasted code.

With ``task="diagnose"`` (the Debugger page) the worker runs
:func:`gradlab.diagnose.examine` on the same model, batch and loss instead,
and sends back its :class:`~gradlab.diagnose.Report` (findings and graph,
facts only).
"""

from __future__ import annotations

import ipaddress
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from gradlab.app.cli.app import TRUSTED_ENV
from gradlab.core.errors import GradLabError, out_of_memory
from gradlab.core.memory import ModelRun, inspect_model

if TYPE_CHECKING:
    from gradlab.diagnose import Report
    from gradlab.isolation.pool import Job, Outcome

#: The name pasted code runs under; tracebacks show it.
FILENAME = "<model code>"
MAX_CODE_CHARS = 100_000
MAX_OUTPUT_CHARS = 20_000
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}

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

Status = Literal["ok", "error", "timeout", "memory", "cancelled", "crashed"]
#: What the child does with the model: the Model graph page's facts, or the debugger's report.
Task = Literal["inspect", "diagnose"]


@dataclass(frozen=True)
class Limits:
    """What pasted code may use."""

    seconds: float = 30.0
    memory_mb: int = 2048  # on top of what python and torch take at start


@dataclass(frozen=True)
class TrustedResult:
    """How a run of pasted code ended, with its captured output."""

    status: Status
    run: ModelRun | None  # the facts when status is "ok"
    message: str  # what went wrong, for a person; "" when ok
    line: int | None  # the line of the pasted code where it failed
    stdout: str
    stderr: str
    seconds: float
    report: Report | None = None  # the debugger's report, for task "diagnose", when ok


def trusted_enabled(address: str | None) -> bool:
    """Whether pasted code may run: ``GRADLAB_TRUSTED=1`` and the server listens on localhost.

    ``address`` is the server's listening address (``st.get_option("server.address")``);
    none (Streamlit's default) means every interface, so it is refused.

    Examples
    --------
    >>> os.environ[TRUSTED_ENV] = "1"
    >>> trusted_enabled("127.0.0.1"), trusted_enabled("0.0.0.0"), trusted_enabled(None)
    (True, False, False)
    >>> del os.environ[TRUSTED_ENV]
    """
    return os.environ.get(TRUSTED_ENV) == "1" and _is_local(address)


def _is_local(address: str | None) -> bool:
    if not address:
        return False
    if address.lower() in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def how_to_enable(address: str | None) -> str:
    """Why pasted code does not run here, and how to turn trusted mode on."""
    start = (
        "Start the app with `gradlab app --trusted`: it listens on 127.0.0.1 only and sets "
        f"{TRUSTED_ENV}=1 (or run `{TRUSTED_ENV}=1 streamlit run app.py "
        "--server.address=127.0.0.1`)."
    )
    if os.environ.get(TRUSTED_ENV) != "1":
        return f"Pasted model code runs only in trusted mode, which is off. {start}"
    where = f"on '{address}'" if address else "on every network interface"
    return (
        f"Trusted mode is asked for, but this server listens {where}, so others could run "
        f"code on this machine. {start} Presets still work."
    )


def start(
    code: str,
    *,
    address: str | None,
    limits: Limits | None = None,
    task: Task = "inspect",
    session: str = "",
) -> TrustedRun:
    """Start running pasted ``code`` in a sandboxed worker; refused unless trusted mode is on."""
    from gradlab.isolation import pool, sandbox

    if not trusted_enabled(address):
        raise GradLabError(how_to_enable(address))
    if len(code) > MAX_CODE_CHARS:
        raise GradLabError(
            f"The code has {len(code):,} characters; the limit is {MAX_CODE_CHARS:,}."
        )
    limits = limits or Limits()
    job = pool.shared().submit(
        "trusted", {"code": code, "memory_mb": limits.memory_mb, "task": task},
        session=session, mode="trusted",
        limits=sandbox.Limits(cpu_seconds=limits.seconds, memory_mb=limits.memory_mb),
    )  # fmt: skip
    return TrustedRun(job, limits)


def run_code(
    code: str, *, address: str | None, limits: Limits | None = None, task: Task = "inspect"
) -> TrustedResult:
    """Run pasted ``code`` and wait for the result (see :func:`start`)."""
    return start(code, address=address, limits=limits, task=task).result()


class TrustedRun:
    """A run of pasted code: poll :meth:`done`, stop it with :meth:`cancel`, read :meth:`result`."""

    def __init__(self, job: Job, limits: Limits) -> None:
        self.limits = limits
        self._job = job
        self._created = time.monotonic()
        self._result: TrustedResult | None = None

    def done(self) -> bool:
        """Whether the run has finished, failed or been stopped."""
        return self._job.done()

    def ahead(self) -> int:
        """Runs that will start before this one (0 once it runs)."""
        return self._job.ahead()

    def elapsed(self) -> float:
        """Seconds since it started running (0 while it waits for its turn)."""
        outcome = self._job.result(0) if self._job.done() else None
        if outcome is not None and outcome.seconds is not None:
            return outcome.seconds
        started = self._job.started
        return 0.0 if started is None else time.monotonic() - started

    def cancel(self) -> None:
        """Stop the run now (the app's kill button)."""
        self._job.cancel()

    def result(self, timeout: float | None = None) -> TrustedResult:
        """Wait for the end (at most ``timeout`` s: ``TimeoutError``) and read what came back."""
        if self._result is None:
            self._result = _result(self._job.result(timeout), self.limits)
        return self._result


def _result(outcome: Outcome, limits: Limits) -> TrustedResult:
    seconds = round(outcome.seconds or 0.0, 2)
    out, err = outcome.stdout, outcome.stderr
    if outcome.status == "timeout":
        message = (
            f"Stopped after {limits.seconds:g} s of CPU time, the time limit: the code did not "
            "finish (an endless loop, or too much work for one batch?)."
        )
        return TrustedResult("timeout", None, message, None, out, err, seconds)
    if outcome.status == "cancelled":
        message = f"Stopped with the kill button after {seconds:g} s."
        return TrustedResult("cancelled", None, message, None, out, err, seconds)
    if outcome.status == "memory":
        return TrustedResult("memory", None, _memory_message(limits.memory_mb), None, out, err,
                             seconds)  # fmt: skip
    reply = outcome.value
    if not outcome.ok or not isinstance(reply, Reply):
        detail = f" ({outcome.message})" if outcome.message else ""
        message = (
            f"The model process died without a result{detail}. It may have run out of its "
            f"memory limit ({limits.memory_mb} MiB) or called exit()."
        )
        return TrustedResult("crashed", None, message, None, out, err, seconds)
    return TrustedResult(reply.status, reply.run, reply.message, reply.line, out, err, seconds,
                         reply.report)  # fmt: skip


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
        return Reply("memory", message=_memory_message(memory_mb))
    except GradLabError as exc:
        return Reply("error", message=str(exc), line=_user_line(exc))
    except BaseException as exc:  # the code's own errors, SystemExit included
        if out_of_memory(exc):
            return Reply("memory", message=_memory_message(memory_mb), line=_user_line(exc))
        return Reply("error", message=_error_message(exc, code, stage), line=_user_line(exc))
    return Reply("ok", run=run)


def _diagnose(
    model: nn.Module,
    inputs: list[torch.Tensor],
    loss: Callable[[torch.Tensor], torch.Tensor] | None,
) -> Report:
    """The debugger's report on the pasted model, its batch and its loss (default: sum)."""
    from gradlab.diagnose import examine

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


def _memory_message(memory_mb: int) -> str:
    return f"The code ran out of memory: the limit is {memory_mb} MiB."
