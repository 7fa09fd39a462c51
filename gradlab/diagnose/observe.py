"""Watching code run: every torch call, every module call, every ``backward()``.

* :class:`CallWatch` is a ``TorchFunctionMode`` that keeps every torch
  function and tensor method call of a block (function, arguments, output, and
  whether grad mode was on), but not the reads of properties that give plain
  values (``.dtype``, ``.shape``). The diagnosis reads it afterwards: where a
  parameter's path was cut, which op made the first NaN, what a loss was fed.
  With ``capture_backward`` it also turns each ``backward()`` into
  :func:`gradlab.backward` on a freshly traced graph, so the gradient each
  node sent is known (the deep look, only when a problem needs it).
* :class:`ModuleWatch` keeps every call of a layer (a module with parameters
  of its own), in the order the calls finish, and the size of the gradient its
  output receives in backward, through a global forward hook that exists only
  while some thread watches.

Both keep live references only; nothing is summarised while the code runs.
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from gradlab.core.backward import backward
from gradlab.core.graph import Graph
from gradlab.core.hooks import GlobalHooks
from gradlab.core.trace import trace


@dataclass(slots=True)
class Call:
    """One torch call: live references, for a later look (not frozen: a frozen
    dataclass sets each field through ``object.__setattr__``, and one is made per call)."""

    func: Any
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None
    out: Any
    grad_enabled: bool
    version: int = -1  # the output's version counter right after the call (-1: not a tensor)

    @property
    def name(self) -> str:
        """``"log"``, ``"detach"``, ``"data"`` (the ``.data`` property), ``"__truediv__"``."""
        return call_name(self.func)

    def inputs(self) -> list[Any]:
        """Tensors and arrays among the arguments."""
        found = [a for arg in self.args for a in arrays_in(arg)]
        if self.kwargs:
            found += [a for v in self.kwargs.values() for a in arrays_in(v)]
        return found

    def outputs(self) -> list[Any]:
        """Tensors and arrays in the output."""
        return arrays_in(self.out)


@dataclass
class TracedBackward:
    """One ``backward()`` seen by :class:`CallWatch` with ``capture_backward``, run as
    :func:`gradlab.backward` on the graph traced just before it."""

    root: torch.Tensor
    graph: Graph
    error: BaseException | None = None


class CallWatch(TorchFunctionMode):
    """Keep every torch function and tensor method call made inside the block."""

    def __init__(
        self, capture_backward: bool = False, limit: int = 200_000, skip_gradlab: bool = False
    ) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.capture_backward = capture_backward
        self.skip_gradlab = skip_gradlab  # leave out the calls GradLab's own machinery makes
        self.backwards: list[TracedBackward] = []
        self.limit = limit  # calls kept; later ones run unseen (a long training loop)
        self.truncated = False

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        if self.capture_backward and _is_backward_function(func) and args:
            out = self._backward(func, args, kwargs or {})
        else:
            out = func(*args, **kwargs) if kwargs else func(*args)
        if type(out) in _PLAIN and getattr(func, "__name__", None) == "__get__":
            pass  # reading .dtype, .shape or .is_nested: nothing a check looks at
        elif len(self.calls) >= self.limit:
            self.truncated = True
        elif not (self.skip_gradlab and _from_gradlab()):
            # A tight loop: keep references only.
            version = out._version if isinstance(out, torch.Tensor) else -1
            self.calls.append(Call(func, args, kwargs, out, torch.is_grad_enabled(), version))
        return out

    def _backward(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        root = args[0]
        simple = isinstance(root, torch.Tensor) and root.grad_fn is not None and len(args) == 1
        if not simple or set(kwargs) - {"retain_graph", "gradient"}:
            return func(*args, **kwargs)
        G = trace(root, histograms=True)
        captured = TracedBackward(root, G)
        self.backwards.append(captured)
        retain = bool(kwargs.get("retain_graph"))
        backward(root, G, kwargs.get("gradient"), retain, histograms=True)
        return None


#: What reading a tensor property gives that no check looks at (``.data`` and
#: ``.grad`` give tensors, and are kept).
_PLAIN = frozenset({bool, int, float, str, torch.dtype, torch.device, torch.layout, torch.Size})

#: GradLab's own machinery, whose torch calls (summaries, traces) are not the code's.
_MACHINERY = frozenset({
    "gradlab.core.summary", "gradlab.core.trace", "gradlab.core.backward", "gradlab.core.record",
    "gradlab.program.limits", "gradlab.core._gc",
})  # fmt: skip


def _from_gradlab() -> bool:
    """Whether the torch call being handled comes from GradLab's machinery."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith("torch"):
            return module in _MACHINERY
        frame = frame.f_back  # type: ignore[assignment]
    return False


def _is_backward_function(func: Any) -> bool:
    """Whether a function handed to ``__torch_function__`` runs a backward pass."""
    return func is torch.Tensor.backward or func is torch.autograd.backward


_DATA = torch.Tensor.data


def call_name(func: Any) -> str:
    """The name of a called function; ``"data"`` for the ``.data`` property."""
    try:
        return _NAMES[func]
    except (KeyError, TypeError):  # not seen yet, or not hashable
        pass
    if getattr(func, "__self__", None) is _DATA:
        name = "data"
    else:
        name = str(getattr(func, "__name__", type(func).__name__))
    if len(_NAMES) < 10_000:
        with contextlib.suppress(TypeError):
            _NAMES[func] = name
    return name


_NAMES: dict[Any, str] = {}  # torch functions and methods are few: each is named once


def arrays_in(value: Any) -> list[Any]:
    """Tensors and NumPy arrays in an argument or output (one level of lists, tuples, dicts)."""
    if isinstance(value, _ARRAYS):
        return [value]
    if isinstance(value, _SEQUENCES):
        return [v for v in value if isinstance(v, _ARRAYS)]
    if isinstance(value, dict):
        return [v for v in value.values() if isinstance(v, _ARRAYS)]
    return []


# Tuples of types, made once: ``A | B`` in an isinstance call makes a new union each time.
_ARRAYS = (torch.Tensor, np.ndarray)
_SEQUENCES = (tuple, list)
_CONTAINERS = (tuple, list, dict)


def tensors_in(value: Any) -> list[torch.Tensor]:
    """The tensors in an argument or output."""
    return [v for v in arrays_in(value) if isinstance(v, torch.Tensor)]


# -- module calls -------------------------------------------------------------------


@dataclass(slots=True)
class ModuleCall:
    """One finished call of an ``nn.Module``, and the gradient its output got in backward."""

    module: nn.Module
    name: str  # dotted path in the model ("" for the model itself, the class name if foreign)
    output: Any
    tensor: torch.Tensor | None = None  # the output tensor whose gradient is watched
    grad: torch.Tensor | None = None  # dL/d(tensor), once backward ran
    grad_rms: float | None = None  # its root mean square
    # Activations the call took (from watch_layers), each with the gradient it got.
    inputs: list[Watched] = field(default_factory=list)
    source: int = 0  # id of the first tensor it took: calls that share it are parallel branches

    def keep_grad(self, grad: torch.Tensor) -> None:
        """Tensor hook: keep the gradient arriving at the output (:func:`settle` sizes it)."""
        self.grad = grad.detach() if grad.requires_grad else grad
        self.grad_rms = None


@dataclass(slots=True)
class Watched:
    """A tensor whose gradient a hook keeps when backward reaches it."""

    tensor: torch.Tensor
    grad: torch.Tensor | None = None

    def keep_grad(self, grad: torch.Tensor) -> None:
        """Tensor hook."""
        self.grad = grad.detach() if grad.requires_grad else grad


def settle(calls: list[ModuleCall]) -> None:
    """Give each call that kept a gradient its RMS: one fused norm, one transfer for all."""
    todo = [c for c in calls if c.grad is not None and c.grad_rms is None]
    dense = [c for c in todo if c.grad is not None and c.grad.numel() > 0
             and c.grad.is_floating_point() and not c.grad.is_sparse]  # fmt: skip
    fused = {id(c) for c in dense}
    for c in todo:
        if c.grad is not None and id(c) not in fused:  # empty, sparse or complex: one by one
            g = c.grad.to_dense() if c.grad.is_sparse else c.grad
            c.grad_rms = float(g.abs().double().pow(2).mean().sqrt()) if g.numel() else 0.0
    if dense:
        grads = [c.grad for c in dense if c.grad is not None]
        norms = torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float64)).tolist()
        for c, g, norm in zip(dense, grads, norms, strict=True):
            c.grad_rms = norm / math.sqrt(g.numel())  # sqrt(mean(g ** 2)), in float64


_local = threading.local()


@dataclass
class ModuleWatch:
    """Keep every layer call of this thread inside the ``with`` block."""

    model: nn.Module | None = None
    calls: list[ModuleCall] = field(default_factory=list)
    # Parameters a module let go of for another one (``head.weight = emb.weight``)
    replaced: list[torch.Tensor] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._names = (
            {id(m): n for n, m in self.model.named_modules()} if self.model is not None else {}
        )
        self._outer: ModuleWatch | None = None
        self._layers: dict[nn.Module, bool] = {}  # whether a module has parameters of its own

    def __enter__(self) -> ModuleWatch:
        _MODULE_HOOKS.acquire()
        self._outer = getattr(_local, "watch", None)
        _local.watch = self
        return self

    def __exit__(self, *exc: object) -> None:
        _local.watch = self._outer
        _MODULE_HOOKS.release()

    def record(self, module: nn.Module, output: Any, source: int = 0) -> None:
        """Keep one finished call of a layer (called by the global hook)."""
        layer = self._layers.get(module)
        if layer is None:
            layer = self._layers[module] = next(module.parameters(False), None) is not None
        if not layer:
            return
        name = self._names.get(id(module), type(module).__name__)
        first = output if isinstance(output, torch.Tensor) else next(iter(tensors_in(output)), None)
        call = ModuleCall(module, name, output, first, source=source)
        self.calls.append(call)
        if first is not None and first.requires_grad:
            first.register_hook(call.keep_grad)  # type: ignore[no-untyped-call]


def _on_parameter(module: nn.Module, name: str, param: Any) -> None:
    watch: ModuleWatch | None = getattr(_local, "watch", None)
    old = module._parameters.get(name)
    if watch is not None and old is not None and old is not param:
        watch.replaced.append(old)


def _on_module_done(module: nn.Module, args: Any, output: Any) -> None:
    watch: ModuleWatch | None = getattr(_local, "watch", None)
    if watch is not None:
        first = args[0] if args and isinstance(args[0], torch.Tensor) else None
        watch.record(module, output, id(first) if first is not None else 0)


# A global hook slows every module call in the process, so these exist only while
# some thread watches; each checks for a watch of its own thread.
_MODULE_HOOKS = GlobalHooks(forward=_on_module_done, parameter=_on_parameter)


def watch_layers(
    calls: list[Call], model: nn.Module, params: dict[str, torch.Tensor]
) -> list[ModuleCall]:
    """Layer calls read from a call log, with a hook for the gradient each output receives.

    A layer call is a torch call that takes a parameter of ``model`` together with
    an activation (``F.linear(x, weight, bias)``); it is named after the module that
    owns the parameter. The activations it took (those with a history) are
    watched too, in :attr:`ModuleCall.inputs`. Cheaper than :class:`ModuleWatch`:
    no module hook slows the forward pass, and the hooks go on only after it.
    """
    owner = {id(p): name.rpartition(".")[0] for name, p in params.items()}
    layers: list[ModuleCall] = []
    watched: dict[int, Watched] = {}  # id(tensor) -> its watch, one hook per tensor
    modules: dict[str, nn.Module] | None = None
    for call in calls:
        args = call.args
        if call.kwargs:
            args = (*args, *call.kwargs.values())
        name = None
        activations: list[torch.Tensor] = []
        for arg in args:
            found: tuple[torch.Tensor, ...]
            if isinstance(arg, torch.Tensor):
                found = (arg,)
            elif isinstance(arg, _CONTAINERS):
                found = tuple(a for a in arrays_in(arg) if isinstance(a, torch.Tensor))
            else:
                continue
            for a in found:
                path = owner.get(id(a))
                if path is None:
                    activations.append(a)
                elif name is None:
                    name = path
        if name is None or not activations:  # no parameter, or nothing but parameters
            continue
        out = (
            call.out
            if isinstance(call.out, torch.Tensor)
            else next(iter(tensors_in(call.out)), None)
        )
        if out is None or out.grad_fn is None:
            continue
        if modules is None:
            modules = dict(model.named_modules(remove_duplicate=False))
        layer = ModuleCall(modules[name], name, out, out, source=id(activations[0]))
        for a in activations:
            if a.grad_fn is not None and id(a) not in watched:
                watch = watched[id(a)] = Watched(a)
                a.register_hook(watch.keep_grad)  # type: ignore[no-untyped-call]
            if id(a) in watched:
                layer.inputs.append(watched[id(a)])
        out.register_hook(layer.keep_grad)  # type: ignore[no-untyped-call]
        layers.append(layer)
    return layers
