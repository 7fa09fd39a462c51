"""Where a run's steps go: the run store, a stream, a callback, memory.

:func:`gradlab.train.driver.drive` hands every :class:`Sink` the graph (once,
when the source has traced it), then each record; a sink that ``draws`` also
gets the scenario's pictures. Every sink hears each change of status (a
background run's pause and resume) and, whatever ended the run, how it
ended.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import IO

import networkx as nx

from gradlab.core.graph import Graph
from gradlab.train.records import LIVE, RunConfig, RunStatus, StepRecord
from gradlab.train.scenario import Picture
from gradlab.train.store import RunStore

FLUSH_SECONDS = 0.5  # records reach the store at least this often


class Sink:
    """What a sink may hear; each one overrides what it keeps (the rest is ignored)."""

    draws = False  # whether it wants the scenario's pictures (drawing them takes time)

    def on_graph(self, G: Graph) -> None:
        """The traced graph the records' node ids refer to (once)."""

    def on_record(self, record: StepRecord) -> None:
        """The record of the step just taken."""

    def on_pictures(self, pictures: tuple[Picture, ...]) -> None:
        """The scenario's pictures of the model as it is now."""

    def on_status(self, status: RunStatus, error: str | None) -> None:
        """The run is now ``status``; a final one comes with why, unless it finished."""


class MemorySink(Sink):
    """Keeps the run in memory: its records, graph, pictures, status and error.

    Every change is made under ``cv`` and wakes its waiters, so another thread
    (a page) may read and wait for them.
    """

    def __init__(self, cv: threading.Condition | None = None, *, draws: bool = False) -> None:
        self.cv = cv or threading.Condition()
        self.draws = draws
        self.records: list[StepRecord] = []
        self.graph: Graph | None = None
        self.pictures: tuple[Picture, ...] = ()
        self.status: RunStatus = "pending"
        self.error: str | None = None

    @property
    def ended(self) -> bool:
        """Whether the run has ended (it can take no more steps)."""
        return self.status not in LIVE

    def on_graph(self, G: Graph) -> None:
        self.graph = G

    def on_record(self, record: StepRecord) -> None:
        with self.cv:
            self.records.append(record)
            self.cv.notify_all()

    def on_pictures(self, pictures: tuple[Picture, ...]) -> None:
        self.pictures = pictures

    def on_status(self, status: RunStatus, error: str | None) -> None:
        with self.cv:
            self.status, self.error = status, error
            self.cv.notify_all()


class StoreSink(Sink):
    """Keeps the run in a :class:`RunStore`: created at once, records written every
    :data:`FLUSH_SECONDS` and at each change of status."""

    def __init__(self, store: RunStore, config: RunConfig, status: RunStatus = "running") -> None:
        self.store = store
        self.run_id = store.create(config, status)
        self._pending: list[StepRecord] = []
        self._flushed = time.monotonic()

    def on_graph(self, G: Graph) -> None:
        self.store.set_graph(self.run_id, G)

    def on_record(self, record: StepRecord) -> None:
        self._pending.append(record)
        if time.monotonic() - self._flushed > FLUSH_SECONDS:
            self._flush()
            self._flushed = time.monotonic()

    def on_status(self, status: RunStatus, error: str | None) -> None:
        self._flush()
        self.store.set_status(self.run_id, status, error if status not in LIVE else None)

    def _flush(self) -> None:
        if self._pending:
            self.store.append(self.run_id, self._pending)
            self._pending = []


class StreamSink(Sink):
    """Writes the graph and each record as a JSON line (rank 0 of a torchrun launch, for the
    process that launched it: :class:`gradlab.train.launch.Torchrun` reads them)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def on_graph(self, G: Graph) -> None:
        self._write({"graph": nx.node_link_data(G, edges="edges")})

    def on_record(self, record: StepRecord) -> None:
        self._write({"record": record.to_json()})

    def _write(self, data: object) -> None:
        self.stream.write(json.dumps(data) + "\n")
        self.stream.flush()


class CallbackSink(Sink):
    """Calls a function with each record (a progress bar)."""

    def __init__(self, on_record: Callable[[StepRecord], None]) -> None:
        self.call = on_record

    def on_record(self, record: StepRecord) -> None:
        self.call(record)
