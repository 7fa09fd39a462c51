"""Every file format GradLab writes or reads, as one table: :data:`FORMATS`.

=============  ======================================================  =========
suffix         what is written                                         read back
=============  ======================================================  =========
``.dot``       Graphviz DOT text (:func:`gradlab.to_dot`)              no
``.svg``       the DOT picture laid out by Graphviz's ``dot`` program  no
``.png``       the same, as an image                                   no
``.json``      networkx node-link JSON (``nx.node_link_graph`` reads)  yes
``.graphml``   GraphML (``nx.read_graphml`` reads it)                  yes
``.html``      the interactive viewer in one self-contained page       no
=============  ======================================================  =========

Each row (:class:`Format`) says its suffix, the label and MIME type of its
download, whether it needs Graphviz's ``dot`` program, how it is written and,
for the two that hold every fact, how it is read (the codecs of
:mod:`gradlab.core.files`). :func:`save`, :func:`load`, ``gradlab export``
and the app's download buttons all read this table: a new format is one row.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import graphviz

from gradlab.core.errors import ExportError
from gradlab.core.files import read_graphml, read_json, read_limited, to_graphml, to_json
from gradlab.core.graph import Graph
from gradlab.render.dot import to_dot
from gradlab.render.viewer import page, payload

#: Above this many nodes Graphviz would take minutes (the classic picture, SVG and PNG).
GRAPHVIZ_UP_TO = 1500


@dataclass(frozen=True)
class Format:
    """One file format: a row of :data:`FORMATS`."""

    suffix: str  # without the dot
    label: str  # the download button's text
    mime: str
    needs_dot: bool  # written by Graphviz's dot program
    write: Callable[[Graph, bool], bytes]  # (G, clusters) -> the file's bytes
    read: Callable[[bytes], Graph] | None  # the file's bytes -> G (ValueError: why not)
    help: str  # what the file holds, in a few words


FORMATS: dict[str, Format] = {
    f.suffix: f
    for f in (
        Format(
            "dot", "DOT", "text/vnd.graphviz", False,
            lambda G, clusters: to_dot(G, clusters=clusters).encode(), None,
            "the graph as Graphviz DOT text",
        ),
        Format(
            "svg", "SVG", "image/svg+xml", True,
            lambda G, clusters: _layout(to_dot(G, clusters=clusters), "svg"), None,
            "the Graphviz picture, as SVG",
        ),
        Format(
            "png", "PNG", "image/png", True,
            lambda G, clusters: _layout(to_dot(G, clusters=clusters), "png"), None,
            "the Graphviz picture, as PNG",
        ),
        Format(
            "json", "JSON", "application/json", False,
            lambda G, clusters: to_json(G), read_json,
            "networkx node-link JSON, every attribute",
        ),
        Format(
            "graphml", "GraphML", "application/xml", False,
            lambda G, clusters: to_graphml(G), read_graphml,
            "GraphML, for Gephi, yEd, Cytoscape",
        ),
        Format(
            "html", "HTML", "text/html", False,
            lambda G, clusters: page(payload(G)).encode(), None,
            "the interactive viewer in one offline file: open it in any browser, or mail it",
        ),
    )
}  # fmt: skip


def save(G: Graph, path: str | Path, *, clusters: bool = False) -> Path:
    """Write ``G`` to ``path`` in the format its suffix names (see :data:`FORMATS`).

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
            f"Use one of: {suffixes()}."
        )
    data = render(G, fmt, clusters=clusters)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise ExportError(f"Cannot write '{path}': {exc.strerror or exc}.") from exc
    return path


def render(G: Graph, fmt: str, *, clusters: bool = False) -> bytes:
    """The bytes of ``G`` in format ``fmt`` (a suffix of :data:`FORMATS`)."""
    if fmt not in FORMATS:
        raise ExportError(f"Unknown format '{fmt}'. Use one of: {', '.join(FORMATS)}.")
    return FORMATS[fmt].write(G, clusters)


def load(path: str | Path) -> Graph:
    """Read a graph written by :func:`save` in a format that can be read back.

    The file is untrusted: one bigger than :data:`~gradlab.core.files.MAX_LOAD_BYTES`,
    damaged, nested too deeply, GraphML with a DTD or entities (refused before
    they are parsed), or data that is not a GradLab graph (checked against the
    declared attributes: :func:`gradlab.core.graph.check_graph`) raises an
    :class:`~gradlab.core.errors.ExportError` whose message is one line.
    """
    path = Path(path)
    spec = FORMATS.get(path.suffix.lower().lstrip("."))
    if spec is None or spec.read is None:
        readable = " and ".join(f".{f.suffix}" for f in FORMATS.values() if f.read is not None)
        raise ExportError(f"Cannot read '{path.name}': only {readable} files can be loaded.")
    raw = read_limited(path)
    try:
        return spec.read(raw)
    except ValueError as exc:
        raise ExportError(f"Cannot read '{path}': {exc}.") from None


def suffixes() -> str:
    """The suffixes :func:`save` writes, as a person reads them: ``.dot, .svg, ...``."""
    return ", ".join("." + suffix for suffix in FORMATS)


def dot_available() -> bool:
    """Whether Graphviz's ``dot`` program is on the PATH."""
    return shutil.which("dot") is not None


def no_layout_reason(G: Graph) -> str | None:
    """Why ``G`` cannot be offered as SVG or PNG here, or ``None`` when it can.

    Examples
    --------
    >>> import networkx as nx
    >>> G = nx.MultiDiGraph()
    >>> G.add_nodes_from(range(GRAPHVIZ_UP_TO + 1))
    >>> no_layout_reason(G) is not None
    True
    """
    if not dot_available():
        return (
            "SVG and PNG need Graphviz's `dot` program, which is not installed on the server "
            "(Debian: apt-get install graphviz). DOT opens in any Graphviz viewer."
        )
    if G.number_of_nodes() > GRAPHVIZ_UP_TO:
        return (
            f"{G.number_of_nodes():,} nodes would take Graphviz minutes to lay out: "
            "collapse the graph further, or download DOT, JSON or HTML."
        )
    return None


def no_picture_reason(G: Graph) -> str | None:
    """Why the classic Graphviz picture of ``G`` is not drawn (laid out in the browser, so
    no ``dot`` program is needed), or ``None`` when it is."""
    if G.number_of_nodes() > GRAPHVIZ_UP_TO:
        return (
            f"{G.number_of_nodes():,} nodes are too many for the Graphviz picture "
            f"(over {GRAPHVIZ_UP_TO:,}: it would take minutes)."
        )
    return None


@dataclass(frozen=True)
class Offer:
    """One download of a graph as a page offers it."""

    format: Format
    file_name: str
    blocked: str | None  # why this file cannot be made here, or None

    @property
    def help(self) -> str:
        """The button's tooltip: why it is blocked, or what the file holds."""
        return self.blocked if self.blocked is not None else self.format.help


def offers(G: Graph, stem: str) -> list[Offer]:
    """Every format of :data:`FORMATS` as a download of ``G`` named ``{stem}.{suffix}``.

    Examples
    --------
    >>> import networkx as nx
    >>> [o.file_name for o in offers(nx.MultiDiGraph(), "g")][:3]
    ['g.dot', 'g.svg', 'g.png']
    """
    why_not = no_layout_reason(G)
    return [
        Offer(f, f"{stem}.{f.suffix}", why_not if f.needs_dot else None)
        for f in FORMATS.values()
    ]


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
