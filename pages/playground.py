"""Playground: type a tensor program, see the real grad_fn graph with values and gradients."""

from __future__ import annotations

import streamlit as st

from gradlab import examples
from gradlab.graph import nodes_of, without_saved
from gradlab.program import ProgramResult, run_program
from gradlab.render.plotly import ColorBy
from gradlab.render.table import as_dicts, node_rows, variable_rows
from gradlab.share import ViewState, from_params, to_params

from graph_view import chosen_view, download_row, show_graph
from node_details import show_node
from stepper import show_stepper

PROGRAM, EXAMPLE, NODE = "pg.program", "pg.example", "pg.node"
STEPPING, STEP, PREDICT, PRESENT = "pg.stepping", "pg.steps.step", "pg.predict", "pg.present"
# Presenter mode: type a room can read, the editor and page chrome out of the way.
PRESENTER_CSS = """<style>
html { font-size: 22px; }
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
header[data-testid="stHeader"] { display: none; }
.block-container { padding-top: 1rem; max-width: 100%; }
</style>"""


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
    st.session_state[STEPPING] = state.step is not None
    st.session_state[STEP] = state.step or 0
    st.session_state[PREDICT] = state.predict
    st.session_state[PRESENT] = state.presenter
    st.session_state["pg.stepped"] = st.session_state[PROGRAM]
    return state


def keep_step(source: str) -> None:
    """A changed program is another graph: its step-through starts again."""
    if st.session_state.get("pg.stepped") != source:
        st.session_state["pg.stepped"] = source
        st.session_state[STEP] = 0
        st.session_state["pg.steps.playing"] = False


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


def show_editor() -> ProgramResult:
    """The example menu, the program and what running it gave."""
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
    return result


def show_picture(result: ProgramResult, presenting: bool) -> None:
    """The graph, or the step-through of its backward pass, and the node details."""
    G = result.graph
    if G is None:
        st.info(
            "Nothing to draw yet: create a tensor with `requires_grad=True` and compute "
            "something from it."
        )
        return
    where = f"`{result.root}`" if result.root else "the last tensor"
    can_step = bool(G.graph.get("backward"))
    steps = "with the backward pass" if can_step else "(no backward pass ran)"
    st.markdown(f"**The graph of {where}** {steps}")
    stepping, showing = st.columns(2)
    if can_step:
        stepping.toggle(
            "Step through backward()", key=STEPPING,
            help="Walk the engine's real order, one op at a time (← and → keys).",
        )  # fmt: skip
    saved = bool(nodes_of(G, "saved")) and showing.toggle(
        "Saved tensors", key="pg.saved",
        help="Draw the tensors each op saved for its backward (orange triangles).",
    )  # fmt: skip
    drawn = G if saved else without_saved(G)
    if can_step and st.session_state.get(STEPPING):
        st.toggle(
            "Predict first", key=PREDICT,
            help="Hide what each op sends on until you press Reveal.",
        )  # fmt: skip
        show_stepper(
            G, key="pg.steps", predict=st.session_state[PREDICT], large=presenting, saved=saved
        )
        return
    if presenting and not can_step:
        st.caption("This program calls no backward(): there is nothing to step through.")
    error_node = result.error.node if result.error else None
    selected = st.session_state.get(NODE)
    if selected not in drawn:
        selected = None
    clicked = show_graph(
        drawn,
        key="pg",
        highlight=[error_node] if error_node else (),
        selected=selected,
        color=colour_by(can_step),
        large=presenting,
    )
    if clicked is not None:
        selected = st.session_state[NODE] = clicked
    if presenting:
        if selected is not None:
            with st.container(border=True):
                show_node(G, selected)
        return
    ids = list(drawn.nodes)
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
        st.dataframe(as_dicts(node_rows(drawn)), hide_index=True, width="stretch")
    download_row(drawn, key="pg.download", stem="gradlab-graph")


COLOURS = {"kind": "kind of node", "grad": "gradient norm", "value": "value norm"}


def colour_by(can_step: bool) -> ColorBy:
    """The colouring switch: by kind, or (log10) by each node's gradient or value norm."""
    options = list(COLOURS) if can_step else ["kind", "value"]
    if st.session_state.get("pg.color") not in options:
        st.session_state["pg.color"] = "kind"
    chosen: ColorBy = st.radio(
        "Colour by", options, format_func=COLOURS.__getitem__, key="pg.color",
        horizontal=True, help="Gradient norms are known once backward() ran.",
    )  # fmt: skip
    return chosen


def link_state() -> ViewState:
    """What a copied link restores."""
    example = examples.get(st.session_state[EXAMPLE])
    unchanged = example is not None and st.session_state[PROGRAM] == example.source
    stepping = bool(st.session_state.get(STEPPING))
    return ViewState(
        program=st.session_state[PROGRAM],
        example=example.id if unchanged and example is not None else None,
        view=chosen_view("pg"),
        node=None if stepping else st.session_state.get(NODE),
        step=int(st.session_state.get(STEP, 0)) if stepping else None,
        presenter=bool(st.session_state.get(PRESENT)),
        predict=stepping and bool(st.session_state.get(PREDICT)),
    )


if PROGRAM not in st.session_state:
    first_visit()
keep_step(st.session_state[PROGRAM])
presenting = bool(st.session_state.get(PRESENT))
if presenting:
    st.html(PRESENTER_CSS)
    result = run(st.session_state[PROGRAM])
    shown = examples.get(st.session_state[EXAMPLE])
    if shown is None or shown.source != st.session_state[PROGRAM]:
        shown = None
    title, leave = st.columns([5, 1], vertical_alignment="center")
    title.markdown(f"### {shown.title if shown else 'Playground'}")
    leave.toggle("Presenter mode", key=PRESENT)
    if result.error is not None:
        show_error(result)
    show_picture(result, presenting=True)
else:
    heading, toggle = st.columns([5, 1], vertical_alignment="bottom")
    heading.title("Playground")
    toggle.toggle(
        "Presenter mode", key=PRESENT,
        help="For class: larger type, the editor hidden, ← and → step through backward().",
    )  # fmt: skip
    st.caption(
        "Type PyTorch, see the graph autograd really builds: every `grad_fn` node with its "
        "forward value and, after `backward()`, the gradient that flowed into it."
    )
    editor, picture = st.columns([2, 3], gap="large")
    with editor:
        result = show_editor()
    with picture:
        show_picture(result, presenting=False)

st.query_params.from_dict(to_params(link_state()))
