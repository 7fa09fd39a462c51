"""Every hostile program of tests/hostile/corpus.py gets its outcome, cleanly.

A clear one-line message (no traceback, no server paths), nothing written to
disk, torch / F / nn unchanged for the next program. Each program runs twice:
through the interpreter alone, in this process (the first wall, on its own),
and through the sandboxed worker, the way the app and the command line run it.
The programs that only a separate process can stop (``needs_worker``) run
only through the worker.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from gradlab.isolation import pool, sandbox
from gradlab.program import Limits, ProgramResult, run_program
from tests.hostile.corpus import CORPUS, Hostile

RUNNERS = ("interpreter", "worker")


@pytest.fixture(scope="module")
def workers() -> Iterator[pool.Pool]:
    if not sandbox.status().complete:
        pytest.skip(f"no OS sandbox here: {sandbox.status().reason}")
    started = pool.Pool(2)
    started.wait_ready()
    yield started
    started.close()


def run(
    source: str, runner: str = "interpreter", workers: pool.Pool | None = None
) -> ProgramResult:
    """Run one program through the interpreter here, or the way the app does."""
    if runner == "worker":
        result: ProgramResult = pool.run_program(source, session="hostile", pool=workers)
        return result
    return run_program(source, Limits(timeout=3.0))


# -- what must hold after every program ------------------------------------------------

_LEAKS = ("Traceback", 'File "', "/work/", "site-packages", "/usr/lib", ".venv")


def _check_message(text: str) -> None:
    assert "\n" not in text, text
    assert len(text) < 800, text[:200]
    for leak in _LEAKS:
        assert leak not in text, text


_TORCH_NAMES = ["add", "sub", "relu", "tensor", "ones", "load", "save", "Tensor", "nn", "optim"]


def _shared_state() -> dict[str, Any]:
    """The objects every program shares in this process, by identity, and the settings."""
    F = torch.nn.functional
    return {
        "F": dict(vars(F)),
        "nn": dict(vars(torch.nn)),
        "torch": {n: getattr(torch, n) for n in _TORCH_NAMES},
        "Tensor": {n: getattr(torch.Tensor, n) for n in ("add", "sub", "__add__", "backward")},
        "Module.__call__": torch.nn.Module.__call__,
        "Linear.forward": torch.nn.Linear.forward,
        "init.zeros_": torch.nn.init.zeros_,
        "settings": (
            torch.is_grad_enabled(),
            torch.get_default_dtype(),
            torch.get_num_threads(),
            torch.backends.cudnn.enabled,
        ),
    }


def _same(before: dict[str, Any], after: dict[str, Any]) -> None:
    for key, value in before.items():
        if isinstance(value, dict):
            changed = [n for n in value if after[key].get(n) is not value[n]]
            assert not changed, f"{key}: {changed} changed"
            assert set(after[key]) == set(value), f"{key}: names added or removed"
        elif isinstance(value, tuple):
            assert after[key] == value, key
        else:
            assert after[key] is value, key
    x = torch.tensor([-1.0, 2.0])
    assert torch.nn.functional.relu(x).tolist() == [0.0, 2.0]
    assert torch.add(x, x).tolist() == [-2.0, 4.0]
    assert torch.nn.Linear(2, 1)(x).shape == (1,)


# -- the corpus --------------------------------------------------------------------------


def _id(entry: Hostile) -> str:
    return f"{entry.category}-{entry.name}"


def test_the_corpus_is_large_and_covers_every_category() -> None:
    assert len(CORPUS) >= 70
    assert len({e.name for e in CORPUS}) == len(CORPUS)
    categories = {e.category for e in CORPUS}
    assert {"dunder", "format", "frames", "files", "libraries", "processes", "network",
            "aliasing", "tampering", "bombs", "hooks", "loops", "output", "exceptions",
            "fake"} <= categories  # fmt: skip


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("entry", CORPUS, ids=_id)
def test_hostile_program(
    entry: Hostile,
    runner: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    if entry.needs_worker and runner == "interpreter":
        pytest.skip("one C-level operation or a pile of Python objects: only the worker's "
                    "OS limits stop it")  # fmt: skip
    workers = request.getfixturevalue("workers") if runner == "worker" else None
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    target = folder / "escape.bin"
    before = _shared_state()

    result = run(entry.source.replace("{target}", str(target)), runner, workers)

    assert list(folder.iterdir()) == [], "the program wrote a file"
    _same(before, _shared_state())
    if entry.expect == "runs":
        assert result.error is None, result.error
        assert entry.word in result.output
        for leak in _LEAKS:
            assert leak not in result.output
            assert not any(leak in v.text for v in result.variables)
        if entry.category == "fake":  # its text stays text: no graph, no error appears
            assert result.graph is None and result.backward_calls == 0
        return
    assert result.error is not None, f"{entry.name} ran to the end"
    message = result.error.describe()
    _check_message(message)
    assert message.startswith(f"line {result.error.line}: ")
    if entry.expect != "error":
        assert result.error.kind == entry.expect, message
    assert entry.word in message, message


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_program_after_a_tampering_attempt_runs_as_usual(
    runner: str, request: pytest.FixtureRequest
) -> None:
    workers = request.getfixturevalue("workers") if runner == "worker" else None
    for entry in CORPUS:
        if entry.tampers:
            run(entry.source, runner, workers)
    result = run("x = torch.tensor([-1., 2.], requires_grad=True)\ny = F.relu(x).sum()\n"
                 "y.backward()", runner, workers)  # fmt: skip
    assert result.error is None
    assert result.variables[0].grad is not None
    assert result.variables[0].grad["values"] == [0.0, 1.0]


# -- the command line ---------------------------------------------------------------------

_CLI_SAMPLE = {
    "export": ("file_writer", "nested_list_compare"),
    "steps": ("wraps_copies_dict", "tensor_hook_allocates"),
    "doctor": ("pluggable_allocator", "while_true"),
}
_BY_NAME = {e.name: e for e in CORPUS}


@pytest.mark.parametrize(
    ("command", "name"),
    [(command, name) for command, names in _CLI_SAMPLE.items() for name in names],
)
def test_cli_refuses_with_one_line(command: str, name: str, tmp_path: Path) -> None:
    entry = _BY_NAME[name]
    source = entry.source.replace("{target}", str(tmp_path / "escape.bin"))
    argv = [sys.executable, "-m", "gradlab", command, "--expr", source]
    if command == "export":
        argv[4:4] = ["-o", str(tmp_path / "graph.svg")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode != 0, done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("gradlab"), lines[0]
    assert entry.word in lines[0] and "line " in lines[0], lines[0]
    _check_message(lines[0])
    assert list(tmp_path.iterdir()) == []
