"""Graph files: a graph's facts as JSON or GraphML, and back, read as untrusted input.

JSON is networkx's node-link form (``nx.node_link_graph`` reads it) and keeps
every attribute as it is (NaN and Infinity written the way Python's ``json``
reads them back). GraphML holds only scalars, so an attribute whose values are
not all plain strings, numbers or booleans of one type (shapes, summaries,
``None``) is stored as JSON text, and the graph's ``gradlab_json`` attribute
lists those keys; :func:`read_graphml` decodes them, so a graph comes back
equal to the one written.

A file to read is untrusted: :func:`read_limited` refuses one bigger than
:data:`MAX_LOAD_BYTES`, and the readers refuse damaged text, nesting too
deep, GraphML with a DTD or entities (before they are parsed) and data that
is not a GradLab graph (:func:`gradlab.core.graph.check_graph`), each with a
``ValueError`` whose message is one line. The run store keeps its graphs in
this JSON; :mod:`gradlab.render.formats` offers both formats as files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from xml.parsers import expat

import networkx as nx
from networkx.readwrite.graphml import GraphMLReader

from gradlab.core.errors import ExportError
from gradlab.core.graph import Graph, check_graph

#: The largest file :func:`read_limited` reads (a 1,000-layer MLP with its values is 10 MB as JSON).
MAX_LOAD_BYTES = 64 * 1024 * 1024
_MAX_XML_DEPTH = 32  # GradLab's GraphML is 4 elements deep
_JSON_KEYS = "gradlab_json"


def to_json(G: Graph) -> bytes:
    """``G`` as networkx node-link JSON, every attribute kept.

    Examples
    --------
    >>> import torch, gradlab
    >>> x = torch.tensor([2.0, 3.0], requires_grad=True)
    >>> G = gradlab.trace((x ** 2).sum())
    >>> read_json(to_json(G)).nodes["fn0"]["op"]
    'SumBackward0'
    """
    return json.dumps(nx.node_link_data(G, edges="edges"), indent=1).encode()


def to_graphml(G: Graph) -> bytes:
    """``G`` as GraphML; attributes GraphML cannot hold are written as JSON text."""
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


def read_json(raw: bytes | str) -> Graph:
    """The graph in ``raw``, the text of a file from :func:`to_json` (checked; any size).

    Anything else raises a ``ValueError`` whose message, one line, says what is wrong.
    """
    return _checked(_from_json, raw)


def read_graphml(raw: bytes | str) -> Graph:
    """The graph in ``raw``, the text of a file from :func:`to_graphml` (checked; any size).

    Anything else raises a ``ValueError`` whose message, one line, says what is wrong.
    """
    return _checked(_from_graphml, raw)


def parse(raw: bytes | str, fmt: str) -> Graph:
    """The graph in ``raw``: :func:`read_json` for ``fmt="json"``, else :func:`read_graphml`."""
    return read_json(raw) if fmt == "json" else read_graphml(raw)


def read_limited(path: Path) -> bytes:
    """The bytes of ``path``, refused with an :class:`ExportError` past :data:`MAX_LOAD_BYTES`."""
    limit_mb = MAX_LOAD_BYTES // (1024 * 1024)
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            raw = b"" if size > MAX_LOAD_BYTES else file.read(MAX_LOAD_BYTES + 1)
    except OSError as exc:
        raise ExportError(f"Cannot read '{path}': {exc.strerror or exc}.") from exc
    if size > MAX_LOAD_BYTES or len(raw) > MAX_LOAD_BYTES:
        shown = f" ({size / 1024 / 1024:.0f} MB)" if size > MAX_LOAD_BYTES else ""
        raise ExportError(
            f"Cannot read '{path}': it is bigger than the {limit_mb} MB GradLab loads{shown}."
        )
    return raw


class _Unloadable(Exception):
    """Why a file cannot be loaded, in words for a person."""


def _checked(decode: Callable[[bytes], Graph], raw: bytes | str) -> Graph:
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        G: Graph = decode(data)
        check_graph(G)
        return G
    except _Unloadable as exc:
        reason = str(exc)
    except RecursionError:
        reason = "it is nested too deeply"
    except (ValueError, TypeError, KeyError, AttributeError, IndexError, nx.NetworkXError) as exc:
        reason = f"it is not a graph saved by GradLab ({exc})"
    except SyntaxError as exc:  # xml.etree's ParseError
        reason = f"it is not valid XML ({exc})"
    reason = " ".join(reason.split())
    raise ValueError(reason if len(reason) <= 300 else reason[:297] + "...")


def _from_json(raw: bytes) -> Graph:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _Unloadable(f"it is not valid JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise _Unloadable("it is not text (UTF-8 JSON)") from exc
    except ValueError as exc:  # a number of thousands of digits
        raise _Unloadable(f"it holds a value Python will not read ({exc})") from exc
    if not (
        isinstance(data, dict)
        and isinstance(data.get("nodes"), list)
        and isinstance(data.get("edges"), list)
    ):
        raise _Unloadable("it is not a graph saved by GradLab (no 'nodes' and 'edges' lists)")
    if data.get("directed") is not True or data.get("multigraph") is not True:
        raise _Unloadable("it is not a GradLab graph (GradLab saves directed multigraphs)")
    if not isinstance(data.get("graph", {}), dict):
        raise _Unloadable("its 'graph' attributes are not an object")
    ids = set()
    for node in data["nodes"]:
        if not isinstance(node, dict) or not isinstance(node.get("id"), str):
            raise _Unloadable(f"a node {_short(node)} has no string 'id'")
        ids.add(node["id"])
    for edge in data["edges"]:
        if not isinstance(edge, dict) or not all(
            isinstance(edge.get(end), str) and edge[end] in ids for end in ("source", "target")
        ):
            ends = (
                (_short(edge.get("source"), 30), _short(edge.get("target"), 30))
                if isinstance(edge, dict)
                else (_short(edge), "?")
            )
            raise _Unloadable(f"an edge from {ends[0]} to {ends[1]} does not join two of its nodes")
        if type(edge.get("key")) is not int:
            raise _Unloadable(f"an edge {_short(edge)} has no integer 'key'")
    G: Graph = nx.node_link_graph(data, edges="edges")
    return G


def _from_graphml(raw: bytes) -> Graph:
    _refuse_dtd(raw)
    reader = GraphMLReader(node_type=str, edge_key_type=int, force_multigraph=True)
    graphs = list(reader(string=raw))
    if not graphs:
        raise _Unloadable("it holds no GraphML graph")
    G = graphs[0]
    if not G.is_directed():
        raise _Unloadable("it is not a GradLab graph (GradLab saves directed graphs)")
    keys = G.graph.get(_JSON_KEYS, '{"node": [], "edge": [], "graph": []}')
    listed = json.loads(keys) if isinstance(keys, str) else None
    if not (
        isinstance(listed, dict)
        and all(
            isinstance(listed.get(part), list) and all(isinstance(k, str) for k in listed[part])
            for part in ("node", "edge", "graph")
        )
    ):
        raise _Unloadable(f"its '{_JSON_KEYS}' attribute is not the list GradLab writes")
    return _decode(G)


def _refuse_dtd(raw: bytes) -> None:
    """Parse once with expat, refusing a DTD (entities, external references) before it is
    read and nesting deeper than GradLab writes; malformed XML is reported here too.
    """
    parser = expat.ParserCreate()
    depth = [0]

    def doctype(*_: object) -> None:
        raise _Unloadable("it declares a DTD (<!DOCTYPE>), which GradLab does not read")

    def start(*_: object) -> None:
        depth[0] += 1
        if depth[0] > _MAX_XML_DEPTH:
            raise _Unloadable(f"its XML is nested more than {_MAX_XML_DEPTH} deep")

    def end(*_: object) -> None:
        depth[0] -= 1

    parser.StartDoctypeDeclHandler = doctype
    parser.EntityDeclHandler = doctype
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(raw, True)
    except expat.ExpatError as exc:
        raise _Unloadable(
            f"it is not valid XML ({expat.errors.messages[exc.code]}, "
            f"line {exc.lineno}, column {exc.offset})"
        ) from exc


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
