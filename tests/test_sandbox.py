"""The OS sandbox on its own: raw Python in a worker child, the interpreter bypassed.

Each test registers a task that runs arbitrary Python (as if a program had
broken out of the interpreter) and checks that the kernel refuses: no file
created or written, no read outside the allowed folders, no socket, no
process, no shared library, no executable memory, no signal to the parent,
and no run that outlives its limits.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from gradlab.isolation import sandbox, wire, worker

pytestmark = pytest.mark.skipif(
    not sandbox.status().complete, reason=f"no OS sandbox here: {sandbox.status().reason}"
)


def _attempts(args: dict[str, Any]) -> dict[str, str]:
    """Run each snippet; "ran" if it went through, else the exception it raised.

    A snippet that makes a raw syscall asserts that the call succeeded, so a
    refusal shows as an AssertionError.
    """
    results = {}
    for name, code in args["attempts"].items():
        try:
            exec(code, {"__name__": "attack"})
            results[name] = "ran"
        except BaseException as exc:
            results[name] = f"{type(exc).__name__}: {exc}"
    return results


@pytest.fixture(autouse=True)
def raw_task(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(worker.TASKS, "attempts", _attempts)


def attempt(mode: sandbox.Mode = "program", limits: sandbox.Limits | None = None,
            **snippets: str) -> dict[str, str]:  # fmt: skip
    outcome = worker.run_here("attempts", {"attempts": snippets}, mode=mode, limits=limits)
    assert outcome["status"] == "ok", outcome
    results: dict[str, str] = wire.decode(outcome["reply"])["value"]
    return results


def refused(results: dict[str, str]) -> None:
    ran = {name: r for name, r in results.items() if r == "ran"}
    assert not ran, f"the sandbox let these through: {sorted(ran)}"


@pytest.mark.parametrize("mode", ["program", "trusted"])
def test_no_file_is_created_written_or_removed(tmp_path: Path, mode: sandbox.Mode) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("original")
    new = tmp_path / "new.txt"
    results = attempt(
        mode,
        open_write=f"open({str(new)!r}, 'w').write('x')",
        open_append=f"open({str(existing)!r}, 'a').write('x')",
        open_rw=f"open({str(existing)!r}, 'r+').write('x')",
        os_open=f"import os; os.open({str(new)!r}, os.O_CREAT | os.O_WRONLY)",
        mkdir=f"import os; os.mkdir({str(tmp_path / 'd')!r})",
        remove=f"import os; os.remove({str(existing)!r})",
        rename=f"import os; os.rename({str(existing)!r}, {str(new)!r})",
        symlink=f"import os; os.symlink('/etc/passwd', {str(new)!r})",
        link=f"import os; os.link({str(existing)!r}, {str(new)!r})",
        chmod=f"import os; os.chmod({str(existing)!r}, 0o777)",
        truncate=f"import os; os.truncate({str(existing)!r}, 0)",
        tmp_file="import tempfile; tempfile.TemporaryFile()",
        dev_shm="open('/dev/shm/gradlab-attack', 'w')",
        raw_openat="import ctypes; fd = ctypes.CDLL(None).syscall(257, -100, "
        f"{str(new).encode()!r}, 0o101, 0o644); assert fd >= 0, fd",
    )
    refused(results)
    assert existing.read_text() == "original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]


def test_reads_stay_inside_what_python_and_torch_need(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    home = Path.home() / ".bashrc"
    results = attempt(
        passwd="open('/etc/passwd').read()",
        hostname="open('/etc/hostname').read()",
        secret=f"open({str(secret)!r}).read()",
        listing=f"import os; os.listdir({str(tmp_path)!r})",
        parent_environ="import os; open(f'/proc/{os.getppid()}/environ').read()",
        home=f"open({str(home)!r}).read()" if home.exists() else "raise PermissionError('none')",
    )
    refused(results)
    allowed = attempt(torch_source="import torch; open(torch.__file__).read()")
    assert allowed == {"torch_source": "ran"}


def test_trusted_mode_reads_but_never_writes(tmp_path: Path) -> None:
    data = tmp_path / "weights.txt"
    data.write_text("1 2 3")
    results = attempt("trusted", read=f"assert open({str(data)!r}).read() == '1 2 3'",
                      write=f"open({str(data)!r}, 'w')")  # fmt: skip
    assert results["read"] == "ran"
    assert results["write"].startswith("PermissionError")
    assert data.read_text() == "1 2 3"


@pytest.mark.parametrize("mode", ["program", "trusted"])
def test_no_network(mode: sandbox.Mode) -> None:
    received: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(5)
    port = server.getsockname()[1]

    def accept() -> None:
        try:
            conn, _ = server.accept()
            received.append(conn.recv(100))
        except OSError:
            pass

    listener = threading.Thread(target=accept)
    listener.start()
    results = attempt(
        mode,
        tcp=f"import socket; socket.create_connection(('127.0.0.1', {port}), 2).send(b'hi')",
        udp="import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM)",
        ipv6="import socket; socket.socket(socket.AF_INET6)",
        unix="import socket; socket.socket(socket.AF_UNIX)",
        raw_syscall="import ctypes; fd = ctypes.CDLL(None).syscall(41, 2, 1, 0); assert fd >= 0",
        urllib="import urllib.request; urllib.request.urlopen('http://127.0.0.1:1', timeout=2)",
    )
    server.close()
    listener.join()
    refused(results)
    assert received == []


@pytest.mark.parametrize("mode", ["program", "trusted"])
def test_no_process_can_start(mode: sandbox.Mode) -> None:
    results = attempt(
        mode,
        fork="import os; os.fork()",
        subprocess="import subprocess; subprocess.run(['true'])",
        system="import os; assert os.system('true') == 0",
        execv="import os; os.execv('/bin/true', ['true'])",
        spawn="import os; os.posix_spawn('/bin/true', ['true'], {})",
        raw_fork="import ctypes; pid = ctypes.CDLL(None).syscall(57); assert pid >= 0, pid",
        raw_clone="import ctypes; pid = ctypes.CDLL(None).syscall(56, 17, 0, 0, 0, 0); "
        "assert pid >= 0, pid",
        multiprocessing="import multiprocessing as m; p = m.Process(target=print); p.start()",
    )
    refused(results)


def _unloaded_extension() -> Path:
    """A compiled module of the standard library that this process has not mapped."""
    mapped = Path("/proc/self/maps").read_text()
    for folder in (Path(p) for p in sys.path if p.endswith("lib-dynload")):
        for name in ("_ctypes_test", "_testcapi", "_xxtestfuzz", "audioop", "_curses", "xxlimited"):
            for path in sorted(folder.glob(f"{name}.*.so")):
                if str(path) not in mapped:
                    return path
    pytest.skip("no unloaded extension module to try")


def test_no_shared_library_and_no_executable_memory() -> None:
    library = _unloaded_extension()
    results = attempt(
        cdll=f"import ctypes; ctypes.CDLL({str(library)!r})",
        import_extension=f"import importlib.util as u; s = u.spec_from_file_location("
        f"{library.name.split('.')[0]!r}, {str(library)!r}); u.module_from_spec(s)",
        mmap_exec="import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_EXEC)",
        mprotect_exec="import ctypes, mmap; m = mmap.mmap(-1, 4096); "
        "a = ctypes.addressof(ctypes.c_char.from_buffer(m)); "
        "assert ctypes.CDLL(None).mprotect(ctypes.c_void_p(a), 4096, 5) == 0",
        memfd="import os; os.memfd_create('x')",
    )
    refused(results)


def test_signals_and_debugging_of_other_processes_are_refused() -> None:
    results = attempt(
        kill_parent="import os; os.kill(os.getppid(), 0)",
        kill_init="import os; os.kill(1, 0)",
        ptrace="import ctypes, os; r = ctypes.CDLL(None).ptrace(16, os.getppid(), 0, 0); "
        "assert r == 0, r",
        unshare="import os; os.unshare(os.CLONE_NEWNS)",
        landlock_rule="import ctypes\nfor fd in range(3, 64):\n"
        "    assert ctypes.CDLL(None).syscall(445, fd, 1, b'\\0' * 12, 0) != 0",
    )
    assert results.pop("landlock_rule") == "ran"  # every attempt to widen a ruleset failed
    refused(results)
    assert attempt(passwd="open('/etc/passwd').read()")["passwd"].startswith("PermissionError")


def test_only_the_reply_pipe_is_open() -> None:
    results = attempt(
        fds="import os\nopen_fds = []\nfor fd in range(3, 64):\n    try:\n        os.fstat(fd)\n"
        "        open_fds.append(fd)\n    except OSError:\n        pass\n"
        "assert len(open_fds) == 1, open_fds",
    )
    assert results == {"fds": "ran"}


def test_a_run_cannot_outlive_its_limits() -> None:
    spin = worker.run_here("attempts", {"attempts": {"spin": "while True: pass"}},
                           limits=sandbox.Limits(cpu_seconds=1))  # fmt: skip
    assert spin["status"] == "timeout"
    assert spin["cpu"] is not None and spin["cpu"] < 5
    sleep = worker.run_here("attempts", {"attempts": {"sleep": "import time; time.sleep(60)"}},
                            limits=sandbox.Limits(cpu_seconds=1))  # fmt: skip
    assert sleep["status"] == "timeout"
    assert sleep["seconds"] < 30


def test_memory_is_capped() -> None:
    results = attempt(limits=sandbox.Limits(memory_mb=256), big="bytearray(2 << 30)",
                      torch_big="import torch; torch.ones(1 << 30)")  # fmt: skip
    assert results["big"].startswith("MemoryError")
    assert results["torch_big"] != "ran"


def test_the_child_is_gone_after_its_run() -> None:
    child = worker.spawn("t", "attempts", {"attempts": {"spin": "while True: pass"}}, "program",
                         sandbox.Limits(cpu_seconds=30))  # fmt: skip
    child.kill("cancelled")
    os.waitpid(child.pid, 0)
    os.close(child.fd)
    with pytest.raises(ProcessLookupError):
        os.kill(child.pid, 0)


def test_each_layer_is_there_on_this_machine() -> None:
    found = sandbox.status()
    assert found.landlock >= 1 and found.seccomp and found.network_namespace
    assert found.complete and found.reason == ""
