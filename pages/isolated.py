"""Programs run in sandboxed workers, with the page showing its place in the queue.

Pages import it as ``from isolated import run_program, diagnose_program``.
Nothing a student types runs in the server: :mod:`gradlab.program.pool`
hands it to a fresh child of the warm worker, inside the OS sandbox, and
only facts come back.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from gradlab.diagnose import Report
from gradlab.program import ProgramResult, pool


def session_id() -> str:
    """This browser tab's session: the unit of the fair queue."""
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def _waiting() -> tuple[Callable[[int], None], Callable[[], None]]:
    slot = st.empty()

    def show(ahead: int) -> None:
        if ahead:
            slot.info(f"Waiting for a free worker: {ahead} ahead of you…", icon="⏳")
        else:
            slot.info("Running the program…", icon="⏳")

    return show, slot.empty


@st.cache_data(max_entries=128, show_spinner=False)
def run_program(source: str) -> ProgramResult:
    """A typed program's result, run in a sandboxed worker (cached per text: facts only)."""
    show, clear = _waiting()
    result: ProgramResult = pool.run_program(source, session=session_id(), on_wait=show)
    clear()
    return result


@st.cache_data(max_entries=64, show_spinner=False)
def diagnose_program(source: str) -> Report:
    """The debugger's report on a typed program, made in a sandboxed worker."""
    show, clear = _waiting()
    report: Report = pool.diagnose_program(source, session=session_id(), on_wait=show)
    clear()
    return report
