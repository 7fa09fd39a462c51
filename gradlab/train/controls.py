"""What steers a run from outside: pause, resume, single steps, stop, a pace and a lease.

:func:`gradlab.train.driver.drive` asks its :class:`Controls` before every
step whether to take it, wait, or end the run (and how: an
:class:`Outcome`). The app's background runs hold them
(:class:`gradlab.train.background.RunHandle`); a :class:`Lease` ends a run that
nobody watches any more, so a closed tab does not leave it spinning.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gradlab.train.records import RunStatus

NOBODY = "Nobody was watching any more (the page was closed), so it stopped."


class Pausable(Protocol):
    """What the controls pause and resume with the run: the step source (a torchrun launch
    stops its processes)."""

    def pause(self) -> None: ...
    def resume(self) -> None: ...


@dataclass(frozen=True)
class Outcome:
    """How a run ended: its final status and, unless it finished, why."""

    status: RunStatus
    error: str | None = None


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


class Controls:
    """What steers a run from other threads: pause, resume, single steps, stop, a pace, a lease.

    :func:`drive` asks :meth:`turn` before every step; the other methods may
    be called from any thread and take effect between steps. ``cv`` is the
    condition the run's readers wait on, so that each change wakes them.
    """

    def __init__(self, lease: Lease | None = None, cv: threading.Condition | None = None) -> None:
        self.lease = lease or Lease()
        self.busy = 0.0  # seconds spent in steps, for an ETA
        self._cv = cv or threading.Condition()
        self._paused = False
        self._shown: RunStatus = "running"  # the live status the sinks heard last
        self._tokens = 0  # single steps asked for
        self._stop = False
        self._pace: float | None = None  # steps a second at most; None: as fast as it goes
        self._last: float | None = None  # when the last turn ended (a step began)

    def begin(self, paused: bool) -> RunStatus:
        """Start paused (until :meth:`step` or :meth:`resume`) or not; the status to show."""
        with self._cv:
            self._paused = paused
            self._shown = "paused" if paused else "running"
            return self._shown

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

    def stop(self) -> None:
        """End the run after the current step."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()

    def set_pace(self, rate: float | None) -> None:
        """Take at most ``rate`` steps a second (``None`` or 0: as fast as it goes)."""
        with self._cv:
            self._pace = rate if rate is not None and rate > 0 else None
            self._cv.notify_all()

    @property
    def pace(self) -> float | None:
        """The steps a second the run keeps to, or ``None`` (as fast as it goes)."""
        return self._pace

    def turn(self, source: Pausable, tell: Callable[[RunStatus], None]) -> Outcome | None:
        """Before a step: keep the pace, wait while paused; ``None`` to take the step, or how
        the run ends. ``tell`` hears each change between running and paused, which the
        source follows (a torchrun launch stops its processes)."""
        self._keep_pace()
        try:
            return self._wait_turn(source, tell)
        finally:
            self._last = time.monotonic()

    def _keep_pace(self) -> None:
        """With a pace, wait until its next step is due (a stop, pause or step cuts it short)."""
        with self._cv:
            if self._last is None:  # the first step: the pace counts from the loop's start
                self._last = time.monotonic()
            last = self._last
            while self._pace is not None and not (self._stop or self._paused or self._tokens):
                left = last + 1.0 / self._pace - time.monotonic()
                if left <= 0:
                    return
                self._cv.wait(timeout=min(left, 0.25))

    def _wait_turn(self, source: Pausable, tell: Callable[[RunStatus], None]) -> Outcome | None:
        with self._cv:
            while True:
                if self._stop:
                    return Outcome("stopped")
                if self.lease.expired():
                    return Outcome("interrupted", NOBODY)
                if not self._paused or self._tokens:
                    break
                if self._shown != "paused":
                    self._shown = "paused"
                    source.pause()
                    tell("paused")
                    self._cv.notify_all()
                self._cv.wait(timeout=0.25)
            if self._tokens:
                self._tokens -= 1
            if self._shown == "paused":
                source.resume()
                if not self._paused:
                    self._shown = "running"
                    tell("running")
        return None
