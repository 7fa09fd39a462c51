"""Trusted mode: run model code a person pasted, in a separate process with limits.

Pasted ``nn.Module`` code is real Python, so it runs only when the person
who started the server asked for it (``gradlab app --trusted``, or the
environment variable ``GRADLAB_TRUSTED=1``) *and* the server listens on this
machine only (127.0.0.1, ::1 or localhost): nobody else can reach the code box.

The code runs in a fresh ``python`` process (it imports torch: about 2-3 s),
in a session of its own so the whole process group can be killed, with

* a time limit, enforced by a timer in this process (a kill, whatever the
  code does) and backed by a CPU-time limit in the child;
* a memory limit: ``RLIMIT_AS`` in the child, set after torch is imported, at
  that footprint plus the budget;
* its stdout and stderr captured to files.

The code must define ``model`` (an ``nn.Module``) and ``x`` (the input batch:
a tensor, or a tuple of tensors passed as ``model(*x)``), and may define
``loss``, a function from the model's output to a scalar (default: the sum of
the output). See :data:`EXAMPLE`. The child runs
:func:`gradlab.memory.inspect_model` and sends back facts only (the pickled
:class:`~gradlab.memory.ModelRun`: graph, saved tensors, parameter table).
Errors come back as a message naming the line of the pasted code.

With ``task="diagnose"`` (the Debugger page) the child runs
:func:`gradlab.diagnose.examine` on the same model, batch and loss instead,
and sends back its :class:`~gradlab.diagnose.Report` (findings and graph,
facts only).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from gradlab.cli.app import TRUSTED_ENV
from gradlab.errors import GradLabError
from gradlab.memory import ModelRun, inspect_model

if TYPE_CHECKING:
    from gradlab.diagnose import Report

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
    code: str, *, address: str | None, limits: Limits | None = None, task: Task = "inspect"
) -> TrustedRun:
    """Start running pasted ``code`` in a child process; refused unless trusted mode is on."""
    if not trusted_enabled(address):
        raise GradLabError(how_to_enable(address))
    if len(code) > MAX_CODE_CHARS:
        raise GradLabError(
            f"The code has {len(code):,} characters; the limit is {MAX_CODE_CHARS:,}."
        )
    limits = limits or Limits()
    folder = tempfile.TemporaryDirectory(prefix="gradlab-trusted-")
    path = Path(folder.name)
    (path / "code.py").write_text(code)
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # one core each: a classroom server has few
        "MALLOC_ARENA_MAX": "2",  # glibc reserves address space per arena
    }
    env.pop(TRUSTED_ENV, None)
    with (path / "stdout.txt").open("wb") as out, (path / "stderr.txt").open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", "from gradlab.trusted import child_main; child_main()",
             folder.name, str(limits.seconds), str(limits.memory_mb), task],
            stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env,
            start_new_session=True,  # its own process group: a kill takes its children too
        )  # fmt: skip
    return TrustedRun(process, folder, limits)


def run_code(
    code: str, *, address: str | None, limits: Limits | None = None, task: Task = "inspect"
) -> TrustedResult:
    """Run pasted ``code`` and wait for the result (see :func:`start`)."""
    return start(code, address=address, limits=limits, task=task).result()


class TrustedRun:
    """A running child: poll :meth:`done`, stop it with :meth:`cancel`, read :meth:`result`."""

    def __init__(
        self,
        process: subprocess.Popen[bytes],
        folder: tempfile.TemporaryDirectory[str],
        limits: Limits,
    ) -> None:
        self.limits = limits
        self._process = process
        self._folder = folder
        self._started = time.monotonic()
        self._ended: float | None = None
        self._stopped: Literal["timeout", "cancelled"] | None = None
        self._lock = threading.Lock()
        self._result: TrustedResult | None = None
        # The timer kills the child at the limit even if nobody polls (a closed tab).
        self._timer = threading.Timer(limits.seconds, self._kill, args=("timeout",))
        self._timer.daemon = True
        self._timer.start()

    def done(self) -> bool:
        """Whether the child has finished, failed or been killed."""
        return self._process.poll() is not None

    def elapsed(self) -> float:
        """Seconds since the start (until the end once finished)."""
        end = self._ended if self._ended is not None else time.monotonic()
        return end - self._started

    def cancel(self) -> None:
        """Kill the child now (the app's kill button)."""
        self._kill("cancelled")

    def result(self, timeout: float | None = None) -> TrustedResult:
        """Wait for the end (at most ``timeout`` s: ``TimeoutError``) and read what came back."""
        with self._lock:
            if self._result is not None:
                return self._result
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise TimeoutError(f"The run is still going after {timeout} s.") from exc
        with self._lock:
            if self._result is None:
                self._timer.cancel()
                self._ended = self._ended or time.monotonic()
                self._result = self._read()
                self._folder.cleanup()
            return self._result

    def _kill(self, reason: Literal["timeout", "cancelled"]) -> None:
        with self._lock:
            if self._process.poll() is not None:
                return
            self._stopped = reason
            self._ended = time.monotonic()
            with contextlib.suppress(ProcessLookupError):  # it ended just now
                os.killpg(self._process.pid, signal.SIGKILL)

    def _read(self) -> TrustedResult:
        path = Path(self._folder.name)
        stdout, stderr = _tail(path / "stdout.txt"), _tail(path / "stderr.txt")
        seconds = round(self.elapsed(), 2)
        if self._stopped == "timeout":
            message = (
                f"Stopped after {self.limits.seconds:g} s, the time limit: the code did not "
                "finish (an endless loop, or too much work for one batch?)."
            )
            return TrustedResult("timeout", None, message, None, stdout, stderr, seconds)
        if self._stopped == "cancelled":
            message = f"Stopped with the kill button after {seconds:g} s."
            return TrustedResult("cancelled", None, message, None, stdout, stderr, seconds)
        reply = _load(path / "result.pkl")
        if reply is None:
            code = self._process.returncode
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            message = (
                f"The model process died ({how}) without a result. It may have run out of "
                f"its memory limit ({self.limits.memory_mb} MiB) or called exit()."
            )
            return TrustedResult("crashed", None, message, None, stdout, stderr, seconds)
        return TrustedResult(
            reply.status,
            reply.run,
            reply.message,
            reply.line,
            stdout,
            stderr,
            seconds,
            reply.report,
        )


@dataclass(frozen=True)
class _Reply:
    """What the child writes back."""

    status: Status
    run: ModelRun | None = None
    message: str = ""
    line: int | None = None
    report: Report | None = None


def child_main() -> None:
    """Entry point of the child process: argv is (folder, seconds, memory MiB[, task])."""
    folder, seconds, memory_mb = Path(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    task: Task = "diagnose" if sys.argv[4:5] == ["diagnose"] else "inspect"
    torch.set_num_threads(1)
    _limit_resources(seconds, memory_mb)
    code = (folder / "code.py").read_text()
    reply = _execute(code, memory_mb, task)
    data = pickle.dumps(reply)
    (folder / "result.tmp").write_bytes(data)
    (folder / "result.tmp").rename(folder / "result.pkl")  # whole or absent


def _limit_resources(seconds: float, memory_mb: int) -> None:
    import resource

    grace = int(seconds) + 5  # the parent's timer acts first; this is a backstop
    resource.setrlimit(resource.RLIMIT_CPU, (grace, grace + 1))
    size = _address_space()
    if size is not None:
        limit = size + memory_mb * 2**20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _address_space() -> int | None:
    """Bytes of virtual memory this process maps now (Linux), else None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return None


def _execute(code: str, memory_mb: int, task: Task = "inspect") -> _Reply:
    try:
        compiled = compile(code, FILENAME, "exec")
    except SyntaxError as exc:
        return _Reply("error", message=_syntax_message(exc, code), line=exc.lineno)
    namespace: dict[str, object] = {"__name__": "__gradlab_model__"}
    stage = ""
    try:
        exec(compiled, namespace)
        model, inputs, loss = _contract(namespace)
        stage = "model(x), the loss or backward failed: "
        if task == "diagnose":
            return _Reply("ok", report=_diagnose(model, inputs, loss))
        run = inspect_model(model, inputs, loss)
    except MemoryError:
        return _Reply("memory", message=_memory_message(memory_mb))
    except GradLabError as exc:
        return _Reply("error", message=str(exc), line=_user_line(exc))
    except BaseException as exc:  # the code's own errors, SystemExit included
        if _out_of_memory(exc):
            return _Reply("memory", message=_memory_message(memory_mb), line=_user_line(exc))
        return _Reply("error", message=_error_message(exc, code, stage), line=_user_line(exc))
    return _Reply("ok", run=run)


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


def _out_of_memory(exc: BaseException) -> bool:
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        s in text for s in ("can't allocate memory", "not enough memory", "bad_alloc")
    )


def _memory_message(memory_mb: int) -> str:
    return f"The code ran out of memory: the limit is {memory_mb} MiB."


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError:
        return ""
    text = data[-MAX_OUTPUT_CHARS * 4 :].decode(errors="replace")
    if len(text) > MAX_OUTPUT_CHARS or len(data) > MAX_OUTPUT_CHARS * 4:
        return "…" + text[-MAX_OUTPUT_CHARS:]
    return text


def _load(path: Path) -> _Reply | None:
    try:
        reply = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        return None
    return reply if isinstance(reply, _Reply) else None
