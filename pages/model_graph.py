"""Model graph: a preset or your own nn.Module, its autograd graph folded by module.

One forward and backward on a batch gives the graph (with values and
gradients), the saved tensors and the parameter table
(:func:`gradlab.core.memory.inspect_model`); :func:`gradlab.core.collapse.collapse`
folds the graph to the chosen depth. The graph is shown in the browser viewer
(values, gradients, the backward steps, node cards); a click on a module opens
it. The link keeps the model, its settings, the depth, the open modules and
whether the classic Graphviz picture is shown.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from gradlab.app.share import MAX_PROGRAM_CHARS, pack, unpack, whole_number
from gradlab.core.collapse import collapse, expandable, max_depth, module_paths
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.core.memory import ModelRun, inspect_model
from gradlab.core.memory_totals import by_holder, human_bytes, saved_log10
from gradlab.core.text import shape
from gradlab.render.table import parameter_rows, parameter_summary, saved_rows, saved_summary
from gradlab.zoo import presets

from widgets.graph_view import classic_picture, download_row, show_graph
from widgets.trusted_code import code_box, run_code

GRAPH = "mg.graph"  # show_graph's key
FOLD_FROM = 4  # identical sibling blocks folded from this many on
COLORS = {"kind": "kind of node", "grad": "gradient norm", "saved": "saved-tensor memory"}


def read_link() -> None:
    """Fill the widgets' state from the URL, once per session (a shared link)."""
    if st.session_state.get("mg.linked"):
        return
    st.session_state["mg.linked"] = True
    q = st.query_params
    code = unpack(q.get("code", "")) if q.get("code") else None
    if code is not None:
        st.session_state["mg.source"] = "code"
        st.session_state["mg.code"] = code  # shown, never run before a click on Run
    name = q.get("preset", "")
    if name in presets.PRESETS:
        st.session_state["mg.preset"] = name
        for p in presets.PRESETS[name].params:
            value = whole_number(q.get(f"{name}.{p.name}", ""), p.low, p.high)
            if value is not None:
                st.session_state[f"mg.arg.{name}.{p.name}"] = value
    depth = whole_number(q.get("depth", ""))
    if depth is not None:
        st.session_state["mg.depth"] = depth
    if q.get("expand"):
        st.session_state["mg.expanded"] = q["expand"].split(",")
    st.session_state["mg.fold"] = q.get("fold") != "0"
    st.session_state["mg.classic"] = q.get("view") == "graphviz"


def write_link(params: dict[str, str]) -> None:
    """Put the state in the URL, so that a copied link opens the same view."""
    if dict(st.query_params) != params:
        st.query_params.from_dict(params)


@st.cache_data(max_entries=8, show_spinner="One forward and backward pass…")
def run_preset(name: str, args: tuple[tuple[str, int], ...]) -> ModelRun:
    """The preset's facts (cached: the graph holds facts, not tensors)."""
    case = presets.get(name).build(0, **dict(args))
    return inspect_model(case.model, [case.inputs], lambda out: case.loss_fn(out, case.target))


def held_run(name: str, args: tuple[tuple[str, int], ...]) -> ModelRun:
    """The preset's facts, kept in the session: a cache hit unpickles the whole graph
    (a fifth of a second for 7,000 nodes), too slow for every click."""
    held = st.session_state.get("mg.held")
    if held is not None and held[0] == (name, args):
        run: ModelRun = held[1]
        return run
    run = run_preset(name, args)
    st.session_state["mg.held"] = ((name, args), run)
    return run


def pick_preset() -> tuple[ModelRun | None, str, dict[str, str]]:
    """Preset widgets; the run, a file stem and link parameters."""
    names = list(presets.PRESETS)
    st.session_state.setdefault("mg.preset", "lenet")
    name = st.selectbox(
        "Preset model", names, format_func=lambda n: presets.PRESETS[n].title, key="mg.preset"
    )
    preset = presets.PRESETS[name]
    st.caption(preset.description)
    args: dict[str, int] = {}
    for p, column in zip(preset.params, st.columns(max(len(preset.params), 1)), strict=False):
        key = f"mg.arg.{name}.{p.name}"
        st.session_state.setdefault(key, p.default)
        args[p.name] = int(column.number_input(p.name, p.low, p.high, step=1, key=key, help=p.help))
    link = {"preset": name, **{f"{name}.{k}": str(v) for k, v in args.items()}}
    stem = "-".join([name, *(f"{k}{v}" for k, v in args.items())])
    try:
        return held_run(name, tuple(args.items())), stem, link
    except GradLabError as exc:
        st.error(str(exc))
    except Exception as exc:  # a preset should not fail; say what happened, never a traceback
        st.error(f"Building the preset failed: {type(exc).__name__}: {exc}")
    return None, stem, link


def pick_code() -> tuple[ModelRun | None, str, dict[str, str]]:
    """The code box: runs pasted code in trusted mode only, in the sandboxed worker."""
    code, enabled = code_box("mg", height=340)
    link = {"code": pack(code)} if len(code) <= MAX_PROGRAM_CHARS else {}
    stem = st.session_state.get("mg.code_stem", "model")  # of the code that ran
    if not enabled:
        return None, stem, link

    def name_it() -> None:
        st.session_state["mg.code_stem"] = "model-" + hashlib.sha1(code.encode()).hexdigest()[:8]

    result = run_code(code, "mg", on_start=name_it)
    return (result.run if result is not None else None), stem, link


def collapse_controls(G: Graph, model_id: str) -> tuple[int, list[str], bool, str]:
    """Depth, fold and colour widgets; the open modules come from clicks and a multiselect."""
    if st.session_state.get("mg.model_id") != model_id:
        if "mg.model_id" in st.session_state:  # another model: its modules are others
            st.session_state["mg.expanded"] = []
        st.session_state["mg.model_id"] = model_id
    pending = st.session_state.pop("mg.pending", None)
    opened = list(st.session_state.get("mg.expanded", []))
    if pending is not None and pending not in opened:
        opened.append(pending)
    opened = expandable(G, opened)  # a link may name modules this model does not have
    top = max_depth(G)
    depth_state = st.session_state.get("mg.depth", 1)
    st.session_state["mg.depth"] = min(max(int(depth_state), 0), top)
    depth = st.slider(
        "Collapse depth", 0, top, key="mg.depth",
        help=f"0: the whole model as one node; {top}: every autograd op.",
    )  # fmt: skip
    st.session_state.setdefault("mg.fold", True)
    fold = st.checkbox("Fold repeated blocks", key="mg.fold")
    color = st.selectbox(
        "Colour by", list(COLORS), format_func=COLORS.__getitem__, key="mg.color"
    )
    return depth, opened, fold, color


def expand_widgets(G: Graph, C: Graph, opened: list[str]) -> None:
    """The open modules as a multiselect (to close some), and a button to close all."""
    folds = [a["name"] for _, a in C.nodes(data=True) if a.get("kind") == "module"]
    options = list(dict.fromkeys([*module_paths(G), *folds, *opened]))
    st.session_state["mg.expanded"] = opened
    st.multiselect(
        "Open modules (click a module in the graph to open it)",
        options,
        key="mg.expanded",
        format_func=lambda p: p or "(the whole model)",
        placeholder="none: every module at the depth above is one node",
    )
    st.button("Close all", key="mg.close", on_click=_close_all)


def _close_all() -> None:
    st.session_state["mg.expanded"] = []


def colors(run: ModelRun, C: Graph, color: str) -> tuple[dict[str, float] | None, str]:
    """Per-node colour values for show_graph (log10 of saved bytes), or None for its own."""
    if color != "saved":
        return None, ""
    return saved_log10(run.saved, C), "log₁₀ bytes saved"


def show_parameters(run: ModelRun) -> None:
    """The parameter table after one backward."""
    st.caption(parameter_summary(run.params))
    stat = st.column_config.NumberColumn
    st.dataframe(
        parameter_rows(run.params), hide_index=True, key="mg.params",
        column_config={
            "has_grad": st.column_config.CheckboxColumn("grad", help=".grad is not None"),
            "grad_norm": stat("‖grad‖", format="%.3e"),
            "grad_mean": stat("mean", format="%.3e"),
            "grad_absmax": stat("max |grad|", format="%.3e"),
        },
    )  # fmt: skip


def show_memory(run: ModelRun, G: Graph) -> None:
    """Totals and the nodes that save the most, counting shared storage once."""
    memory = run.saved
    held = by_holder(memory)
    a, b, c = st.columns(3)
    a.metric("Activations kept for backward", human_bytes(held["activation"]))
    b.metric("Parameters saved (held anyway)", human_bytes(held["parameter"]))
    c.metric("Inputs saved (held anyway)", human_bytes(held["input"]))
    st.caption(saved_summary(memory.tensors))
    st.dataframe(saved_rows(memory.by_node(G)), hide_index=True, key="mg.saved")


def show_model(run: ModelRun, stem: str, link: dict[str, str], model_id: str) -> None:
    """The collapse controls (in the left column), the graph, downloads, and the tables."""
    G = run.graph
    with controls:
        depth, opened, fold, color = collapse_controls(G, model_id)
        C = collapse(G, depth, opened, fold=FOLD_FROM if fold else None)
        expand_widgets(G, C, opened)
    with picture:
        show_view(run, C, color, opened)
        download_row(C, key="mg.download", stem=f"{stem}-depth{depth}", clusters=True)
        if st.toggle("Classic picture (Graphviz, modules boxed)", key="mg.classic"):
            classic_picture(C, clusters=True)
    parameters, saved = st.tabs(["Parameters", "Saved tensors"])
    with parameters:
        show_parameters(run)
    with saved:
        show_memory(run, G)
    extra = {"depth": str(depth)}
    if opened:
        extra["expand"] = ",".join(opened)
    if not fold:
        extra["fold"] = "0"
    if st.session_state.get("mg.classic"):
        extra["view"] = "graphviz"
    write_link({**link, **extra})


def show_view(run: ModelRun, C: Graph, color: str, opened: list[str]) -> None:
    """The collapsed graph in the viewer; a click on a closed module opens it."""
    G = run.graph
    inputs = ", ".join(shape(list(s)) for s in run.inputs)
    loss = f", loss {run.loss:.4g}" if run.loss is not None else ""
    values, label = colors(run, C, color)
    st.caption(
        f"Input batch {inputs}{loss}. Showing {C.number_of_nodes():,} of "
        f"{G.number_of_nodes():,} autograd graph nodes; modules are purple (click to open)."
        + (f" Colour: {label} (the legend's ‖grad‖)." if label else "")
    )
    clicked = show_graph(
        C, key=GRAPH, height=580, color="kind" if color == "kind" else "grad", colors=values,
        send_selection=True,
    )  # fmt: skip
    name = C.nodes[clicked].get("name") if clicked is not None else None
    if clicked is not None and C.nodes[clicked]["kind"] == "module" and name not in opened:
        st.session_state["mg.pending"] = name
        st.rerun()


st.markdown("## Model graph")
read_link()
st.session_state.setdefault("mg.source", "preset")
# Pasted code needs a wider box than the preset's few controls.
wide = st.session_state["mg.source"] == "code"
controls, picture = st.columns([2, 3] if wide else [1, 3], gap="medium")
with controls:
    source = st.radio(
        "Model", ["preset", "code"], key="mg.source", horizontal=True,
        label_visibility="collapsed",
        format_func={"preset": "Preset model", "code": "Your nn.Module code"}.__getitem__,
    )  # fmt: skip
    if source == "code":
        model_run, file_stem, link_params = pick_code()
    else:
        model_run, file_stem, link_params = pick_preset()
if model_run is None:
    write_link(link_params)
else:
    show_model(model_run, file_stem, link_params, model_id=file_stem)
