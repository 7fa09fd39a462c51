"""Training runs kept: the SQLite store of runs and their step records.

The :class:`RunStore` keeps runs (:mod:`gradlab.train.records`) in an embedded
SQLite database, in WAL mode so
that the app and ``gradlab`` commands can read while a run writes. Its file is
``$GRADLAB_HOME/runs.sqlite``, by default in the per-user data folder
(``~/.local/share/gradlab`` on Linux). A run whose process ended without
finishing it (an app restart, a crash, a killed command) is marked
``"interrupted"`` the next time a store is opened; what it recorded stays.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import sys
import threading
import time
import uuid
from array import array
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast, get_args

import networkx as nx

from gradlab.core.capture import NodeNorms
from gradlab.core.errors import GradLabError
from gradlab.core.files import MAX_LOAD_BYTES, parse
from gradlab.core.graph import Graph
from gradlab.train.records import LIVE, ParamStat, RunConfig, RunInfo, RunStatus, StepRecord, number

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
CREATE TABLE IF NOT EXISTS names (
    run INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT NOT NULL
);
"""


#: What reading a stored value GradLab did not write can raise.
_UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, OverflowError, RecursionError)

class RunStore:
    """Runs in a SQLite file; safe to share between threads (one lock, one connection).

    Opening a store marks the runs of processes that ended as ``"interrupted"``.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else home() / "runs.sqlite"
        self._lock = threading.RLock()
        self._last_ids: dict[int, tuple[str, ...]] = {}
        if self.path.is_dir():
            raise GradLabError(f"The run store {self.path} is a folder; name a file (runs.sqlite).")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=10, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise GradLabError(
                f"Cannot open the run store at {self.path}: "
                f"{getattr(exc, 'strerror', None) or exc}. Set {ENV_HOME} to a writable folder."
            ) from exc
        self._db = _Guarded(connection, self.path)
        try:
            _check_header(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.executescript(_SCHEMA)
            _check_schema(self._db, self.path)
            self.mark_interrupted()
        except GradLabError:
            connection.close()
            raise

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

    def set_name(self, run_id: int, name: str) -> None:
        """Name a run (an empty name removes it); names are for people, ids stay."""
        self.require(run_id)
        name = " ".join(name.split())[:MAX_NAME]
        with self._lock, self._db:
            if name:
                self._db.execute(
                    "INSERT OR REPLACE INTO names (run, name) VALUES (?, ?)", (run_id, name)
                )
            else:
                self._db.execute("DELETE FROM names WHERE run = ?", (run_id,))

    def names(self) -> dict[int, str]:
        """The name of every named run, by id."""
        with self._lock:
            rows = self._db.execute("SELECT run, name FROM names").fetchall()
        return {int(run): str(name) for run, name in rows}

    def runs(self) -> list[RunInfo]:
        """Every stored run, newest first."""
        with self._lock:
            self._check_sizes()
            rows = self._db.execute(f"SELECT {_INFO_COLUMNS} FROM runs ORDER BY id DESC").fetchall()
        return [self._info(row) for row in rows]

    def run(self, run_id: int) -> RunInfo:
        """One stored run; a clear error if there is none with this id."""
        with self._lock:
            self._check_sizes(run_id)
            row = self._db.execute(
                f"SELECT {_INFO_COLUMNS} FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
        if row is None:
            raise GradLabError(f"There is no stored run {run_id} in {self.path}.")
        return self._info(row)

    def require(self, run_id: int) -> None:
        """A clear error if there is no stored run with this id (its row is not read)."""
        with self._lock:
            row = self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise GradLabError(f"There is no stored run {run_id} in {self.path}.")

    def _info(self, row: Sequence[object]) -> RunInfo:
        try:
            info = _info(row)
        except _UNREADABLE as exc:
            raise self._damaged(row[0], f"a value that is not what GradLab writes ({exc})") from exc
        problem = _bad_info(info)
        if problem:
            raise self._damaged(row[0], problem)
        return info

    def _check_sizes(self, run_id: int | None = None) -> None:
        """A run whose stored text is far bigger than GradLab writes is refused unread."""
        size = " + ".join(
            f"ifnull(length(CAST({c} AS BLOB)), 0)"
            for c in ("scenario", "params", "device", "status", "error")
        )
        where, args = ("", ()) if run_id is None else (" WHERE id = ?", (run_id,))
        row = self._db.execute(
            f"SELECT id, {size} AS size FROM runs{where} ORDER BY size DESC LIMIT 1", args
        ).fetchone()
        if row is not None and int(row[1]) > _MAX_FIELD_BYTES:
            raise self._damaged(row[0], f"{int(row[1]) / 1e6:.0f} MB of settings and messages")

    def _damaged(self, run_id: object, what: str) -> GradLabError:
        """The error for a run whose stored row GradLab cannot read."""
        what = " ".join(what.split())
        what = what if len(what) <= 200 else what[:197] + "..."
        return GradLabError(
            f"Run {run_id} in the run store {self.path} holds {what}: delete it "
            f"(gradlab runs delete {run_id}) or move the store away."
        )

    def records(self, run_id: int) -> list[StepRecord]:
        """A run's step records in step order."""
        with self._lock:
            sizes = self._db.execute(
                "SELECT "  # in bytes: length() of text stops at a NUL
                + ", ".join(
                    f"MAX(length(CAST({c} AS BLOB)))"
                    for c in ("node_ids", "node_norms", "metrics", "params")
                )
                + " FROM records WHERE run = ?",
                (run_id,),
            ).fetchone()
            biggest = max(int(size or 0) for size in sizes)
            if biggest > _MAX_FIELD_BYTES:
                raise self._damaged(run_id, f"a step record of {biggest / 1e6:.0f} MB")
            rows = self._db.execute(
                "SELECT step, loss, lr, seconds, samples, metrics, params, node_ids, node_norms"
                " FROM records WHERE run = ? ORDER BY step",
                (run_id,),
            ).fetchall()
        try:
            return _records(rows)
        except _UNREADABLE as exc:
            raise self._damaged(run_id, f"a step record GradLab cannot read ({exc})") from exc

    def graph(self, run_id: int) -> Graph | None:
        """The graph kept with a run, if any."""
        with self._lock:
            row = self._db.execute(
                "SELECT length(CAST(graph AS BLOB)), graph IS NULL FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None or row[1]:
                return None
            if int(row[0]) > MAX_LOAD_BYTES:
                raise self._damaged(run_id, f"a graph of {int(row[0]) / 1e6:.0f} MB")
            (text,) = self._db.execute("SELECT graph FROM runs WHERE id = ?", (run_id,)).fetchone()
        try:
            return parse(text if isinstance(text, str | bytes) else str(text), "json")
        except ValueError as exc:
            raise self._damaged(run_id, f"a damaged graph: {exc}") from exc

    def delete(self, run_id: int) -> None:
        """Remove a run and its records; a clear error if there is none."""
        self.require(run_id)
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


def _bad_info(info: RunInfo) -> str | None:
    """What is wrong with a run read back, if anything (values SQLite let through)."""
    times = [info.created] if info.ended is None else [info.created, info.ended]
    if not all(isinstance(t, float) and 0 <= t < _YEAR_10000 for t in times):
        return f"a bad time ({', '.join(repr(t) for t in times)})"
    if info.status not in get_args(RunStatus):
        return f"an unknown state {info.status!r}"
    params = info.config.params
    if not isinstance(params, dict) or not all(
        isinstance(v, int | float | str | bool) for v in params.values()
    ):
        return "parameters that are not a table of values"
    if info.error is not None and not isinstance(info.error, str):
        return "an error message that is not text"
    return None


def _records(rows: Sequence[Sequence[Any]]) -> list[StepRecord]:
    """Step records from their rows; a ``ValueError`` (or ``TypeError``) for a bad value."""
    out: list[StepRecord] = []
    ids: tuple[str, ...] = ()
    for step, loss, lr, seconds, samples, metrics, params, node_ids, norms in rows:
        if node_ids is not None:
            ids = tuple(json.loads(node_ids))
        nodes = None
        if norms is not None:
            nodes = NodeNorms(ids, tuple(array("d", norms)))
            if len(nodes.norms) != len(ids) or not all(isinstance(n, str) for n in ids):
                raise ValueError(f"step {step}: {len(nodes.norms)} norms for {len(ids)} node ids")
        out.append(
            StepRecord(
                _integer(step), number(loss), number(lr), number(seconds), int(samples or 0),
                {k: number(v) for k, v in json.loads(metrics or "{}").items()},
                tuple(
                    ParamStat(n, k, number(a), number(m), None if g is None else number(g))
                    for n, k, a, m, g in json.loads(params or "[]")
                ),
                nodes,
            )
        )  # fmt: skip
    return out


def _integer(value: object) -> int:
    if type(value) is not int:
        raise ValueError(f"{value!r} is not an integer")
    return value


#: The columns GradLab reads, by table; a store without them was written by something else.
_COLUMNS = {
    "runs": {"id", "scenario", "params", "steps", "every", "seed", "device", "status", "error",
             "created", "ended", "pid", "owner", "graph"},
    "records": {"run", "step", "loss", "lr", "seconds", "samples", "metrics", "params",
                "node_ids", "node_norms"},
}  # fmt: skip
_MAX_FIELD_BYTES = 16 * 1024 * 1024  # one stored field of a step record (16 MB: 2M node norms)
_YEAR_10000 = 253402300800.0  # seconds since 1970: where Python's dates end
_SQLITE_HEADER = b"SQLite format 3\0"


def _check_header(path: Path) -> None:
    """A file that is there but is not SQLite: say so before SQLite tries to use it."""
    try:
        with path.open("rb") as file:
            head = file.read(len(_SQLITE_HEADER))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise GradLabError(
            f"Cannot read the run store {path}: {exc.strerror}. "
            f"Set {ENV_HOME} to a writable folder."
        ) from exc
    if head and head != _SQLITE_HEADER:  # SQLite takes an empty file for a new database
        raise GradLabError(
            f"The run store {path} is not a SQLite database. Move it away "
            f"(mv {path} {path}.old) and GradLab starts a new store, or set {ENV_HOME} "
            "to another folder."
        )


def _check_schema(db: _Guarded, path: Path) -> None:
    """The tables GradLab reads have the columns it reads."""
    for table, wanted in _COLUMNS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})").fetchall()}
        missing = sorted(wanted - have)
        if missing:
            raise GradLabError(
                f"The run store {path} was not written by GradLab: its table '{table}' has no "
                f"{', '.join(missing)}. Move it away (mv {path} {path}.old) and GradLab starts "
                f"a new store, or set {ENV_HOME} to another folder."
            )


@contextlib.contextmanager
def _translated(path: Path) -> Iterator[None]:
    """SQLite's errors on the store, as one line that says what is wrong and what to do."""
    try:
        yield
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        away = f"Move it away (mv {path} {path}.old) and GradLab starts a new store"
        if name == "SQLITE_NOTADB":
            message = f"The run store {path} is not a SQLite database. {away}."
        elif name.startswith("SQLITE_CORRUPT"):
            message = (
                f"The run store {path} is damaged ({exc}). {away}; `sqlite3 {path} .recover` "
                "may save its runs."
            )
        elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH")):
            message = (
                f"Cannot write the run store {path} ({exc}). Set {ENV_HOME} to a writable folder."
            )
        elif name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            message = f"The run store {path} is locked by another process ({exc}); try again."
        elif name.startswith("SQLITE_FULL"):
            message = f"The disk holding the run store {path} is full; free some space."
        elif name.startswith("SQLITE_IOERR"):
            message = f"Reading or writing the run store {path} failed ({exc}); check the disk."
        else:
            message = f"The run store {path} cannot be used ({exc}). {away}."
        raise GradLabError(message) from exc


class _Cursor:
    """A cursor of :class:`_Guarded`: its errors are translated too."""

    def __init__(self, cursor: sqlite3.Cursor, path: Path) -> None:
        self._cursor, self._path = cursor, path

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    def fetchone(self) -> Any:
        with _translated(self._path):
            return self._cursor.fetchone()

    def fetchall(self) -> list[Any]:
        with _translated(self._path):
            return self._cursor.fetchall()


class _Guarded:
    """The store's connection: every SQLite error is one clear :class:`GradLabError`."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db, self._path = db, path

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> _Cursor:
        with _translated(self._path):
            return _Cursor(self._db.execute(sql, parameters), self._path)

    def executemany(self, sql: str, rows: Iterable[Sequence[object]]) -> _Cursor:
        with _translated(self._path):
            return _Cursor(self._db.executemany(sql, rows), self._path)

    def executescript(self, script: str) -> _Cursor:
        with _translated(self._path):
            return _Cursor(self._db.executescript(script), self._path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> _Guarded:
        self._db.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        with _translated(self._path):
            self._db.__exit__(*exc)


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


MAX_NAME = 80  # characters in a run's name


def matches(info: RunInfo, name: str, query: str) -> bool:
    """Whether a run fits a filter: every word of ``query`` in its name, id, scenario,
    status, device or parameters (case does not matter).

    Examples
    --------
    >>> from gradlab.train.records import RunConfig
    >>> info = RunInfo(3, RunConfig("mlp", {"lr": 0.1}, 100, 0, 0, "cpu"), "finished")
    >>> matches(info, "baseline", "mlp base"), matches(info, "", "lr=0.1"), matches(info, "", "cnn")
    (True, True, False)
    """
    config = info.config
    text = " ".join(
        [name, f"#{info.id}", config.scenario, info.status, config.device]
        + [f"{k}={v}" for k, v in config.params.items()]
    ).lower()
    return all(word in text for word in query.lower().split())
