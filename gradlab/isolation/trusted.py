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
the output). See :data:`EXAMPLE`. The worker child
(:mod:`gradlab.isolation.model_code`) runs
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
from dataclasses import dataclass

from gradlab.core.errors import GradLabError
from gradlab.core.memory import ModelRun
from gradlab.diagnose import Report
from gradlab.isolation import pool, sandbox
from gradlab.isolation.model_code import EXAMPLE, Reply, Status, Task, memory_message
from gradlab.isolation.pool import Job, Outcome

__all__ = [
    "EXAMPLE",
    "MAX_CODE_CHARS",
    "MAX_OUTPUT_CHARS",
    "TRUSTED_ENV",
    "Limits",
    "Status",
    "Task",
    "TrustedResult",
    "TrustedRun",
    "how_to_enable",
    "run_code",
    "start",
    "trusted_enabled",
]

#: The environment variable that turns trusted mode on (``gradlab app --trusted`` sets it).
TRUSTED_ENV = "GRADLAB_TRUSTED"
MAX_CODE_CHARS = 100_000
MAX_OUTPUT_CHARS = 20_000
_LOCAL_NAMES = {"localhost", "localhost.localdomain"}


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
        return TrustedResult("memory", None, memory_message(limits.memory_mb), None, out, err,
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
