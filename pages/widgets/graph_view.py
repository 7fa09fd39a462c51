"""Show a GradLab graph on a page through the browser viewer; downloads. Not a page.

Pages import it as ``from graph_view import show_graph, download_row``.

* :func:`show_graph` mounts :mod:`gradlab.render.viewer` as a Streamlit component
  (``st.components.v2``). Stepping, Play, predict/reveal, zoom, pan, hover
  and node cards all happen in the browser: none of them reruns the script.
  Only pages that ask for it (``send_selection=True``) hear about a click on a
  node, and only then does the script rerun. Python can open a node's card and
  centre on it (``select=``) without a remount, so the browser keeps its step,
  zoom and pan.
* ``url=True`` keeps the browser-side state in the address bar as it
  changes (``step``, ``present``, ``predict``, ``node``), so a copied link
  opens the same view; the page reads them back with
  :func:`gradlab.app.viewer_host.browser_params`.
* :func:`classic_picture` draws the Graphviz picture (laid out in the
  browser, no ``dot`` needed) for those who want it.
* :func:`download_row` offers the graph in every format of
  :data:`gradlab.render.formats.FORMATS` (DOT, SVG, PNG, JSON, GraphML and a
  self-contained HTML viewer). Files are made only when a button is clicked.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from functools import partial
from typing import Any

import streamlit as st

from gradlab.app.viewer_host import host_js, mount_data
from gradlab.core.graph import Graph
from gradlab.render.dot import to_dot
from gradlab.render.formats import FORMATS, no_picture_reason, offers, render
from gradlab.render.viewer import assets

_viewer = st.components.v2.component(
    "gradlab_viewer",
    js=host_js(*assets()),
    # In a shadow root the viewer's keys (← → Space PageUp PageDown) would never reach
    # it: document.contains() is false there. Its CSS is scoped under .glv anyway.
    isolate_styles=False,
)


def show_graph(
    G: Graph,
    *,
    key: str,
    height: int = 560,
    highlight: Collection[str] = (),
    findings: Iterable[Any] = (),
    select: str | None = None,
    center: bool = False,
    request: object = None,
    color: str = "kind",
    colors: Mapping[str, float] | None = None,
    step: int | None = None,
    predict: bool = False,
    presenter: bool = False,
    printed: str | None = None,
    caption: str | None = None,
    title: str | None = None,
    send_selection: bool = False,
    url: bool = False,
    steps: bool = True,
    cards: bool = True,
) -> str | None:
    """Mount the viewer on ``G``; return the node clicked to cause this rerun (when sent).

    ``step`` (0: before backward, ``s``: ``s`` steps done, ``None``: all), ``predict`` and
    ``presenter`` are where the browser starts; they take effect when the
    graph is first shown (or changes), never on a later rerun, so the browser's
    own position is kept. ``select`` opens that node's card (``center``: and
    centres on it) whenever it or ``request`` changes (a counter: "show it
    again"). ``colors`` replaces the gradient norms the viewer colours by
    (log10 values), with ``color="grad"``. ``printed``
    and ``caption`` sit in the side panel and stay hidden while predicting.
    """
    mounted = mount_data(
        G, highlight=highlight, findings=findings, color=color, colors=colors, step=step,
        predict=predict, printed=printed, caption=caption, title=title, steps=steps, cards=cards,
    )  # fmt: skip
    seq_key = f"{key}.select_seq"
    asked = (select, center, request, mounted["digest"])
    if st.session_state.get(f"{key}.select_last") != asked:
        st.session_state[f"{key}.select_last"] = asked
        st.session_state[seq_key] = st.session_state.get(seq_key, 0) + 1
    result = _viewer(
        key=key,
        data={
            **mounted,
            "height": height,
            "presenter": presenter,
            "select": {"id": select, "center": center, "seq": st.session_state[seq_key]},
            "send": send_selection,
            "url": url,
        },
        on_selected_change=_ignore,
        height=height,
    )
    chosen = result.get("selected") if send_selection else None
    return chosen if isinstance(chosen, str) and chosen in G else None


def classic_picture(G: Graph, *, highlight: Collection[str] = (), clusters: bool = False) -> None:
    """The Graphviz picture of ``G``, laid out in the browser (a message when too big)."""
    too_big = no_picture_reason(G)
    if too_big is not None:
        st.info(too_big)
        return
    st.graphviz_chart(to_dot(G, highlight=highlight, clusters=clusters))


def download_row(G: Graph, *, key: str, stem: str, clusters: bool = False) -> None:
    """Download buttons: ``G`` as ``{stem}.{suffix}`` in every format GradLab writes."""
    for column, offer in zip(st.columns(len(FORMATS)), offers(G, stem), strict=True):
        spec = offer.format
        column.download_button(
            spec.label,
            data=partial(render, G, spec.suffix, clusters=clusters),  # made when clicked
            file_name=offer.file_name,
            mime=spec.mime,
            key=f"{key}.{spec.suffix}",
            disabled=offer.blocked is not None,
            help=offer.help,
            on_click="ignore",
            icon=":material/download:",
            width="stretch",
        )


def _ignore() -> None:
    """The click's callback: the page reads the node from the component's result."""
