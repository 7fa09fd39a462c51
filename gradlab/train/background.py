"""Training runs in a background thread, for the app: start, pause, resume, step, stop.

A :class:`RunHandle` owns one thread, which runs the one driver
(:func:`gradlab.train.driver.drive`) with the handle's
:class:`~gradlab.train.controls.Controls` and its sinks: the run store, and
memory that the handle shows (its records, graph, pictures, status and
error). The page reads the handle from an ``st.fragment`` that reruns on a
timer, so no Streamlit call ever happens off the script thread. Handles live
in this module (:func:`live_runs`), so a run goes on while the person visits
another page and is found again on their return. A :class:`Lease` ends a run
that nobody watches any more, so a closed tab does not leave it spinning.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass

from gradlab.core.graph import Graph
from gradlab.train.controls import Controls, Lease, Outcome
from gradlab.train.driver import drive, end, open_steps, reason
from gradlab.train.loop import TrainingError
from gradlab.train.records import LIVE, RunConfig, RunStatus, StepRecord
from gradlab.train.scenario import Picture, Scenario
from gradlab.train.sinks import MemorySink, Sink, StoreSink
from gradlab.train.store import RunStore

__all__ = ["Lease", "Progress", "RunHandle", "live_runs"]


@dataclass(frozen=True)
class Progress:
    """How far a run is: steps done of the total, and the estimated seconds left."""

    done: int
    total: int
    eta: float | None

    @property
    def fraction(self) -> float:
        """Done, between 0 and 1."""
        return self.done / self.total if self.total else 1.0


_LIVE: dict[int, RunHandle] = {}
_LIVE_LOCK = threading.Lock()
_KEYS = itertools.count(1)


def live_runs() -> list[RunHandle]:
    """Background runs of this process that have not ended, oldest first."""
    with _LIVE_LOCK:
        return list(_LIVE.values())


class _Leave(Sink):
    """Takes an ended run off :func:`live_runs` (before the page can see that it ended)."""

    def __init__(self, key: int) -> None:
        self.key = key

    def on_status(self, status: RunStatus, error: str | None) -> None:
        if status not in LIVE:
            with _LIVE_LOCK:
                _LIVE.pop(self.key, None)


class RunHandle:
    """A run in a background thread that the app drives: start, pause, resume, step, stop.

    The thread writes only to this handle's memory (``records``, ``graph``,
    ``pictures``, ``status``, ``error``) and to the store; the page reads them.
    The run ends when it has done its steps, is stopped, fails, or when its
    :class:`Lease` runs out (nobody watching: ``"interrupted"``).
    """

    def __init__(
        self,
        scenario: Scenario,
        config: RunConfig,
        *,
        store: RunStore | None = None,
        lease: Lease | None = None,
        pictures: bool = True,
    ) -> None:
        self.scenario = scenario
        self.config = config
        self.store = store
        self.key = next(_KEYS)
        self.run_id: int | None = None
        self._memory = MemorySink(draws=pictures)
        self.controls = Controls(lease, self._memory.cv)
        self._sinks: list[Sink] = [_Leave(self.key), self._memory]
        self._thread = threading.Thread(
            target=self._main, name=f"gradlab-{scenario.name}", daemon=True
        )

    @property
    def records(self) -> list[StepRecord]:
        """The records of the steps taken so far."""
        return self._memory.records

    @property
    def graph(self) -> Graph | None:
        """The traced graph, from the first captured step on."""
        return self._memory.graph

    @property
    def pictures(self) -> tuple[Picture, ...]:
        """The scenario's latest pictures."""
        return self._memory.pictures

    @property
    def status(self) -> RunStatus:
        """``pending`` until started, then running, paused, or how it ended."""
        return self._memory.status

    @property
    def error(self) -> str | None:
        """Why the run ended, unless it finished or was stopped."""
        return self._memory.error

    @property
    def lease(self) -> Lease:
        """What keeps the run going while someone watches it."""
        return self.controls.lease

    def start(self, paused: bool = False) -> None:
        """Start the thread (paused: it waits for :meth:`step` or :meth:`resume`)."""
        if self.status != "pending":
            raise TrainingError("This run has already started; start a new one.")
        status = self.controls.begin(paused)
        self._memory.on_status(status, None)
        if self.store is not None:
            stored = StoreSink(self.store, self.config, status)
            self.run_id = stored.run_id
            self._sinks.insert(0, stored)  # the store has the end before the page sees it
        with _LIVE_LOCK:
            _LIVE[self.key] = self
        self._thread.start()

    def pause(self) -> None:
        """Wait after the current step."""
        self.controls.pause()

    def resume(self) -> None:
        """Go on stepping."""
        self.controls.resume()

    def step(self) -> None:
        """Do one more step, then wait (pauses a running run)."""
        self.controls.step()

    def set_pace(self, rate: float | None) -> None:
        """Take at most ``rate`` steps a second (``None`` or 0: as fast as it goes).

        A run that would be over in a blink can be slowed to watch it learn; it
        can be changed while the run goes on.
        """
        self.controls.set_pace(rate)

    @property
    def pace(self) -> float | None:
        """The steps a second the run keeps to, or ``None`` (as fast as it goes)."""
        return self.controls.pace

    def stop(self) -> None:
        """End the run after the current step."""
        self.controls.stop()

    def wait(self, until: Callable[[RunHandle], bool], timeout: float = 60.0) -> bool:
        """Block until ``until(self)`` holds or the run has ended; whether it holds.

        The thread signals after every step and every change of state, so this
        waits for the run's own news rather than for a fixed time.
        """
        with self._memory.cv:
            self._memory.cv.wait_for(lambda: until(self) or self._memory.ended, timeout)
            return until(self)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; whether it did."""
        if self._thread.ident is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def live(self) -> bool:
        """Whether the run can still take steps."""
        return self.status in LIVE

    def progress(self) -> Progress:
        """Steps done, the total, and an ETA from the time steps have taken so far."""
        done, total = len(self.records), self.config.steps
        eta = self.controls.busy / done * (total - done) if done and self.live else None
        return Progress(done, total, eta)

    def _main(self) -> None:
        """The thread: open the source and drive it; every sink hears how the run ended."""
        try:
            source = open_steps(self.scenario, self.config)
        except Exception as exc:  # never let a thread die silently: the page shows this
            end(self._sinks, Outcome("failed", reason(exc)))
            return
        with contextlib.suppress(Exception):  # drive has told the sinks, and so the page, why
            drive(source, self.config.steps, self._sinks, self.controls)
