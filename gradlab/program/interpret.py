"""An interpreter for short tensor programs: Python's syntax, none of its reach.

The program's syntax tree is checked first (:func:`gradlab.program.syntax.check`,
every refusal reported with its line), then walked node by node (:class:`Interpreter`):
user code is never handed to ``exec``. Every name, attribute, call and loop
goes through :mod:`gradlab.program.policy` and the step and time limits, and
Python-level sizes (``[0] * n``, ``2 ** n``, ``range(n)`` consumed by a
builtin, ``a.extend(a)``, big integers multiplied) are bounded before they are
computed.

Tutorial code runs as written: classes derived from ``nn.Module``, ``Dataset``
or ``torch.autograd.Function`` (their classes are real Python classes whose
methods are interpreted functions), ``super().__init__()``, the imports
tutorials write, f-strings. The program's own functions, whenever PyTorch calls
them (hooks, backward of a custom Function, a dataset inside a ``DataLoader``),
run with the limits on (:meth:`gradlab.program.limits.Guard.active`), and
refuse to run at all once the program has ended.

What one step of the interpreter cannot stop (a single C-level operation such
as comparing two huge shared nested lists) is stopped by the worker process
the program runs in, whose memory and CPU time the operating system limits.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import importlib
import math
import operator
import re
import string
import types
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.utils.checkpoint
import torch.utils.data

from gradlab.program.limits import Guard, LimitExceeded, Limits
from gradlab.program.policy import (
    Builtin,
    ProgramCode,
    ProgramIterator,
    ProgramObject,
    Refused,
    check_attribute,
    check_attribute_assignment,
    check_base,
    check_call,
    check_value,
)
from gradlab.program.syntax import ProgramRefused

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
_MAX_FORMAT = 200  # width and precision in a format spec: f"{x:>200.6f}" at most
_MODULE_PATH = re.compile(r"<module '([\w.]+)' from '[^']*'>")
_FIELD = re.compile(r"\d*|[A-Za-z]\w*")  # "{}", "{0}", "{name}": no attribute, no index
_PERCENT = re.compile(r"%(?:\([A-Za-z]\w*\))?[-+ #0]*(?P<width>\d*)(?:\.(?P<precision>\d*))?"
                      r"[diouxXeEfFgGcs%]")  # fmt: skip
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[bcdeEfFgGnosxX%]?")


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
        # The limits of the run: the program's own code that PyTorch calls back (hooks,
        # a custom Function's backward) turns them on again wherever it runs.
        self.guard: Guard | None = None
        self.active = False

    # -- running -----------------------------------------------------------------

    def run(self, tree: ast.Module) -> None:
        """Execute the statements of a checked module in ``namespace``."""
        self.active = True
        try:
            with torch.set_grad_enabled(torch.is_grad_enabled()):  # restored afterwards
                self.exec_block(tree.body, self.namespace)
        finally:
            self.active = False

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
            for alias in node.names:  # check() allowed only torch's listed modules
                module = importlib.import_module(alias.name)
                if alias.asname:
                    scope[alias.asname] = module
                else:
                    scope[alias.name.split(".")[0]] = torch
        elif isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                check_attribute(module, alias.name)
                value = check_value(getattr(module, alias.name), f"from {node.module} import")
                scope[alias.asname or alias.name] = value
        elif isinstance(node, ast.ClassDef):
            scope[node.name] = self.define_class(node, scope)
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

    def define_class(self, node: ast.ClassDef, scope: dict[str, Any]) -> type:
        """A real class whose methods are the program's functions (nn.Module subclasses)."""
        bases = tuple(check_base(self.eval(b, scope)) for b in node.bases)
        bases = tuple(b for b in bases if b is not object)
        if not any(issubclass(b, ProgramObject) for b in bases):
            bases += (ProgramObject,)
        members: dict[str, Any] = {"__module__": "program", "__qualname__": node.name}
        body = _Scope(scope)  # names defined earlier in the class body
        functions: list[Function] = []
        for statement in node.body:
            self.line = statement.lineno
            self.tick()
            if isinstance(statement, ast.FunctionDef):
                function = Function(self, statement.name, statement.args, statement.body, scope)
                functions.append(function)
                members[statement.name] = (
                    staticmethod(function) if statement.decorator_list else function
                )
            elif isinstance(statement, ast.Assign | ast.AnnAssign) and statement.value:
                value = self.eval(statement.value, body)
                targets = (
                    statement.targets if isinstance(statement, ast.Assign) else [statement.target]
                )
                for target in targets:
                    assert isinstance(target, ast.Name)  # check() saw to it
                    members[target.id] = body[target.id] = value
        cls = types.new_class(node.name, bases, exec_body=lambda ns: ns.update(members))
        for function in functions:
            function.owner = cls
        return cls

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
            container[self.key(target.slice, scope)] = value
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
            key = self.key(target.slice, scope)
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
            del container[self.key(target.slice, scope)]
        else:
            raise Refused(f"deleting {type(target).__name__}")

    # -- expressions -------------------------------------------------------------

    def key(self, node: ast.expr, scope: dict[str, Any]) -> Any:
        """An index or dict key, bounded: hashing a nested tuple walks it whole."""
        key = self.eval(node, scope)
        _bound_nested(key, self.limits.max_sequence)
        return key

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
        if isinstance(op, ast.Mod) and isinstance(a, str):
            return self.percent(a, b)
        _bound_python_size(a, b, op, self.limits)
        return operation(a, b)

    def percent(self, template: str, values: Any) -> str:
        """``template % values`` with plain conversions only, widths bounded."""
        for found in _PERCENT.finditer(template):
            width, precision = (int(g) if g else 0 for g in found.group("width", "precision"))
            if max(width, precision) > _MAX_FORMAT:
                raise LimitExceeded(f"a format width or precision over {_MAX_FORMAT}")
        rest = _PERCENT.sub("", template)
        if "%" in rest:
            bad = rest[rest.index("%") : rest.index("%") + 3]
            raise Refused(f"the % format '{bad}' (allowed: %s %d %i %f %e %g %x %o %c %%)")
        for value in values if isinstance(values, tuple) else (values,):
            _bound_nested(value, self.limits.max_sequence)
        return self.bounded_text(template % values)

    def format_string(self, template: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """``template.format(...)`` with plain fields only: {}, {0}, {name}, and a spec."""
        parts: list[str] = []
        auto = 0
        for literal, field, spec, conversion in string.Formatter().parse(template):
            parts.append(literal)
            if field is None:
                continue
            if conversion is not None:
                raise Refused(f"the conversion '!{conversion}' in a format string")
            if not _FIELD.fullmatch(field) or "{" in (spec or ""):
                raise Refused(f"the format field '{{{field[:40]}}}' (allowed: {{}}, {{0}}, "
                              "{name}, with a format spec)")  # fmt: skip
            if field == "":
                value, auto = args[auto], auto + 1
            else:
                value = args[int(field)] if field.isdigit() else kwargs[field]
            parts.append(self.text(value, spec or ""))
        return self.bounded_text("".join(parts))

    def bounded_text(self, text: str) -> str:
        """A string the program made, bounded, without the server's paths of modules."""
        if len(text) > self.limits.max_output:
            raise LimitExceeded(f"a string of {len(text):,} characters")
        return _MODULE_PATH.sub(r"<module '\1'>", text) if "<module '" in text else text

    def call(self, func: Any, args: list[Any], kwargs: dict[str, Any]) -> Any:
        check_call(func)
        _check_arguments(func, args, kwargs)
        if not isinstance(func, ProgramCode) and not _stores_only(func):
            for value in (*args, *kwargs.values()):  # torch.tensor(a) walks a nested list whole
                _bound_nested(value, self.limits.max_sequence)
        return self.on_call(func, args, kwargs)

    def iterate(self, value: Any) -> Iterator[Any]:
        """Iterate any value a program may loop over, counting each item as a step."""
        if isinstance(value, str):
            raise Refused("looping over the characters of a string")
        if isinstance(value, type | types.ModuleType):
            raise Refused(f"looping over {value.__name__}")
        for item in iter(value):
            self.tick()
            yield check_value(item, "a loop")

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
        parts = [self.text(v) for v in values]
        sep, end = self.text(sep), self.text(end)
        size = sum(len(p) for p in parts) + len(sep) * max(len(parts) - 1, 0) + len(end)
        if self.printed + size > self.limits.max_output:
            raise LimitExceeded(f"more than {self.limits.max_output:,} characters of output")
        text = sep.join(parts) + end
        self.printed += len(text)
        if self.printed > self.limits.max_output:
            raise LimitExceeded(f"more than {self.limits.max_output:,} characters of output")
        self.output.append(text)

    def text(self, value: Any, spec: str | None = None) -> str:
        """``str(value)`` or ``format(value, spec)``, bounded before and after."""
        _bound_nested(value, self.limits.max_sequence)
        if spec is not None:
            found = _FORMAT_SPEC.fullmatch(spec)
            if found is None:
                raise Refused(f"the format spec '{spec[:40]}'")
            width, precision = (int(g) if g else 0 for g in found.groups())
            if max(width, precision) > _MAX_FORMAT:
                raise LimitExceeded(f"a format width or precision over {_MAX_FORMAT}")
            text = format(value, spec)
        else:
            text = str(value)
        return self.bounded_text(text)


class Function(ProgramCode):
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
        self.owner: type | None = None  # the class, for a method (zero-argument super())

    def __repr__(self) -> str:
        return f"<function {self._name}>"

    def __get__(self, obj: Any, cls: type | None = None) -> Any:
        """A method: bound to the object like a Python function."""
        return self if obj is None else types.MethodType(self, obj)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        interpreter = self._interpreter
        if not interpreter.active:
            raise Refused(f"running the program's function {self._name}() after the program")
        if interpreter.depth >= interpreter.limits.max_depth:
            raise LimitExceeded(
                f"function calls nested more than {interpreter.limits.max_depth} deep"
            )
        scope = _Scope(self._closure)
        self._bind(scope, args, kwargs)
        if self.owner is not None and args:
            scope["__class__"], scope["__self__"] = self.owner, args[0]  # for super()
        interpreter.depth += 1
        line = interpreter.line
        result: Any = None
        try:
            with _limits_on(interpreter):
                if isinstance(self._body, list):
                    interpreter.exec_block(self._body, scope)
                else:
                    result = interpreter.eval(self._body, scope)
        except _Return as done:
            result = done.value
        finally:
            interpreter.depth -= 1
        interpreter.line = line  # an error keeps the line inside the function, as Python does
        return result

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
    name = node.attr
    if isinstance(owner, super):
        if isinstance(getattr(owner, "__self__"), type):  # noqa: B009
            raise Refused("super() bound to a class")
        if name == "__init__":  # super().__init__(): check() allowed it only on super()
            return Builtin("super().__init__", getattr(owner, "__init__"))  # noqa: B009
        check_attribute(getattr(owner, "__self__"), name)  # noqa: B009
        return check_value(getattr(owner, name), f"super().{name}")
    check_attribute(owner, name)
    bounded = _bounded_method(it, owner, name)
    if bounded is not None:
        return bounded
    value = getattr(owner, name)
    if isinstance(owner, torch.optim.Optimizer) and callable(value):
        # A scheduler replaces optimizer.step with a plain function that counts the steps.
        return Builtin(f"{type(owner).__name__}.{name}", value)
    return check_value(value, f".{name}")


def _eval_subscript(it: Interpreter, node: ast.Subscript, scope: dict[str, Any]) -> Any:
    container = it.eval(node.value, scope)
    if isinstance(container, type | types.ModuleType):
        raise Refused(f"indexing {container.__name__}")
    return check_value(container[it.key(node.slice, scope)], "an index")


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
        if not isinstance(left, torch.Tensor) and not isinstance(right, torch.Tensor):
            _bound_nested(left, it.limits.max_sequence)
            _bound_nested(right, it.limits.max_sequence)
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
    if func is it.builtins["super"] and not args and not kwargs:
        return _zero_argument_super(scope)
    result = it.call(func, args, kwargs)
    if isinstance(result, types.GeneratorType):  # model.parameters(): items, never its frame
        return ProgramIterator(it.iterate(result))
    return check_value(result, f"a call of {_callable_name(func)}")


def _callable_name(func: Any) -> str:
    name = getattr(func, "name", None) if isinstance(func, Builtin) else None
    name = name or getattr(func, "__name__", None) or type(func).__name__
    return f"{name}()"


def _zero_argument_super(scope: dict[str, Any]) -> super:
    try:
        cls, obj = scope["__class__"], scope["__self__"]
    except KeyError:
        raise RuntimeError("super(): no arguments outside a method of a class") from None
    return super(cls, obj)


def _eval_joined(it: Interpreter, node: ast.JoinedStr, scope: dict[str, Any]) -> str:
    parts: list[str] = []
    for value in node.values:
        part = it.eval(value, scope)
        parts.append(part if isinstance(part, str) else str(part))
    text = "".join(parts)
    if len(text) > it.limits.max_output:
        raise LimitExceeded(f"a string of {len(text):,} characters")
    return text


def _eval_formatted(it: Interpreter, node: ast.FormattedValue, scope: dict[str, Any]) -> str:
    value = it.eval(node.value, scope)
    spec = "" if node.format_spec is None else it.eval(node.format_spec, scope)
    return it.text(value, spec)  # format(value, ""), as Python: f"{torch.tensor(2.5)}" is 2.5


def _eval_list(it: Interpreter, node: ast.List | ast.Tuple | ast.Set, scope: dict[str, Any]) -> Any:
    items: list[Any] = []
    for element in node.elts:
        if isinstance(element, ast.Starred):
            items.extend(it.materialise(it.eval(element.value, scope)))
        else:
            items.append(it.eval(element, scope))
    if isinstance(node, ast.Tuple):
        return tuple(items)
    if isinstance(node, ast.Set):
        _bound_nested(items, it.limits.max_sequence)  # hashing a tuple walks it whole
        return set(items)
    return items


def _eval_dict(it: Interpreter, node: ast.Dict, scope: dict[str, Any]) -> Any:
    result: dict[Any, Any] = {}
    for key, value in zip(node.keys, node.values, strict=True):
        if key is None:
            result.update(it.eval(value, scope))
        else:
            item = it.eval(key, scope)
            _bound_nested(item, it.limits.max_sequence)  # hashing a tuple walks it whole
            result[item] = it.eval(value, scope)
    return result


def _eval_comprehension(
    it: Interpreter,
    node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp,
    scope: dict[str, Any],
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
    if isinstance(node, ast.GeneratorExp):  # computed at once, bounded; no frame to reach
        return ProgramIterator(iter(results))
    if isinstance(node, ast.DictComp):
        _bound_nested([key for key, _ in results], it.limits.max_sequence)  # keys are hashed
        return dict(results)
    if isinstance(node, ast.SetComp):
        _bound_nested(results, it.limits.max_sequence)
        return set(results)
    return results


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
    ast.GeneratorExp: _eval_comprehension,
    ast.Lambda: _eval_lambda, ast.NamedExpr: _eval_named, ast.Starred: _eval_starred,
    ast.JoinedStr: _eval_joined, ast.FormattedValue: _eval_formatted,
}  # fmt: skip


def _check_item_target(container: object) -> None:
    if not isinstance(
        container,
        torch.Tensor | list | dict | torch.nn.ModuleList | torch.nn.ModuleDict
        | torch.nn.Sequential | torch.nn.ParameterList | torch.nn.ParameterDict,
    ):  # fmt: skip
        raise Refused(f"item assignment on {type(container).__name__}")


def _limits_on(it: Interpreter) -> Any:
    """The guard's limits, on again while the program's own code runs (hooks, backward)."""
    return it.guard.active() if it.guard is not None else contextlib.nullcontext()


#: Keyword arguments refused for some allowed callables: worker processes, pinned memory,
#: contexts built by a callable.
_REFUSED_ARGUMENTS: dict[Any, frozenset[str]] = {
    torch.utils.data.DataLoader: frozenset(
        {"num_workers", "pin_memory", "worker_init_fn", "multiprocessing_context",
         "persistent_workers", "prefetch_factor", "pin_memory_device", "timeout"}
    ),
    torch.utils.checkpoint.checkpoint: frozenset({"context_fn", "determinism_check", "debug"}),
}  # fmt: skip
_MAX_POSITIONAL: dict[Any, int] = {torch.utils.data.DataLoader: 5}


def _check_arguments(func: Any, args: list[Any], kwargs: dict[str, Any]) -> None:
    try:
        refused = _REFUSED_ARGUMENTS.get(func)
    except TypeError:  # unhashable
        return
    if refused is None:
        return
    name = getattr(func, "__name__", "it")
    for keyword in kwargs:
        if keyword in refused and not (keyword == "num_workers" and kwargs[keyword] == 0):
            raise Refused(f"{name}({keyword}=...) (programs run in one process)")
    if len(args) > _MAX_POSITIONAL.get(func, len(args)):
        raise Refused(f"{name}() with more than {_MAX_POSITIONAL[func]} positional arguments")


def _bounded_method(it: Interpreter, owner: Any, name: str) -> Builtin | None:
    """Methods whose result could be huge, checked before they run (``a.extend(a)``)."""
    limit = it.limits.max_sequence
    kind = type(owner)
    if kind in (list, tuple, set, dict) and name in _COMPARING:
        method = getattr(owner, name)

        def compare(*args: Any, **kwargs: Any) -> Any:
            if kind is list or kind is tuple:  # count, index, sort, remove compare items whole
                _bound_nested(owner, limit)
            for value in args:
                _bound_nested(value, limit)
            return method(*args, **kwargs)

        return Builtin(f"{kind.__name__}.{name}", compare)
    if kind is list and name == "extend":

        def extend(items: Any) -> None:
            new = it.materialise(items)
            if len(owner) + len(new) > limit:
                raise LimitExceeded(f"a list of {len(owner) + len(new):,} items")
            owner.extend(new)

        return Builtin("list.extend", extend)
    if kind is str and name == "format":
        return Builtin("str.format", lambda *args, **kwargs: it.format_string(owner, args, kwargs))
    if kind is str and name == "join":

        def join(items: Any) -> str:
            parts = it.materialise(items)
            total = sum(len(p) if isinstance(p, str) else 0 for p in parts)
            if total + len(owner) * len(parts) > limit:
                raise LimitExceeded(f"a string of more than {limit:,} characters")
            return str(owner.join(parts))

        return Builtin("str.join", join)
    if kind is str and name == "replace":

        def replace(old: str, new: str, count: int = -1) -> str:
            found = owner.count(old) if old else len(owner) + 1
            found = found if count < 0 else min(found, count)
            if len(owner) + found * max(len(new) - len(old), 0) > limit:
                raise LimitExceeded(f"a string of more than {limit:,} characters")
            return str(owner.replace(old, new, count))

        return Builtin("str.replace", replace)
    if isinstance(owner, torch.Tensor) and name == "tolist":

        def tolist() -> Any:
            if owner.numel() > limit:
                raise LimitExceeded(f"a list of {owner.numel():,} numbers (tolist)")
            return owner.tolist()

        return Builtin("Tensor.tolist", tolist)
    return None


_COMPARING = frozenset({"count", "index", "sort", "remove", "add", "discard", "get", "pop",
                        "setdefault", "union", "intersection", "difference"})  # fmt: skip


def _stores_only(func: Any) -> bool:
    """``xs.append(v)`` and ``xs.insert(i, v)`` keep a reference: they never walk ``v``."""
    owner = getattr(func, "__self__", None)
    return type(owner) is list and getattr(func, "__name__", "") in ("append", "insert")


def _bound_nested(value: Any, limit: int) -> None:
    """Refuse comparing or printing nested lists whose unfolded size is over ``limit``.

    ``a = [a, a]`` repeated 36 times shares one list 2**36 times: Python would walk it
    whole in one C call. Sizes are summed once per distinct container, so checking
    costs no more than the distinct containers it holds.
    """
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return
    sizes: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        item, done = stack.pop()
        key = id(item)
        if key in sizes and not done:
            continue
        children = list(item.items() if isinstance(item, dict) else item)
        nested = [c for c in children if isinstance(c, list | tuple | dict | set | frozenset)]
        if not done:
            sizes[key] = -1  # being summed (a list that holds itself: Python prints [...])
            stack.append((item, True))
            stack.extend((c, False) for c in nested if id(c) not in sizes)
            continue
        total = len(children) + sum(max(sizes.get(id(c), 0), 0) for c in nested)
        if total > limit:
            raise LimitExceeded(f"a nested list of more than {limit:,} items")
        sizes[key] = total


def _bound_python_size(a: Any, b: Any, op: ast.operator, limits: Limits) -> None:
    """Refuse plain-Python arithmetic whose result would be huge, before computing it."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return  # the Guard checks tensor ops
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
    both_int = isinstance(a, int) and isinstance(b, int)
    if isinstance(op, ast.Mult) and both_int and a.bit_length() + b.bit_length() > _MAX_BITS:
        raise LimitExceeded(f"an integer of more than {_MAX_BITS} bits")
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
        return it.text(value)

    def bounded(iterable: Any) -> list[Any]:
        found = items(iterable)
        _bound_nested(found, it.limits.max_sequence)  # comparing or hashing walks items whole
        return found

    def extreme(pick: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            return pick(bounded(args[0]) if len(args) == 1 else bounded(args), **kwargs)

        return call

    def safe_sum(iterable: Any, start: Any = 0) -> Any:
        total = start
        for item in items(iterable):
            total = it.binary(operator.add, total, item, ast.Add())
        return total

    def safe_round(number: Any, ndigits: int | None = None) -> Any:
        if isinstance(ndigits, int) and abs(ndigits) > 400:
            raise LimitExceeded(f"round() to {ndigits} digits")
        return round(number) if ndigits is None else round(number, ndigits)

    def safe_isinstance(value: Any, kinds: Any) -> bool:
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        return isinstance(value, tuple(_TYPES[k.name] if isinstance(k, Builtin) else k
                                       for k in kinds))  # fmt: skip

    def safe_iter(iterable: Any) -> ProgramIterator:
        return ProgramIterator(it.iterate(iterable))

    def safe_next(iterator: Any, *default: Any) -> Any:
        if not isinstance(iterator, ProgramIterator):
            raise TypeError(f"'{type(iterator).__name__}' object is not an iterator (use iter())")
        return next(iterator, *default)

    def two_argument_super(cls: Any, obj: Any) -> super:
        if not (isinstance(cls, type) and issubclass(cls, ProgramObject)):
            raise Refused("super() of a class the program did not define")
        if not isinstance(obj, cls):
            raise Refused("super(Class, x) where x is not an object of Class")
        return super(cls, obj)

    functions: dict[str, Callable[..., Any]] = {
        "print": it.print,
        "len": len,
        "abs": abs,
        "round": safe_round,
        "str": safe_str,
        "isinstance": safe_isinstance,
        "list": lambda iterable=(): items(iterable),
        "tuple": lambda iterable=(): tuple(items(iterable)),
        "set": lambda iterable=(): set(bounded(iterable)),
        "dict": lambda *args, **kwargs: dict(*(bounded(x) for x in args), **kwargs),
        "sum": safe_sum,
        "min": extreme(min),
        "max": extreme(max),
        "sorted": lambda iterable, **kwargs: sorted(bounded(iterable), **kwargs),
        "reversed": lambda iterable: items(iterable)[::-1],
        "any": lambda iterable: any(items(iterable)),
        "all": lambda iterable: all(items(iterable)),
        "zip": lambda *iterables: zip(*(it.iterate(x) for x in iterables), strict=False),
        "enumerate": lambda iterable, start=0: enumerate(it.iterate(iterable), start),
        "iter": safe_iter,
        "next": safe_next,
        "super": two_argument_super,
    }
    found: dict[str, Any] = {name: Builtin(name, f) for name, f in functions.items()}
    # Real classes, so that isinstance(x, int) and class A(object) work.
    found.update({"range": range, "int": int, "float": float, "bool": bool,
                  "complex": complex, "object": object})  # fmt: skip
    return found


_TYPES: dict[str, type] = {"list": list, "tuple": tuple, "set": set, "dict": dict, "str": str}
