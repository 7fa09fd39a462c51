"""The server's side of the workers: a bounded pool and a fair queue per session.

:class:`Pool` starts the warm worker parent (:mod:`gradlab.isolation.worker`)
as a subprocess and hands it at most ``size`` runs at a time (default: the
number of cores). Runs wait in one queue per session, served round robin, so
one student who presses Run ten times delays nobody else by more than one
run. A waiting run knows how many are ahead of it (:meth:`Job.ahead`); its
limits start only when its child starts, and they count the child's own CPU
time and memory, never time spent waiting.

What comes back is JSON, decoded by :func:`gradlab.isolation.wire.decode`
into GradLab's own records; nothing is unpickled. If the worker parent dies,
the runs it held fail with a message and the next run starts a new one.

Examples
--------
>>> from gradlab.isolation.pool import run_program
>>> result = run_program("x = torch.tensor([2., 3.], requires_grad=True)\\n"
...                      "(x ** 2).sum().backward()")
>>> result.ok, result.variables[0].grad["values"]
(True, [4.0, 6.0])
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gradlab.core.errors import GradLabError
from gradlab.diagnose import Report
from gradlab.isolation import sandbox, wire, worker
from gradlab.isolation.worker import Status
from gradlab.program.run import ProgramError, ProgramResult

JobState = Literal["queued", "running", "done"]
_HEADER_SIZE = 4
#: Environment the worker parent keeps: nothing secret of the server's reaches a program.
_KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "PYTHONPATH", "VIRTUAL_ENV", "TZ",
             "GRADLAB_PROGRAM_SECONDS")  # fmt: skip
START_TIMEOUT = 120.0  # seconds for the worker parent to import torch and warm up


class WorkerError(RuntimeError):
    """The worker parent could not be started or answered nonsense."""


@dataclass(frozen=True)
class Outcome:
    """How one run ended: its status, its value (when ok) and what it printed."""

    status: Status
    message: str = ""
    value: Any = None
    stdout: str = ""
    stderr: str = ""
    cpu: float | None = None  # the child's CPU seconds
    seconds: float | None = None  # from its start to its end
    waited: float = 0.0  # seconds in the queue before it started

    @property
    def ok(self) -> bool:
        """Whether the task ran to the end and sent a value."""
        return self.status == "ok"


class Job:
    """One run: queued, running, then done. Wait with :meth:`result`."""

    def __init__(self, pool: Pool, id: str, session: str, request: dict[str, Any]) -> None:
        self.pool, self.id, self.session, self.request = pool, id, session, request
        self.state: JobState = "queued"
        self.submitted = time.monotonic()
        self.started: float | None = None
        self._raw: dict[str, Any] | None = None
        self._outcome: Outcome | None = None
        self._done = threading.Event()

    def ahead(self) -> int:
        """How many queued runs will start before this one (0 once it runs)."""
        return self.pool._ahead(self)

    def done(self) -> bool:
        """Whether it has ended, one way or another."""
        return self._done.is_set()

    def cancel(self) -> None:
        """Take it out of the queue, or kill it if it runs."""
        self.pool._cancel(self)

    def result(self, timeout: float | None = None) -> Outcome:
        """Wait for the end (``TimeoutError`` after ``timeout`` s) and decode what came back."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the run is still {self.state} after {timeout} s")
        if self._outcome is None:
            self._outcome = _decode(self._raw or {}, self.started, self.submitted)
        return self._outcome

    def _finish(self, raw: dict[str, Any]) -> None:
        self.state, self._raw = "done", raw
        self._done.set()


def _decode(raw: dict[str, Any], started: float | None, submitted: float) -> Outcome:
    waited = round((started or submitted) - submitted, 3)
    status = raw.get("status", "crashed")
    cpu, seconds = _number(raw.get("cpu")), _number(raw.get("seconds"))
    if status != "ok":
        out, err = (_text(raw.get(k)) for k in ("stdout", "stderr"))
        return Outcome(status, str(raw.get("message") or ""), None, out, err, cpu, seconds, waited)
    try:
        data = wire.decode(raw.get("reply") or "")
        if not isinstance(data, dict) or not {"value", "stdout", "stderr"} <= set(data):
            raise wire.WireError("the reply lacks its parts")
        if not isinstance(data["stdout"], str) or not isinstance(data["stderr"], str):
            raise wire.WireError("printed output must be text")
    except wire.WireError as exc:
        message = f"the worker sent a malformed result ({exc})"
        return Outcome("crashed", message, None, "", "", cpu, seconds, waited)
    return Outcome("ok", "", data["value"], data["stdout"], data["stderr"], cpu, seconds, waited)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


class Pool:
    """At most ``size`` runs at once in sandboxed children of one warm worker parent."""

    def __init__(self, size: int | None = None) -> None:
        self.size = max(1, size or _default_size())
        self.sandbox: sandbox.Status | None = None
        self._lock = threading.RLock()
        self._queues: collections.OrderedDict[str, collections.deque[Job]] = (
            collections.OrderedDict()
        )
        self._running: dict[str, Job] = {}
        self._ids = itertools.count()
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = threading.Event()
        self._failure = ""
        self._closed = False
        self._start()

    # -- public --------------------------------------------------------------------

    def submit(
        self,
        task: str,
        args: dict[str, Any],
        *,
        session: str = "",
        mode: sandbox.Mode = "program",
        limits: sandbox.Limits | None = None,
    ) -> Job:
        """Queue a run of ``task`` for ``session``; it starts when its turn comes."""
        limits = limits or sandbox.Limits()
        job_id = str(next(self._ids))
        request = {"op": "run", "id": job_id, "task": task, "args": args, "mode": mode,
                   "limits": {"cpu_seconds": limits.cpu_seconds, "memory_mb": limits.memory_mb,
                              "open_files": limits.open_files}}  # fmt: skip
        job = Job(self, job_id, session, request)
        with self._lock:
            if self._closed:
                raise WorkerError("the worker pool is closed")
            self._queues.setdefault(session, collections.deque()).append(job)
            self._dispatch()
        return job

    def wait_ready(self, timeout: float = START_TIMEOUT) -> sandbox.Status:
        """Wait until the worker parent is warm; its sandbox's layers."""
        if not self._ready.wait(timeout):
            raise WorkerError(f"the worker did not start within {timeout:g} s")
        if self.sandbox is None:
            raise WorkerError(self._failure or "the worker failed to start")
        return self.sandbox

    def stats(self) -> dict[str, int]:
        """Runs queued and running now."""
        with self._lock:
            queued = sum(len(q) for q in self._queues.values())
            return {"queued": queued, "running": len(self._running), "size": self.size}

    def close(self) -> None:
        """Stop the worker parent; runs still queued or running fail."""
        with self._lock:
            self._closed = True
            process, self._process = self._process, None
            self._fail_all("cancelled", "the server is shutting down")
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr]
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    # -- the worker parent ------------------------------------------------------------

    def _start(self) -> None:
        env = {k: os.environ[k] for k in _KEPT_ENV if k in os.environ}
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MALLOC_ARENA_MAX="2",
                   PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1")  # fmt: skip
        self._ready.clear()
        self.sandbox = None
        log = os.environ.get("GRADLAB_WORKER_LOG")  # where the worker parent's errors go
        with open(log or os.devnull, "ab") as errors:
            process = subprocess.Popen(
                [sys.executable, "-m", "gradlab.isolation.worker"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                env=env, cwd="/", start_new_session=True,
            )  # fmt: skip
        self._process = process
        threading.Thread(target=self._read, args=(process,), daemon=True,
                         name="gradlab-worker-reader").start()  # fmt: skip

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        stream = process.stdout
        assert stream is not None
        while True:
            head = stream.read(_HEADER_SIZE)
            if len(head) < _HEADER_SIZE:
                break
            size = int.from_bytes(head, "little")
            body = stream.read(size)
            if len(body) < size:
                break
            try:
                message = json.loads(body)
            except ValueError:
                break
            self._receive(message)
        with self._lock:  # the parent died (or was closed)
            if self._process is process:
                self._process = None
                self._failure = self._failure or "the worker parent stopped"
                self._fail_all("crashed", "the worker restarted while this ran; run it again")
                self._ready.set()
                if not self._closed and any(self._queues.values()):
                    self._dispatch()

    def _receive(self, message: dict[str, Any]) -> None:
        status = message.get("status")
        if status == "ready":
            found = message.get("sandbox", {})
            self.sandbox = sandbox.Status(int(found.get("landlock", 0)),
                                          bool(found.get("seccomp")),
                                          bool(found.get("network_namespace")),
                                          str(found.get("reason", "")))  # fmt: skip
            self._ready.set()
            with self._lock:
                self._dispatch()
            return
        if status == "failed":
            with self._lock:
                self._failure = f"the worker failed to start: {message.get('message')}"
                self._ready.set()
                for queue in self._queues.values():
                    for job in queue:
                        job._finish({"status": "crashed", "message": self._failure})
                self._queues.clear()
            return
        with self._lock:
            found = self._running.get(str(message.get("id")))
            if found is None:
                return
            job = found
            if status == "started":
                job.started = time.monotonic()
                return
            del self._running[job.id]
            job._finish(message)
            self._dispatch()

    # -- the queue --------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Start queued runs while there is room (call with the lock held)."""
        if self._closed:
            return
        if self._process is None:
            if self._failure and not self._ready.is_set():
                return
            self._failure = ""
            self._start()
            return
        if not self._ready.is_set() or self.sandbox is None:
            return
        while len(self._running) < self.size and self._queues:
            session, queue = next(iter(self._queues.items()))
            job = queue.popleft()
            del self._queues[session]
            if queue:
                self._queues[session] = queue  # to the back of the round
            job.state = "running"
            job.started = time.monotonic()
            self._running[job.id] = job
            if not self._send(job.request):
                return

    def _send(self, message: dict[str, Any]) -> bool:
        process = self._process
        if process is None or process.stdin is None:
            return False
        data = json.dumps(message).encode()
        try:
            process.stdin.write(len(data).to_bytes(_HEADER_SIZE, "little") + data)
            process.stdin.flush()
        except (OSError, ValueError):
            return False
        return True

    def _ahead(self, job: Job) -> int:
        with self._lock:
            if job.state != "queued":
                return 0
            sessions = list(self._queues.items())
            mine = next((i for i, (s, _) in enumerate(sessions) if s == job.session), None)
            if mine is None:
                return 0
            turn = list(sessions[mine][1]).index(job) if job in sessions[mine][1] else 0
            ahead = turn
            for i, (_, queue) in enumerate(sessions):
                if i != mine:
                    ahead += min(len(queue), turn + (1 if i < mine else 0))
            return ahead

    def _cancel(self, job: Job) -> None:
        with self._lock:
            if job.state == "queued":
                queue = self._queues.get(job.session)
                if queue is not None and job in queue:
                    queue.remove(job)
                    if not queue:
                        del self._queues[job.session]
                job._finish({"status": "cancelled", "message": "cancelled before it started"})
            elif job.state == "running":
                self._send({"op": "cancel", "id": job.id})

    def _fail_all(self, status: Status, message: str) -> None:
        for job in list(self._running.values()):
            job._finish({"status": status, "message": message})
        self._running.clear()
        if status == "cancelled":
            for queue in self._queues.values():
                for job in queue:
                    job._finish({"status": status, "message": message})
            self._queues.clear()


def _default_size() -> int:
    configured = os.environ.get("GRADLAB_WORKERS", "")
    if configured.isdigit() and int(configured) > 0:
        return int(configured)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


_shared: Pool | None = None
_shared_lock = threading.Lock()


def shared() -> Pool:
    """The process's pool, started on first use and stopped at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Pool()
            atexit.register(_shared.close)
        return _shared


def wait(job: Job, on_wait: Callable[[int], None] | None = None) -> Outcome:
    """Wait for ``job``, calling ``on_wait(runs ahead)`` as the count changes (0: it runs);
    cancel it if the caller leaves early."""
    shown = -1
    try:
        while not job.done():
            ahead = job.ahead()
            if on_wait is not None and ahead != shown:
                on_wait(ahead)
                shown = ahead
            job._done.wait(0.1)
        return job.result()
    finally:
        if not job.done():  # the caller was interrupted (a page rerun, Ctrl+C)
            job.cancel()


def run_here(task: str, args: dict[str, Any], limits: sandbox.Limits) -> Outcome:
    """Run ``task`` in a sandboxed child of this very process (the command line's way).

    No worker parent is started: this process warms itself for the task, then
    forks once.
    """
    worker.warm((task,))
    started = time.monotonic()
    return _decode(worker.run_here(task, args, limits=limits), started, started)


# -- the tasks, as the rest of GradLab calls them ----------------------------------------

def program_limits(environ: Mapping[str, str] | None = None) -> tuple[float, sandbox.Limits]:
    """A program's CPU seconds (the interpreter's limit) and its worker's OS limits.

    ``GRADLAB_PROGRAM_SECONDS`` (default 5) and ``GRADLAB_PROGRAM_MEMORY_MB``
    (default 1024) change them; the kernel's CPU limit sits 3 s above the
    interpreter's, so the interpreter's message normally comes first.

    Examples
    --------
    >>> program_limits({"GRADLAB_PROGRAM_SECONDS": "20"})
    (20.0, Limits(cpu_seconds=23.0, memory_mb=1024, open_files=64))
    """
    env = os.environ if environ is None else environ
    seconds = _positive(env, "GRADLAB_PROGRAM_SECONDS", 5.0)
    memory = int(_positive(env, "GRADLAB_PROGRAM_MEMORY_MB", 1024))
    return seconds, sandbox.Limits(cpu_seconds=seconds + 3, memory_mb=memory)


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e6:
        raise WorkerError(f"{name}={text!r} is not a positive number; unset it or give one.")
    return value


def run_program(
    source: str,
    *,
    session: str = "",
    on_wait: Callable[[int], None] | None = None,
    pool: Pool | None = None,
    here: bool = False,
) -> ProgramResult:
    """:func:`gradlab.program.run_program` in a sandboxed worker; a ProgramResult, always.

    ``here=True`` forks the worker from this process instead of the shared pool's.
    """
    outcome = _outcome("program", source, session, on_wait, pool, here)
    if outcome.ok and isinstance(outcome.value, ProgramResult):
        return outcome.value
    return ProgramResult(source, error=failure(outcome, program_limits()[1]))


def diagnose_program(
    source: str,
    *,
    session: str = "",
    on_wait: Callable[[int], None] | None = None,
    pool: Pool | None = None,
    here: bool = False,
) -> Report:
    """The debugger's :class:`~gradlab.diagnose.Report` on a program, made in a worker.

    Raises :class:`gradlab.core.errors.GradLabError` with one line when the run could not finish.
    """
    outcome = _outcome("diagnose_program", source, session, on_wait, pool, here)
    if outcome.ok and isinstance(outcome.value, Report):
        return outcome.value
    raise GradLabError(failure(outcome, program_limits()[1]).message)


def _outcome(
    task: str,
    source: str,
    session: str,
    on_wait: Callable[[int], None] | None,
    pool: Pool | None,
    here: bool,
) -> Outcome:
    _, limits = program_limits()  # the interpreter reads its seconds from the environment
    args = {"source": source}
    if here:
        return run_here(task, args, limits)
    return wait((pool or shared()).submit(task, args, session=session, limits=limits), on_wait)


def failure(outcome: Outcome, limits: sandbox.Limits) -> ProgramError:
    """A :class:`~gradlab.program.ProgramError` that says how a run failed, for a person."""
    if outcome.status == "timeout":
        used = f"its {limits.cpu_seconds - 3:g} s of CPU time"
        return ProgramError("limit", 1, f"stopped: the program used {used} (an endless loop, "
                            "or one step that does too much?)")  # fmt: skip
    if outcome.status == "memory":
        return ProgramError("limit", 1, f"stopped: the program ran out of memory "
                            f"(the limit is {limits.memory_mb:,} MiB)")  # fmt: skip
    if outcome.status == "too_large":
        return ProgramError("limit", 1, f"stopped: {outcome.message}; make the tensors smaller")
    if outcome.status == "cancelled":
        return ProgramError("limit", 1, "stopped before it finished")
    if outcome.status == "error" and outcome.message:  # the task's own one-line message
        return ProgramError("runtime", 1, outcome.message)
    detail = f": {outcome.message}" if outcome.message else ""
    return ProgramError("limit", 1, f"the program stopped unexpectedly{detail}")
