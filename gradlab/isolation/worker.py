"""Worker processes: every untrusted run in a fresh, sandboxed child of a warm parent.

The parent (``python -m gradlab.isolation.worker``, started by
:class:`gradlab.isolation.pool.Pool`) imports torch and GradLab once, runs one
of each task to warm every lazy import, and then forks a child per request.
A child starts in milliseconds, enters the sandbox of
:mod:`gradlab.isolation.sandbox` before it looks at the request, runs one task,
writes its reply (JSON from :mod:`gradlab.isolation.wire`, bounded) to a pipe
and exits. Nothing a program changes survives into another run: it changed
only its own copy of the process.

The parent speaks to the server over its stdin and stdout, one frame a
message (a 4-byte length, then JSON): requests ``{"op": "run", "id", "task",
"args", "mode", "limits"}`` and ``{"op": "cancel", "id"}``; replies ``{"id",
"status", "message", "reply", "cpu"}``. It kills a child's whole process
group at its wall-clock backstop or on cancel; the child's CPU time limit is
the kernel's.

:func:`run_here` forks a child of the calling process instead, for one-off
runs (the command line).
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import resource
import selectors
import signal
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Literal

from gradlab.core.errors import GradLabError
from gradlab.diagnose import examine
from gradlab.isolation import sandbox, wire
from gradlab.isolation.model_code import EXAMPLE, execute
from gradlab.program.run import run_program

Status = Literal["ok", "error", "timeout", "memory", "crashed", "cancelled", "too_large"]
MAX_OUTPUT_CHARS = 20_000  # of what trusted code prints, each stream
_HEADER = struct.Struct("<I")
_TEXT = ("message", "reply", "stdout", "stderr")  # the text fields of a child's frame


# -- tasks: what a child can be asked to do ---------------------------------------------


def _task_program(args: dict[str, Any]) -> Any:
    return run_program(str(args["source"]))


def _task_diagnose_program(args: dict[str, Any]) -> Any:
    return examine(str(args["source"]), graph=True)


def _task_trusted(args: dict[str, Any]) -> Any:
    return execute(str(args["code"]), int(args["memory_mb"]), args.get("task", "inspect"))


TASKS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "program": _task_program,
    "diagnose_program": _task_diagnose_program,
    "trusted": _task_trusted,
}


# -- the child ------------------------------------------------------------------------


class _Bounded:
    """A text stream that keeps the first ``limit`` characters and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size, self.dropped = limit, 0, 0
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        room = self.limit - self.size
        if room > 0:
            self.parts.append(text[:room])
            self.size += min(len(text), room)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def text(self) -> str:
        extra = f"\n… {self.dropped:,} more characters not kept" if self.dropped else ""
        return "".join(self.parts) + extra


def _child(task: str, args: dict[str, Any], mode: sandbox.Mode, limits: sandbox.Limits,
           out: int) -> None:  # fmt: skip
    """Inside the fork: confine, run, reply, exit. Never returns."""
    try:
        os.setpgid(0, 0)
        sandbox.die_with_parent()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        _close_all_but(out, 0, 1, 2, *sandbox.ruleset_fds())
        if mode == "program":
            import torch

            torch.backends.mkldnn.set_flags(False)  # type: ignore[no-untyped-call]  # JIT kernels
        stdout, stderr = _Bounded(MAX_OUTPUT_CHARS), _Bounded(MAX_OUTPUT_CHARS)
        sys.stdout, sys.stderr = stdout, stderr
        sandbox.confine(mode, limits)
    except BaseException as exc:  # the sandbox is required: never run without it
        _reply(out, {"status": "error", "message": f"the sandbox could not start: {exc}"})
        os._exit(0)
    signal.signal(signal.SIGXCPU, _out_of_time)  # the kernel's warning, a second before its kill
    try:
        value = TASKS[task](args)
        if _timed_out:  # the task caught the interruption; the run still ran out
            raise CpuTimeExceeded
        text = wire.encode({"value": value, "stdout": stdout.text(), "stderr": stderr.text()})
        if len(text) > wire.MAX_BYTES:
            message = f"the result is {len(text):,} bytes; the limit is {wire.MAX_BYTES:,}"
            _reply(out, {"status": "too_large", "message": message})
        else:
            _reply(out, {"status": "ok", "reply": text})
    except CpuTimeExceeded:
        _reply(out, {"status": "timeout", "message": "", "stdout": stdout.text(),
                     "stderr": stderr.text()})  # fmt: skip
    except MemoryError:
        _reply(out, {"status": "memory", "message": "it ran out of memory"})
    except GradLabError as exc:  # GradLab's own one-line messages go back as they are
        _reply(out, {"status": "error", "message": str(exc)[:2000]})
    except BaseException as exc:
        _reply(out, {"status": "error", "message": f"{type(exc).__name__}: {str(exc)[:500]}"})
    os._exit(0)


class CpuTimeExceeded(BaseException):
    """The child's CPU time ran out (SIGXCPU): what it printed so far still goes back."""


_timed_out = False


def _out_of_time(signum: int, frame: Any) -> None:
    global _timed_out
    if not _timed_out:
        _timed_out = True
        raise CpuTimeExceeded


def _close_all_but(*keep: int) -> None:
    top = max(keep) + 1
    for fd in range(3, top):
        if fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
    os.closerange(top, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def _reply(fd: int, message: dict[str, Any]) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    message["cpu"] = round(usage.ru_utime + usage.ru_stime, 3)
    data = json.dumps(message).encode()
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


# -- a running child, seen from its parent --------------------------------------------


@dataclass
class Child:
    """One forked child: its pid, the pipe its reply comes on, and its deadlines."""

    id: str
    pid: int
    fd: int
    wall: float  # the monotonic time at which it is killed whatever it does
    cpu_seconds: float
    started: float = field(default_factory=time.monotonic)
    data: bytearray = field(default_factory=bytearray)
    closed: bool = False
    closing: float = 0.0  # when its pipe closed while it still ran
    stopped: Status | None = None  # why the parent killed it

    def kill(self, why: Status | None) -> None:
        """Kill the child's whole process group (``why`` None: not a verdict on it)."""
        self.stopped = self.stopped or why
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(self.pid, signal.SIGKILL)

    def read(self) -> None:
        """Take what the pipe holds; kill a child that sends more than a reply may hold."""
        try:
            chunk = os.read(self.fd, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:
            self.closed = True
            return
        self.data += chunk
        if len(self.data) > wire.MAX_BYTES + 4096:
            self.kill("too_large")
            self.closed = True

    def answer(self) -> dict[str, Any] | None:
        """The reply as soon as the child has sent a whole one (it then only has to exit)."""
        if self.stopped is not None:
            return None
        message = _frame(bytes(self.data))
        if message is None:
            return None
        cpu = message.get("cpu")
        return {"id": self.id, "cpu": cpu if isinstance(cpu, int | float) else None,
                "seconds": round(time.monotonic() - self.started, 3),
                "status": message["status"], **{k: message.get(k) for k in _TEXT}}  # fmt: skip

    def outcome(self, status_code: int, usage: Any) -> dict[str, Any]:
        """The reply once the child has exited without sending one whole."""
        cpu = round(usage.ru_utime + usage.ru_stime, 3) if usage is not None else None
        base = {"id": self.id, "cpu": cpu, "seconds": round(time.monotonic() - self.started, 3)}
        if self.stopped == "too_large":
            limit = f"{wire.MAX_BYTES:,}"
            return base | {"status": "too_large", "message": f"the result is over {limit} bytes"}
        if self.stopped in ("timeout", "cancelled"):
            return base | {"status": self.stopped, "message": ""}
        answer = self.answer()
        if answer is not None:
            return answer
        signum = -status_code if status_code < 0 else 0
        if signum in (signal.SIGXCPU, signal.SIGKILL):
            return base | {"status": "timeout", "message": ""}
        how = f"signal {signum}" if signum else f"exit status {status_code}"
        return base | {"status": "crashed", "message": f"the run died ({how}) without a result"}


def _frame(data: bytes) -> dict[str, Any] | None:
    if len(data) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack_from(data)
    if len(data) != _HEADER.size + size:
        return None
    try:
        message = json.loads(data[_HEADER.size :])
    except (ValueError, RecursionError):
        return None
    statuses = ("ok", "error", "memory", "too_large", "timeout")
    if not isinstance(message, dict) or message.get("status") not in statuses:
        return None
    if not all(isinstance(message.get(k, ""), str) for k in _TEXT):
        return None
    return message


def spawn(id: str, task: str, args: dict[str, Any], mode: sandbox.Mode,
          limits: sandbox.Limits) -> Child:  # fmt: skip
    """Fork a child that runs ``task`` in the sandbox; the caller collects it."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}")
    read, write = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child leaves by os._exit
        os.close(read)
        _child(task, args, mode, limits, write)
    os.close(write)
    os.set_blocking(read, False)
    with contextlib.suppress(OSError):
        os.setpgid(pid, pid)  # both sides set it: no window where a kill misses the group
    wall = time.monotonic() + 2 * limits.cpu_seconds + 5
    return Child(id, pid, read, wall, limits.cpu_seconds)


def run_here(task: str, args: dict[str, Any], *, mode: sandbox.Mode = "program",
             limits: sandbox.Limits | None = None) -> dict[str, Any]:  # fmt: skip
    """Fork one child of this process, wait for it, and return its outcome."""
    child = spawn("0", task, args, mode, limits or sandbox.Limits())
    selector = selectors.DefaultSelector()
    selector.register(child.fd, selectors.EVENT_READ)
    try:
        while not child.closed:
            if time.monotonic() > child.wall:
                child.kill("timeout")
                break
            if selector.select(timeout=0.1):
                child.read()
    finally:
        selector.close()
        os.close(child.fd)
    _, status_code, usage = os.wait4(child.pid, 0)
    return child.outcome(os.waitstatus_to_exitcode(status_code), usage)


# -- the warm parent ------------------------------------------------------------------


def warm(tasks: tuple[str, ...] = tuple(TASKS)) -> None:
    """Import and run once what ``tasks`` touch, so that children load nothing new.

    A child in the sandbox may not map new code (no shared library can load),
    so every compiled module and every lazy import must be in place first.
    """
    import warnings

    import torch

    torch.set_num_threads(1)
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "program" in tasks or "diagnose_program" in tasks:
            run_program("x = torch.ones(2, 2, requires_grad=True)\ny = (x + 2) * (x + 2) * 3\n"
                        "y.mean().backward()\nprint(x.grad)")  # fmt: skip
        if "diagnose_program" in tasks:
            examine("x = torch.randn(4, 3, requires_grad=True)\nm = nn.Linear(3, 1)\n"
                    "l = m(x).sigmoid().log().mean()\nl.backward()", graph=True)  # fmt: skip
        if "trusted" in tasks:
            execute(EXAMPLE, 256, "inspect")
            execute(EXAMPLE, 256, "diagnose")
        conv = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.MaxPool2d(2),
                                   torch.nn.BatchNorm2d(2), torch.nn.Flatten())  # fmt: skip
        conv(torch.randn(1, 1, 8, 8)).sum().backward()
        with torch.backends.mkldnn.flags(enabled=False):
            conv(torch.randn(1, 1, 8, 8)).sum().backward()
            torch.nn.LSTM(3, 4)(torch.randn(2, 1, 3))[0].sum().backward()
    wire.classes()
    abi = sandbox.landlock_abi()
    if abi:
        for mode in ("program", "trusted"):
            sandbox.ruleset(mode, abi)
    # Children share the parent's memory until they write to it; the collector would
    # write to every object it walks. Frozen objects are never walked.
    gc.collect()
    gc.freeze()


class _Server:
    """The parent's loop: requests in, children out, replies back."""

    def __init__(self, inbox: BinaryIO, outbox: BinaryIO) -> None:
        self.inbox, self.outbox = inbox, outbox
        self.children: dict[int, Child] = {}  # running, by pipe fd
        self.exiting: dict[int, float] = {}  # pid -> when it answered: reaped in passing
        self.selector = selectors.DefaultSelector()
        self.buffer = bytearray()
        self.open = True

    def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message).encode()
        self.outbox.write(_HEADER.pack(len(data)) + data)
        self.outbox.flush()

    def serve(self) -> None:
        fd = self.inbox.fileno()
        os.set_blocking(fd, False)
        self.selector.register(fd, selectors.EVENT_READ)
        while self.open or self.children or self.exiting:
            for key, _ in self.selector.select(timeout=0.05):
                if key.fd == fd:
                    self.receive(fd)
                else:
                    self.children[key.fd].read()
            now = time.monotonic()
            for child in list(self.children.values()):
                answer = child.answer()
                if answer is not None:  # reply now; the exit is the kernel's business
                    self.forget(child)
                    self.exiting[child.pid] = now
                    self.send(answer)
                    continue
                if not child.closed and now > child.wall:
                    child.kill("timeout")
                if child.closed or child.stopped:
                    self.reap(child)
            self.reap_exiting(now)

    def receive(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 1 << 20)
        except BlockingIOError:
            return
        if not chunk:  # the server has gone: finish, kill what is left
            self.open = False
            self.selector.unregister(fd)
            for child in self.children.values():
                child.kill("cancelled")
            return
        self.buffer += chunk
        while len(self.buffer) >= _HEADER.size:
            (size,) = _HEADER.unpack_from(self.buffer)
            if len(self.buffer) < _HEADER.size + size:
                break
            request = json.loads(self.buffer[_HEADER.size : _HEADER.size + size])
            del self.buffer[: _HEADER.size + size]
            self.handle(request)

    def handle(self, request: dict[str, Any]) -> None:
        if request.get("op") == "cancel":
            for child in self.children.values():
                if child.id == request.get("id"):
                    child.kill("cancelled")
            return
        limits = sandbox.Limits(**request.get("limits", {}))
        try:
            child = spawn(str(request["id"]), request["task"], request.get("args", {}),
                          request.get("mode", "program"), limits)  # fmt: skip
        except (OSError, ValueError) as exc:
            self.send({"id": request.get("id"), "status": "crashed",
                       "message": f"no worker could be started: {exc}"})  # fmt: skip
            return
        self.children[child.fd] = child
        self.selector.register(child.fd, selectors.EVENT_READ)
        self.send({"id": child.id, "status": "started"})

    def forget(self, child: Child) -> None:
        self.selector.unregister(child.fd)
        os.close(child.fd)
        del self.children[child.fd]

    def reap(self, child: Child) -> None:
        """A child that closed its pipe or was killed without a whole reply: why it ended."""
        if child.stopped is None:  # it closed its pipe: it should be exiting
            pid, status_code, usage = os.wait4(child.pid, os.WNOHANG)
            if pid == 0:
                child.closing = child.closing or time.monotonic()
                if time.monotonic() - child.closing < 2:
                    return
                child.kill(None)  # closed its pipe but kept running: it has said all it will
                pid, status_code, usage = os.wait4(child.pid, 0)
        else:
            pid, status_code, usage = os.wait4(child.pid, 0)
        self.forget(child)
        self.send(child.outcome(os.waitstatus_to_exitcode(status_code), usage))

    def reap_exiting(self, now: float) -> None:
        for pid, answered in list(self.exiting.items()):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = pid
            if done == 0 and now - answered > 2:  # answered, then lingered: end it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                done = pid
            if done:
                del self.exiting[pid]


def main() -> None:
    """Entry point of the warm parent (``python -m gradlab.isolation.worker``)."""
    inbox = os.fdopen(os.dup(0), "rb", buffering=0)
    outbox = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # stray prints never reach the protocol
    # No PR_SET_PDEATHSIG here: it fires when the *thread* that started this process ends
    # (a page's script thread), not the server. The server's end closes stdin instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl+C is the server's
    server = _Server(inbox, outbox)
    try:
        warm()
        found = sandbox.status()
        server.send({"id": None, "status": "ready", "sandbox": {
            "landlock": found.landlock, "seccomp": found.seccomp,
            "network_namespace": found.network_namespace, "reason": found.reason}})  # fmt: skip
    except BaseException as exc:
        server.send({"id": None, "status": "failed", "message": f"{type(exc).__name__}: {exc}"})
        return
    server.serve()


if __name__ == "__main__":
    main()
