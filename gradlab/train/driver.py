"""The one training driver: it steps a source and hands what each step makes to sinks.

:func:`drive` is the loop every way of training shares: :func:`train` (scripts,
tests, ``gradlab train``, each rank of a ``torchrun`` launch) and the app's
background runs (:class:`gradlab.train.background.RunHandle`). Its source is
a :class:`~gradlab.train.loop.Trainer`, or a :class:`~gradlab.train.launch.Torchrun`
launch that streams rank 0's records. Before each step it asks its
:class:`~gradlab.train.controls.Controls`, when it has them (pause, resume, a
single step, stop, a pace, a lease); after each it hands the graph, the record and the
pictures to its :mod:`sinks <gradlab.train.sinks>` (the run store, a stream,
a callback, memory), and stops on a loss that is no longer finite. However
the run ends, the source is closed and every sink hears how.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Protocol

from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.train.controls import Controls, Outcome
from gradlab.train.discover import discover
from gradlab.train.launch import Torchrun, in_torchrun, process_group, report_stream
from gradlab.train.loop import Trainer, TrainingError, configure, one_line
from gradlab.train.records import RunConfig, RunStatus, StepRecord
from gradlab.train.scenario import Picture, Scenario
from gradlab.train.sinks import CallbackSink, MemorySink, Sink, StoreSink, StreamSink
from gradlab.train.store import RunStore

PICTURE_SECONDS = 0.5  # pictures are redrawn at most this often


class StepSource(Protocol):
    """Something that gives step records: a :class:`Trainer`, or a torchrun launch."""

    graph: Graph | None

    def step(self) -> StepRecord: ...
    def pictures(self) -> tuple[Picture, ...]: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def close(self) -> None: ...


def open_steps(scenario: Scenario, config: RunConfig) -> StepSource:
    """A :class:`Trainer`, or for a distributed scenario a torchrun launch streaming rank 0."""
    if scenario.distributed and not in_torchrun():
        return Torchrun(scenario, config)
    return Trainer(scenario, config)


def drive(
    source: StepSource, steps: int, sinks: Sequence[Sink], controls: Controls | None = None
) -> Outcome:
    """Step ``source`` ``steps`` times, or until ``controls`` end the run; ``sinks`` get it all.

    After each step every sink gets the graph (once, as soon as the source has
    traced it), then the record; sinks that draw get the scenario's pictures
    at most every :data:`PICTURE_SECONDS`, and once more at the end of a run
    that finished or was stopped. A loss that is not finite fails the run.
    However it ends, the source is closed and every sink hears how (in the
    order given); an error is raised again after that.
    """
    draws = [s for s in sinks if s.draws]
    try:
        outcome = _steps(source, steps, sinks, draws, controls)
        if draws and outcome.status in ("finished", "stopped"):
            with contextlib.suppress(GradLabError):  # the run is over; only its picture failed
                _draw(source, draws)
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)
        _end(source, sinks, Outcome("stopped" if stopped else "failed", reason(exc)))
        raise
    _end(source, sinks, outcome)
    return outcome


def _steps(
    source: StepSource,
    steps: int,
    sinks: Sequence[Sink],
    draws: Sequence[Sink],
    controls: Controls | None,
) -> Outcome:
    tell = functools.partial(_tell, sinks)
    drawn = time.monotonic()
    graph_sent = False
    for _ in range(steps):
        if controls is not None:
            ended = controls.turn(source, tell)
            if ended is not None:
                return ended
        started = time.perf_counter()
        record = source.step()
        if controls is not None:
            controls.busy += time.perf_counter() - started
        if source.graph is not None and not graph_sent:
            graph_sent = True
            for sink in sinks:
                sink.on_graph(source.graph)
        for sink in sinks:
            sink.on_record(record)
        if draws and time.monotonic() - drawn > PICTURE_SECONDS:
            _draw(source, draws)
            drawn = time.monotonic()
        check_finite(record)
    return Outcome("finished")


def _tell(sinks: Sequence[Sink], status: RunStatus) -> None:
    for sink in sinks:
        sink.on_status(status, None)


def _draw(source: StepSource, sinks: Sequence[Sink]) -> None:
    pictures = source.pictures()
    for sink in sinks:
        sink.on_pictures(pictures)


def _end(source: StepSource, sinks: Sequence[Sink], outcome: Outcome) -> None:
    source.close()
    end(sinks, outcome)


def end(sinks: Sequence[Sink], outcome: Outcome) -> None:
    """Tell every sink how the run ended (a run that could not even start, too)."""
    for sink in sinks:
        sink.on_status(outcome.status, outcome.error)


def reason(exc: BaseException) -> str:
    """Why a run ended on an exception, in one line."""
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by the user"
    return str(exc) if isinstance(exc, GradLabError) else f"Unexpected {one_line(exc)}"


def check_finite(record: StepRecord) -> None:
    """A clear error once the loss is no longer a finite number."""
    if not math.isfinite(record.loss):
        raise TrainingError(
            f"The loss became {record.loss} at step {record.step}: training diverged. "
            f"A smaller learning rate (it was {record.lr:g}) usually helps."
        )


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did: its configuration, records, graph and stored run id."""

    config: RunConfig
    records: list[StepRecord]
    graph: Graph | None
    run_id: int | None


def train(
    scenario: Scenario | str,
    params: Mapping[str, object] | None = None,
    *,
    steps: int | None = None,
    every: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    on_record: Callable[[StepRecord], None] | None = None,
    store: RunStore | None = None,
) -> TrainResult:
    """Train a scenario to the end, synchronously; each record goes to ``on_record``.

    With ``store``, the run and its records are kept there as they come. A
    distributed scenario is launched with torchrun, or, when this process is
    itself a torchrun worker, runs as its rank (rank 0 reports).

    Examples
    --------
    >>> result = train("three_points", {"reduction": "sum"}, steps=100)
    >>> w, b = (p.mean for p in result.records[-1].params)
    >>> round(w, 1), round(b, 1)
    (2.0, 0.0)
    """
    if isinstance(scenario, str):
        scenario = discover().get(scenario)
    config = configure(scenario, params, steps=steps, every=every, seed=seed, device=device)
    if not (scenario.distributed and in_torchrun()):
        return _to_end(open_steps(scenario, config), config, on_record, store)
    with process_group(config) as (config, rank, world):  # this process is one rank
        trainer = Trainer(scenario, config, rank=rank, world_size=world, want_graph=rank == 0)
        if rank != 0:
            return _to_end(trainer, config)  # rank 0 reports
        with report_stream() as stream:
            return _to_end(trainer, config, on_record, store, stream)


def _to_end(
    source: StepSource,
    config: RunConfig,
    on_record: Callable[[StepRecord], None] | None = None,
    store: RunStore | None = None,
    stream: IO[str] | None = None,
) -> TrainResult:
    """Drive an opened source through all its steps, into memory and the sinks asked for."""
    kept = MemorySink()
    sinks: list[Sink] = [kept]
    if stream is not None:
        sinks.append(StreamSink(stream))
    stored = StoreSink(store, config) if store is not None else None
    if stored is not None:
        sinks.append(stored)
    if on_record is not None:
        sinks.append(CallbackSink(on_record))
    drive(source, config.steps, sinks)
    return TrainResult(config, kept.records, kept.graph, stored.run_id if stored else None)
