"""Facts across a process boundary: JSON in, JSON out, and nothing that runs code.

A worker sends its results (:class:`~gradlab.program.ProgramResult`, a
model's :class:`~gradlab.core.memory.ModelRun`, the debugger's
:class:`~gradlab.diagnose.Report`) back to the server as JSON. The server
never unpickles anything: :func:`decode` rebuilds only the frozen dataclasses
registered in :data:`CLASSES` (by name, field by field), tuples, dicts with
any keys, and networkx graphs of facts. Anything else in the text (an
unknown class, a wrong field, nesting deeper than :data:`MAX_DEPTH`, more
than :data:`MAX_BYTES`) raises :class:`WireError`, so a worker whose Python
was taken over can still only send data.

Examples
--------
>>> from gradlab.teach.explain import Explanation
>>> e = Explanation("leaf_inplace", "t", "why", ("fix one", "fix two"))
>>> decode(encode(e)) == e
True
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import networkx as nx

from gradlab.core.memory import ModelRun, NodeMemory, ParamRow, SavedMemory, SavedTensor
from gradlab.diagnose import Report
from gradlab.diagnose.finding import Finding
from gradlab.diagnose.measures import Agreement, OptimizerStep
from gradlab.diagnose.scale import Layer
from gradlab.isolation.model_code import Reply
from gradlab.program.run import Notice, ProgramError, ProgramResult, Variable
from gradlab.teach.explain import Explanation

MAX_BYTES = 64 << 20  # one reply; a 7,000-node graph with values is a few MB
MAX_DEPTH = 64


class WireError(ValueError):
    """A reply that is not a well-formed encoding of GradLab's facts."""


#: The record types a reply may hold, by name: GradLab's own frozen records, nothing else.
_CLASSES: dict[str, type] = {
    cls.__name__: cls
    for cls in (Report, Finding, Agreement, Layer, OptimizerStep, Explanation, ModelRun,
                NodeMemory, ParamRow, SavedMemory, SavedTensor, Notice, ProgramError,
                ProgramResult, Variable, Reply)
}  # fmt: skip


def classes() -> dict[str, type]:
    """The record types a reply may hold, by name."""
    return _CLASSES


def encode(value: Any) -> str:
    """JSON text for ``value``: records, tuples, dicts, lists, scalars and graphs."""
    return json.dumps(_to_json(value, 0), separators=(",", ":"))


def decode(text: str | bytes) -> Any:
    """The value :func:`encode` wrote; :class:`WireError` for anything else."""
    if len(text) > MAX_BYTES:
        raise WireError(f"the reply has {len(text):,} bytes; the limit is {MAX_BYTES:,}")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise WireError(f"the reply is not JSON: {str(exc)[:200]}") from None
    return _from_json(data, 0)


def _to_json(value: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("the value nests too deeply to send")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, list):
        return [_to_json(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [_to_json(v, depth + 1) for v in value]}
    if isinstance(value, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in value):
            return {k: _to_json(v, depth + 1) for k, v in value.items()}
        return {"$dict": [[_to_json(k, depth + 1), _to_json(v, depth + 1)]
                          for k, v in value.items()]}  # fmt: skip
    if isinstance(value, nx.Graph):
        return {"$graph": _graph_to_json(value, depth + 1)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = type(value).__name__
        if classes().get(name) is not type(value):
            raise WireError(f"{name} is not a record that can be sent")
        fields = {f.name: _to_json(getattr(value, f.name), depth + 1)
                  for f in dataclasses.fields(value) if f.init}  # fmt: skip
        return {"$record": name, "fields": fields}
    raise WireError(f"a {type(value).__name__} cannot be sent, only facts")


def _graph_to_json(G: nx.Graph, depth: int) -> dict[str, Any]:
    return {
        "graph": _to_json(dict(G.graph), depth),
        "nodes": [[_to_json(n, depth), _to_json(a, depth)] for n, a in G.nodes(data=True)],
        "edges": [
            [_to_json(u, depth), _to_json(v, depth), _to_json(k, depth), _to_json(a, depth)]
            for u, v, k, a in G.edges(keys=True, data=True)
        ],
    }


_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _from_json(data: Any, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise WireError("the reply nests too deeply")
    if data is None or isinstance(data, bool | int | float | str):
        return data
    if isinstance(data, list):
        return [_from_json(v, depth + 1) for v in data]
    if not isinstance(data, dict):
        raise WireError(f"unexpected {type(data).__name__} in the reply")
    if "$tuple" in data:
        return tuple(_from_json(v, depth + 1) for v in _list(data["$tuple"]))
    if "$float" in data:
        if data["$float"] not in _FLOATS:
            raise WireError("a bad special float in the reply")
        return _FLOATS[data["$float"]]
    if "$dict" in data:
        return {_key(_from_json(k, depth + 1)): _from_json(v, depth + 1)
                for k, v in (_pair(p) for p in _list(data["$dict"]))}  # fmt: skip
    if "$graph" in data:
        return _graph_from_json(data["$graph"], depth + 1)
    if "$record" in data:
        return _record(data, depth + 1)
    if any(k.startswith("$") for k in data):
        raise WireError("an unknown tag in the reply")
    return {k: _from_json(v, depth + 1) for k, v in data.items()}


def _record(data: dict[str, Any], depth: int) -> Any:
    name, fields = data.get("$record"), data.get("fields")
    cls = classes().get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict):
        raise WireError(f"{str(name)[:60]!r} is not a record the server accepts")
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    if not set(fields) <= known:
        raise WireError(f"unknown fields for {name}: {sorted(set(fields) - known)[:5]}")
    try:
        return cls(**{k: _from_json(v, depth) for k, v in fields.items()})
    except TypeError as exc:
        raise WireError(f"a bad {name} in the reply: {exc}") from None


def _graph_from_json(data: Any, depth: int) -> nx.MultiDiGraph:
    if not isinstance(data, dict):
        raise WireError("a bad graph in the reply")
    G = nx.MultiDiGraph()
    attrs = _from_json(data.get("graph", {}), depth)
    if not isinstance(attrs, dict):
        raise WireError("a bad graph in the reply")
    G.graph.update(attrs)
    for item in _list(data.get("nodes", [])):
        n, a = _pair(item)
        G.add_node(_key(_from_json(n, depth)), **_attrs(_from_json(a, depth)))
    for item in _list(data.get("edges", [])):
        if not isinstance(item, list) or len(item) != 4:
            raise WireError("a bad edge in the reply")
        u, v, k, a = (_from_json(x, depth) for x in item)
        G.add_edge(_key(u), _key(v), key=_key(k), **_attrs(a))
    return G


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise WireError("a list was expected in the reply")
    return value


def _pair(value: Any) -> tuple[Any, Any]:
    if not isinstance(value, list) or len(value) != 2:
        raise WireError("a pair was expected in the reply")
    return value[0], value[1]


def _key(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str | tuple):
        return value
    raise WireError("a key must be a scalar or a tuple")


def _attrs(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise WireError("attributes must be a dict with string keys")
    return value
