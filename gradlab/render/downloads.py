"""The files a page offers for a graph: suffix, label, type, and when a picture is out of reach.

The app's download buttons, the CLI and the tests read the same table. SVG
and PNG need Graphviz's ``dot`` program and take minutes past
:data:`GRAPHVIZ_UP_TO` nodes; the other formats are written by GradLab itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from gradlab.core.graph import Graph
from gradlab.render.formats import FORMATS, dot_available

#: Above this many nodes Graphviz would take minutes (the classic picture, SVG and PNG).
GRAPHVIZ_UP_TO = 1500


@dataclass(frozen=True)
class FileSpec:
    """One downloadable format of a graph."""

    suffix: str
    label: str
    mime: str
    help: str
    needs_dot: bool = False


FILES = (
    FileSpec("dot", "DOT", "text/vnd.graphviz", "the graph as Graphviz DOT text"),
    FileSpec("svg", "SVG", "image/svg+xml", "the Graphviz picture, as SVG", needs_dot=True),
    FileSpec("png", "PNG", "image/png", "the Graphviz picture, as PNG", needs_dot=True),
    FileSpec("json", "JSON", "application/json", "networkx node-link JSON, every attribute"),
    FileSpec("graphml", "GraphML", "application/xml", "GraphML, for Gephi, yEd, Cytoscape"),
    FileSpec(
        "html",
        "HTML",
        "text/html",
        "the interactive viewer in one offline file: open it in any browser, or mail it",
    ),
)
assert {f.suffix for f in FILES} == set(FORMATS), "every export format has a download"


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
