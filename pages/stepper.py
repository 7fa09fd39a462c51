"""Step through a graph's backward pass in the engine's real order. Not a page.

Pages import it as ``from stepper import show_stepper``. The position lives in
``st.session_state[f"{key}.step"]``: 0 is the start (only the output holds its
gradient, 1), ``s`` means the engine's first ``s`` steps have run and step
``s`` is the one shown. Prev / Next (also the ← and → keys), Play / Pause (at
the chosen seconds per step) and Reset move it; in "predict first" mode what
an op sends on stays hidden until Reveal is pressed.
"""

from __future__ import annotations

import time

import streamlit as st

from gradlab.chain import card, no_card
from gradlab.graph import Graph, without_saved
from gradlab.render.steps import arrival_lines, numbers, who
from gradlab.steps import Step, as_of, steps

from graph_view import download_row, show_graph
from node_details import show_card

SPEEDS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0)  # seconds between two steps while playing


def position(key: str, total: int) -> int:
    """The current position, kept within ``0..total``."""
    s = st.session_state.get(f"{key}.step", 0)
    s = min(max(int(s), 0), total)
    st.session_state[f"{key}.step"] = s
    return s


def _move(key: str, to: int, total: int) -> None:
    st.session_state[f"{key}.step"] = min(max(to, 0), total)
    st.session_state[f"{key}.revealed"] = False


def _toggle_play(key: str, total: int) -> None:
    playing = not st.session_state.get(f"{key}.playing", False)
    if playing and st.session_state.get(f"{key}.step", 0) >= total:
        st.session_state[f"{key}.step"] = 0  # play again from the start
    st.session_state[f"{key}.playing"] = playing


def controls(key: str, total: int, s: int) -> None:
    """Reset, Prev, Next, Play/Pause; the arrow keys press Prev and Next."""
    playing = st.session_state.get(f"{key}.playing", False)
    reset, prev, nxt, play = st.columns(4)
    reset.button(
        "Reset", key=f"{key}.reset", icon=":material/first_page:", width="stretch",
        on_click=_move, args=(key, 0, total), disabled=s == 0,
    )  # fmt: skip
    prev.button(
        "Prev", key=f"{key}.prev", icon=":material/chevron_left:", width="stretch",
        on_click=_move, args=(key, s - 1, total), disabled=s == 0, shortcut="Left",
        help="Previous step (← key)",
    )  # fmt: skip
    nxt.button(
        "Next", key=f"{key}.next", icon=":material/chevron_right:", width="stretch",
        on_click=_move, args=(key, s + 1, total), disabled=s >= total, shortcut="Right",
        help="Next step (→ key)", type="primary",
    )  # fmt: skip
    play.button(
        "Pause" if playing else "Play", key=f"{key}.play", width="stretch",
        icon=":material/pause:" if playing else ":material/play_arrow:",
        on_click=_toggle_play, args=(key, total),
    )  # fmt: skip
    where, speed = st.columns([3, 1], vertical_alignment="center")
    where.progress(
        s / total if total else 1.0,
        text=f"Step {s} of {total}" if s else f"Start: {total} steps to go",
    )
    st.session_state.setdefault(f"{key}.speed", 1.5)
    speed.selectbox(
        "Seconds per step", SPEEDS, key=f"{key}.speed", label_visibility="collapsed",
        format_func=lambda v: f"Play: {v:g} s/step", help="How fast Play moves on",
    )  # fmt: skip


def show_stepper(
    G: Graph, *, key: str, predict: bool, large: bool = False, saved: bool = False
) -> None:
    """The step-through: buttons, the graph as it stood at this step, and the step's panel.

    ``saved`` draws the saved-tensor nodes too (the cards use them either way).
    """
    all_steps = steps(G)
    total = len(all_steps)
    s = position(key, total)
    controls(key, total, s)
    current = all_steps[s - 1] if s else None
    playing = bool(st.session_state.get(f"{key}.playing"))  # Play shows every answer
    revealed = not predict or playing or bool(st.session_state.get(f"{key}.revealed"))
    H = as_of(G if saved else without_saved(G), s - 1, sent=revealed)
    # Presenter mode puts the panel beside the graph; otherwise it comes first, where the
    # eye is after pressing Next, and the graph (tall for long chains) follows.
    picture, words = st.columns([3, 2], gap="medium") if large else (st.container(),) * 2
    with words, st.container(border=True):
        if current is None:
            _start(G, total)
        else:
            _panel(G, current, total, key=key, revealed=revealed)
    with picture:
        show_graph(
            H,
            key=f"{key}.graph",
            highlight=[current.node] if current else [],
            color="grad",  # H holds only the gradients computed by then: the rest are grey
            color_label="log₁₀ ‖grad‖ so far",
            large=large,
        )
    if not large:
        download_row(H, key=f"{key}.download", stem=f"gradlab-step{s}")
    if st.session_state.get(f"{key}.playing"):
        if s >= total:
            st.session_state[f"{key}.playing"] = False
            st.session_state[f"{key}.revealed"] = True  # the last answer stays shown
        else:
            time.sleep(float(st.session_state.get(f"{key}.speed", 1.5)))
            _move(key, s + 1, total)
            st.rerun()


def _start(G: Graph, total: int) -> None:
    roots = [who(G, n) for n in G.graph.get("roots", [])]
    st.markdown(
        f"**Before the first step.** `backward()` starts at {', '.join(roots)} with the "
        "gradient ∂L/∂L = 1 (or the gradient passed to `backward`). Press **Next** (or →) to "
        f"run the engine's first of {total} steps."
    )


def _panel(G: Graph, step: Step, total: int, *, key: str, revealed: bool) -> None:
    st.markdown(f"#### Step {step.index + 1} of {total}: {who(G, step.node)}")
    if revealed:
        show_card(G, step.node)  # what arrived, the rule with these numbers, what was sent
        if step.leaf is not None:
            leaf = G.nodes[step.leaf].get("name") or step.leaf
            st.markdown(
                f"**AccumulateGrad** adds what arrived to `{leaf}.grad`; after the pass "
                f"`{leaf}.grad = {numbers(step.leaf_grad)}`."
            )
        return
    st.markdown("**Arriving** (the gradient of the loss with respect to this op's output)")
    st.code("\n".join(arrival_lines(G, step)), language=None, wrap_lines=True)
    if no_card(G, step.node) is None:
        st.markdown("**The rule**")
        for rule in card(G, step.node).rules:
            st.code(rule.formula, language=None, wrap_lines=True)
    st.markdown("**Your turn:** what does this op send to each of its inputs?")
    for d in step.departures:
        st.markdown(f"- input {d.slot}, to {who(G, d.receiver)}: **?**")
    if step.leaf is not None:
        leaf = G.nodes[step.leaf].get("name") or step.leaf
        st.markdown(f"- `{leaf}.grad` after this step: **?**")
    st.button(
        "Reveal", key=f"{key}.reveal", icon=":material/visibility:",
        on_click=_reveal, args=(key,),
    )  # fmt: skip


def _reveal(key: str) -> None:
    st.session_state[f"{key}.revealed"] = True
