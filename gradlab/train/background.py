"""Training runs in a background thread, for the app: start, pause, resume, step, stop.

A :class:`RunHandle` owns one thread. The thread writes only to the handle
(its records, graph, pictures, status and error) and to the run store; the
page reads the handle from an ``st.fragment`` that reruns on a timer, so no
Streamlit call ever happens off the script thread. Handles live in this
module (:func:`live_runs`), so a run goes on while the person visits another
page and is found again on their return. A :class:`Lease` ends a run that
nobody watches any more, so a closed tab does not leave it spinning.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.train.loop import (
    FLUSH_SECONDS,
    PICTURE_SECONDS,
    StepSource,
    TrainingError,
    check_finite,
    one_line,
    open_steps,
)
from gradlab.train.records import LIVE, RunConfig, RunStatus, StepRecord
from gradlab.train.scenario import Picture, Scenario
from gradlab.train.store import RunStore


class Lease:
    """Keeps a background run going while someone watches it.

    The run ends (as ``"interrupted"``) once the lease has not been renewed
    for ``grace`` seconds. ``alive``, when given, is asked at most once a
    second and renews the lease while it answers yes (the app asks whether
    the browser session is still connected).
    """

    def __init__(self, grace: float = math.inf, alive: Callable[[], bool] | None = None) -> None:
        self.grace = grace
        self._alive = alive
        self._renewed = self._asked = time.monotonic()

    def renew(self) -> None:
        """Someone is watching now."""
        self._renewed = time.monotonic()

    def watch(self, alive: Callable[[], bool] | None) -> None:
        """Ask ``alive`` from now on (a new browser tab took the run over)."""
        self._alive = alive
        self.renew()

    def watched(self) -> bool:
        """Whether ``alive`` says someone still watches (False when there is no ``alive``)."""
        return self._alive is not None and self._alive()

    def expired(self) -> bool:
        """Whether nobody renewed the lease for ``grace`` seconds."""
        now = time.monotonic()
        if self._alive is not None and now - self._asked >= 1.0:
            self._asked = now
            if self._alive():
                self._renewed = now
        return now - self._renewed > self.grace


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


class RunHandle:
    """A run in a background thread that the app drives: start, pause, resume, step, stop.

    The thread writes only to this object (``records``, ``graph``,
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
        self.lease = lease or Lease()
        self.want_pictures = pictures
        self.key = next(_KEYS)
        self.run_id: int | None = None
        self.records: list[StepRecord] = []
        self.graph: Graph | None = None
        self.pictures: tuple[Picture, ...] = ()
        self.status: RunStatus = "pending"
        self.error: str | None = None
        self._cv = threading.Condition()
        self._paused = False
        self._tokens = 0
        self._stop = False
        self._ended = False
        self._active = 0.0  # seconds spent stepping, for the ETA
        self._pace: float | None = None  # steps a second at most; None: as fast as it goes
        self._thread = threading.Thread(
            target=self._main, name=f"gradlab-{scenario.name}", daemon=True
        )

    def start(self, paused: bool = False) -> None:
        """Start the thread (paused: it waits for :meth:`step` or :meth:`resume`)."""
        if self.status != "pending":
            raise TrainingError("This run has already started; start a new one.")
        self._paused = paused
        self.status = "paused" if paused else "running"
        if self.store is not None:
            self.run_id = self.store.create(self.config, self.status)
        with _LIVE_LOCK:
            _LIVE[self.key] = self
        self._thread.start()

    def pause(self) -> None:
        """Wait after the current step."""
        with self._cv:
            self._paused = True
            self._cv.notify_all()

    def resume(self) -> None:
        """Go on stepping."""
        with self._cv:
            self._paused = False
            self._cv.notify_all()

    def step(self) -> None:
        """Do one more step, then wait (pauses a running run)."""
        with self._cv:
            self._paused = True
            self._tokens += 1
            self._cv.notify_all()

    def set_pace(self, rate: float | None) -> None:
        """Take at most ``rate`` steps a second (``None`` or 0: as fast as it goes).

        A run that would be over in a blink can be slowed to watch it learn; it
        can be changed while the run goes on.
        """
        with self._cv:
            self._pace = rate if rate is not None and rate > 0 else None
            self._cv.notify_all()

    @property
    def pace(self) -> float | None:
        """The steps a second the run keeps to, or ``None`` (as fast as it goes)."""
        return self._pace

    def stop(self) -> None:
        """End the run after the current step."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def wait(self, until: Callable[[RunHandle], bool], timeout: float = 60.0) -> bool:
        """Block until ``until(self)`` holds or the run has ended; whether it holds.

        The thread signals after every step and every change of state, so this
        waits for the run's own news rather than for a fixed time.
        """
        with self._cv:
            self._cv.wait_for(lambda: until(self) or self._ended, timeout)
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
        eta = self._active / done * (total - done) if done and self.live else None
        return Progress(done, total, eta)

    def _main(self) -> None:
        source: StepSource | None = None
        final: RunStatus = "failed"
        pending: list[StepRecord] = []
        try:
            source = open_steps(self.scenario, self.config)
            final = self._loop(source, pending)
        except GradLabError as exc:
            self.error = str(exc)
        except Exception as exc:  # never let a thread die silently: the page shows this
            self.error = f"Unexpected {one_line(exc)}"
        finally:
            if source is not None:
                if final in ("finished", "stopped") and self.want_pictures:
                    with contextlib.suppress(GradLabError):
                        self.pictures = source.pictures()
                source.close()
            self._save(pending, final)
            with _LIVE_LOCK:
                _LIVE.pop(self.key, None)
            with self._cv:
                self.status = final
                self._ended = True
                self._cv.notify_all()

    def _loop(self, source: StepSource, pending: list[StepRecord]) -> RunStatus:
        flushed = drawn = last = time.monotonic()
        while len(self.records) < self.config.steps:
            self._keep_pace(last)
            verdict = self._wait_turn(source, pending)
            last = time.monotonic()
            if verdict is not None:
                return verdict
            started = time.perf_counter()
            record_ = source.step()
            self._active += time.perf_counter() - started
            with self._cv:
                self.records.append(record_)
                self._cv.notify_all()
            pending.append(record_)
            if self.graph is None and source.graph is not None:
                self.graph = source.graph
                if self.store is not None and self.run_id is not None:
                    self.store.set_graph(self.run_id, source.graph)
            now = time.monotonic()
            if now - flushed > FLUSH_SECONDS:
                self._save(pending)
                flushed = now
            if self.want_pictures and now - drawn > PICTURE_SECONDS:
                self.pictures = source.pictures()
                drawn = now
            check_finite(record_)
        return "finished"

    def _keep_pace(self, last: float) -> None:
        """With a pace, wait until its next step is due (a stop, pause or Step cuts it short)."""
        with self._cv:
            while self._pace is not None and not (self._stop or self._paused or self._tokens):
                left = last + 1.0 / self._pace - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(timeout=min(left, 0.25))

    def _wait_turn(self, source: StepSource, pending: list[StepRecord]) -> RunStatus | None:
        """Block while paused; ``None`` to take a step, or the final status to end with."""
        with self._cv:
            while True:
                if self._stop:
                    return "stopped"
                if self.lease.expired():
                    self.error = (
                        "Nobody was watching any more (the page was closed), so it stopped."
                    )
                    return "interrupted"
                if not self._paused or self._tokens:
                    break
                if self.status != "paused":
                    self.status = "paused"
                    source.pause()
                    self._save(pending, "paused")
                    self._cv.notify_all()
                self._cv.wait(timeout=0.25)
            if self._tokens:
                self._tokens -= 1
            if self.status == "paused":
                source.resume()
                if not self._paused:
                    self.status = "running"
                    self._save(pending, "running")
        return None

    def _save(self, pending: list[StepRecord], status: RunStatus | None = None) -> None:
        if self.store is None or self.run_id is None:
            pending.clear()
            return
        if pending:
            self.store.append(self.run_id, pending)
            pending.clear()
        if status is not None:
            self.store.set_status(self.run_id, status, self.error if status not in LIVE else None)
