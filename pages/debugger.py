"""Debugger: why a gradient is None, NaN, vanishing or exploding, pinned to the graph.

Load a broken case of the gallery, a preset model, type a tensor program, or
paste your own ``nn.Module`` code (trusted mode only: it runs in a child
process with limits, see :mod:`gradlab.isolation.trusted`);
:func:`gradlab.diagnose.examine` lists the findings by severity and the nodes
where each problem starts are outlined in red. "Show on graph" (or a click on a
finding or a node in the viewer) opens the node's card beside the graph and
centres on it. The link keeps the mode: a case, a preset, a program or pasted code.
"""

from __future__ import annotations

import streamlit as st

from gradlab.app.share import MAX_PROGRAM_CHARS, pack, unpack
from gradlab.core.errors import GradLabError
from gradlab.diagnose import FAMILY, Finding, Report, examine
from gradlab.diagnose import gallery as cases
from gradlab.render.diagnosis import FAMILY_TITLES, depth_profile, gradcheck_colors
from gradlab.zoo import presets

from widgets.graph_view import classic_picture, show_graph
from widgets.isolated import diagnose_program
from widgets.trusted_code import code_box, run_code

SOURCE, CASE, PRESET, PROGRAM = "dbg.source", "dbg.case", "dbg.preset", "dbg.program"
NODE, FOCUS = "dbg.node", "dbg.focus"
SOURCES = {
    "gallery": "Gallery of broken models", "preset": "Preset model", "program": "Program",
    "code": "Your nn.Module code",
}  # fmt: skip
ICONS = {"error": ":material/error:", "warning": ":material/warning:", "info": ":material/info:"}
START = (
    "x = torch.tensor([1., 0., 2.], requires_grad=True)\n"
    "loss = torch.log(x).sum()\n"
    "loss.backward()\n"
)


@st.cache_data(max_entries=64, show_spinner="Diagnosing…")
def diagnose_case(name: str, gradcheck: bool) -> Report:
    """A gallery case's report (facts only, so it caches)."""
    case = cases.get(name)
    if case.form == "model":  # the switch decides, whatever the case's default
        assert case.build is not None
        return examine(case.build(), gradcheck=gradcheck, graph=True)
    return cases.examine_case(case, graph=True)


@st.cache_data(max_entries=16, show_spinner="Diagnosing…")
def diagnose_preset(name: str, gradcheck: bool) -> Report:
    """A preset's report, with its default settings."""
    return examine(presets.get(name).build(), gradcheck=gradcheck, graph=True)


def first_visit() -> None:
    """Seed the widgets from the link: a case, a preset, a program (``p``) or code (``code``)."""
    q = st.query_params
    st.session_state[SOURCE] = "gallery"
    st.session_state[CASE] = q.get("case") if q.get("case") in cases.BY_NAME else "detach"
    st.session_state[PRESET] = q.get("preset") if q.get("preset") in presets.PRESETS else "lenet"
    if q.get("preset") in presets.PRESETS and q.get("case") is None:
        st.session_state[SOURCE] = "preset"
    program = unpack(q["p"]) if q.get("p") else None
    st.session_state[PROGRAM] = program if program is not None else START
    if program is not None or q.get("mode") == "program":
        st.session_state[SOURCE] = "program"
    code = unpack(q["code"]) if q.get("code") else None
    if code is not None:
        st.session_state["dbg.code"] = code  # shown, never run before a click on Run
    if code is not None or q.get("mode") == "code":
        st.session_state[SOURCE] = "code"
    st.session_state[NODE] = st.session_state[FOCUS] = None


def link() -> dict[str, str]:
    """The URL parameters of the mode shown, so that a reload or a shared link keeps it."""
    source = st.session_state.get(SOURCE)
    if source == "gallery":
        return {"case": st.session_state[CASE]}
    if source == "preset":
        return {"preset": st.session_state[PRESET]}
    text = st.session_state.get(PROGRAM if source == "program" else "dbg.code", "")
    if len(text) > MAX_PROGRAM_CHARS:
        return {"mode": str(source)}
    return {"p" if source == "program" else "code": pack(text)}


def forget_node() -> None:
    st.session_state[NODE] = st.session_state[FOCUS] = None


def load_case(name: str) -> None:
    st.session_state[CASE] = name
    st.session_state[NODE] = st.session_state[FOCUS] = None


def case_buttons() -> None:
    """Every gallery case one click away, grouped by the family of its finding."""
    with st.expander("All broken cases, one click each"):
        for family, title in FAMILY_TITLES.items():
            group = [c for c in cases.CASES if FAMILY[c.expect] == family]
            st.caption(title)
            for case in group:
                st.button(
                    case.title, key=f"dbg.pick.{case.name}", on_click=load_case, args=(case.name,),
                    width="stretch", type="tertiary",
                )  # fmt: skip


def pick() -> tuple[Report | None, str]:
    """The source widgets; the report and the code it is about."""
    source = st.radio("Diagnose", list(SOURCES), format_func=SOURCES.__getitem__, key=SOURCE,
                      horizontal=True, on_change=forget_node)  # fmt: skip
    gradcheck = False
    try:
        if source == "gallery":
            name = st.selectbox(
                "Broken case", list(cases.BY_NAME), key=CASE, on_change=forget_node,
                format_func=lambda n: f"{cases.BY_NAME[n].title} ({n})",
            )  # fmt: skip
            case = cases.BY_NAME[name]
            st.caption(f"{case.story} Expected finding: `{case.expect}`.")
            case_buttons()
            if case.form == "model":
                gradcheck = st.toggle("Gradient check", value=case.gradcheck, key="dbg.gc")
            return diagnose_case(name, gradcheck), case.source
        if source == "preset":
            name = st.selectbox("Preset", list(presets.PRESETS), key=PRESET, on_change=forget_node,
                                format_func=lambda n: presets.PRESETS[n].title)  # fmt: skip
            st.caption(presets.PRESETS[name].description + " Healthy: expect no warnings.")
            gradcheck = st.toggle("Gradient check", key="dbg.gc")
            return diagnose_preset(name, gradcheck), ""
        if source == "code":
            return pick_code(), ""
        code = st.text_area("Program", key=PROGRAM, height=200, on_change=forget_node,
                            help="Press Ctrl+Enter to run. The same safe interpreter as the "
                            "Playground: torch, nn, F, loops, functions, backward().")  # fmt: skip
        return diagnose_program(code), ""
    except GradLabError as exc:
        st.error(str(exc))
    return None, ""


def pick_code() -> Report | None:
    """The code box: pasted model code runs in trusted mode only, and is diagnosed there."""
    code, enabled = code_box("dbg", height=300)
    if not enabled:
        return None
    result = run_code(code, "dbg", task="diagnose", done="Ran and diagnosed", on_start=forget_node)
    return result.report if result is not None else None


def show_findings(findings: tuple[Finding, ...]) -> None:
    """The findings, errors first; a click on one selects its node."""
    if not findings:
        st.success("No problems found with the gradients.", icon=":material/check_circle:")
        return
    for i, f in enumerate(findings):
        with st.container(border=True, key=f"dbg.finding.{i}"):
            st.markdown(f"{ICONS[f.severity]} **{f.title}** &nbsp; `{f.kind}` · {f.severity}")
            st.markdown(f.explanation)
            st.markdown("**Fix**")
            # Lessons' fixes are lines of code; the others are words with code in them.
            language = "python" if f.kind == "autograd_error" else None
            st.code(f.fix, language=language, wrap_lines=True)
            if f.nodes:
                label = f"Show {f.nodes[0]} on the graph"
                st.button(
                    label, key=f"dbg.show.{i}", icon=":material/my_location:",
                    on_click=show_on_graph, args=(f.nodes[0],),
                )  # fmt: skip
            elif f.where:
                st.caption(f"Not on the graph: {f.where}")


def show_on_graph(n: str) -> None:
    """Button callback: open node ``n``'s card and centre the graph on it (again, if asked)."""
    st.session_state[NODE] = n
    st.session_state[FOCUS] = (st.session_state.get(FOCUS) or 0) + 1  # a new request each click


def show_profile(report: Report) -> None:
    """Gradient RMS per layer along the depth, on a log scale."""
    fig = depth_profile(report.layers)
    if fig is None:
        return
    with st.expander("Gradient along the depth (dL/d output, per layer)"):
        st.plotly_chart(fig, key="dbg.profile", width="stretch")


def show_steps(report: Report) -> None:
    """The loss and the gradient norm at each optimizer step the code made."""
    if not report.steps:
        return
    with st.expander(f"Training steps ({len(report.steps)})", expanded=True):
        rows = [{"step": i, "loss": s.loss, "gradient norm": s.grad_norm, "moved": s.moved}
                for i, s in enumerate(report.steps)]  # fmt: skip
        st.dataframe(rows, hide_index=True, width="stretch")


def show_picture(report: Report) -> None:
    """The viewer: culprits outlined, findings listed beside it, the chosen node's card open."""
    G = report.graph
    if G is None:
        st.info("No graph to draw: nothing in this code has a gradient history.")
        return
    culprits = [n for f in report.findings for n in f.nodes if n in G]
    selected = st.session_state.get(NODE)
    checked = gradcheck_colors(report.agreements, G)
    colors = checked.colors if checked is not None else None
    if checked is not None:
        st.caption(checked.caption)
    show_graph(
        G, key="dbg.viewer", height=600, highlight=culprits, findings=report.findings,
        select=selected if selected in G else None, center=True, steps=False,
        request=st.session_state.get(FOCUS), colors=colors,
        color="grad" if colors else "kind",
    )  # fmt: skip
    if st.toggle("Classic picture (Graphviz)", key="dbg.classic"):
        classic_picture(G, highlight=culprits)


if SOURCE not in st.session_state:
    first_visit()

st.title("Debugger")
st.caption("Why is a gradient None, NaN, vanishing or exploding? Each finding is pinned to the "
           "node where the problem starts (outlined in red), with the fix.")  # fmt: skip
left, right = st.columns([2, 3], gap="large")
with left:
    report, code = pick()
    if code:
        with st.expander("The code", expanded=False):
            st.code(code, language="python")
    if report is not None:
        show_findings(report.findings)
        show_steps(report)
if report is not None:
    with right:
        show_picture(report)
        show_profile(report)
if st.query_params.to_dict() != link():
    st.query_params.from_dict(link())
