"""Show one node of a graph: what it is, its value and gradient, and how they look. Not a page.

Pages import it as ``from node_details import show_node`` (and ``show_card`` for the
chain-rule card alone).
"""

from __future__ import annotations

import plotly.graph_objects as go
import streamlit as st

from gradlab.chain import card, no_card
from gradlab.graph import HIST_BINS, Graph, TensorSummary, saved_by
from gradlab.render.card import card_markdown
from gradlab.render.text import describe, shape, short


def show_node(G: Graph, n: str) -> None:
    """The details of node ``n``: header, module, value, gradient (histograms for big ones)."""
    attrs = G.nodes[n]
    kind = attrs["kind"]
    title = attrs.get("op") if kind == "op" else f"{kind}: {attrs.get('label')}"
    st.markdown(f"**{title}** &nbsp; `{n}`")
    facts = [
        f"shape {shape(attrs.get('shape'))}",
        str(attrs.get("dtype") or ""),
        str(attrs.get("device") or ""),
    ]
    if attrs.get("name"):
        facts.insert(0, f"`{attrs['name']}`")
    if attrs.get("module") is not None:
        facts.append(f"in module `{attrs['module'] or '(top)'}` ({attrs.get('module_type')})")
    if attrs.get("step") is not None:
        facts.append(f"backward step {attrs['step']}")
    st.caption(" · ".join(f for f in facts if f))
    value, grad = attrs.get("value"), attrs.get("grad")
    left, right = st.columns(2)
    with left:
        _tensor("Forward value", value, f"{n}.value")
    with right:
        label = ".grad (accumulated)" if kind == "leaf" else "Gradient arriving (∂L/∂output)"
        _tensor(label, grad, f"{n}.grad")
    _saved(G, n)
    show_card(G, n)


def _saved(G: Graph, n: str) -> None:
    """The tensors op ``n`` saved for its backward, when the graph kept them."""
    held = saved_by(G, n)
    if not held:
        return
    total = G.nodes[n].get("saved_bytes")
    size = f" ({total:,} bytes)" if total is not None else ""
    st.markdown(f"*Saved for backward*{size}")
    rows = [
        {
            "attribute": G.nodes[u].get("attr"),
            "node": u,
            "shape": shape(G.nodes[u].get("shape")),
            "dtype": G.nodes[u].get("dtype"),
            "value": short(G.nodes[u].get("value")),
        }
        for u in held
    ]
    st.dataframe(rows, hide_index=True, width="stretch", key=f"{n}.saved")


def show_card(G: Graph, n: str) -> None:
    """The chain-rule card of node ``n``: its rule, with its numbers; a caption for other kinds."""
    reason = no_card(G, n)
    if reason is not None:
        st.caption(reason)
        return
    with st.container(border=True):
        st.markdown(card_markdown(card(G, n)))


def _tensor(title: str, s: TensorSummary | None, key: str) -> None:
    st.markdown(f"*{title}*")
    if s is None:
        st.caption("not known (run backward() for gradients; ops need record() for values)")
        return
    st.code(describe(s), language=None)
    if s.get("hist") and s["min"] is not None and s["max"] is not None:
        st.plotly_chart(_histogram(s), key=f"{key}.hist", width="stretch")


def _histogram(s: TensorSummary) -> go.Figure:
    low, high = float(s["min"] or 0.0), float(s["max"] or 0.0)
    width = (high - low) / HIST_BINS or 1.0
    centres = [low + (i + 0.5) * width for i in range(HIST_BINS)]
    fig = go.Figure(go.Bar(x=centres, y=s["hist"], width=width * 0.95, marker_color="#6b8cbe"))
    fig.update_layout(
        height=180, margin={"l": 10, "r": 10, "t": 10, "b": 10}, bargap=0,
        xaxis_title="value", yaxis_title="count",
    )  # fmt: skip
    return fig
