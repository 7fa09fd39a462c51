"""Where graphs come from outside the app: presets and ``file.py:func`` targets."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from gradlab.core.backward import backward
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.core.record import record
from gradlab.core.trace import trace
from gradlab.zoo.presets import Case


@dataclass
class Target:
    """What a target function returned: the tensor to trace, and its model if given."""

    root: torch.Tensor
    model: nn.Module | None = None


def load_callable(spec: str) -> Callable[[], object]:
    """Import ``path/to/file.py:func`` and return ``func``; clear errors for every mistake."""
    path_text, sep, name = spec.rpartition(":")
    if not sep or not path_text or not name:
        raise GradLabError(f"'{spec}' is not of the form path/to/file.py:function.")
    path = Path(path_text)
    if not path.is_file():
        raise GradLabError(f"No such file: {path}.")
    module_name = f"gradlab_target_{abs(hash(path.resolve()))}"
    spec_ = importlib.util.spec_from_file_location(module_name, path)
    if spec_ is None or spec_.loader is None:
        raise GradLabError(f"Cannot import {path}: is it a Python file?")
    module = importlib.util.module_from_spec(spec_)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec_.loader.exec_module(module)
    except SyntaxError as exc:
        line = f", line {exc.lineno}" if exc.lineno else ""
        raise GradLabError(f"{path}{line}: SyntaxError: {exc.msg}") from exc
    except SystemExit as exc:
        raise GradLabError(f"Importing {path} called sys.exit({exc.code!r}).") from exc
    except Exception as exc:
        where = _line_in(exc, path)
        raise GradLabError(f"Importing {path} failed{where}: {_last_line(exc)}") from exc
    finally:
        sys.path.pop(0)
    func = getattr(module, name, None)
    if not callable(func):
        raise GradLabError(f"{path} has no function '{name}'.")
    return func  # type: ignore[no-any-return]


def run_target(spec: str) -> Target:
    """Call the target inside :func:`gradlab.record` and check what it returned.

    The function takes no arguments and returns the tensor to trace (a loss),
    or a ``(model, tensor)`` pair.
    """
    func = load_callable(spec)
    try:
        with record():
            result = func()
    except SystemExit as exc:
        raise GradLabError(f"{spec} called sys.exit({exc.code!r}).") from exc
    except Exception as exc:
        line = _line_in(exc, Path(spec.rpartition(":")[0]))
        where = f" ({line.removeprefix(', ')})" if line else ""
        raise GradLabError(f"{spec} raised {_last_line(exc)}{where}") from exc
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        model, root = result
    else:
        model, root = None, result
    if not isinstance(root, torch.Tensor):
        raise GradLabError(
            f"{spec} returned {type(root).__name__}; it must return a tensor (a loss) "
            "or a (model, tensor) pair."
        )
    return Target(root, model)


def trace_target(target: Target, *, run_backward: bool = True, show_saved: bool = False) -> Graph:
    """Trace a target; run the backward pass too when the root is a scalar."""
    G = trace(target.root, model=target.model, show_saved=show_saved)
    if run_backward and target.root.numel() == 1 and target.root.grad_fn is not None:
        backward(target.root, G)
    return G


def trace_case(case: Case, *, run_backward: bool = True, show_saved: bool = False) -> Graph:
    """Forward a preset's batch with values recorded, trace the loss, run backward."""
    with record():
        loss = case.loss()
    return trace_target(Target(loss, case.model), run_backward=run_backward, show_saved=show_saved)


def _line_in(exc: BaseException, path: Path) -> str:
    """``", line N"``: the last line of ``path`` in the traceback of ``exc`` ("" if none)."""
    target = str(path.resolve())
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == target or frame.filename == str(path):
            found = f", line {frame.lineno}"
    return found


def _last_line(exc: BaseException) -> str:
    lines = traceback.format_exception_only(type(exc), exc)
    return lines[-1].strip() if lines else type(exc).__name__
