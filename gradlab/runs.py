"""Training runs kept: the SQLite store of runs and their step records.

The :class:`RunStore` keeps runs (:mod:`gradlab.records`) in an embedded
SQLite database, in WAL mode so
that the app and ``gradlab`` commands can read while a run writes. Its file is
``$GRADLAB_HOME/runs.sqlite``, by default in the per-user data folder
(``~/.local/share/gradlab`` on Linux). A run whose process ended without
finishing it (an app restart, a crash, a killed command) is marked
``"interrupted"`` the next time a store is opened; what it recorded stays.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import networkx as nx

from gradlab.capture import NodeNorms
from gradlab.errors import GradLabError
from gradlab.graph import Graph
from gradlab.records import LIVE, ParamStat, RunConfig, RunInfo, RunStatus, StepRecord, number

ENV_HOME = "GRADLAB_HOME"
_OWNER = uuid.uuid4().hex  # this process; a pid alone can be reused after a restart


def home() -> Path:
    """GradLab's data folder: ``$GRADLAB_HOME``, else the per-user data folder."""
    given = os.environ.get(ENV_HOME)
    if given:
        return Path(given).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "gradlab"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scenario TEXT NOT NULL, params TEXT NOT NULL, steps INTEGER NOT NULL,
    every INTEGER NOT NULL, seed INTEGER NOT NULL, device TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, created REAL NOT NULL, ended REAL,
    pid INTEGER, owner TEXT, graph TEXT
);
CREATE TABLE IF NOT EXISTS records (
    run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL, loss REAL, lr REAL, seconds REAL, samples INTEGER,
    metrics TEXT, params TEXT,
    node_ids TEXT,    -- JSON list, only where the ids differ from the previous captured step
    node_norms BLOB,  -- float64 array, one per id
    PRIMARY KEY (run, step)
) WITHOUT ROWID;
"""


class RunStore:
    """Runs in a SQLite file; safe to share between threads (one lock, one connection).

    Opening a store marks the runs of processes that ended as ``"interrupted"``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else home() / "runs.sqlite"
        self._lock = threading.RLock()
        self._last_ids: dict[int, tuple[str, ...]] = {}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise GradLabError(
                f"Cannot open the run store at {self.path}: {exc}. Set {ENV_HOME} to a "
                "writable folder."
            ) from exc
        self.mark_interrupted()

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    def create(self, config: RunConfig, status: RunStatus = "running") -> int:
        """Add a run owned by this process; returns its id."""
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO runs (scenario, params, steps, every, seed, device, status, created,"
                " pid, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    config.scenario, json.dumps(dict(config.params)), config.steps, config.every,
                    config.seed, config.device, status, time.time(), os.getpid(), _OWNER,
                ),
            )  # fmt: skip
            return int(cast(int, cursor.lastrowid))

    def append(self, run_id: int, records: Iterable[StepRecord]) -> None:
        """Add step records to a run (in one transaction)."""
        rows = []
        last = self._last_ids.get(run_id)
        for r in records:
            ids_text = norms = None
            if r.nodes is not None:
                if r.nodes.ids != last:
                    ids_text, last = json.dumps(r.nodes.ids), r.nodes.ids
                norms = array("d", r.nodes.norms).tobytes()
            params = [[p.name, p.numel, p.norm, p.mean, p.grad_norm] for p in r.params]
            rows.append(
                (
                    run_id, r.step, r.loss, r.lr, r.seconds, r.samples, json.dumps(dict(r.metrics)),
                    json.dumps(params) if params else None, ids_text, norms,
                )
            )  # fmt: skip
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO records VALUES (?,?,?,?,?,?,?,?,?,?)", rows
            )
            if last is not None:
                self._last_ids[run_id] = last

    def set_status(self, run_id: int, status: RunStatus, error: str | None = None) -> None:
        """Change a run's state; a final state also sets its end time."""
        ended = None if status in LIVE else time.time()
        with self._lock, self._db:
            self._db.execute(
                "UPDATE runs SET status = ?, error = ?, ended = ? WHERE id = ?",
                (status, error, ended, run_id),
            )

    def set_graph(self, run_id: int, G: Graph) -> None:
        """Keep the graph the run's node ids refer to (node-link JSON)."""
        text = json.dumps(nx.node_link_data(G, edges="edges"))
        with self._lock, self._db:
            self._db.execute("UPDATE runs SET graph = ? WHERE id = ?", (text, run_id))

    def runs(self) -> list[RunInfo]:
        """Every stored run, newest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_INFO_COLUMNS} FROM runs ORDER BY id DESC").fetchall()
        return [_info(row) for row in rows]

    def run(self, run_id: int) -> RunInfo:
        """One stored run; a clear error if there is none with this id."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_INFO_COLUMNS} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise GradLabError(f"There is no stored run {run_id} in {self.path}.")
        return _info(row)

    def records(self, run_id: int) -> list[StepRecord]:
        """A run's step records in step order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT step, loss, lr, seconds, samples, metrics, params, node_ids, node_norms"
                " FROM records WHERE run = ? ORDER BY step",
                (run_id,),
            ).fetchall()
        out: list[StepRecord] = []
        ids: tuple[str, ...] = ()
        for step, loss, lr, seconds, samples, metrics, params, node_ids, norms in rows:
            if node_ids is not None:
                ids = tuple(json.loads(node_ids))
            nodes = None
            if norms is not None:
                nodes = NodeNorms(ids, tuple(array("d", norms)))
            out.append(
                StepRecord(
                    step, number(loss), number(lr), number(seconds), int(samples or 0),
                    {k: number(v) for k, v in json.loads(metrics or "{}").items()},
                    tuple(
                        ParamStat(n, k, number(a), number(m), None if g is None else number(g))
                        for n, k, a, m, g in json.loads(params or "[]")
                    ),
                    nodes,
                )
            )  # fmt: skip
        return out

    def graph(self, run_id: int) -> Graph | None:
        """The graph kept with a run, if any."""
        with self._lock:
            row = self._db.execute("SELECT graph FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None or row[0] is None:
            return None
        G: Graph = nx.node_link_graph(json.loads(row[0]), edges="edges")
        return G

    def delete(self, run_id: int) -> None:
        """Remove a run and its records; a clear error if there is none."""
        self.run(run_id)
        with self._lock, self._db:
            self._db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        self._last_ids.pop(run_id, None)

    def mark_interrupted(self) -> int:
        """Mark live runs whose process has ended as ``"interrupted"``; returns how many."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, pid, owner FROM runs WHERE status IN {LIVE!r}"
            ).fetchall()
        gone = [run_id for run_id, pid, owner in rows if owner != _OWNER and not _alive(pid)]
        for run_id in gone:
            self.set_status(run_id, "interrupted", "its process ended before the run did")
        return len(gone)


_INFO_COLUMNS = (
    "id, scenario, params, steps, every, seed, device, status, error, created, ended, "
    "(SELECT COUNT(*) FROM records WHERE run = runs.id), "
    "(SELECT loss FROM records WHERE run = runs.id ORDER BY step DESC LIMIT 1)"
)


def _info(row: Sequence[object]) -> RunInfo:
    rid, scenario, params, steps, every, seed, device, status, error, created, ended, n, loss = row
    config = RunConfig(
        str(scenario), json.loads(str(params)), int(cast(int, steps)), int(cast(int, every)),
        int(cast(int, seed)), str(device),
    )  # fmt: skip
    return RunInfo(
        int(cast(int, rid)), config, cast(RunStatus, status), cast("str | None", error),
        float(cast(float, created)), cast("float | None", ended), int(cast(int, n)),
        None if loss is None else float(cast(float, loss)),
    )  # fmt: skip


def _alive(pid: object) -> bool:
    """Whether a process with this id exists (another process of this machine)."""
    if not isinstance(pid, int) or pid <= 0 or pid == os.getpid():
        return False  # our own pid with another owner: a restarted process reused it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True
