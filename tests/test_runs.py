"""The run store: runs survive a restart, interrupted runs are marked, exports, delete."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gradlab.core.errors import GradLabError
from gradlab.train import train
from gradlab.train.records import RunConfig, read_json, to_csv, to_json
from gradlab.train.store import RunStore, home

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_home_honours_gradlab_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GRADLAB_HOME", str(tmp_path / "here"))
    assert home() == tmp_path / "here"
    assert RunStore().path == tmp_path / "here" / "runs.sqlite"
    monkeypatch.delenv("GRADLAB_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert home() == tmp_path / "xdg" / "gradlab"


def test_a_run_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    result = train("linear_regression", steps=12, every=4, store=RunStore(path))
    # A new process opens the same file and reads everything back.
    code = (
        "import json, sys; from gradlab.train.store import RunStore\n"
        "s = RunStore(sys.argv[1]); r = s.records(1); i = s.run(1)\n"
        "print(json.dumps([i.status, i.config.scenario, len(r), [x.loss for x in r],"
        " r[4].nodes.as_dict(), [p.grad_norm for p in r[8].params],"
        " sorted(s.graph(1).nodes)]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    status, scenario, count, losses, nodes, grads, graph_nodes = json.loads(out.stdout)
    assert (status, scenario, count) == ("finished", "linear_regression", 12)
    assert losses == [r.loss for r in result.records]
    assert result.records[4].nodes is not None
    assert nodes == result.records[4].nodes.as_dict()
    assert grads == [p.grad_norm for p in result.records[8].params]
    assert result.graph is not None and graph_nodes == sorted(result.graph.nodes)


def test_a_run_whose_process_died_is_marked_interrupted(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    code = (
        "import os, sys; from gradlab.train.store import RunStore\n"
        "from gradlab.train.records import RunConfig, StepRecord\n"
        "s = RunStore(sys.argv[1]); run = s.create(RunConfig('linear_regression', steps=50))\n"
        "s.append(run, [StepRecord(i, 1.0 / (i + 1), 0.1, 0.01, 100) for i in range(3)])\n"
        "os._exit(9)  # killed in the middle of the run\n"
    )
    died = subprocess.run([sys.executable, "-c", code, str(path)], check=False)
    assert died.returncode == 9
    store = RunStore(path)
    info = store.runs()[0]
    assert info.status == "interrupted"
    assert info.error is not None and "process ended" in info.error
    assert info.recorded == 3 and [r.step for r in store.records(info.id or 0)] == [0, 1, 2]


def test_a_live_run_of_this_process_is_not_marked(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    run = store.create(RunConfig("linear_regression"))
    assert RunStore(tmp_path / "runs.sqlite").run(run).status == "running"


def test_exports_csv_and_json_round_trip(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    result = train("linear_regression", steps=6, every=3, store=store)
    assert result.run_id is not None
    info, records = store.run(result.run_id), store.records(result.run_id)
    rows = list(csv.DictReader(io.StringIO(to_csv(records))))
    assert [int(r["step"]) for r in rows] == list(range(6))
    assert [float(r["loss"]) for r in rows] == [r.loss for r in result.records]
    assert rows[0]["weight.grad_norm"] != "" and rows[1]["weight.grad_norm"] == ""
    assert float(rows[5]["weight"]) == result.records[5].metrics["weight"]
    text = to_json(info, records, store.graph(result.run_id))
    data = json.loads(text)
    assert (data["scenario"], data["seed"], data["params"]["lr"]) == ("linear_regression", 0, 0.1)
    assert [r["step"] for r in data["records"]] == list(range(6))
    assert "nodes" in data["records"][3] and "nodes" not in data["records"][4]
    again_info, again = read_json(text)
    assert again_info.config == info.config
    assert again == records
    with pytest.raises(GradLabError, match="not a GradLab run file"):
        read_json('{"format": "something else"}')


def test_list_and_delete(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")
    first = train("three_points", steps=2, store=store).run_id
    second = train("linear_regression", steps=3, store=store).run_id
    assert [i.id for i in store.runs()] == [second, first]
    assert [i.recorded for i in store.runs()] == [3, 2]
    assert first is not None and second is not None
    store.delete(first)
    assert [i.id for i in store.runs()] == [second]
    assert store.records(first) == []
    with pytest.raises(GradLabError, match=f"no stored run {first}"):
        store.delete(first)


def test_an_unwritable_location_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(GradLabError, match=r"Cannot open the run store.*GRADLAB_HOME"):
        RunStore(blocker / "runs.sqlite")


def test_ctrl_c_keeps_what_was_recorded_and_marks_the_run_stopped(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.sqlite")

    def interrupt(record: object) -> None:
        if record.step == 3:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("linear_regression", steps=100, store=store, on_record=interrupt)
    info = store.runs()[0]
    assert (info.status, info.recorded, info.error) == ("stopped", 4, "stopped by the user")
