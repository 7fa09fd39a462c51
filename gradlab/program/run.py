"""Run a tensor program safely and collect what GradLab shows of it.

:func:`run_program` checks the program, runs it under the :class:`Guard`
inside :func:`gradlab.record`, and turns every ``backward()`` the program
calls into :func:`gradlab.backward` on a freshly traced graph, so the real
backward pass is captured. Whatever happens, it returns a
:class:`ProgramResult`: errors become data with a line, a message and,
for autograd mistakes, a lesson (:func:`gradlab.teach.explain`).
"""

from __future__ import annotations

import ast
import reprlib
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils._python_dispatch import _disable_current_modes

from gradlab.core.backward import backward
from gradlab.core.errors import TraceError, out_of_memory
from gradlab.core.graph import Graph, TensorSummary, edge_dicts
from gradlab.core.record import record
from gradlab.core.summary import summarize_many
from gradlab.core.trace import trace
from gradlab.program.interpret import Interpreter
from gradlab.program.limits import Guard, LimitExceeded, Limits
from gradlab.program.policy import Refused
from gradlab.program.syntax import ProgramRefused, check
from gradlab.teach.explain import Explanation, explain

MAX_SOURCE = 20_000
ErrorKind = Literal["syntax", "refused", "limit", "runtime"]
VariableKind = Literal["tensor", "module", "optimizer", "number", "function", "other"]


@dataclass(frozen=True)
class ProgramError:
    """Why a program stopped: where, what, and the lesson when it is an autograd mistake."""

    kind: ErrorKind
    line: int
    message: str
    explanation: Explanation | None = None
    node: str | None = None  # the graph node the error points at

    def describe(self) -> str:
        """One line for a terminal: ``line 3: ...``."""
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class Notice:
    """A warning PyTorch gave while the program ran, explained when GradLab knows it."""

    line: int
    message: str
    explanation: Explanation | None


@dataclass(frozen=True)
class Variable:
    """A variable the program left behind."""

    name: str
    kind: VariableKind
    text: str  # a short description: "tensor (2, 3) float32", "Linear(in=1, out=1)", "3.5"
    value: TensorSummary | None = None
    grad: TensorSummary | None = None
    requires_grad: bool = False
    is_leaf: bool = True
    grad_fn: str | None = None


@dataclass(frozen=True)
class ProgramResult:
    """Everything a run produced: the graph, the variables, the output, any error."""

    source: str
    graph: Graph | None = None
    root: str | None = None  # the variable the graph was traced from
    variables: tuple[Variable, ...] = ()
    output: str = ""
    error: ProgramError | None = None
    notices: tuple[Notice, ...] = ()
    backward_calls: int = 0

    @property
    def ok(self) -> bool:
        """Whether the program ran to the end."""
        return self.error is None


def run_program(source: str, limits: Limits | None = None) -> ProgramResult:
    """Run a tensor program within ``limits``; never raises for anything the program does.

    Examples
    --------
    >>> result = run_program("x = torch.tensor([2., 3.], requires_grad=True)\\n"
    ...                      "y = x ** 2\\n"
    ...                      "y.sum().backward()")
    >>> result.ok, result.variables[0].grad["values"]
    (True, [4.0, 6.0])
    """
    limits = limits or Limits()
    if len(source) > MAX_SOURCE:
        error = ProgramError("limit", 1, f"the program is longer than {MAX_SOURCE:,} characters")
        return ProgramResult(source, error=error)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        message = f"syntax error: {exc.msg}"
        return ProgramResult(source, error=ProgramError("syntax", exc.lineno or 1, message))
    except (RecursionError, MemoryError, ValueError):  # 4,000 terms in one expression
        message = "the program nests too deeply to be read"
        return ProgramResult(source, error=ProgramError("limit", 1, message))
    refusals = check(tree)
    if refusals:
        also = "; ".join(f"line {r.line}: {r.construct}" for r in refusals[1:5])
        message = f"{refusals[0].construct} is not allowed in programs"
        message = _clip(message + (f" (also {also})" if also else ""), 600)
        return ProgramResult(source, error=ProgramError("refused", refusals[0].line, message))
    return _Run(source, limits).run(tree)


class _Run:
    """One run of a program: the interpreter, its backward calls, and the result."""

    def __init__(self, source: str, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        self.interpreter = Interpreter(limits, self.call)
        self.guard = Guard(limits)
        self.interpreter.check_time = self.guard.check_time
        self.interpreter.guard = self.guard  # hooks and callbacks run with the limits on
        self.backward_calls = 0
        self.captured: tuple[torch.Tensor, Graph] | None = None  # the last backward's root, graph
        self.failed_root: torch.Tensor | None = None

    def run(self, tree: ast.Module) -> ProgramResult:
        error: ProgramError | None = None
        namespace = self.interpreter.namespace
        namespace.update({"torch": torch, "nn": torch.nn, "F": torch.nn.functional})
        with torch.random.fork_rng(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.manual_seed(0)  # the same program shows the same numbers
            try:
                with record(), self.guard:
                    self.interpreter.run(tree)
            except Exception as exc:
                error = self.error(exc)
            notices = tuple(
                Notice(0, str(w.message), explain(str(w.message))) for w in _unique(caught)
            )
            with _disable_current_modes():
                try:
                    return self.result(error, notices)
                except Exception as exc:  # a graph the program bent out of shape: say so
                    text = _clip(
                        f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                    )
                    failed = error or ProgramError(
                        "runtime", 1, f"the program ran, but its graph cannot be shown ({text})"
                    )
                    output = "".join(self.interpreter.output)
                    return ProgramResult(self.source, output=output, error=failed, notices=notices)

    # -- calls from the program ---------------------------------------------------

    def call(self, func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        if _calls_backward(func):
            tensor = func.__self__ if getattr(func, "__self__", None) is not None else args.pop(0)
            return self.backward(tensor, *args, **kwargs)
        return func(*args, **kwargs)

    def backward(
        self,
        tensor: Any,
        gradient: torch.Tensor | None = None,
        retain_graph: bool | None = None,
        create_graph: bool = False,
        inputs: Any = None,
    ) -> None:
        """The program's backward(): the real one, captured onto a fresh graph."""
        self.backward_calls += 1
        plain = inputs is not None or not isinstance(tensor, torch.Tensor) or tensor.grad_fn is None
        if plain:  # nothing to step through: let PyTorch do (or refuse) it
            torch.autograd.backward(tensor, gradient, retain_graph, create_graph, inputs=inputs)
            return
        with self.guard.pause(), _disable_current_modes():
            # Saved tensors are kept while they still exist: backward frees them. A second
            # backward through a freed graph has none, and PyTorch says so in a moment.
            try:
                G = trace(tensor, params=self.named(), show_saved=True, histograms=True)
            except TraceError:
                G = trace(tensor, params=self.named(), histograms=True)
            self.captured = (tensor, G)
            self.failed_root = tensor
            backward(tensor, G, gradient, bool(retain_graph or create_graph), create_graph, True)
            self.failed_root = None

    def tensors(self) -> dict[str, torch.Tensor]:
        return {n: v for n, v in self.interpreter.namespace.items() if isinstance(v, torch.Tensor)}

    def named(self) -> dict[str, torch.Tensor | torch.nn.Module]:
        """The program's tensors and modules: a module names its parameters (``lin.weight``)."""
        kinds = (torch.Tensor, torch.nn.Module)
        return {n: v for n, v in self.interpreter.namespace.items() if isinstance(v, kinds)}

    # -- the result -----------------------------------------------------------------

    def error(self, exc: BaseException) -> ProgramError:
        line = self.interpreter.line
        if isinstance(exc, ProgramRefused):
            message = f"{_clip(exc.construct)} is not allowed in programs"
            return ProgramError("refused", exc.line, message)
        if isinstance(exc, Refused):
            return ProgramError("refused", line, f"{_clip(str(exc))} is not allowed in programs")
        if isinstance(exc, LimitExceeded):
            return ProgramError("limit", line, f"stopped: the program asked for {_clip(str(exc))}")
        if isinstance(exc, RecursionError):
            return ProgramError("limit", line, "stopped: the program nests too deeply")
        if isinstance(exc, MemoryError) or out_of_memory(exc):
            return ProgramError("limit", line, "stopped: the program ran out of memory")
        text = _clip(str(exc).split("\n")[0].strip())
        message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
        return ProgramError("runtime", line, message, explain(exc))

    def result(self, error: ProgramError | None, notices: tuple[Notice, ...]) -> ProgramResult:
        root_name, G = self.graph()
        if error is not None and error.explanation is not None and G is not None:
            error = ProgramError(
                error.kind, error.line, error.message, error.explanation,
                _error_node(G, error.explanation),
            )  # fmt: skip
        return ProgramResult(
            self.source,
            graph=G,
            root=root_name,
            variables=tuple(_variables(self.interpreter.namespace)),
            output="".join(self.interpreter.output),
            error=error,
            notices=notices,
            backward_calls=self.backward_calls,
        )

    def graph(self) -> tuple[str | None, Graph | None]:
        """The graph to show: the last backward's, traced again with the final names."""
        names = self.tensors()
        if self.captured is not None:
            root, captured = self.captured
        else:
            found = _last_traceable(names)
            if found is None:
                return None, None
            root, captured = found, None
        root_name = next((n for n, t in reversed(names.items()) if t is root), None)
        try:
            G = trace(root, params=self.named(), histograms=True)
        except TraceError:
            return root_name, captured
        if captured is not None:
            _copy_backward(captured, G)
        return root_name, G


def _calls_backward(func: Any) -> bool:
    """Whether a callable the program calls runs a backward pass: ``torch.autograd.backward``
    or a tensor's bound ``.backward`` (what ``loss.backward`` evaluates to)."""
    if func is torch.autograd.backward:
        return True
    owner = getattr(func, "__self__", None)
    return isinstance(owner, torch.Tensor) and getattr(func, "__name__", "") == "backward"


def _last_traceable(names: dict[str, torch.Tensor]) -> torch.Tensor | None:
    """The last variable with a graph to show (a grad_fn, or a leaf that requires grad)."""
    for tensor in reversed(names.values()):
        if tensor.grad_fn is not None:
            return tensor
    for tensor in reversed(names.values()):
        if tensor.requires_grad:
            return tensor
    return None


def _copy_backward(captured: Graph, G: Graph) -> None:
    """Copy steps, gradients and saved tensors from the backward-time graph (same root).

    ``captured`` was traced with ``show_saved`` before the backward pass freed
    what the ops saved; its other nodes have the same ids as ``G``'s.
    """
    kept = [n for n, kind in captured.nodes(data="kind") if kind != "saved"]
    if kept != list(G.nodes):
        return
    for n in kept:
        if captured.nodes[n].get("op") != G.nodes[n].get("op"):
            return
    for n in kept:
        attrs = captured.nodes[n]
        for name in ("step", "grad", "output_grads", "saved_bytes"):
            if name in attrs:
                G.nodes[n][name] = attrs[name]
    edges = edge_dicts(G)
    for edge, attrs in edge_dicts(captured).items():
        if edge in edges and "grad" in attrs:
            edges[edge]["grad"] = attrs["grad"]
    for n, attrs in captured.nodes(data=True):
        if attrs.get("kind") == "saved":
            G.add_node(n, **attrs)
            for _, v, key, data in captured.out_edges(n, keys=True, data=True):
                G.add_edge(n, v, key=key, **data)
    if "backward" in captured.graph:
        G.graph["backward"] = captured.graph["backward"]


def _error_node(G: Graph, explanation: Explanation) -> str | None:
    """The node an explained error points at: the op it names, or the root's op."""
    if explanation.op is not None:
        for n, op in G.nodes(data="op"):
            if op == explanation.op:
                return str(n)
    if explanation.kind in ("non_scalar_backward", "backward_twice"):
        out = G.graph["roots"][0]
        producers = list(G.predecessors(out))
        return str(producers[0]) if producers else str(out)
    return None


def _variables(namespace: dict[str, Any]) -> Iterator[Variable]:
    hidden = {"torch", "nn", "F"}
    tensors = [(n, v) for n, v in namespace.items() if isinstance(v, torch.Tensor)]
    summaries = summarize_many(
        [v for _, v in tensors] + [v.grad if v.is_leaf else None for _, v in tensors],
        histograms=True,
    )
    values, grads = summaries[: len(tensors)], summaries[len(tensors) :]
    described = {n: i for i, (n, _) in enumerate(tensors)}
    for name, value in namespace.items():
        if name in hidden or isinstance(value, types.ModuleType | type):
            continue  # what the program imported or defined, not a value it computed
        if name in described:
            i = described[name]
            yield _tensor_variable(name, value, values[i], grads[i])
        else:
            yield _other_variable(name, value)


def _tensor_variable(
    name: str, t: torch.Tensor, value: TensorSummary | None, grad: TensorSummary | None
) -> Variable:
    shape = "(" + ", ".join(str(d) for d in t.shape) + ("," if t.dim() == 1 else "") + ")"
    text = f"tensor {shape} {str(t.dtype).removeprefix('torch.')} on {t.device}"
    grad_fn = type(t.grad_fn).__name__ if t.grad_fn is not None else None
    return Variable(name, "tensor", text, value, grad, t.requires_grad, t.is_leaf, grad_fn)


def _other_variable(name: str, value: Any) -> Variable:
    if isinstance(value, torch.nn.Module):
        return Variable(name, "module", _short(value))
    if isinstance(value, torch.optim.Optimizer):
        lr = value.param_groups[0].get("lr") if value.param_groups else None
        return Variable(name, "optimizer", f"{type(value).__name__}(lr={lr})")
    if isinstance(value, bool | int | float | complex):
        return Variable(name, "number", repr(value))
    if callable(value) and type(value).__name__ == "Function":
        return Variable(name, "function", repr(value))
    return Variable(name, "other", _short(value))


_REPR = reprlib.Repr()  # keyword arguments arrive only in Python 3.12
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 2, 6, 6, 6
_REPR.maxstring, _REPR.maxother = 120, 300


def _clip(text: str, limit: int = 300) -> str:
    """One error line of a bounded length (an exception may carry a megabyte of text)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, limit: int = 300) -> str:
    """A bounded description: a list of 30,000 tensors is not printed whole."""
    try:
        text = _REPR.repr(value) if isinstance(value, list | tuple | dict | set) else repr(value)
    except Exception:  # a program's object whose repr runs its code after the run
        text = f"a {type(value).__name__} object"
    if isinstance(value, list | tuple | dict | set) and len(value) > 6:
        text = f"{type(value).__name__} of {len(value):,} items: {text}"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _unique(caught: list[warnings.WarningMessage]) -> list[warnings.WarningMessage]:
    seen: set[str] = set()
    out = []
    for w in caught:
        if str(w.message) not in seen:
            seen.add(str(w.message))
            out.append(w)
    return out
