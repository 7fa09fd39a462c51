"""Pause Python's cyclic garbage collector while a big graph is built.

Building a 5,000-node graph allocates tens of thousands of dicts, and the
collector's full passes over them cost as much as the work itself. Nothing
built there forms cycles that need collecting before the pause ends.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_holders = 0
_was_enabled = True


@contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the collector for the block; nested and concurrent blocks are fine."""
    global _holders, _was_enabled
    with _lock:
        if _holders == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0 and _was_enabled:
                gc.enable()
