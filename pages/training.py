"""Training: pick a scenario, start it, and watch the loss fall and the gradients flow.

The run goes on in a background thread (:class:`gradlab.background.RunHandle`)
that writes only to the handle; a fragment on a timer reads it. The handle
lives in the session, so the run keeps going while the person visits another
page. Its lease is renewed while the browser session is connected; when the
tab closes, the run ends as "interrupted" after a grace period.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import streamlit as st

from gradlab import curves
from gradlab.background import Lease, RunHandle, live_runs
from gradlab.errors import GradLabError
from gradlab.plugins import BoolParam, ChoiceParam, FloatParam, IntParam, Param, Scenario, discover
from gradlab.records import to_csv, to_json
from gradlab.runs import RunStore, home
from gradlab.train import configure, devices

from graph_view import show_graph

RUN = "tr.run"  # the session's RunHandle
# Seconds a run survives once no browser session watches it (the tab was closed).
GRACE = float(os.environ.get("GRADLAB_RUN_GRACE", "30"))
TICK = 1.0  # seconds between live redraws
FIRST = "linear_regression"  # the scenario offered first
MAX_STEPS = 200_000  # a run keeps every record in memory for the charts


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
    key, label = f"tr.p.{scenario.name}.{p.name}", p.name.replace("_", " ")
    if isinstance(p, BoolParam):
        return st.checkbox(label, value=p.default, key=key, help=p.help or None)
    if isinstance(p, ChoiceParam):
        index = p.choices.index(p.default)
        return st.selectbox(label, p.choices, index=index, key=key, help=p.help or None)
    if isinstance(p, IntParam):
        return st.number_input(
            label, p.low, p.high, p.default, step=1, key=key, help=p.help or None
        )
    assert isinstance(p, FloatParam)
    return st.number_input(
        label, float(p.low), float(p.high), float(p.default), format="%g",
        step=p.default / 10 if p.default else 0.1, key=key, help=p.help or None,
    )  # fmt: skip


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
    handle.start(paused=paused)
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
    st.number_input("steps", 1, MAX_STEPS, scenario.steps, key=f"tr.steps.{name}")
    st.number_input(
        "capture every k-th step", 0, 1_000_000, scenario.every, key=f"tr.every.{name}",
        help="0: never. Captured steps record every node's gradient norm.",
    )  # fmt: skip
    st.number_input("seed", 0, 2**31 - 1, 0, key="tr.seed")
    st.selectbox("device", devices(), key="tr.device")
    return scenario, values


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


def draw(handle: RunHandle) -> None:
    """Progress, curves, the coloured graph, the heatmap, node history and pictures."""
    records = list(handle.records)
    progress = handle.progress()
    eta = f" · ETA {progress.eta:.0f} s" if progress.eta is not None else ""
    text = f"{handle.scenario.title}: {progress.done}/{progress.total} steps · {handle.status}"
    st.progress(progress.fraction, text=text + eta)
    if records:
        rate, seconds = curves.speed(records)
        st.caption(f"{rate:,.0f} samples/s · {1e3 * seconds:.2f} ms per step")
    if handle.error:
        (st.error if handle.status == "failed" else st.warning)(handle.error)
    if not records:
        st.info("Waiting for the first step.")
        return
    left, right = st.columns(2)
    with left:
        positive = all(r.loss > 0 for r in records)
        loss = curves.curves(records, ["loss"], title="Loss", log=positive)
        st.plotly_chart(loss, key="tr.loss")
        for title, names in curves.metric_groups(records).items():
            st.plotly_chart(curves.curves(records, names, title=title), key=f"tr.m.{title}")
        if len({r.lr for r in records}) > 1:
            st.plotly_chart(curves.curves(records, ["lr"], title="Learning rate"), key="tr.lr")
    with right:
        graph_panel(handle, records)
        for i, picture in enumerate(handle.pictures):
            st.plotly_chart(picture.figure, key=f"tr.pic.{i}", theme=None)
            st.caption(picture.title)


def graph_panel(handle: RunHandle, records: list[Any]) -> None:
    """The graph coloured by the latest gradient norms, the heatmap, a node's history."""
    norms = curves.latest_norms(records)
    if handle.graph is None or not norms:
        st.info("No captured step yet: the graph appears on the first one (capture every k > 0).")
        return
    st.markdown("**Graph, coloured by the latest captured gradient norm**")
    picked = show_graph(
        handle.graph, key="tr.graph", color=curves.log10_norms(norms), color_label="log₁₀ ‖grad‖"
    )
    if picked is not None:
        st.plotly_chart(curves.history(records, picked), key="tr.node")
    by = st.radio("Heatmap", ["per node", "per layer"], key="tr.by", horizontal=True)
    data = (
        curves.node_norms(records, handle.graph)
        if by == "per node"
        else curves.layer_norms(records)
    )
    st.plotly_chart(curves.heatmap(*data), key="tr.heat")


def runs_section() -> None:
    """Stored runs: a table, an overlay of the chosen ones, downloads and delete."""
    store = run_store(str(home() / "runs.sqlite"))
    runs = store.runs()
    st.subheader("Runs")
    if not runs:
        st.caption(f"No runs yet. They are kept in {store.path}.")
        return
    st.dataframe(
        [
            {
                "id": i.id, "scenario": i.config.scenario, "status": i.status,
                "steps": f"{i.recorded}/{i.config.steps}", "last loss": i.last_loss,
                "seed": i.config.seed, "device": i.config.device,
                "params": ", ".join(f"{k}={v}" for k, v in i.config.params.items()),
            }
            for i in runs
        ],
        hide_index=True, key="tr.table",
    )  # fmt: skip
    labels = {i.id: f"#{i.id} {i.config.scenario} ({i.status})" for i in runs}
    chosen = st.multiselect("Compare runs", list(labels), format_func=labels.get, key="tr.chosen")
    if not chosen:
        return
    records = {labels[i]: store.records(i) for i in chosen if i is not None}
    metrics = sorted({k for rs in records.values() for r in rs for k in r.metrics})
    what = st.selectbox("Overlay", ["loss", "lr", *metrics], key="tr.overlay")
    st.plotly_chart(curves.overlay(records, what), key="tr.overlay.chart")
    busy = {h.run_id for h in live_runs()}
    for run_id in chosen:
        a, b, c, d = st.columns([3, 1, 1, 1])
        a.write(labels[run_id])
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


def delete(store: RunStore, run_id: int) -> None:
    """Button callback: delete a stored run and drop it from the comparison."""
    store.delete(run_id)
    st.session_state["tr.chosen"] = [i for i in st.session_state["tr.chosen"] if i != run_id]


def main() -> None:
    """The page."""
    st.title("Training")
    st.caption("Pick a scenario, press Start, and watch every node's gradient while it learns.")
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
        if handle is None:
            # Runs whose browser session has gone (a reload, a closed tab) may be taken over.
            others = [h for h in live_runs() if h.run_id is not None and not h.lease.watched()]
            if others:
                st.info(f"{len(others)} run(s) going on from an earlier visit.")
                for h in others:
                    if st.button(f"Watch #{h.run_id} {h.scenario.title}", key=f"tr.adopt.{h.key}"):
                        h.lease.watch(session_alive())
                        st.session_state[RUN] = h
                        st.rerun()
            else:
                st.info("Press Start to train, or Step to take one step at a time.")
        else:
            live_view(handle)
    runs_section()


main()
