"""Playground: type a tensor program, see the real grad_fn graph with values and gradients.

The graph, the step-through of ``backward()``, predict-first, presenter mode
and node cards all live in the browser viewer (:mod:`widgets.graph_view`): stepping
never reruns this script. The link keeps the program (or the example), and
the browser keeps the step, presenter mode, predict-first and the open card.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from gradlab.app.share import ViewState, from_params, to_params
from gradlab.app.viewer_host import browser_params
from gradlab.core.graph import without_saved
from gradlab.program import ProgramResult
from gradlab.render.table import as_dicts, node_rows, variable_rows
from gradlab.teach import examples
from gradlab.teach.explain import as_markdown, did_you_mean

from widgets.graph_view import classic_picture, download_row, show_graph
from widgets.isolated import run_program

PROGRAM, EXAMPLE, START = "pg.program", "pg.example", "pg.start"
YOURS = "yours"  # the Example menu's entry for an edited program
VIEWER_HEIGHT = 540
NOTHING_YET = (
    "**Nothing to draw yet.** A graph starts at a tensor that needs gradients: add one, "
    "such as `x = torch.tensor([2.0, 3.0], requires_grad=True)`, then compute something "
    "from it (`y = (x * x).sum()`). Add `y.backward()` to see the gradients and step "
    "through the backward pass."
)


@st.cache_data(max_entries=200, show_spinner="Running the program…")
def run(source: str) -> ProgramResult:
    """Run a program once per text; the result holds facts only, so it caches safely."""
    return run_program(source)  # the one call of the program runner on this page


def load_example() -> None:
    """Example menu callback: load the example, or bring back the edited program."""
    chosen = st.session_state[EXAMPLE]
    if chosen == YOURS:
        st.session_state[PROGRAM] = st.session_state.get("pg.yours", st.session_state[PROGRAM])
        return
    example = examples.get(chosen)
    if example is not None:
        st.session_state[PROGRAM] = example.source


def edited() -> None:
    """Program callback: an edited example becomes "Your program" in the menu."""
    example = examples.get(st.session_state[EXAMPLE])
    if example is None or st.session_state[PROGRAM] != example.source:
        st.session_state[EXAMPLE] = YOURS
        st.session_state["pg.yours"] = st.session_state[PROGRAM]


def first_visit() -> None:
    """Seed the widgets, and where the browser starts, from the link the page was opened with."""
    state = from_params(st.query_params.to_dict())
    example = examples.get(state.example or "") or examples.EXAMPLES[0]
    edited_program = state.program is not None and state.program != example.source
    st.session_state[PROGRAM] = state.program if state.program is not None else example.source
    st.session_state[EXAMPLE] = YOURS if edited_program else example.id
    if edited_program:
        st.session_state["pg.yours"] = st.session_state[PROGRAM]
    st.session_state["pg.classic"] = state.view == "graphviz"
    st.session_state[START] = {
        "step": state.step, "predict": state.predict, "presenter": state.presenter,
        "node": state.node,
    }  # fmt: skip
    st.session_state["pg.stepped"] = st.session_state[PROGRAM]


def program_changed(source: str) -> bool:
    """A changed program is another graph: the browser starts it afresh."""
    if st.session_state.get("pg.stepped") == source:
        return False
    st.session_state["pg.stepped"] = source
    st.session_state[START] = {}
    return True


def show_error(result: ProgramResult) -> None:
    """The error, with its lesson and fixes when GradLab knows it."""
    error = result.error
    assert error is not None
    message = as_markdown(error.message)
    guess = did_you_mean(error.message)
    if guess is not None:
        message = message.rstrip(".") + f". Did you mean `{guess}`?"
    st.error(f"**Line {error.line}:** {message}")
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


def show_editor() -> ProgramResult:
    """The example menu, the program and what running it gave (the printed output goes with
    the graph, where predict-first can hide it)."""
    ids = [e.id for e in examples.EXAMPLES]
    st.selectbox(
        "Example",
        [*ids, YOURS],
        format_func=_example_title,
        key=EXAMPLE,
        on_change=load_example,
    )
    st.text_area(
        "Program",
        key=PROGRAM,
        height=220,
        on_change=edited,
        help="Press Ctrl+Enter (or click outside) to run. Allowed: assignments, torch, nn, F, "
        "tensor methods, loops, functions, backward().",
    )
    result = run(st.session_state[PROGRAM])
    if result.error is not None:
        show_error(result)
    for notice in result.notices:
        lesson = notice.explanation
        st.warning(f"**{lesson.title}.** {lesson.why}" if lesson else as_markdown(notice.message))
    if result.output and result.graph is None:
        st.markdown("**Printed**")
        st.code(result.output, language=None)
    if result.variables:
        with st.expander("Variables", expanded=result.graph is None):
            st.dataframe(variable_rows(result.variables), hide_index=True, width="stretch")
    return result


def _example_title(i: str) -> str:
    example = examples.get(i)
    return example.title if example is not None else "Your program"


def show_picture(result: ProgramResult) -> None:
    """The viewer (graph, steps, cards), the node table, downloads, the classic picture."""
    G = result.graph
    if G is None:
        st.info(NOTHING_YET)
        return
    start: dict[str, Any] = st.session_state.get(START) or {}
    example = examples.get(st.session_state[EXAMPLE])
    error_node = result.error.node if result.error else None
    node = start.get("node")
    show_graph(
        G,
        key="pg.viewer",
        height=VIEWER_HEIGHT,
        highlight=[error_node] if error_node else (),
        step=start.get("step"),
        predict=bool(start.get("predict")),
        presenter=bool(start.get("presenter")),
        select=node if node in G else None,
        printed=result.output or None,
        caption=example.lesson if example is not None else None,
        title=f"The graph of {result.root}" if result.root else "The graph",
        url=True,
    )
    if not G.graph.get("backward"):
        st.caption("No `backward()` ran: add `y.backward()` for gradients and the step-through.")
    drawn = without_saved(G)
    with st.expander("All nodes, in backward order"):
        st.dataframe(as_dicts(node_rows(drawn)), hide_index=True, width="stretch")
    download_row(G, key="pg.download", stem="gradlab-graph")
    if st.toggle("Classic picture (Graphviz)", key="pg.classic"):
        classic_picture(drawn, highlight=[error_node] if error_node else ())


def link_params(changed: bool) -> dict[str, str]:
    """What a copied link restores: the page's own state, and the browser's (kept as it is)."""
    example = examples.get(st.session_state[EXAMPLE])
    unchanged = example is not None and st.session_state[PROGRAM] == example.source
    own = to_params(
        ViewState(
            program=st.session_state[PROGRAM],
            example=example.id if unchanged and example is not None else None,
            view="graphviz" if st.session_state.get("pg.classic") else "plotly",
        )
    )
    kept = {} if changed else browser_params(st.query_params.to_dict())
    return {**own, **kept}


if PROGRAM not in st.session_state:
    first_visit()
changed = program_changed(st.session_state[PROGRAM])
heading, about = st.columns([1, 3], vertical_alignment="bottom")
heading.markdown("## Playground")
about.caption(
    "Type PyTorch, see the graph autograd really builds: every `grad_fn` node with its "
    "forward value and, after `backward()`, its gradient. Step through `backward()` with "
    "→ and ←; Presenter fills the screen for class."
)
editor, picture = st.columns([2, 5], gap="medium")
with editor:
    outcome = show_editor()
with picture:
    show_picture(outcome)

params = link_params(changed)
if st.query_params.to_dict() != params:
    st.query_params.from_dict(params)
