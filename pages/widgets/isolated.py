"""Programs run in sandboxed workers, with the page showing its place in the queue.

Pages import it as ``from isolated import run_program, diagnose_program``.
Nothing a student types runs in the server: :mod:`gradlab.isolation.pool`
hands it to a fresh child of the warm worker, inside the OS sandbox, and
only facts come back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from gradlab.diagnose import Report
from gradlab.isolation import pool
from gradlab.program import ProgramResult

T = TypeVar("T")


def session_id() -> str:
    """This browser tab's session: the unit of the fair queue."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _in_worker(run: Callable[..., T], source: str) -> T:
    """``run(source)`` in the pool, for this tab, with its place in the queue on screen."""
    slot = st.empty()

    def show(ahead: int) -> None:
        if ahead:
            slot.info(f"Waiting for a free worker: {ahead} ahead of you…", icon="⏳")
        else:
            slot.info("Running the program…", icon="⏳")

    value = run(source, session=session_id(), on_wait=show)
    slot.empty()
    return value


@st.cache_data(max_entries=128, show_spinner=False)
def run_program(source: str) -> ProgramResult:
    """A typed program's result, run in a sandboxed worker (cached per text: facts only)."""
    return _in_worker(pool.run_program, source)


@st.cache_data(max_entries=64, show_spinner=False)
def diagnose_program(source: str) -> Report:
    """The debugger's report on a typed program, made in a sandboxed worker."""
    return _in_worker(pool.diagnose_program, source)
