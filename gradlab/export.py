"""Write graphs to files, and read them back.

=========  ==========================================================
suffix     what is written
=========  ==========================================================
``.dot``   Graphviz DOT text (:func:`gradlab.to_dot`)
``.svg``   the DOT picture laid out by Graphviz's ``dot`` program
``.png``   the same, as an image
``.json``  networkx node-link JSON (``nx.node_link_graph`` reads it)
``.graphml`` GraphML (``nx.read_graphml`` reads it)
``.html``  the interactive viewer in one self-contained offline page
=========  ==========================================================

JSON keeps every attribute as it is (NaN and Infinity written the way
Python's ``json`` reads them back). GraphML holds only scalars, so an
attribute whose values are not all plain strings, numbers or booleans of one
type (shapes, summaries, ``None``) is stored as JSON text, and the graph's
``gradlab_json`` attribute lists those keys; :func:`load` decodes them, so a
graph comes back equal to the one saved.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import graphviz
import networkx as nx

from gradlab.errors import ExportError
from gradlab.graph import Graph
from gradlab.render.dot import to_dot

FORMATS = ("dot", "svg", "png", "json", "graphml", "html")
_JSON_KEYS = "gradlab_json"


def save(G: Graph, path: str | Path, *, clusters: bool = False) -> Path:
    """Write ``G`` to ``path`` in the format its suffix names (see the module docstring).

    Examples
    --------
    >>> import tempfile, torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> G = gradlab.trace((x ** 2).sum())
    >>> path = gradlab.save(G, tempfile.mkdtemp() + "/graph.json")
    >>> sorted(gradlab.load(path).nodes) == sorted(G.nodes)
    True
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(
            f"Cannot write '{path.name}': unknown suffix '{path.suffix}'. "
            f"Use one of: {', '.join('.' + f for f in FORMATS)}."
        )
    data = render(G, fmt, clusters=clusters)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc
    return path


def render(G: Graph, fmt: str, *, clusters: bool = False) -> bytes:
    """The bytes of ``G`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "dot":
        return to_dot(G, clusters=clusters).encode()
    if fmt in ("svg", "png"):
        return _layout(to_dot(G, clusters=clusters), fmt)
    if fmt == "json":
        return json.dumps(nx.node_link_data(G, edges="edges"), indent=1).encode()
    if fmt == "graphml":
        return _graphml(G)
    if fmt == "html":
        from gradlab.viewer import page, payload

        return page(payload(G)).encode()
    raise ExportError(f"Unknown format '{fmt}'. Use one of: {', '.join(FORMATS)}.")


def load(path: str | Path) -> Graph:
    """Read a graph written by :func:`save` as ``.json`` or ``.graphml``."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    try:
        if fmt == "json":
            data = json.loads(path.read_text())
            G: Graph = nx.node_link_graph(data, edges="edges")
            return G
        if fmt == "graphml":
            return _decode(nx.read_graphml(path, force_multigraph=True))
    except (OSError, ValueError, KeyError) as exc:
        raise ExportError(f"Cannot read '{path}': {exc}") from exc
    raise ExportError(f"Cannot read '{path.name}': only .json and .graphml files can be loaded.")


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def _layout(dot_text: str, fmt: str) -> bytes:
    if not dot_available():
        raise ExportError(
            f"Writing .{fmt} needs Graphviz's 'dot' program, which is not installed. "
            "Install it (Debian: sudo apt-get install graphviz), or save as .dot or .json."
        )
    try:
        data: bytes = graphviz.Source(dot_text).pipe(format=fmt)
    except graphviz.CalledProcessError as exc:
        raise ExportError(f"Graphviz's dot failed: {exc.stderr.decode(errors='replace')}") from exc
    return data


def _graphml(G: Graph) -> bytes:
    H = nx.MultiDiGraph()
    node_json = _json_keys(attrs for _, attrs in G.nodes(data=True))
    edge_json = _json_keys(attrs for _, _, attrs in G.edges(data=True))
    graph_json = _json_keys([G.graph])
    H.graph.update(_encode(G.graph, graph_json))
    H.graph[_JSON_KEYS] = json.dumps(
        {"node": sorted(node_json), "edge": sorted(edge_json), "graph": sorted(graph_json)}
    )
    H.add_nodes_from((n, _encode(attrs, node_json)) for n, attrs in G.nodes(data=True))
    H.add_edges_from(
        (u, v, k, _encode(attrs, edge_json)) for u, v, k, attrs in G.edges(keys=True, data=True)
    )
    return "\n".join(nx.generate_graphml(H)).encode()


def _json_keys(dicts: Any) -> set[str]:
    """Keys that cannot be stored natively: non-scalar, None, or of mixed types."""
    types: dict[str, set[type]] = {}
    for attrs in dicts:
        for key, value in attrs.items():
            types.setdefault(key, set()).add(type(value))
    native = {str, int, float, bool}
    return {key for key, seen in types.items() if len(seen) != 1 or not seen <= native}


def _encode(attrs: dict[str, Any], json_keys: set[str]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in json_keys else v for k, v in attrs.items()}


def _decode(G: Graph) -> Graph:
    keys = json.loads(G.graph.pop(_JSON_KEYS, '{"node": [], "edge": [], "graph": []}'))
    H = nx.MultiDiGraph()
    graph = {k: v for k, v in G.graph.items() if k not in ("node_default", "edge_default")}
    H.graph.update(_decoded(graph, keys["graph"]))
    H.add_nodes_from((n, _decoded(attrs, keys["node"])) for n, attrs in G.nodes(data=True))
    H.add_edges_from(
        (u, v, int(k), _decoded(attrs, keys["edge"]))
        for u, v, k, attrs in G.edges(keys=True, data=True)
    )
    return H


def _decoded(attrs: dict[str, Any], json_keys: list[str]) -> dict[str, Any]:
    return {k: json.loads(v) if k in json_keys else v for k, v in attrs.items()}
