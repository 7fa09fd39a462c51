"""What a program may write: its syntax tree checked before anything runs.

:func:`check` walks the tree once and lists every construct the interpreter
refuses, each with its line, so a student sees all of them at once: the
statements Python programs use to reach outside (``try``/``raise`` for
tracebacks, ``yield`` for frames, ``global``, ``async``), imports other than
torch's listed modules, attributes that start with ``_`` (except
``super().__init__``), ``format_map``, f-string conversions, and the parts of a
class that could hand Python out (metaclasses, decorators, dunder methods other
than ``__init__``, ``__len__``, ``__getitem__`` and ``__call__``).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

from gradlab.program.policy import DEFINABLE_DUNDERS, MODULE_NAMES, RESERVED_METHODS

_ALLOWED_NODES: tuple[type, ...] = (
    ast.Module, ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.If, ast.For, ast.While,
    ast.Break, ast.Continue, ast.Pass, ast.FunctionDef, ast.Return, ast.Lambda, ast.Import,
    ast.alias, ast.With, ast.withitem, ast.Delete, ast.Assert, ast.BinOp, ast.UnaryOp,
    ast.BoolOp, ast.Compare, ast.IfExp, ast.Call, ast.keyword, ast.Starred, ast.Attribute,
    ast.Subscript, ast.Slice, ast.Name, ast.Constant, ast.List, ast.Tuple, ast.Dict, ast.Set,
    ast.ListComp, ast.DictComp, ast.SetComp, ast.comprehension, ast.arguments, ast.arg,
    ast.Load, ast.Store, ast.Del, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
    ast.expr_context, ast.NamedExpr, ast.ClassDef, ast.ImportFrom, ast.JoinedStr,
    ast.FormattedValue, ast.GeneratorExp,
)  # fmt: skip
_CONSTRUCT = {
    ast.Yield: "yield", ast.YieldFrom: "yield", ast.Await: "await",
    ast.AsyncFunctionDef: "async functions", ast.Global: "global", ast.Nonlocal: "nonlocal",
    ast.Try: "try/except", ast.Raise: "raise", ast.Lambda: "lambda",
}  # fmt: skip
#: Modules a program may import, and under which names (``import torch.nn as nn``).
_IMPORTABLE = frozenset(MODULE_NAMES)


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
    class_bodies = {id(s) for n in ast.walk(tree) if isinstance(n, ast.ClassDef) for s in n.body}
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 1)
        if isinstance(node, ast.Lambda):
            continue  # allowed; listed in _CONSTRUCT only for its name
        if not isinstance(node, _ALLOWED_NODES):
            what = _CONSTRUCT.get(type(node), type(node).__name__)
            refusals.append(Refusal(line, what))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            refusals.extend(Refusal(line, what) for what in _check_import(node))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            if not (node.attr == "__init__" and _is_super_call(node.value)):
                refusals.append(Refusal(line, f"the attribute '{node.attr}'"))
        elif isinstance(node, ast.Attribute) and node.attr == "format_map":
            refusals.append(Refusal(line, "the string method 'format_map' (use an f-string)"))
        elif isinstance(node, ast.Name) and node.id.startswith("__"):
            refusals.append(Refusal(line, f"the name '{node.id}'"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            refusals.append(Refusal(line, "bytes literals"))
        elif isinstance(node, ast.FormattedValue) and node.conversion != -1:
            conversion = chr(node.conversion)
            refusals.append(Refusal(line, f"the f-string conversion '!{conversion}'"))
        elif isinstance(node, ast.ClassDef):
            refusals.extend(Refusal(line, what) for what in _check_class(node))
        elif isinstance(node, ast.FunctionDef):
            in_class = id(node) in class_bodies
            refusals.extend(Refusal(line, what) for what in _check_function(node, in_class))
    return sorted(refusals, key=lambda r: r.line)


def _is_super_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def _check_import(node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    allowed = "allowed: torch and its modules nn, nn.functional, optim, utils.data, ..."
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name not in _IMPORTABLE:
                yield f"import {alias.name} ({allowed})"
        return
    module = node.module or ""
    if node.level or module not in _IMPORTABLE:
        yield f"from {'.' * node.level}{module} import ... ({allowed})"
        return
    for alias in node.names:
        if alias.name not in MODULE_NAMES[module]:
            yield f"from {module} import {alias.name} (not on the list of what programs may use)"


def _check_class(node: ast.ClassDef) -> Iterator[str]:
    if node.name.startswith("__"):
        yield f"the class name '{node.name}'"
    if node.keywords:
        yield f"class keywords ({node.keywords[0].arg}=...)"
    if node.decorator_list:
        yield "class decorators"
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.Pass):
            continue
        if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
            continue  # a docstring
        targets = (
            statement.targets if isinstance(statement, ast.Assign)
            else [statement.target] if isinstance(statement, ast.AnnAssign) else None
        )  # fmt: skip
        if targets is None or not all(isinstance(t, ast.Name) for t in targets):
            yield f"{type(statement).__name__} in a class body (methods and names only)"
        elif any(t.id.startswith("_") for t in targets if isinstance(t, ast.Name)):
            yield "class attributes starting with '_'"


def _check_function(node: ast.FunctionDef, in_class: bool) -> Iterator[str]:
    for decorator in node.decorator_list:
        if not (in_class and isinstance(decorator, ast.Name) and decorator.id == "staticmethod"):
            yield "decorators (only @staticmethod in a class)"
    if in_class and node.name.startswith("_") and node.name not in DEFINABLE_DUNDERS:
        allowed = ", ".join(sorted(DEFINABLE_DUNDERS))
        yield f"defining the method '{node.name}' (allowed: {allowed})"
    if in_class and node.name in RESERVED_METHODS:
        yield f"defining the method '{node.name}'"
