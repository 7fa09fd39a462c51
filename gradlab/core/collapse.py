"""Collapse a traced graph by ``nn.Module``: one node per module call, down to a depth.

A model's graph has thousands of autograd nodes; a person reads it module by
module. :func:`collapse` builds a smaller graph of facts from a traced one
(see :mod:`gradlab.core.graph`), leaving the original untouched:

* Every op node carries the dotted path of the module that ran it (``module``,
  set by :func:`gradlab.record`). A module whose path is ``depth`` or more
  levels below the top, and that is not in ``expanded``, becomes one node of
  kind ``"module"``. Paths in ``expanded`` (and their ancestors) are open:
  their own ops are shown one by one and their submodules as nodes.
* A module *call* is a run of ops that are consecutive in creation order
  (``seq``), so a module called four times (LeNet's shared ``relu``) gives four
  nodes, and because every node covers an interval of a topological order the
  collapsed graph is acyclic. Two calls of one module back to back
  (``f(f(x))``) read as one call.
* Repeated siblings with the same op structure, such as ``layers.0`` ...
  ``layers.31`` or an MLP's (Linear, ReLU) pairs, fold into one node
  ``"layers.0–31 (×32)"`` until its key (``name``, here ``"layers.0-31"``) is
  in ``expanded``.
* A parameter and its ``AccumulateGrad`` join the one module node that uses
  them; saved tensors join their op's node.
* Edges between two nodes merge into one edge with a ``count``.

A module node has ``name`` (its path, or a fold's key: what to pass in
``expanded`` to open it), ``label``, ``module``/``module_type`` (the open
module around it, ``""`` = the top), ``count`` (autograd graph nodes inside),
``ops`` (op nodes inside), ``members`` (their ids), ``repeat`` (×n of a fold,
else 1), and the ``shape``, ``value`` and ``grad`` of the op whose result
leaves it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import cast

from gradlab.core.graph import (
    ACCUMULATE_GRAD,
    EdgeAttrs,
    Graph,
    NodeAttrs,
    assemble,
    edge_dicts,
    node_dicts,
    pred_dicts,
    succ_dicts,
)

#: Prefix of the ids of module nodes: ``"m_fc1"``, ``"m_relu#2"``, ``"m_layers.0-31"``
#: (no colon: DOT reads ``a:b`` as node ``a``, port ``b``).
PREFIX = "m_"
#: Repeating units of up to this many siblings are found (an MLP's unit is 2).
MAX_PERIOD = 4

Path = tuple[str, ...]


@dataclass(frozen=True)
class _Group:
    """One node of the collapsed graph that stands for several nodes of the original."""

    id: str
    name: str  # what `expanded` takes to open it
    label: str
    parent: Path  # the open module it sits in
    start: int  # timeline interval [start, stop)
    stop: int
    repeat: int


def collapse(
    G: Graph, depth: int = 1, expanded: Collection[str] = (), *, fold: int | None = 4
) -> Graph:
    """A graph with each closed module call as one node (see the module docstring).

    ``depth`` is how many levels below the top stay open: 0 folds the whole
    model into one node, 1 shows the top module's children as nodes, and a
    depth past the deepest module shows every op. ``fold`` is the least
    number of identical sibling units folded into one node (``None`` or less
    than 2: never fold). ``G`` is not changed; attributes are copied.

    Examples
    --------
    >>> import torch, gradlab
    >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU())
    >>> with gradlab.record():
    ...     loss = model(torch.ones(2, 3)).sum()
    >>> C = collapse(gradlab.trace(loss, model=model))
    >>> sorted(C.nodes[n]["label"] for n in C if C.nodes[n]["kind"] == "module")
    ['0 (Linear)', '1 (ReLU)']
    >>> C.nodes["m_0"]["ops"], C.nodes["m_0"]["count"]  # addmm, t and two AccumulateGrad
    (4, 6)
    """
    timeline = _timeline(G)
    if not any(parts for _, parts in timeline):
        return _copy(G)  # no module recorded: nothing to group
    fold = fold if fold is not None and fold >= 2 else None
    view = _View(G, timeline, depth, _open_paths(expanded), set(expanded), fold)
    view.build()
    group = view.group
    _attach_sources(G, group)
    return _quotient(G, group, view.groups, timeline, depth, expanded)


def module_paths(G: Graph) -> list[str]:
    """Every module path in ``G`` and its ancestors, in natural order (``2`` before ``10``)."""
    found: set[str] = set()
    for m in {m for _, m in G.nodes(data="module") if m}:
        parts = m.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return sorted(found, key=_natural)


def expandable(G: Graph, names: Iterable[str]) -> list[str]:
    """The ``names`` that :func:`collapse` can open in ``G``: module paths and fold keys.

    ``""`` is the top module; a fold key is a range of siblings under a path of
    ``G`` (``"layers.0-31"``). Anything else (a name from an old link, a typo)
    is dropped.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph()
    >>> G.add_node("fn0", kind="op", module="layers.3.attn")
    >>> expandable(G, ["layers.3", "layers.0-31", "0-7", "nope", "nope.0-3", ""])
    ['layers.3', 'layers.0-31', '0-7', '']
    """
    paths = set(module_paths(G))
    kept = []
    for name in names:
        parent, _, last = name.rpartition(".")
        is_fold = re.fullmatch(r"[^.\-]+-[^.\-]+", last) is not None
        if name in paths or (is_fold and (parent in paths or parent == "")) or name == "":
            kept.append(name)
    return kept


def max_depth(G: Graph) -> int:
    """The depth at which :func:`collapse` shows every op: one past the deepest module."""
    return max((m.count(".") + 2 for _, m in G.nodes(data="module") if m), default=1)


def sum_members(C: Graph, numbers: Mapping[str, float]) -> dict[str, float]:
    """Per-node numbers of the traced graph, summed over each node of the view ``C``.

    A module node gets the sum over its ``members``; other nodes keep their
    own number. Nodes with nothing to sum are left out.

    Examples
    --------
    >>> import networkx as nx
    >>> C = nx.MultiDiGraph()
    >>> C.add_node("m_fc", kind="module", members=["fn1", "fn2"])
    >>> C.add_node("fn0", kind="op")
    >>> sum_members(C, {"fn0": 1.0, "fn1": 2.0, "fn2": 3.0})
    {'m_fc': 5.0, 'fn0': 1.0}
    """
    out: dict[str, float] = {}
    for n, attrs in C.nodes(data=True):
        inside = attrs.get("members") if attrs.get("kind") == "module" else [n]
        found = [numbers[m] for m in inside or () if m in numbers]
        if found:
            out[n] = float(sum(found))
    return out


def _natural(path: str) -> list[tuple[int, int | str]]:
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.\-]", path)]


def _timeline(G: Graph) -> list[tuple[str, Path]]:
    """Op nodes that have a creation order, in that order, with their module path."""
    ops = [
        (seq, n, attrs.get("module"))
        for n, attrs in G.nodes(data=True)
        if attrs["kind"] == "op" and (seq := attrs.get("seq")) is not None
    ]
    ops.sort(key=lambda item: item[0])
    # An op outside every module sits at the top, like the top module's own ops.
    return [(n, tuple(m.split(".")) if m else ()) for _, n, m in ops]


def _open_paths(expanded: Iterable[str]) -> set[Path]:
    """The expanded paths and their ancestors: a deep path opens the way to it."""
    opened: set[Path] = {()} if expanded else set()
    for path in expanded:
        parts = tuple(path.split(".")) if path else ()
        opened.update(parts[:i] for i in range(1, len(parts) + 1))
    return opened


class _View:
    """Walks the open modules top-down, giving each timeline op its node in the view."""

    def __init__(
        self,
        G: Graph,
        timeline: list[tuple[str, Path]],
        depth: int,
        opened: set[Path],
        keys: set[str],
        fold: int | None,
    ) -> None:
        self.G = G
        self.timeline = timeline
        self.position = {n: i for i, (n, _) in enumerate(timeline)}
        self.depth = depth
        self.opened = opened
        self.keys = keys
        self.fold = fold
        self.group: dict[str, str] = {}  # original node -> node of the view
        self.groups: dict[str, _Group] = {}
        self.types = _module_types(G)

    def is_open(self, path: Path) -> bool:
        return len(path) < self.depth or path in self.opened

    def build(self) -> None:
        if not self.is_open(()):
            self._add_group("", "", (), 0, len(self.timeline), 1)
            return
        stack: list[tuple[Path, int, int]] = [((), 0, len(self.timeline))]
        while stack:
            path, start, stop = stack.pop()
            items = self._items(len(path), start, stop)
            runs = self._runs(path, items) if self.fold else {}
            i = 0
            while i < len(items):
                run = runs.get(i)
                if run is not None:
                    end = i + run[0] * run[1]
                    self._add_fold(path, items[i:end], run[1])
                    i = end
                    continue
                name, a, b = items[i]
                i += 1
                if name is None:
                    self.group[self.timeline[a][0]] = self.timeline[a][0]
                elif self.is_open((*path, name)):
                    stack.append(((*path, name), a, b))
                else:
                    child = ".".join((*path, name))
                    self._add_group(child, self._box_label(child), path, a, b, 1)

    def _items(self, k: int, start: int, stop: int) -> list[tuple[str | None, int, int]]:
        """Direct ops (name None) and runs of one child's ops, in creation order."""
        timeline = self.timeline
        items: list[tuple[str | None, int, int]] = []
        i = start
        while i < stop:
            parts = timeline[i][1]
            if len(parts) <= k:
                items.append((None, i, i + 1))
                i += 1
                continue
            name = parts[k]
            j = i + 1
            while j < stop and len(timeline[j][1]) > k and timeline[j][1][k] == name:
                j += 1
            items.append((name, i, j))
            i = j
        return items

    def _runs(
        self, path: Path, items: list[tuple[str | None, int, int]]
    ) -> dict[int, tuple[int, int]]:
        """Item index -> (period, repeats) of each run of identical units to fold."""
        assert self.fold is not None
        if len(items) < self.fold:
            return {}
        codes: dict[object, int] = {}
        sigs = [
            codes.setdefault(self._signature(path, item, i), len(codes))
            for i, item in enumerate(items)
        ]
        boxes = [name is not None for name, _, _ in items]
        runs: dict[int, tuple[int, int]] = {}
        i = 0
        while i < len(items):
            best = _best_run(sigs, boxes, i, self.fold)
            if best is None:
                i += 1
                continue
            period, repeats = best
            key = _fold_key(path, items[i : i + period * repeats])
            if key not in self.keys:
                runs[i] = best
            i += period * repeats
        return runs

    def _signature(self, path: Path, item: tuple[str | None, int, int], index: int) -> object:
        """Equal for two blocks built alike: the same submodules, parameter shapes and output.

        Not the ops themselves: the first block of a stack sees an input that needs
        no gradient, so autograd records fewer ops in it, yet it is the same block.
        """
        name, a, b = item
        nodes = node_dicts(self.G)
        if name is None:
            attrs = nodes[self.timeline[a][0]]
            return ("op", attrs.get("op"), _shape(attrs))
        if (*path, name) in self.opened:
            return ("open", index)  # an expanded module splits any fold around it
        k = len(path) + 1
        pred = pred_dicts(self.G)
        modules: set[tuple[Path, object]] = set()
        params: list[tuple[Path, tuple[int, ...] | None]] = []
        for t in range(a, b):
            n, parts = self.timeline[t]
            modules.add((parts[k:], nodes[n].get("module_type")))
            params += [
                (parts[k:], _shape(nodes[u]))
                for u in pred[n]
                if nodes[u].get("op") == ACCUMULATE_GRAD
            ]
        exit_shape = _shape(nodes[self.timeline[b - 1][0]])
        return (frozenset(modules), tuple(sorted(params, key=repr)), exit_shape)

    def _add_fold(self, path: Path, units: list[tuple[str | None, int, int]], repeats: int) -> None:
        named = [name for name, _, _ in units if name is not None]
        prefix = ".".join(path) + "." if path else ""
        label = f"{prefix}{named[0]}–{named[-1]} (×{repeats})"
        self._add_group(_fold_key(path, units), label, path, units[0][1], units[-1][2], repeats)

    def _box_label(self, path: str) -> str:
        kind = self.types.get(path)
        return f"{path} ({kind})" if kind else path

    def _add_group(
        self, name: str, label: str, parent: Path, start: int, stop: int, repeat: int
    ) -> None:
        base = PREFIX + name
        gid, n = base, 1
        while gid in self.groups or gid in self.G:  # another call of the same module
            n += 1
            gid = f"{base}#{n}"
        self.groups[gid] = _Group(gid, name, label, parent, start, stop, repeat)
        for t in range(start, stop):
            self.group[self.timeline[t][0]] = gid


def _best_run(sigs: list[int], boxes: list[bool], i: int, fold: int) -> tuple[int, int] | None:
    """The (period, repeats) covering most items from ``i``, with at least ``fold`` repeats."""
    best: tuple[int, int] | None = None
    m = len(sigs)
    for period in range(1, MAX_PERIOD + 1):
        if i + fold * period > m:
            break
        unit = sigs[i : i + period]
        if not any(boxes[i : i + period]):
            continue
        repeats = 1
        while sigs[i + repeats * period : i + (repeats + 1) * period] == unit:
            repeats += 1
        if repeats >= fold and (best is None or repeats * period > best[0] * best[1]):
            best = (period, repeats)
    return best


def _fold_key(path: Path, units: list[tuple[str | None, int, int]]) -> str:
    named = [name for name, _, _ in units if name is not None]
    return ".".join((*path, f"{named[0]}-{named[-1]}"))


def _shape(attrs: NodeAttrs) -> tuple[int, ...] | None:
    shape = attrs.get("shape")
    return tuple(shape) if shape is not None else None


def _module_types(G: Graph) -> dict[str, str]:
    """Module path -> class name, from the ops each module ran and ``G.graph["module_types"]``."""
    types: dict[str, str] = dict(G.graph.get("module_types") or {})
    for _, attrs in G.nodes(data=True):
        m, kind = attrs.get("module"), attrs.get("module_type")
        if m is not None and kind:
            types.setdefault(m, kind)
    return types


def _attach_sources(G: Graph, group: dict[str, str]) -> None:
    """Parameters, their AccumulateGrad and saved tensors join the one group that uses them."""
    rest = [n for n in G if n not in group]
    # AccumulateGrad before leaves: a leaf follows its AccumulateGrad.
    rest.sort(key=lambda n: G.nodes[n]["kind"] != "op")
    succ, pred = succ_dicts(G), pred_dicts(G)
    for n in rest:
        kind = G.nodes[n]["kind"]
        # A source (a leaf, a saved tensor, an op fed only by leaves such as AccumulateGrad)
        # can join any group without closing a cycle.
        source = kind in ("leaf", "saved") or (
            kind == "op" and all(G.nodes[u]["kind"] in ("leaf", "saved") for u in pred[n])
        )
        users = {group.get(v) for v in succ[n]} if source else set()
        only = next(iter(users)) if len(users) == 1 else None
        group[n] = only if only is not None and only.startswith(PREFIX) else n


def _quotient(
    G: Graph,
    group: dict[str, str],
    groups: dict[str, _Group],
    timeline: list[tuple[str, Path]],
    depth: int,
    expanded: Collection[str],
) -> Graph:
    members: dict[str, list[str]] = {gid: [] for gid in groups}
    nodes: list[tuple[str, NodeAttrs]] = []
    for n, attrs in G.nodes(data=True):
        gid = group[n]
        if gid == n:
            nodes.append((n, cast(NodeAttrs, dict(attrs))))
        else:
            if not members[gid]:
                nodes.append((gid, {"kind": "module", "label": ""}))
            members[gid].append(n)
    edges, leaving = _merged_edges(G, group)
    types = _module_types(G)
    position = {n: i for i, (n, _) in enumerate(timeline)}
    attrs_of = dict(nodes)
    for gid, g in groups.items():
        exit_op = max(
            (n for n in members[gid] if n in position and n in leaving),
            key=position.__getitem__,
            default=timeline[g.stop - 1][0],
        )
        attrs_of[gid].update(_group_attrs(G, g, members[gid], exit_op, types))
    graph = dict(G.graph)
    graph["collapsed"] = {
        "depth": depth,
        "expanded": sorted(expanded),
        "nodes": G.number_of_nodes(),
    }
    return assemble(nodes, edges, **graph)


def _merged_edges(
    G: Graph, group: dict[str, str]
) -> tuple[list[tuple[str, str, int, EdgeAttrs]], set[str]]:
    """Edges between view nodes (one per pair and a count where a group is involved),
    and the original nodes with an edge leaving their group."""
    edges: list[tuple[str, str, int, EdgeAttrs]] = []
    merged: dict[tuple[str, str], EdgeAttrs] = {}
    leaving: set[str] = set()
    for (u, v, key), attrs in edge_dicts(G).items():
        gu, gv = group[u], group[v]
        if gu == gv:
            continue
        leaving.add(u)
        if gu == u and gv == v:
            edges.append((u, v, key, attrs.copy()))
            continue
        seen = merged.get((gu, gv))
        if seen is None:
            edge: EdgeAttrs = {
                "kind": attrs.get("kind", "flow"),
                "slot": attrs.get("slot", 0),
                "output": attrs.get("output", 0),
                "count": 1,
            }
            if "grad" in attrs:
                edge["grad"] = attrs["grad"]
            merged[(gu, gv)] = edge
            edges.append((gu, gv, 0, edge))
        else:
            seen["count"] = seen.get("count", 1) + 1
            seen.pop("grad", None)  # several gradients: none of them is the edge's
            if attrs.get("kind") == "flow":
                seen["kind"] = "flow"
    return edges, leaving


def _group_attrs(
    G: Graph, g: _Group, members: list[str], exit_op: str, types: dict[str, str]
) -> NodeAttrs:
    nodes = node_dicts(G)
    exit_attrs = nodes[exit_op]
    parent = ".".join(g.parent)
    attrs: NodeAttrs = {
        "kind": "module",
        "label": g.label or f"model ({types.get('', 'top module')})",
        "name": g.name,
        "module": parent if g.name else None,
        "module_type": types.get(parent) if g.name else None,
        "count": len(members),
        "ops": sum(1 for n in members if nodes[n]["kind"] == "op"),
        "members": members,
        "repeat": g.repeat,
        "shape": exit_attrs.get("shape"),
        "dtype": exit_attrs.get("dtype"),
        "device": exit_attrs.get("device"),
    }
    if "value" in exit_attrs:
        attrs["value"] = exit_attrs["value"]
    if "grad" in exit_attrs:
        attrs["grad"] = exit_attrs["grad"]
    saved = [nodes[n]["saved_bytes"] for n in members if "saved_bytes" in nodes[n]]
    if saved:
        attrs["saved_bytes"] = sum(saved)
    return attrs


def _copy(G: Graph) -> Graph:
    nodes = [(n, cast(NodeAttrs, dict(a))) for n, a in G.nodes(data=True)]
    edges = [(u, v, k, a.copy()) for (u, v, k), a in edge_dicts(G).items()]
    return assemble(nodes, edges, **G.graph)
