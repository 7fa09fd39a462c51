"""Training: pick a scenario, start it, and watch the loss fall and the gradients flow.

The run goes on in a background thread (:class:`gradlab.train.background.RunHandle`)
that writes only to the handle; a fragment on a timer (:data:`TICK`) reads it.
The handle lives in the session, so the run keeps going while the person
visits another page; after a reload the page takes over a run nobody watches,
or shows the last stored run. Its lease is renewed while the browser session
is connected; when the tab closes, the run ends as "interrupted" after a grace
period. A pace (steps a second) slows a run that would be over in a blink.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import streamlit as st

from gradlab.core.errors import GradLabError
from gradlab.plugins import Param, Scenario, discover
from gradlab.render import curves
from gradlab.train import MAX_LIVE_STEPS, MAX_STEPS, configure, devices
from gradlab.train.background import Lease, RunHandle, live_runs
from gradlab.train.params import param_field
from gradlab.train.records import RunInfo, StepRecord, to_csv, to_json
from gradlab.train.store import RunStore, home, matches

from widgets.graph_view import show_graph

RUN = "tr.run"  # the session's RunHandle
# Seconds a run survives once no browser session watches it (the tab was closed).
GRACE = float(os.environ.get("GRADLAB_RUN_GRACE", "30"))
TICK = 0.4  # seconds between live redraws: more than twice a second
FIRST = "linear_regression"  # the scenario offered first


@st.cache_resource
def run_store(path: str) -> RunStore:
    """One store per database file for the whole server (it is thread-safe)."""
    return RunStore(path)


def session_alive() -> Callable[[], bool] | None:
    """Whether this browser session is still connected, asked from the training thread."""
    from streamlit.runtime import Runtime, exists
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    ctx = get_script_run_ctx()
    if ctx is None or not exists():
        return None
    session, runtime = ctx.session_id, Runtime.instance()
    return lambda: runtime.is_active_session(session)


def param_widget(scenario: Scenario, p: Param) -> Any:
    """The form control of one typed parameter; its key remembers it per scenario."""
    f = param_field(p)
    key, hint = f"tr.p.{scenario.name}.{f.name}", f.help or None
    if f.kind == "bool":
        return st.checkbox(f.label, value=f.default, key=key, help=hint)
    if f.kind == "choice":
        index = f.choices.index(str(f.default))
        return st.selectbox(f.label, f.choices, index=index, key=key, help=hint)
    return st.number_input(
        f.label, f.low, f.high, f.default, step=f.step, format=f.format, key=key, help=hint
    )


def start(scenario: Scenario, values: dict[str, Any], paused: bool) -> None:
    """Button callback: configure and start a run (paused: it waits for Step)."""
    old: RunHandle | None = st.session_state.get(RUN)
    if old is not None and old.live:
        old.stop()
    try:
        config = configure(
            scenario,
            values,
            steps=int(st.session_state[f"tr.steps.{scenario.name}"]),
            every=int(st.session_state[f"tr.every.{scenario.name}"]),
            seed=int(st.session_state["tr.seed"]),
            device=st.session_state["tr.device"],
        )
    except GradLabError as exc:
        st.session_state["tr.error"] = str(exc)
        return
    store = run_store(str(home() / "runs.sqlite"))
    handle = RunHandle(scenario, config, store=store, lease=Lease(GRACE, session_alive()))
    handle.set_pace(float(st.session_state.get("tr.pace", 0.0)))
    handle.start(paused=paused)
    name = str(st.session_state.get("tr.name", "")).strip()
    if name and handle.run_id is not None:
        store.set_name(handle.run_id, name)
    if paused:
        handle.step()
    st.session_state[RUN] = handle


def controls(scenario: Scenario, values: dict[str, Any]) -> None:
    """Start / Pause or Resume / Step / Stop, for the session's run."""
    handle: RunHandle | None = st.session_state.get(RUN)
    live = handle is not None and handle.live
    a, b = st.columns(2)
    a.button(
        "Start", key="tr.start", type="primary", on_click=start, args=(scenario, values, False),
        width="stretch",
    )  # fmt: skip
    if live and handle is not None:
        b.button("Step", key="tr.step", on_click=handle.step, width="stretch")
    else:
        b.button(
            "Step", key="tr.step", on_click=start, args=(scenario, values, True),
            width="stretch", help="start paused and take one step",
        )  # fmt: skip
    c, d = st.columns(2)
    if live and handle is not None and handle.status == "paused":
        c.button("Resume", key="tr.resume", on_click=handle.resume, width="stretch")
    else:
        pause = handle.pause if live and handle is not None else None
        c.button("Pause", key="tr.pause", disabled=not live, on_click=pause, width="stretch")
    stop = handle.stop if live and handle is not None else None
    d.button("Stop", key="tr.stop", disabled=not live, on_click=stop, width="stretch")


def settings() -> tuple[Scenario, dict[str, Any]] | None:
    """The scenario picker, its description and its form."""
    found = discover()
    if found.errors:
        with st.expander(f"{len(found.errors)} plugin(s) failed to load", icon="⚠️"):
            for e in found.errors:
                st.error(f"**{e.name}** ({e.source}): {e.message}")
    if not found.scenarios:
        st.error("No training scenario is installed (see `gradlab plugins`).")
        return None
    names = sorted(found.scenarios, key=lambda n: (n != FIRST, n))
    handle: RunHandle | None = st.session_state.get(RUN)
    if "tr.scenario" not in st.session_state:
        st.session_state["tr.scenario"] = handle.scenario.name if handle else names[0]
    name = st.selectbox(
        "Scenario", names, key="tr.scenario", format_func=lambda n: found.scenarios[n].title
    )
    scenario = found.scenarios[name]
    with st.expander("About this scenario"):
        st.markdown(scenario.description)
    values = {p.name: param_widget(scenario, p) for p in scenario.params}
    # A live run keeps every record for its charts: fewer steps than the library allows.
    st.number_input("steps", 1, MAX_LIVE_STEPS, scenario.steps, key=f"tr.steps.{name}")
    st.number_input(
        "capture every k-th step", 0, MAX_STEPS, scenario.every, key=f"tr.every.{name}",
        help="0: never. Captured steps record every node's gradient norm.",
    )  # fmt: skip
    st.number_input("seed", 0, 2**31 - 1, 0, key="tr.seed")
    st.selectbox("device", devices(), key="tr.device")
    st.number_input(
        "pace (steps a second; 0: full speed)", 0.0, 1000.0, 0.0, step=5.0, key="tr.pace",
        on_change=_repace, help="Slow a run that would be over before anyone sees it learn. "
        "It can be changed while the run goes on.",
    )  # fmt: skip
    st.text_input("run name", key="tr.name", placeholder="optional: find it later by name",
                  max_chars=80)  # fmt: skip
    return scenario, values


def _repace() -> None:
    """Pace callback: the session's live run keeps to the new pace at once."""
    handle: RunHandle | None = st.session_state.get(RUN)
    if handle is not None and handle.live:
        handle.set_pace(float(st.session_state["tr.pace"]))


def live_view(handle: RunHandle) -> None:
    """The run's charts, redrawn every ``TICK`` seconds while it is live."""
    interval = TICK if handle.live else None

    @st.fragment(run_every=interval)
    def view() -> None:
        handle.lease.renew()
        draw(handle)
        if interval is not None and not handle.live:
            st.rerun()  # the run ended: redraw the whole page once, without the timer

    view()


def chart_options() -> tuple[float, bool, curves.Axis]:
    """TensorBoard's chart controls: smoothing, a log or linear scale, step or time axis."""
    st.session_state.setdefault("tr.smooth", 0.6)
    st.session_state.setdefault("tr.log", True)
    smoothing, scale, axis = st.columns([2, 1, 1], vertical_alignment="bottom")
    weight = smoothing.slider("Smoothing", 0.0, 0.99, step=0.01, key="tr.smooth",
                              help="TensorBoard's moving average; the raw values stay faint.")
    log = scale.toggle("Log scale", key="tr.log", help="Loss on a log scale (positive values)")
    x = axis.radio("x axis", list(curves.AXIS_TITLES), key="tr.x", horizontal=True,
                   format_func={"step": "step", "time": "time"}.__getitem__)  # fmt: skip
    return weight, log, x


def draw(handle: RunHandle) -> None:
    """Progress, curves, the coloured graph, the heatmap, node history and pictures."""
    records = list(handle.records)
    progress = handle.progress()
    eta = f" · ETA {progress.eta:.0f} s" if progress.eta is not None else ""
    pace = f" · pace {handle.pace:g} steps/s" if handle.pace else ""
    title = run_title(handle.run_id, handle.scenario.title)
    text = f"{title}: {progress.done}/{progress.total} steps · {handle.status}"
    st.progress(progress.fraction, text=text + pace + eta)
    if records:
        rate, seconds = curves.speed(records)
        st.caption(f"{rate:,.0f} samples/s · {1e3 * seconds:.2f} ms per step")
    if handle.error:
        (st.error if handle.status == "failed" else st.warning)(handle.error)
    charts(records, handle.graph, key="tr")
    for i, picture in enumerate(handle.pictures):
        st.plotly_chart(picture.figure, key=f"tr.pic.{i}", theme=None)
        st.caption(picture.title)


def run_title(run_id: int | None, title: str) -> str:
    """A run as people call it: its name when it has one, else its number and scenario."""
    name = run_store(str(home() / "runs.sqlite")).names().get(run_id or -1)
    return f"{name} (#{run_id})" if name else f"#{run_id} {title}"


def charts(records: list[StepRecord], graph: Any, *, key: str) -> None:
    """The loss and metric curves beside the graph coloured by gradient norm and the heatmap.

    The loss chart is drawn before the first step arrives, so Start shows it at once.
    """
    weight, log, x = chart_options()
    left, right = st.columns(2)
    with left:
        positive = bool(records) and all(r.loss > 0 for r in records)
        title = "Loss" if records else "Loss (waiting for the first step)"
        loss = curves.curves(records, ["loss"], title=title, log=log and positive,
                             smoothing=weight, x=x)  # fmt: skip
        st.plotly_chart(loss, key=f"{key}.loss")
        for name, names in curves.metric_groups(records).items():
            figure = curves.curves(records, names, title=name, smoothing=weight, x=x)
            st.plotly_chart(figure, key=f"{key}.m.{name}")
        if len({r.lr for r in records}) > 1:
            st.plotly_chart(curves.curves(records, ["lr"], title="Learning rate", x=x),
                            key=f"{key}.lr")  # fmt: skip
    with right:
        graph_panel(records, graph, key=key)


def graph_panel(records: list[StepRecord], graph: Any, *, key: str) -> None:
    """The graph coloured by the latest gradient norms, the heatmap, a clicked node's history."""
    norms = curves.latest_norms(records)
    if graph is None or not norms:
        st.info("No captured step yet: the graph appears on the first one (capture every k > 0).")
        return
    picked = show_graph(
        graph, key=f"{key}.graph", height=420, color="grad", colors=curves.log10_norms(norms),
        send_selection=True, steps=False, cards=False, select=st.session_state.get(f"{key}.node"),
        title="Latest captured ‖grad‖; click a node for its history",
    )  # fmt: skip
    if picked is not None:
        st.session_state[f"{key}.node"] = picked
    node = st.session_state.get(f"{key}.node")
    if node in graph:
        st.plotly_chart(curves.history(records, node), key=f"{key}.history")
    by = st.radio("Heatmap", ["per node", "per layer"], key=f"{key}.by", horizontal=True)
    data = curves.node_norms(records, graph) if by == "per node" else curves.layer_norms(records)
    st.plotly_chart(curves.heatmap(*data), key=f"{key}.heat")


def last_stored(store: RunStore) -> RunInfo | None:
    """The newest stored run, shown after a reload when nothing runs."""
    runs = store.runs()
    return runs[0] if runs else None


def show_stored(store: RunStore, info: RunInfo) -> None:
    """A stored run's charts (the last run, after a reload)."""
    assert info.id is not None
    title = run_title(info.id, info.config.scenario)
    st.progress(
        info.recorded / info.config.steps if info.config.steps else 1.0,
        text=f"{title}: {info.recorded}/{info.config.steps} steps · {info.status} (stored)",
    )
    if info.error:
        st.warning(info.error)
    charts(store.records(info.id), store.graph(info.id), key="tr.stored")


def runs_section() -> None:
    """Stored runs: filter, a table, names, an overlay of the chosen ones, downloads, delete."""
    store = run_store(str(home() / "runs.sqlite"))
    runs = store.runs()
    st.subheader("Runs")
    if not runs:
        st.caption(f"No runs yet. They are kept in {store.path}.")
        return
    names = store.names()
    query = st.text_input("Filter runs", key="tr.filter",
                          placeholder="words from a name, scenario, status or parameter")
    shown = [i for i in runs if matches(i, names.get(i.id or -1, ""), query)]
    st.dataframe(
        [
            {
                "id": i.id, "name": names.get(i.id or -1, ""), "scenario": i.config.scenario,
                "status": i.status, "steps": f"{i.recorded}/{i.config.steps}",
                "last loss": i.last_loss, "seed": i.config.seed, "device": i.config.device,
                "params": ", ".join(f"{k}={v}" for k, v in i.config.params.items()),
            }
            for i in shown
        ],
        hide_index=True, key="tr.table",
    )  # fmt: skip
    if query and not shown:
        st.caption(f"No run matches “{query}”.")
    labels = {
        i.id: f"{names[i.id]} (#{i.id})" if i.id in names else f"#{i.id} {i.config.scenario}"
        for i in runs
    }
    choices = [i.id for i in shown]
    kept = [i for i in st.session_state.get("tr.chosen", []) if i in labels]
    st.session_state["tr.chosen"] = kept
    chosen = st.multiselect("Compare runs", list(dict.fromkeys([*kept, *choices])),
                            format_func=labels.get, key="tr.chosen")  # fmt: skip
    if not chosen:
        return
    records = {labels[i]: store.records(i) for i in chosen if i is not None}
    metrics = sorted({k for rs in records.values() for r in rs for k in r.metrics})
    what = st.selectbox("Overlay", ["loss", "lr", *metrics], key="tr.overlay")
    weight = float(st.session_state.get("tr.smooth", 0.0))
    positive = all(v > 0 for rs in records.values() for v in curves.series(rs, what)[1])
    x: curves.Axis = st.session_state.get("tr.x", "step")
    figure = curves.overlay(records, what, log=bool(st.session_state.get("tr.log")) and positive,
                            smoothing=weight, x=x)  # fmt: skip
    st.plotly_chart(figure, key="tr.overlay.chart")
    busy = {h.run_id for h in live_runs()}
    for run_id in chosen:
        a, b, c, d = st.columns([3, 1, 1, 1], vertical_alignment="bottom")
        a.text_input(
            f"Name of run #{run_id}", value=names.get(run_id, ""), key=f"tr.rename.{run_id}",
            on_change=rename, args=(store, run_id), max_chars=80,
        )  # fmt: skip
        rs = store.records(run_id)
        b.download_button(
            "CSV", to_csv(rs), file_name=f"run-{run_id}.csv", mime="text/csv",
            key=f"tr.csv.{run_id}",
        )  # fmt: skip
        text = to_json(store.run(run_id), rs, store.graph(run_id))
        c.download_button(
            "JSON", text, file_name=f"run-{run_id}.json", mime="application/json",
            key=f"tr.json.{run_id}",
        )  # fmt: skip
        d.button(
            "Delete", key=f"tr.del.{run_id}", disabled=run_id in busy, on_click=delete,
            args=(store, run_id), help="a run in progress cannot be deleted: stop it first",
        )  # fmt: skip


def rename(store: RunStore, run_id: int) -> None:
    """Name field callback: keep the run's new name."""
    store.set_name(run_id, st.session_state[f"tr.rename.{run_id}"])


def delete(store: RunStore, run_id: int) -> None:
    """Button callback: delete a stored run and drop it from the comparison."""
    store.delete(run_id)
    st.session_state["tr.chosen"] = [i for i in st.session_state["tr.chosen"] if i != run_id]


def take_over() -> RunHandle | None:
    """After a reload: the newest run nobody watches any more becomes this session's."""
    others = [h for h in live_runs() if h.run_id is not None and not h.lease.watched()]
    if not others:
        return None
    handle = others[-1]
    handle.lease.watch(session_alive())
    st.session_state[RUN] = handle
    return handle


def main() -> None:
    """The page."""
    st.markdown("## Training")
    st.caption("Pick a scenario, press Start, and watch every node's gradient while it learns.")
    if st.session_state.get(RUN) is None:
        take_over()  # a reload: the run this tab started goes on here, with its buttons
    form, view = st.columns([1, 3])
    with form:
        picked = settings()
        if picked is None:
            return
        controls(*picked)
        error = st.session_state.pop("tr.error", None)
        if error:
            st.error(error)
    with view:
        handle: RunHandle | None = st.session_state.get(RUN)
        if handle is not None:
            live_view(handle)
        else:
            store = run_store(str(home() / "runs.sqlite"))
            last = last_stored(store)
            if last is None:
                st.info("Press Start to train, or Step to take one step at a time.")
            else:
                show_stored(store, last)
    runs_section()


try:
    main()
except GradLabError as exc:  # a damaged or unwritable run store: its one line, not a traceback
    st.error(str(exc))
