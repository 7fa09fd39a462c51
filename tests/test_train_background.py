"""Background runs for the app: start, pause, single step, resume, stop, and the lease."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradlab.plugins import discover
from gradlab.train import configure
from gradlab.train.background import Lease, RunHandle, live_runs
from gradlab.train.store import RunStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _handle(tmp_path: Path, steps: int = 10_000, **kwargs: object) -> RunHandle:
    scenario = discover().get("linear_regression")
    store = RunStore(tmp_path / "runs.sqlite")
    return RunHandle(scenario, configure(scenario, steps=steps, every=5), store=store, **kwargs)  # type: ignore[arg-type]


def test_pause_step_resume_stop(tmp_path: Path) -> None:
    run = _handle(tmp_path)
    run.start(paused=True)
    assert run in live_runs()
    assert run.wait(lambda r: r.status == "paused")
    assert run.records == []  # a paused run takes no step by itself
    run.step()
    assert run.wait(lambda r: len(r.records) == 1)
    run.step()
    assert run.wait(lambda r: len(r.records) == 2)
    assert run.status == "paused"
    assert [r.step for r in run.records] == [0, 1]
    run.resume()
    assert run.wait(lambda r: len(r.records) >= 50)
    run.pause()
    assert run.wait(lambda r: r.status == "paused")
    held = len(run.records)
    run.step()
    assert run.wait(lambda r: len(r.records) == held + 1)
    run.stop()
    assert run.join(30)
    assert run.status == "stopped" and run not in live_runs()
    assert [r.step for r in run.records] == list(range(len(run.records)))
    # Everything recorded reached the store, with the final state.
    assert run.store is not None and run.run_id is not None
    info = run.store.run(run.run_id)
    assert info.status == "stopped" and info.recorded == len(run.records)
    assert run.store.graph(run.run_id) is not None


def test_a_run_finishes_with_progress_and_pictures(tmp_path: Path) -> None:
    run = _handle(tmp_path, steps=30)
    run.start()
    assert run.join(60)
    assert run.status == "finished" and run.error is None
    progress = run.progress()
    assert (progress.done, progress.total, progress.fraction, progress.eta) == (30, 30, 1.0, None)
    assert [p.title for p in run.pictures] == ["Fitted line"]
    assert run.graph is not None and run.records[0].nodes is not None


def test_an_unwatched_run_is_interrupted(tmp_path: Path) -> None:
    watching = [True]
    run = _handle(tmp_path, lease=Lease(grace=0.5, alive=lambda: watching[0]))
    run.start()
    assert run.wait(lambda r: len(r.records) >= 5)
    assert run.live and run.lease.watched()  # still watched: it goes on
    watching[0] = False  # the tab closed
    assert not run.lease.watched()
    assert run.join(30)
    assert run.status == "interrupted"
    assert run.error is not None and "Nobody was watching" in run.error
    assert run.store is not None and run.run_id is not None
    assert run.store.run(run.run_id).status == "interrupted"


def test_a_failing_scenario_ends_the_run_with_its_message(tmp_path: Path) -> None:
    scenario = discover().get("linear_regression")
    config = configure(scenario, {"lr": 2.0}, steps=1000, every=0)
    run = RunHandle(scenario, config, store=RunStore(tmp_path / "runs.sqlite"))
    run.start()
    assert run.join(60)
    assert run.status == "failed"
    assert run.error is not None and "diverged" in run.error


def test_start_twice_is_refused(tmp_path: Path) -> None:
    run = _handle(tmp_path, steps=2)
    run.start()
    with pytest.raises(Exception, match="already started"):
        run.start()
    assert run.join(30)


@pytest.mark.slow
def test_a_distributed_run_in_the_background_pauses_and_stops(tmp_path: Path) -> None:
    scenario = discover().get("ddp")
    config = configure(scenario, {"processes": 2}, steps=10_000, every=5)
    run = RunHandle(scenario, config, store=RunStore(tmp_path / "runs.sqlite"))
    run.start()
    assert run.wait(lambda r: len(r.records) >= 3, timeout=120)
    assert run.graph is not None  # rank 0 sent the traced graph along
    run.pause()  # the whole process group is stopped between steps
    assert run.wait(lambda r: r.status == "paused")
    held = len(run.records)
    run.step()
    assert run.wait(lambda r: len(r.records) == held + 1)
    run.stop()
    assert run.join(60) and run.status == "stopped"
    last = run.records[-1].metrics
    assert last["grad_diff_across_ranks"] == 0.0 and {"loss_rank0", "loss_rank1"} <= set(last)
