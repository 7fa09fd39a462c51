"""The Training page: AppTest drives the form, the buttons and the runs list; a browser watches."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gradlab.plugins import discover
from gradlab.render import curves
from gradlab.train import MAX_LIVE_STEPS, MAX_STEPS
from gradlab.train.background import RunHandle
from gradlab.train.params import param_field
from gradlab.train.store import RunStore
from tests.conftest import (
    ROOT,
    _wait_healthy,
    app_test,
    free_port,
    screenshot,
    wait_for_app,
)
from tests.viewer_app import click_viewer_node, node_ids, viewer_data

PAGE = "training.py"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GRADLAB_HOME", str(tmp_path))
    return tmp_path


def specs(at: Any) -> list[dict[str, Any]]:
    """The Plotly figures on the page, in order."""
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def charts(at: Any) -> dict[str, dict[str, Any]]:
    """The page's titled Plotly charts by title."""
    return {
        s["layout"]["title"]["text"]: s
        for s in specs(at)
        if s["layout"].get("title", {}).get("text")
    }


def graph_colours(at: Any) -> dict[str, float | None]:
    """Node id -> the log10 gradient norm the viewer colours it by."""
    return {n["id"]: n["gnorm"] for n in viewer_data(at)["payload"]["nodes"]}


def progress_text(at: Any) -> str:
    return str(at.get("progress")[0].proto.text)


def run_of(at: Any) -> RunHandle:
    handle: RunHandle = at.session_state["tr.run"]
    return handle


def test_the_form_is_built_from_the_scenarios_params(home: Path) -> None:
    at = app_test(PAGE)
    assert not at.exception
    assert at.selectbox(key="tr.scenario").value == "linear_regression"
    keys = {n.key for n in at.number_input}
    assert {"tr.p.linear_regression.points", "tr.p.linear_regression.lr"} <= keys
    at.selectbox(key="tr.scenario").set_value("classify_2d").run()
    assert at.selectbox(key="tr.p.classify_2d.dataset").options == [
        "moons", "circles", "spiral", "xor",
    ]  # fmt: skip
    assert at.number_input(key="tr.p.classify_2d.depth").value == 2
    assert at.number_input(key="tr.steps.classify_2d").value == 300
    assert [b.key for b in at.button] == ["tr.start", "tr.step", "tr.pause", "tr.stop"]
    assert at.button(key="tr.stop").disabled and at.button(key="tr.pause").disabled


def test_the_form_takes_its_limits_and_fields_from_the_library(home: Path) -> None:
    at = app_test(PAGE)
    steps = at.number_input(key="tr.steps.linear_regression").proto
    assert steps.max == MAX_LIVE_STEPS < MAX_STEPS  # a live run keeps every record
    assert at.number_input(key="tr.every.linear_regression").proto.max == MAX_STEPS
    lr = param_field(discover().get("linear_regression").param_by_name["lr"])
    box = at.number_input(key="tr.p.linear_regression.lr").proto
    assert (box.label, box.min, box.max, box.step, box.format) == (
        lr.label, lr.low, lr.high, lr.step, lr.format,
    )  # fmt: skip


def test_a_broken_plugin_is_named_on_the_page(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRADLAB_PLUGINS", "linear_regression,no_such_plugin")
    at = app_test(PAGE)
    assert not at.exception
    assert any("no_such_plugin" in e.value for e in at.error)
    assert at.selectbox(key="tr.scenario").options == ["Linear regression"]


def test_start_a_run_and_see_its_curves_graph_and_store(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(40)
    at.number_input(key="tr.every.linear_regression").set_value(10)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(60) and handle.status == "finished"
    at.run()
    assert not at.exception
    assert progress_text(at) == f"#{handle.run_id} Linear regression: 40/40 steps · finished"
    shown = charts(at)
    raw, smoothed = shown["Loss"]["data"]  # the raw values faint, TensorBoard's average on top
    assert raw["y"] == [r.loss for r in handle.records]
    assert smoothed["y"] == pytest.approx(curves.smooth(raw["y"], 0.6))
    assert shown["Loss"]["layout"]["yaxis"]["type"] == "log"
    weights = shown["Weight and bias"]["data"][0]  # raw, then smoothed, per line
    assert weights["name"] == "weight" and weights["y"][-1] == handle.records[-1].metrics["weight"]
    assert "Prediction at 4" in shown
    heat = next(s["data"][0] for s in specs(at) if s["data"][0]["type"] == "heatmap")
    assert heat["x"] == [0, 10, 20, 30]
    assert len(heat["y"]) == len(handle.records[0].nodes.ids)
    # The graph is coloured by the last captured step's norms.
    assert set(node_ids(at)) <= set(handle.graph.nodes)
    assert viewer_data(at)["options"]["color"] == "grad"
    latest = curves.latest_norms(handle.records)
    colours = {n: v for n, v in graph_colours(at).items() if v is not None}
    assert colours == pytest.approx(
        {n: round(math.log10(v), 4) for n, v in latest.items() if n in colours}, abs=1e-4
    )
    assert colours  # some nodes are coloured
    # The run is stored: listed, overlaid and downloadable.
    assert handle.run_id is not None
    at.multiselect(key="tr.chosen").set_value([handle.run_id]).run()
    overlay = next(s for s in specs(at) if s["data"][0].get("name", "").startswith("#"))
    assert overlay["data"][0]["name"] == f"#{handle.run_id} linear_regression"
    assert overlay["data"][0]["y"] == [r.loss for r in handle.records]
    downloads = {b.proto.label: b for b in at.get("download_button")}
    assert set(downloads) == {"CSV", "JSON"}


def test_clicking_a_node_shows_its_gradient_history(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(20)
    at.number_input(key="tr.every.linear_regression").set_value(5)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(60)
    at.run()
    leaf = next(n for n, d in handle.graph.nodes(data=True) if d.get("name") == "weight")
    at = click_viewer_node(at, leaf)
    assert not at.exception
    history = charts(at)[f"Gradient norm of {leaf} over the steps"]
    expected = curves.node_history(handle.records, leaf)
    assert history["data"][0]["x"] == expected[0] == [0, 5, 10, 15]
    assert history["data"][0]["y"] == expected[1]
    stats = [
        p.grad_norm for r in handle.records if r.params for p in r.params if p.name == "weight"
    ]
    assert expected[1] == pytest.approx(stats)


def test_step_pause_resume_stop_with_the_buttons(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(100_000)
    at.button(key="tr.step").click().run()  # no run yet: start paused, take one step
    handle = run_of(at)
    assert handle.wait(lambda h: len(h.records) == 1 and h.status == "paused")
    at.run()
    assert progress_text(at).startswith(f"#{handle.run_id} Linear regression: 1/100000 steps")
    at.button(key="tr.step").click().run()
    assert handle.wait(lambda h: len(h.records) == 2 and h.status == "paused")
    at.button(key="tr.resume").click().run()
    assert handle.wait(lambda h: len(h.records) > 20)
    at.button(key="tr.pause").click().run()
    assert handle.wait(lambda h: h.status == "paused")
    at.button(key="tr.stop").click().run()
    assert handle.join(30) and handle.status == "stopped"
    at.run()
    assert "· stopped" in progress_text(at)
    rows = at.dataframe[0].value
    assert list(rows["status"]) == ["stopped"] and rows["steps"][0].endswith("/100000")


def test_a_run_goes_on_while_another_page_is_shown(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(100_000)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    at.switch_page("home.py").run()
    seen = len(handle.records)
    assert handle.wait(lambda h: len(h.records) > seen + 20)  # still training elsewhere
    at.switch_page(PAGE).run()
    assert not at.exception and run_of(at) is handle and handle.live
    assert at.button(key="tr.stop").disabled is False
    at.button(key="tr.stop").click().run()
    assert handle.join(30) and handle.status == "stopped"


def test_download_and_delete_a_run(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(15)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(60)
    at.run()
    at.multiselect(key="tr.chosen").set_value([handle.run_id]).run()
    from gradlab.train.records import to_csv

    store = RunStore(home / "runs.sqlite")
    assert handle.run_id is not None
    rows = list(csv.DictReader(io.StringIO(to_csv(store.records(handle.run_id)))))
    assert [float(r["loss"]) for r in rows] == [r.loss for r in handle.records]
    at.button(key=f"tr.del.{handle.run_id}").click().run()
    assert not at.exception
    assert store.runs() == []
    assert any("No runs yet" in c.value for c in at.caption)


@pytest.mark.browser
def test_start_watch_the_curve_grow_and_stop_in_the_browser(app_url: str, page: Any) -> None:
    page.goto(app_url)
    wait_for_app(page)
    page.goto(f"{app_url}/training")
    wait_for_app(page)
    steps = page.get_by_label("steps", exact=True)
    steps.fill("200000")
    steps.press("Enter")
    wait_for_app(page)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Start").click()
    last_step = """() => {
        const sel = '[data-testid="stPlotlyChart"] .js-plotly-plot';
        const plots = [...document.querySelectorAll(sel)];
        const title = p => ((p.layout && p.layout.title && p.layout.title.text) || "")
            .replace(/<[^>]+>/g, "");  // Streamlit's theme wraps titles in <b>
        const loss = plots.find(p => title(p) === "Loss");
        return loss ? loss.data[0].x[loss.data[0].x.length - 1] : -1;  // the last step drawn
    }"""
    page.wait_for_function(f"({last_step})() >= 0")
    first = page.evaluate(last_step)
    page.wait_for_function(f"({last_step})() > {first}")  # the curve grows by itself
    assert page.evaluate(last_step) > first
    page.locator('[data-testid="stPlotlyChart"] .js-plotly-plot').nth(1).wait_for()
    screenshot(page, "training_live")
    main = page.get_by_test_id("stMainBlockContainer")  # the header has a Stop button too
    main.get_by_role("button", name="Stop").click()
    page.get_by_text("· stopped").first.wait_for()
    wait_for_app(page)
    screenshot(page, "training_stopped")
    assert page.get_by_text("· stopped").count() >= 1


@pytest.fixture
def short_lease_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A server of its own whose runs end 2 s after their tab closes; its URL and home."""
    port = free_port()
    env = {**os.environ, "GRADLAB_HOME": str(tmp_path), "GRADLAB_RUN_GRACE": "2"}
    with (tmp_path / "server.log").open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "pages" / "app.py"),
             "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
             "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, server)
            yield url, tmp_path
        finally:
            server.terminate()
            server.wait(10)


@pytest.mark.browser
def test_closing_the_tab_ends_the_run_as_interrupted(
    short_lease_server: tuple[str, Path], browser: Any
) -> None:
    url, home = short_lease_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(url)
    wait_for_app(page)
    page.goto(f"{url}/training")
    wait_for_app(page)
    steps = page.get_by_label("steps", exact=True)
    steps.fill("200000")
    steps.press("Enter")
    wait_for_app(page)
    page.get_by_test_id("stMainBlockContainer").get_by_role("button", name="Start").click()
    page.get_by_text("· running").first.wait_for()
    store = RunStore(home / "runs.sqlite")
    # Another page of the same session: the session stays connected, the run goes on
    # well past the 2 s grace.
    page.get_by_test_id("stTopNav").get_by_role("link", name="Home").click()
    wait_for_app(page)
    before = store.runs()[0].recorded
    time.sleep(4)
    assert store.runs()[0].status == "running" and store.runs()[0].recorded > before
    page.get_by_test_id("stTopNav").get_by_role("link", name="Training").click()
    page.get_by_text("· running").first.wait_for()  # found again on the way back
    context.close()  # the tab closes; nobody watches the run any more
    deadline = time.monotonic() + 60
    while store.runs()[0].status == "running" and time.monotonic() < deadline:
        time.sleep(0.2)  # polling the store: the run's own record of its state
    info = store.runs()[0]
    assert info.status == "interrupted"
    assert info.recorded < 200_000 and info.error is not None


SCENARIOS = [
    "accumulation", "classify_2d", "custom_data", "digits_cnn", "fine_tune",
    "linear_regression", "lr_schedules", "optimizer_race", "three_points",
    pytest.param("ddp", marks=pytest.mark.slow),
]  # fmt: skip


@pytest.mark.parametrize("name", SCENARIOS)
def test_every_builtin_scenario_runs_on_the_page(home: Path, name: str) -> None:
    at = app_test(PAGE)
    at.selectbox(key="tr.scenario").set_value(name).run()
    at.number_input(key=f"tr.steps.{name}").set_value(4)
    at.number_input(key=f"tr.every.{name}").set_value(2)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(120) and handle.status == "finished", handle.error
    at.run()
    assert not at.exception
    assert progress_text(at).endswith("4/4 steps · finished")
    assert charts(at)["Loss"]["data"][0]["y"] == [r.loss for r in handle.records]
    assert set(node_ids(at)) <= set(handle.graph.nodes)
    at.radio(key="tr.by").set_value("per layer").run()
    heat = next(s["data"][0] for s in specs(at) if s["data"][0]["type"] == "heatmap")
    assert heat["x"] == [0, 2]


def test_after_a_reload_the_page_shows_the_run_going_on(home: Path) -> None:
    first = app_test(PAGE)
    first.number_input(key="tr.steps.linear_regression").set_value(100_000)
    first.button(key="tr.start").click().run()
    handle = run_of(first)
    handle.lease.watch(lambda: True)  # the first tab is still open: not taken from it
    other = app_test(PAGE)
    assert "tr.run" not in other.session_state
    handle.lease.watch(lambda: False)  # the first tab reloads: its session is gone
    second = app_test(PAGE)  # the reload: a new session takes the run over, no click
    assert run_of(second) is handle and not second.exception
    assert progress_text(second).startswith(f"#{handle.run_id} Linear regression:")
    second.button(key="tr.stop").click().run()
    assert handle.join(30) and handle.status == "stopped"


def test_after_a_reload_the_page_shows_the_last_run(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(12)
    at.text_input(key="tr.name").set_value("first try")
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(60) and handle.status == "finished"
    again = app_test(PAGE)  # a reload: nothing runs, the last stored run is shown
    assert not again.exception and "tr.run" not in again.session_state
    assert progress_text(again) == f"first try (#{handle.run_id}): 12/12 steps · finished (stored)"
    assert charts(again)["Loss"]["data"][0]["y"] == [r.loss for r in handle.records]


def test_runs_are_named_filtered_and_renamed(home: Path) -> None:
    at = app_test(PAGE)
    ids = []
    for name in ("baseline", "high lr"):
        at.number_input(key="tr.steps.linear_regression").set_value(5)
        at.text_input(key="tr.name").set_value(name)
        at.button(key="tr.start").click().run()
        handle = run_of(at)
        assert handle.join(60)
        ids.append(handle.run_id)
    at.run()
    assert list(at.dataframe[0].value["name"]) == ["high lr", "baseline"]
    at.text_input(key="tr.filter").set_value("base").run()
    assert list(at.dataframe[0].value["id"]) == [ids[0]]
    at.text_input(key="tr.filter").set_value("no such run").run()
    assert at.dataframe[0].value.empty
    at.text_input(key="tr.filter").set_value("").run()
    at.multiselect(key="tr.chosen").set_value([ids[1]]).run()
    at.text_input(key=f"tr.rename.{ids[1]}").set_value("lr 0.5").run()
    assert RunStore(home / "runs.sqlite").names() == {ids[0]: "baseline", ids[1]: "lr 0.5"}


def test_pace_slows_the_run_and_changes_while_it_runs(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(100_000)
    at.number_input(key="tr.pace").set_value(5.0)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.pace == 5.0
    assert handle.wait(lambda h: len(h.records) >= 2)
    # At 5 steps a second, a run that takes about a millisecond a step is far from done.
    assert len(handle.records) < 50
    at.number_input(key="tr.pace").set_value(0.0).run()  # full speed, while it runs
    assert handle.pace is None
    assert handle.wait(lambda h: len(h.records) > 200)
    at.button(key="tr.stop").click().run()
    assert handle.join(30)


def test_chart_switches_linear_scale_and_time_axis(home: Path) -> None:
    at = app_test(PAGE)
    at.number_input(key="tr.steps.linear_regression").set_value(10)
    at.button(key="tr.start").click().run()
    handle = run_of(at)
    assert handle.join(60)
    at.run()
    at.slider(key="tr.smooth").set_value(0.0)
    at.toggle(key="tr.log").set_value(False)
    at.radio(key="tr.x").set_value("time").run()
    loss = charts(at)["Loss"]
    assert len(loss["data"]) == 1 and loss["layout"].get("yaxis", {}).get("type") != "log"
    assert loss["layout"]["xaxis"]["title"]["text"] == "training time (s)"
    assert loss["data"][0]["x"] == pytest.approx(list(curves.elapsed(handle.records).values()))
