"""Playground: type a tensor program, see the real grad_fn graph with values and gradients."""

from __future__ import annotations

import streamlit as st

from gradlab import examples
from gradlab.program import ProgramResult, run_program
from gradlab.render.table import as_dicts, node_rows, variable_rows
from gradlab.share import ViewState, from_params, to_params

from graph_view import chosen_view, download_row, show_graph
from node_details import show_node

PROGRAM, EXAMPLE, NODE = "pg.program", "pg.example", "pg.node"


@st.cache_data(max_entries=200, show_spinner="Running the program…")
def run(source: str) -> ProgramResult:
    """Run a program once per text; the result holds facts only, so it caches safely."""
    return run_program(source)


def load_example() -> None:
    example = examples.get(st.session_state[EXAMPLE])
    if example is not None:
        st.session_state[PROGRAM] = example.source
        st.session_state[NODE] = None


def first_visit() -> ViewState:
    """Seed the widgets from the link the page was opened with."""
    state = from_params(st.query_params.to_dict())
    example = examples.get(state.example or "") or examples.EXAMPLES[0]
    st.session_state[EXAMPLE] = example.id
    st.session_state[PROGRAM] = state.program if state.program is not None else example.source
    st.session_state[NODE] = state.node
    st.session_state["pg.view"] = state.view
    return state


def show_error(result: ProgramResult) -> None:
    error = result.error
    assert error is not None
    st.error(f"**Line {error.line}:** {error.message}")
    lesson = error.explanation
    if lesson is not None:
        with st.container(border=True):
            st.markdown(f"#### {lesson.title}")
            st.markdown(lesson.why)
            st.markdown("**How to fix it**")
            for fix in lesson.fixes:
                st.code(fix, language="python")
            if error.node:
                st.caption(f"The node where it happens, `{error.node}`, is outlined in red.")


def show_results(result: ProgramResult) -> None:
    for notice in result.notices:
        lesson = notice.explanation
        st.warning(f"**{lesson.title}.** {lesson.why}" if lesson else notice.message)
    if result.output:
        st.markdown("**Printed**")
        st.code(result.output, language=None)
    if result.variables:
        st.markdown("**Variables**")
        st.dataframe(variable_rows(result.variables), hide_index=True, width="stretch")


if PROGRAM not in st.session_state:
    first_visit()

st.title("Playground")
st.caption(
    "Type PyTorch, see the graph autograd really builds: every `grad_fn` node with its "
    "forward value and, after `backward()`, the gradient that flowed into it."
)
editor, picture = st.columns([2, 3], gap="large")
with editor:
    st.selectbox(
        "Example",
        [e.id for e in examples.EXAMPLES],
        format_func=lambda i: examples.get(i).title,  # type: ignore[union-attr]
        key=EXAMPLE,
        on_change=load_example,
    )
    chosen = examples.get(st.session_state[EXAMPLE])
    if chosen is not None and st.session_state[PROGRAM] == chosen.source:
        st.caption(chosen.lesson)
    st.text_area(
        "Program",
        key=PROGRAM,
        height=260,
        help="Press Ctrl+Enter (or click outside) to run. Allowed: assignments, torch, nn, F, "
        "tensor methods, loops, functions, backward().",
    )
    result = run(st.session_state[PROGRAM])
    if result.error is not None:
        show_error(result)
    show_results(result)

with picture:
    G = result.graph
    if G is None:
        st.info(
            "Nothing to draw yet: create a tensor with `requires_grad=True` and compute "
            "something from it."
        )
    else:
        where = f"`{result.root}`" if result.root else "the last tensor"
        steps = "with the backward pass" if result.backward_calls else "(no backward() yet)"
        st.markdown(f"**The graph of {where}** {steps}")
        error_node = result.error.node if result.error else None
        selected = st.session_state.get(NODE)
        if selected not in G:
            selected = None
        clicked = show_graph(
            G,
            key="pg",
            highlight=[error_node] if error_node else (),
            selected=selected,
            color="kind",
        )
        if clicked is not None:
            selected = st.session_state[NODE] = clicked
        ids = list(G.nodes)
        picked = st.selectbox(
            "Node details",
            [None, *ids],
            index=ids.index(selected) + 1 if selected in ids else 0,
            format_func=lambda n: "click a node, or pick one here" if n is None else
            f"{n}: {G.nodes[n].get('op') or G.nodes[n].get('label')}",
        )  # fmt: skip
        if picked != selected:
            selected = st.session_state[NODE] = picked
        if selected is not None:
            with st.container(border=True):
                show_node(G, selected)
        with st.expander("All nodes, in backward order"):
            st.dataframe(as_dicts(node_rows(G)), hide_index=True, width="stretch")
        download_row(G, key="pg.download", stem="gradlab-graph")

example = examples.get(st.session_state[EXAMPLE])
unchanged = example is not None and st.session_state[PROGRAM] == example.source
state = ViewState(
    program=st.session_state[PROGRAM],
    example=example.id if unchanged and example is not None else None,
    view=chosen_view("pg"),
    node=st.session_state.get(NODE),
)
st.query_params.from_dict(to_params(state))
