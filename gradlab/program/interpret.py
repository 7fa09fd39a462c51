"""An interpreter for short tensor programs: Python's syntax, none of its reach.

The program's syntax tree is checked first (:func:`check`, every refusal
reported with its line), then walked node by node (:class:`Interpreter`):
user code is never handed to ``exec``. Every name, attribute, call and loop
goes through :mod:`gradlab.program.policy` and the step and time limits, and
Python-level sizes (``[0] * n``, ``2 ** n``, ``range(n)`` consumed by a
builtin) are bounded before they are computed.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import math
import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gradlab.program.limits import LimitExceeded, Limits
from gradlab.program.policy import (
    ALLOWED_IMPORTS,
    Refused,
    check_attribute,
    check_attribute_assignment,
    check_call,
    check_value,
)

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While,
    ast.Break, ast.Continue, ast.Pass, ast.FunctionDef, ast.Return, ast.Lambda, ast.Import,
    ast.alias, ast.With, ast.withitem, ast.Delete, ast.Assert, ast.BinOp, ast.UnaryOp,
    ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.keyword, ast.Starred, ast.Attribute,
    ast.Subscript, ast.Slice, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set,
    ast.ListComp, ast.DictComp, ast.SetComp, ast.comprehension, ast.arguments, ast.arg,
    ast.Load, ast.Store, ast.Del, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
    ast.expr_context, ast.NamedExpr,
)  # fmt: skip
_CONSTRUCT = {
    ast.ClassDef: "class definitions", ast.GeneratorExp: "generator expressions (use a list "
    "comprehension)", ast.Yield: "yield", ast.YieldFrom: "yield", ast.Await: "await",
    ast.AsyncFunctionDef: "async functions", ast.Global: "global", ast.Nonlocal: "nonlocal",
    ast.Try: "try/except", ast.Raise: "raise", ast.ImportFrom: "from ... import",
    ast.JoinedStr: "f-strings (string formatting)", ast.FormattedValue: "string formatting",
    ast.Lambda: "lambda",
}  # fmt: skip
_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow, ast.MatMult: operator.matmul, ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_, ast.BitXor: operator.xor, ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}  # fmt: skip
_IN_PLACE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.iadd, ast.Sub: operator.isub, ast.Mult: operator.imul,
    ast.Div: operator.itruediv, ast.FloorDiv: operator.ifloordiv, ast.Mod: operator.imod,
    ast.Pow: operator.ipow, ast.MatMult: operator.imatmul, ast.BitAnd: operator.iand,
    ast.BitOr: operator.ior, ast.BitXor: operator.ixor,
}  # fmt: skip
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_,
    ast.Invert: operator.invert,
}  # fmt: skip
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}  # fmt: skip
_CONTEXTS = (torch.no_grad, torch.enable_grad, torch.set_grad_enabled, torch.inference_mode)
_MAX_BITS = 4096  # Python integers: 2 ** 4096 is plenty for a tensor program


@dataclass(frozen=True)
class Refusal:
    """A construct the program may not use, and where."""

    line: int
    construct: str


class ProgramRefused(Exception):
    """The program used something it may not use (at check time or while running)."""

    def __init__(self, line: int, construct: str) -> None:
        super().__init__(f"line {line}: {construct} is not allowed in programs")
        self.line = line
        self.construct = construct


def check(tree: ast.Module) -> list[Refusal]:
    """Every construct the allow-list refuses, with its line, before anything runs."""
    refusals: list[Refusal] = []
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 1)
        if isinstance(node, ast.Lambda):
            continue  # allowed; listed in _CONSTRUCT only for its name
        if not isinstance(node, _ALLOWED_NODES):
            what = _CONSTRUCT.get(type(node), type(node).__name__)
            refusals.append(Refusal(line, what))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                text = alias.name + (f" as {alias.asname}" if alias.asname else "")
                if text not in ALLOWED_IMPORTS:
                    refusals.append(Refusal(line, f"import {text} (allowed: import torch, "
                                                   "import torch.nn as nn, import torch.nn."
                                                   "functional as F)"))  # fmt: skip
        elif isinstance(node, ast.Attribute) and (
            node.attr.startswith("_") or node.attr in ("format", "format_map")
        ):
            refusals.append(Refusal(line, f"the attribute '{node.attr}'"))
        elif isinstance(node, ast.Name) and node.id.startswith("__"):
            refusals.append(Refusal(line, f"the name '{node.id}'"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            refusals.append(Refusal(line, "bytes literals"))
        elif isinstance(node, ast.FunctionDef) and node.decorator_list:
            refusals.append(Refusal(line, "decorators"))
    return sorted(refusals, key=lambda r: r.line)


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Interpreter:
    """Runs a checked program; ``namespace`` holds its variables afterwards."""

    def __init__(self, limits: Limits, on_call: Callable[[Any, list[Any], dict[str, Any]], Any]):
        self.limits = limits
        # The runner sees every call first (for backward() and torch.autograd.backward).
        self.on_call = on_call
        self.namespace: dict[str, Any] = {}
        self.builtins = _safe_builtins(self)
        self.steps = 0
        self.depth = 0
        self.line = 1
        self.output: list[str] = []
        self.printed = 0
        self.check_time: Callable[[], None] = lambda: None

    # -- running -----------------------------------------------------------------

    def run(self, tree: ast.Module) -> None:
        """Execute the statements of a checked module in ``namespace``."""
        self.exec_block(tree.body, self.namespace)

    def tick(self) -> None:
        """One step of work: count it, and look at the clock now and then."""
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise LimitExceeded(f"more than {self.limits.max_steps:,} steps")
        if self.steps % 128 == 0:
            self.check_time()

    def exec_block(self, body: list[ast.stmt], scope: dict[str, Any]) -> None:
        for statement in body:
            self.line = statement.lineno
            self.tick()
            self.exec_statement(statement, scope)

    def exec_statement(self, node: ast.stmt, scope: dict[str, Any]) -> None:
        if isinstance(node, ast.Expr):
            self.eval(node.value, scope)
        elif isinstance(node, ast.Assign):
            value = self.eval(node.value, scope)
            for target in node.targets:
                self.assign(target, value, scope)
        elif isinstance(node, ast.AnnAssign):
            if node.value is not None:
                self.assign(node.target, self.eval(node.value, scope), scope)
        elif isinstance(node, ast.AugAssign):
            self.augmented(node, scope)
        elif isinstance(node, ast.If):
            branch = node.body if self.eval(node.test, scope) else node.orelse
            self.exec_block(branch, scope)
        elif isinstance(node, ast.For):
            self.exec_for(node, scope)
        elif isinstance(node, ast.While):
            self.exec_while(node, scope)
        elif isinstance(node, ast.Break):
            raise _Break
        elif isinstance(node, ast.Continue):
            raise _Continue
        elif isinstance(node, ast.Pass):
            pass
        elif isinstance(node, ast.FunctionDef):
            scope[node.name] = Function(self, node.name, node.args, node.body, scope)
        elif isinstance(node, ast.Return):
            raise _Return(None if node.value is None else self.eval(node.value, scope))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                module = importlib.import_module(alias.name)
                if alias.asname:
                    scope[alias.asname] = module
                else:
                    scope[alias.name.split(".")[0]] = importlib.import_module(
                        alias.name.split(".")[0]
                    )
        elif isinstance(node, ast.With):
            self.exec_with(node, scope)
        elif isinstance(node, ast.Delete):
            for target in node.targets:
                self.delete(target, scope)
        elif isinstance(node, ast.Assert):
            if not self.eval(node.test, scope):
                message = self.eval(node.msg, scope) if node.msg else "assertion failed"
                raise AssertionError(message)
        else:  # pragma: no cover - check() refused it already
            raise ProgramRefused(node.lineno, type(node).__name__)

    def exec_for(self, node: ast.For, scope: dict[str, Any]) -> None:
        for item in self.iterate(self.eval(node.iter, scope)):
            self.tick()
            self.assign(node.target, item, scope)
            try:
                self.exec_block(node.body, scope)
            except _Break:
                return
            except _Continue:
                continue
        self.exec_block(node.orelse, scope)

    def exec_while(self, node: ast.While, scope: dict[str, Any]) -> None:
        while self.eval(node.test, scope):
            self.tick()
            try:
                self.exec_block(node.body, scope)
            except _Break:
                return
            except _Continue:
                continue
        self.exec_block(node.orelse, scope)

    def exec_with(self, node: ast.With, scope: dict[str, Any]) -> None:
        managers = [self.eval(item.context_expr, scope) for item in node.items]
        for manager in managers:
            if not isinstance(manager, _CONTEXTS):
                raise Refused(f"'with' over {type(manager).__name__} (allowed: torch.no_grad(), "
                              "torch.enable_grad(), torch.set_grad_enabled(...))")  # fmt: skip
        with _entered(managers) as values:
            for item, value in zip(node.items, values, strict=True):
                if item.optional_vars is not None:
                    self.assign(item.optional_vars, value, scope)
            self.exec_block(node.body, scope)

    # -- assignment --------------------------------------------------------------

    def assign(self, target: ast.expr, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, ast.Tuple | ast.List):
            self.unpack(target.elts, value, scope)
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value, scope)
            _check_item_target(container)
            container[self.eval(target.slice, scope)] = value
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value, scope)
            check_attribute_assignment(owner, target.attr, value)
            setattr(owner, target.attr, value)
        elif isinstance(target, ast.Starred):
            raise Refused("a starred target outside unpacking")
        else:
            raise Refused(f"assigning to {type(target).__name__}")

    def unpack(self, targets: list[ast.expr], value: Any, scope: dict[str, Any]) -> None:
        items = self.materialise(value)
        starred = [i for i, t in enumerate(targets) if isinstance(t, ast.Starred)]
        if not starred:
            if len(items) != len(targets):
                raise ValueError(f"expected {len(targets)} values to unpack, got {len(items)}")
            for target, item in zip(targets, items, strict=True):
                self.assign(target, item, scope)
            return
        s = starred[0]
        after = len(targets) - s - 1
        if len(items) < len(targets) - 1:
            raise ValueError(f"not enough values to unpack (expected at least {len(targets) - 1})")
        for target, item in zip(targets[:s], items[:s], strict=True):
            self.assign(target, item, scope)
        star = targets[s]
        assert isinstance(star, ast.Starred)
        self.assign(star.value, list(items[s : len(items) - after]), scope)
        for target, item in zip(targets[s + 1 :], items[len(items) - after :], strict=True):
            self.assign(target, item, scope)

    def augmented(self, node: ast.AugAssign, scope: dict[str, Any]) -> None:
        value = self.eval(node.value, scope)
        operation = _IN_PLACE.get(type(node.op))
        if operation is None:
            raise Refused(f"the operator {type(node.op).__name__}=")
        target = node.target
        if isinstance(target, ast.Name):
            current = self.lookup(target.id, scope)
            scope[target.id] = self.binary(operation, current, value, node.op)
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value, scope)
            _check_item_target(container)
            key = self.eval(target.slice, scope)
            container[key] = self.binary(operation, container[key], value, node.op)
        elif isinstance(target, ast.Attribute):
            owner = self.eval(target.value, scope)
            check_attribute(owner, target.attr)
            result = self.binary(operation, getattr(owner, target.attr), value, node.op)
            check_attribute_assignment(owner, target.attr, result)
            setattr(owner, target.attr, result)
        else:
            raise Refused(f"augmented assignment to {type(target).__name__}")

    def delete(self, target: ast.expr, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            if target.id not in scope:
                raise NameError(f"name '{target.id}' is not defined")
            del scope[target.id]
        elif isinstance(target, ast.Subscript):
            container = self.eval(target.value, scope)
            _check_item_target(container)
            del container[self.eval(target.slice, scope)]
        else:
            raise Refused(f"deleting {type(target).__name__}")

    # -- expressions -------------------------------------------------------------

    def eval(self, node: ast.expr, scope: dict[str, Any]) -> Any:
        self.tick()
        handler = _EVALUATORS.get(type(node))
        if handler is None:
            raise ProgramRefused(getattr(node, "lineno", self.line), type(node).__name__)
        return handler(self, node, scope)

    def lookup(self, name: str, scope: dict[str, Any]) -> Any:
        if name in scope:
            return scope[name]
        if name in self.namespace:
            return self.namespace[name]
        if name in self.builtins:
            return self.builtins[name]
        if name in dir(builtins):
            raise Refused(f"the builtin '{name}'")
        raise NameError(f"name '{name}' is not defined")

    def binary(self, operation: Callable[[Any, Any], Any], a: Any, b: Any, op: ast.operator) -> Any:
        _bound_python_size(a, b, op, self.limits)
        return operation(a, b)

    def call(self, func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        check_call(func)
        return self.on_call(func, args, kwargs)

    def iterate(self, value: Any) -> Iterator[Any]:
        """Iterate any value a program may loop over, counting each item as a step."""
        if isinstance(value, str):
            raise Refused("looping over the characters of a string")
        for item in iter(value):
            self.tick()
            yield item

    def materialise(self, value: Any) -> list[Any]:
        """All items of an iterable, bounded by the sequence limit."""
        if (
            isinstance(value, range | list | tuple | dict | set)
            and len(value) > self.limits.max_sequence
        ):
            raise LimitExceeded(f"a sequence of {len(value):,} items")
        items: list[Any] = []
        for item in self.iterate(value):
            items.append(item)
            if len(items) > self.limits.max_sequence:
                raise LimitExceeded(f"more than {self.limits.max_sequence:,} items")
        return items

    def print(self, *values: Any, sep: str = " ", end: str = "\n") -> None:
        text = sep.join(str(v) for v in values) + end
        self.printed += len(text)
        if self.printed > self.limits.max_output:
            raise LimitExceeded(f"more than {self.limits.max_output:,} characters of output")
        self.output.append(text)


class Function:
    """A function defined by the program; callable from torch (jacobian, hooks) too."""

    def __init__(
        self,
        interpreter: Interpreter,
        name: str,
        arguments: ast.arguments,
        body: list[ast.stmt] | ast.expr,
        closure: dict[str, Any],
    ) -> None:
        self._interpreter = interpreter
        self._name = name
        self._arguments = arguments
        self._body = body
        self._closure = closure
        self._defaults = [interpreter.eval(d, closure) for d in arguments.defaults]
        self._kw_defaults = {
            a.arg: interpreter.eval(d, closure)
            for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults, strict=True)
            if d is not None
        }

    def __repr__(self) -> str:
        return f"<function {self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        interpreter = self._interpreter
        if interpreter.depth >= interpreter.limits.max_depth:
            raise LimitExceeded(
                f"function calls nested more than {interpreter.limits.max_depth} deep"
            )
        scope = _Scope(self._closure)
        self._bind(scope, args, kwargs)
        interpreter.depth += 1
        line = interpreter.line
        try:
            if isinstance(self._body, list):
                interpreter.exec_block(self._body, scope)
                return None
            return interpreter.eval(self._body, scope)
        except _Return as done:
            return done.value
        finally:
            interpreter.depth -= 1
            interpreter.line = line

    def _bind(self, scope: dict[str, Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        spec = self._arguments
        names = [a.arg for a in spec.posonlyargs + spec.args]
        if len(args) > len(names) and spec.vararg is None:
            raise TypeError(
                f"{self._name}() takes {len(names)} arguments but {len(args)} were given"
            )
        for name, value in zip(names, args, strict=False):
            scope[name] = value
        if spec.vararg is not None:
            scope[spec.vararg.arg] = tuple(args[len(names) :])
        defaults = dict(zip(names[len(names) - len(self._defaults) :], self._defaults, strict=True))
        extra: dict[str, Any] = {}
        for name, value in kwargs.items():
            if name in names or any(a.arg == name for a in spec.kwonlyargs):
                if name in scope:
                    raise TypeError(f"{self._name}() got multiple values for '{name}'")
                scope[name] = value
            elif spec.kwarg is not None:
                extra[name] = value
            else:
                raise TypeError(f"{self._name}() got an unexpected keyword argument '{name}'")
        for name in names + [a.arg for a in spec.kwonlyargs]:
            if name not in scope:
                if name in defaults:
                    scope[name] = defaults[name]
                elif name in self._kw_defaults:
                    scope[name] = self._kw_defaults[name]
                else:
                    raise TypeError(f"{self._name}() missing argument '{name}'")
        if spec.kwarg is not None:
            scope[spec.kwarg.arg] = extra


class _Scope(dict[str, Any]):
    """A function's locals, falling back to the scope it was defined in."""

    def __init__(self, parent: dict[str, Any]) -> None:
        super().__init__()
        self._parent = parent

    def __missing__(self, key: str) -> Any:
        return self._parent[key]

    def __contains__(self, key: object) -> bool:
        return dict.__contains__(self, key) or key in self._parent


def _eval_constant(it: Interpreter, node: ast.Constant, scope: dict[str, Any]) -> Any:
    return node.value


def _eval_name(it: Interpreter, node: ast.Name, scope: dict[str, Any]) -> Any:
    return it.lookup(node.id, scope)


def _eval_attribute(it: Interpreter, node: ast.Attribute, scope: dict[str, Any]) -> Any:
    owner = it.eval(node.value, scope)
    check_attribute(owner, node.attr)
    return check_value(getattr(owner, node.attr), f".{node.attr}")


def _eval_subscript(it: Interpreter, node: ast.Subscript, scope: dict[str, Any]) -> Any:
    container = it.eval(node.value, scope)
    if isinstance(container, type):
        raise Refused(f"indexing the class {container.__name__}")
    return container[it.eval(node.slice, scope)]


def _eval_slice(it: Interpreter, node: ast.Slice, scope: dict[str, Any]) -> Any:
    parts = (node.lower, node.upper, node.step)
    return slice(*(None if p is None else it.eval(p, scope) for p in parts))


def _eval_binop(it: Interpreter, node: ast.BinOp, scope: dict[str, Any]) -> Any:
    operation = _BINARY.get(type(node.op))
    if operation is None:
        raise Refused(f"the operator {type(node.op).__name__}")
    return it.binary(operation, it.eval(node.left, scope), it.eval(node.right, scope), node.op)


def _eval_unary(it: Interpreter, node: ast.UnaryOp, scope: dict[str, Any]) -> Any:
    return _UNARY[type(node.op)](it.eval(node.operand, scope))


def _eval_boolop(it: Interpreter, node: ast.BoolOp, scope: dict[str, Any]) -> Any:
    result: Any = None
    for value in node.values:
        result = it.eval(value, scope)
        if isinstance(node.op, ast.And) and not result:
            return result
        if isinstance(node.op, ast.Or) and result:
            return result
    return result


def _eval_compare(it: Interpreter, node: ast.Compare, scope: dict[str, Any]) -> Any:
    # As Python does: `a < b` is the comparison's own value (a tensor for tensors);
    # only a chain `a < b < c` asks each link but the last for its truth.
    left = it.eval(node.left, scope)
    last = len(node.ops) - 1
    result: Any = True
    for i, (op, right_node) in enumerate(zip(node.ops, node.comparators, strict=True)):
        right = it.eval(right_node, scope)
        result = _COMPARE[type(op)](left, right)
        if i < last and not result:
            return result
        left = right
    return result


def _eval_ifexp(it: Interpreter, node: ast.IfExp, scope: dict[str, Any]) -> Any:
    return it.eval(node.body if it.eval(node.test, scope) else node.orelse, scope)


def _eval_call(it: Interpreter, node: ast.Call, scope: dict[str, Any]) -> Any:
    func = it.eval(node.func, scope)
    args: list[Any] = []
    for arg in node.args:
        if isinstance(arg, ast.Starred):
            args.extend(it.materialise(it.eval(arg.value, scope)))
        else:
            args.append(it.eval(arg, scope))
    kwargs: dict[str, Any] = {}
    for keyword in node.keywords:
        value = it.eval(keyword.value, scope)
        if keyword.arg is None:
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise TypeError("** needs a dict with string keys")
            kwargs.update(value)
        else:
            kwargs[keyword.arg] = value
    for name in kwargs:
        if name.startswith("_"):
            raise Refused(f"the keyword argument '{name}'")
    return it.call(func, args, kwargs)


def _eval_list(it: Interpreter, node: ast.List | ast.Tuple | ast.Set, scope: dict[str, Any]) -> Any:
    items: list[Any] = []
    for element in node.elts:
        if isinstance(element, ast.Starred):
            items.extend(it.materialise(it.eval(element.value, scope)))
        else:
            items.append(it.eval(element, scope))
    if isinstance(node, ast.Tuple):
        return tuple(items)
    return set(items) if isinstance(node, ast.Set) else items


def _eval_dict(it: Interpreter, node: ast.Dict, scope: dict[str, Any]) -> Any:
    result: dict[Any, Any] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:
            result.update(it.eval(value, scope))
        else:
            result[it.eval(key, scope)] = it.eval(value, scope)
    return result


def _eval_comprehension(
    it: Interpreter, node: ast.ListComp | ast.SetComp | ast.DictComp, scope: dict[str, Any]
) -> Any:
    inner = _Scope(scope)
    results: list[Any] = []

    def generate(level: int) -> None:
        if level == len(node.generators):
            if isinstance(node, ast.DictComp):
                results.append((it.eval(node.key, inner), it.eval(node.value, inner)))
            else:
                results.append(it.eval(node.elt, inner))
            if len(results) > it.limits.max_sequence:
                raise LimitExceeded(
                    f"a comprehension of more than {it.limits.max_sequence:,} items"
                )
            return
        generator = node.generators[level]
        for item in it.iterate(it.eval(generator.iter, inner)):
            it.assign(generator.target, item, inner)
            if all(it.eval(condition, inner) for condition in generator.ifs):
                generate(level + 1)

    generate(0)
    if isinstance(node, ast.DictComp):
        return dict(results)
    return set(results) if isinstance(node, ast.SetComp) else results


def _eval_lambda(it: Interpreter, node: ast.Lambda, scope: dict[str, Any]) -> Any:
    return Function(it, "<lambda>", node.args, node.body, scope)


def _eval_named(it: Interpreter, node: ast.NamedExpr, scope: dict[str, Any]) -> Any:
    value = it.eval(node.value, scope)
    it.assign(node.target, value, scope)
    return value


def _eval_starred(it: Interpreter, node: ast.Starred, scope: dict[str, Any]) -> Any:
    raise Refused("a starred expression here")


_EVALUATORS: dict[type, Callable[[Interpreter, Any, dict[str, Any]], Any]] = {
    ast.Constant: _eval_constant, ast.Name: _eval_name, ast.Attribute: _eval_attribute,
    ast.Subscript: _eval_subscript, ast.Slice: _eval_slice, ast.BinOp: _eval_binop,
    ast.UnaryOp: _eval_unary, ast.BoolOp: _eval_boolop, ast.Compare: _eval_compare,
    ast.IfExp: _eval_ifexp, ast.Call: _eval_call, ast.List: _eval_list, ast.Tuple: _eval_list,
    ast.Set: _eval_list, ast.Dict: _eval_dict, ast.ListComp: _eval_comprehension,
    ast.SetComp: _eval_comprehension, ast.DictComp: _eval_comprehension,
    ast.Lambda: _eval_lambda, ast.NamedExpr: _eval_named, ast.Starred: _eval_starred,
}  # fmt: skip


def _check_item_target(container: object) -> None:
    if not isinstance(container, torch.Tensor | list | dict | torch.nn.ModuleList):
        raise Refused(f"item assignment on {type(container).__name__}")


def _bound_python_size(a: Any, b: Any, op: ast.operator, limits: Limits) -> None:
    """Refuse plain-Python arithmetic whose result would be huge, before computing it."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return  # the Guard checks tensor ops
    if isinstance(op, ast.Mod) and isinstance(a, str):
        raise Refused("string formatting with %")
    sequences = (str, list, tuple)
    if isinstance(op, ast.Mult):
        for seq, n in ((a, b), (b, a)):
            if (
                isinstance(seq, sequences)
                and isinstance(n, int)
                and len(seq) * n > limits.max_sequence
            ):
                raise LimitExceeded(f"a sequence of {len(seq) * n:,} items")
    joined = isinstance(a, sequences) and isinstance(b, sequences)
    if isinstance(op, ast.Add) and joined and len(a) + len(b) > limits.max_sequence:
        raise LimitExceeded(f"a sequence of {len(a) + len(b):,} items")
    huge = isinstance(a, int) and isinstance(b, int) and abs(a) > 1 and b > 0
    if isinstance(op, ast.Pow) and huge and b * math.log2(abs(a)) > _MAX_BITS:
        raise LimitExceeded(f"an integer of more than {_MAX_BITS} bits ({a} ** {b})")
    if isinstance(op, ast.LShift) and isinstance(b, int) and b > _MAX_BITS:
        raise LimitExceeded(f"a shift by {b} bits")


class _entered:
    """Enter several context managers in order; exit them in reverse."""

    def __init__(self, managers: list[Any]) -> None:
        self.managers = managers
        self.entered: list[Any] = []

    def __enter__(self) -> list[Any]:
        values = []
        for manager in self.managers:
            values.append(manager.__enter__())
            self.entered.append(manager)
        return values

    def __exit__(self, *exc: Any) -> None:
        for manager in reversed(self.entered):
            manager.__exit__(*exc)


def _safe_builtins(it: Interpreter) -> dict[str, Any]:
    """The builtins a program may call; those that consume an iterable bound it first."""
    items = it.materialise

    def safe_str(value: Any = "") -> str:
        text = str(value)
        if len(text) > it.limits.max_output:
            raise LimitExceeded(f"a string of {len(text):,} characters")
        return text

    def extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return pick(items(args[0]) if len(args) == 1 else args, **kwargs)

        return call

    def safe_sum(iterable: Any, start: Any = 0) -> Any:
        total = start
        for item in items(iterable):
            total = total + item
        return total

    return {
        "print": it.print,
        "len": len,
        "range": range,
        "abs": abs,
        "round": round,
        "float": float,
        "int": int,
        "bool": bool,
        "complex": complex,
        "str": safe_str,
        "isinstance": isinstance,
        "list": lambda iterable=(): items(iterable),
        "tuple": lambda iterable=(): tuple(items(iterable)),
        "set": lambda iterable=(): set(items(iterable)),
        "dict": lambda *args, **kwargs: dict(*(items(x) for x in args), **kwargs),
        "sum": safe_sum,
        "min": extreme(min),
        "max": extreme(max),
        "sorted": lambda iterable, **kwargs: sorted(items(iterable), **kwargs),
        "reversed": lambda iterable: items(iterable)[::-1],
        "any": lambda iterable: any(items(iterable)),
        "all": lambda iterable: all(items(iterable)),
        "zip": lambda *iterables: zip(*(it.iterate(x) for x in iterables), strict=False),
        "enumerate": lambda iterable, start=0: enumerate(it.iterate(iterable), start),
    }
