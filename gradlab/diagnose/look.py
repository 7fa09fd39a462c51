"""Take one look at what is diagnosed: run it under the watches and gather :class:`Evidence`.

Four subjects: a model with a batch (and a loss function), a function that
takes no arguments and returns a loss or ``(model, loss)``, a tensor program
(run by the safe interpreter), and a traced graph (facts only). ``deep=True``
also records forward values and runs :func:`gradlab.backward`, so the graph
carries every node's value and gradient: the page shows it, and the
backward NaN check reads it.
"""

from __future__ import annotations

import contextlib
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradlab.core._gc import paused_gc
from gradlab.core.backward import backward
from gradlab.core.errors import GradLabError
from gradlab.core.graph import ACCUMULATE_GRAD, Graph
from gradlab.core.record import record
from gradlab.core.summary import summarize
from gradlab.core.trace import trace
from gradlab.core.walk import walk
from gradlab.diagnose.evidence import Evidence, NodeIndex
from gradlab.diagnose.loop import LoopWatch
from gradlab.diagnose.observe import CallWatch, ModuleWatch, watch_layers
from gradlab.program import run_program

LossFn = Callable[..., torch.Tensor]


class ProgramFailure(Exception):
    """A program's runtime error, carried as an exception (its message is PyTorch's)."""


@contextlib.contextmanager
def _seeded(seed: int, caught: list[str]) -> Iterator[None]:
    # The CPU generator, and CUDA's when the code uses CUDA: torch.manual_seed also
    # looks for every other backend, which costs more than a small model's forward.
    cuda = torch.cuda.is_initialized()  # type: ignore[no-untyped-call]
    devices = list(range(torch.cuda.device_count())) if cuda else []
    with torch.random.fork_rng(devices), warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        torch.default_generator.manual_seed(seed)
        if cuda:
            torch.cuda.manual_seed_all(seed)
        try:
            yield
        finally:
            caught += [str(w.message) for w in seen]


def look_model(
    model: nn.Module, inputs: Any, target: Any, loss_fn: LossFn | None,
    *, deep: bool = False, seed: int = 0,
) -> Evidence:  # fmt: skip
    """Forward the batch, compute the loss and run backward, all watched."""
    ev = Evidence(model=model, params=dict(model.named_parameters()))
    for p in ev.params.values():
        p.grad = None  # the gradients of this batch alone
    calls = CallWatch()
    # One forward and backward make thousands of small objects and no garbage cycles:
    # the collector's passes over them would cost as much as the look.
    with paused_gc(), _seeded(seed, ev.warnings):
        try:
            with record() if deep else contextlib.nullcontext(), calls:
                out = model(inputs)
                if loss_fn is None:
                    ev.loss = out
                else:
                    ev.loss = loss_fn(out, target) if target is not None else loss_fn(out)
        except Exception as exc:
            _not_ours(exc)
            ev.error = exc
        ev.calls, ev.calls_complete = calls.calls, not calls.truncated
        ev.modules = watch_layers(ev.calls, model, ev.params)
        if ev.loss is not None and (deep or _finite(ev.loss)):
            _backward(ev, deep)
        elif ev.loss is not None:  # a non-finite loss: the forward pass holds the answer
            ev.index = NodeIndex(ev.loss)
    return ev


def _finite(loss: Any) -> bool:
    return not isinstance(loss, torch.Tensor) or bool(torch.isfinite(loss.detach()).all())


def _backward(ev: Evidence, deep: bool) -> None:
    """Run backward from ``ev.loss``: the real one, captured onto a graph when ``deep``."""
    loss = ev.loss
    assert loss is not None
    if not isinstance(loss, torch.Tensor):
        raise GradLabError(f"The loss must be a tensor; it is a {type(loss).__name__}.")
    ev.index = NodeIndex(loss)
    try:
        if deep and loss.grad_fn is not None:
            ev.graph = trace(loss, model=ev.model, histograms=True)
            backward(loss, ev.graph, histograms=True)
        else:  # kept for a second, hooked pass if the gradients are not finite
            loss.backward(retain_graph=True)  # type: ignore[no-untyped-call]
        ev.backward_ran = True
    except Exception as exc:
        _not_ours(exc)
        ev.error = exc
        if ev.graph is None and loss.grad_fn is not None:
            ev.graph = trace(loss, model=ev.model, histograms=True)


_PACKAGE = str(Path(__file__).resolve().parents[1])


def _not_ours(exc: BaseException) -> None:
    """Raise a failure of GradLab's own machinery as such, never as the user's error."""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames and frames[-1].filename.startswith(_PACKAGE) and not isinstance(exc, GradLabError):
        raise GradLabError(
            f"GradLab failed on this code (a bug in GradLab, not in the code): "
            f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc


def look_callable(func: Callable[[], object], *, deep: bool = False, seed: int = 0) -> Evidence:
    """Call ``func()`` (no arguments; it returns a loss or ``(model, loss)``), all watched."""
    ev = Evidence()
    calls, modules = CallWatch(capture_backward=deep), ModuleWatch()
    loop = LoopWatch(calls)
    result: object = None
    with _seeded(seed, ev.warnings):
        try:
            with record(), calls, modules, loop:
                result = func()
        except Exception as exc:
            _not_ours(exc)
            ev.error = exc
    ev.calls, ev.modules = calls.calls, modules.calls
    ev.calls_complete = not calls.truncated
    ev.steps, ev.optimizers = loop.steps, loop.optimizers
    if ev.error is not None:
        _graph_of_last(ev)
        ev.params = _leaves(ev)
        return ev
    if isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], nn.Module):
        ev.model, ev.loss = result
    else:
        ev.loss = result  # type: ignore[assignment]
    if not isinstance(ev.loss, torch.Tensor):
        raise GradLabError(
            f"The function returned {type(ev.loss).__name__}; it must return the loss tensor "
            "or a (model, loss) pair."
        )
    if ev.model is not None:
        ev.params = dict(ev.model.named_parameters())
    else:
        ev.params = _leaves(ev, _replaced_unused(modules.replaced, ev.loss))
    ran = [c for c in calls.calls if c.name == "backward"]
    if any(c.args and c.args[0] is ev.loss for c in ran) or (ran and ev.loss.grad_fn is None):
        ev.backward_ran = True
        ev.index = NodeIndex(ev.loss)
        captured = [b for b in calls.backwards if b.root is ev.loss]
        ev.graph = captured[-1].graph if captured else _trace(ev.loss, ev.model)
    else:
        ev.backward_ran = bool(ran)
        with _seeded(seed, ev.warnings):
            _backward(ev, deep)
        if ev.graph is None and ev.loss.grad_fn is not None:
            ev.graph = _trace(ev.loss, ev.model)
    return ev


def _trace(loss: torch.Tensor, model: nn.Module | None) -> Graph | None:
    if loss.grad_fn is None and not loss.requires_grad:
        return None
    return trace(loss, model=model, histograms=True)


def _graph_of_last(ev: Evidence) -> None:
    """After an error: the graph of the last tensor with history the code made."""
    for call in reversed(ev.calls or []):
        out = call.out
        if isinstance(out, torch.Tensor) and out.grad_fn is not None:
            ev.index = NodeIndex(out)
            ev.graph = trace(out, histograms=True)
            return


def _replaced_unused(replaced: list[torch.Tensor], loss: torch.Tensor) -> set[int]:
    """The ids of the parameters a module let go of (``head.weight = emb.weight`` ties
    the head to the embedding) that the loss does not use: no longer part of a model."""
    if not replaced:
        return set()
    used: set[int] = set()
    if loss.grad_fn is not None:
        fns, _ = walk([loss.grad_fn])
        used = {id(fn.variable) for fn in fns if type(fn).__name__ == ACCUMULATE_GRAD}
    else:
        used = {id(loss)}
    return {id(p) for p in replaced if id(p) not in used}


def _leaves(ev: Evidence, skip: set[int] | None = None) -> dict[str, torch.Tensor]:
    """Leaf tensors the code made with requires_grad=True, named by their place in the graph."""
    found: dict[int, torch.Tensor] = {}
    for call in ev.calls or []:
        for t in [*call.inputs(), *call.outputs()]:
            if isinstance(t, torch.Tensor) and t.is_leaf and t.requires_grad:
                found.setdefault(id(t), t)
    for i in skip or ():
        found.pop(i, None)
    names: dict[str, torch.Tensor] = {}
    for i, t in enumerate(found.values()):
        node = ev.index.tensor(t)
        shape = "×".join(str(d) for d in t.shape) or "scalar"
        names[f"{node or f'tensor {i}'} ({shape})"] = t
    return names


def look_program(source: str) -> Evidence:
    """Run a tensor program with the safe interpreter, watched; errors become evidence."""
    calls, modules = CallWatch(skip_gradlab=True), ModuleWatch()
    loop = LoopWatch(calls)
    with calls, modules, loop:
        result = run_program(source)
    error = result.error
    if error is not None and error.kind != "runtime":
        raise GradLabError(f"The program did not run: {error.describe()}")
    ev = Evidence(calls=calls.calls, modules=modules.calls, steps=loop.steps)
    ev.calls_complete = not calls.truncated
    ev.optimizers = loop.optimizers
    ev.graph = result.graph
    ev.index = NodeIndex(None, result.graph)
    ev.backward_ran = result.backward_calls > 0
    ev.warnings = [n.message for n in result.notices]
    if error is not None:
        ev.error = ProgramFailure(error.message)
        ev.error_node = error.node
    ev.params = _program_leaves(ev, result.variables)
    return ev


def _program_leaves(ev: Evidence, variables: tuple[Any, ...]) -> dict[str, torch.Tensor]:
    """The program's leaves that require grad, named after its variables where they match."""
    leaves = _leaves(ev)
    named: dict[str, torch.Tensor] = {}
    candidates = [v for v in variables if v.kind == "tensor" and v.is_leaf and v.requires_grad]
    for label, t in leaves.items():
        summary = summarize(t.detach())
        match = next((v.name for v in candidates if v.value == summary), None)
        named[match or label] = t
    return named


def look_graph(G: Graph) -> Evidence:
    """Facts only: a graph traced (and maybe backpropagated) elsewhere."""
    return Evidence(graph=G, index=NodeIndex(None, G), backward_ran="backward" in G.graph)
