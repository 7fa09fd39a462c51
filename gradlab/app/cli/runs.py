"""``gradlab runs``: list, export and delete the training runs kept in the run store."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from gradlab.app.cli.command import command
from gradlab.core.errors import GradLabError
from gradlab.train.records import to_csv, to_json
from gradlab.train.store import ENV_HOME, RunStore


def add_parser(commands: Any) -> None:
    """Register ``gradlab runs`` with its actions ``list``, ``export`` and ``delete``."""
    parser = command(
        commands,
        "runs",
        help="list, export and delete stored training runs",
        description=f"The runs kept in the run store (${ENV_HOME}/runs.sqlite, by default in "
        "the per-user data folder).",
    )
    parser.add_argument("--db", type=Path, help="the store's SQLite file (default: see above)")
    actions = parser.add_subparsers(title="actions", metavar="ACTION")
    listing = actions.add_parser("list", help="list runs, newest first (the default)")
    listing.set_defaults(action=_list)
    export = actions.add_parser("export", help="write one run to CSV or JSON")
    export.add_argument("id", type=int, help="run id (see `gradlab runs list`)")
    export.add_argument(
        "-o", "--output", type=Path, help="file (.csv or .json); without it, JSON on stdout"
    )
    export.set_defaults(action=_export)
    delete = actions.add_parser("delete", help="delete runs and their records")
    delete.add_argument("ids", type=int, nargs="+", help="run ids")
    delete.set_defaults(action=_delete)
    parser.set_defaults(run=run, action=_list)


def run(args: argparse.Namespace) -> int:
    """Open the store and do the chosen action."""
    store = RunStore(args.db)
    try:
        code: int = args.action(store, args)
    finally:
        store.close()
    return code


def _list(store: RunStore, args: argparse.Namespace) -> int:
    runs = store.runs()
    if not runs:
        print(f"No runs in {store.path}.")
        return 0
    print(f"{'id':>4}  {'scenario':<18} {'status':<11} {'steps':>11}  {'last loss':>10}  started")
    for info in runs:
        loss = "" if info.last_loss is None else f"{info.last_loss:.4g}"
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.created))
        steps = f"{info.recorded}/{info.config.steps}"
        print(
            f"{info.id:>4}  {info.config.scenario:<18} {info.status:<11} {steps:>11}  "
            f"{loss:>10}  {started}"
        )
    return 0


def _export(store: RunStore, args: argparse.Namespace) -> int:
    info = store.run(args.id)
    records = store.records(args.id)
    out: Path | None = args.output
    if out is not None and out.suffix.lower() not in (".csv", ".json"):
        raise GradLabError(f"Cannot tell the format of '{out}': name it .csv or .json.")
    if out is not None and out.suffix.lower() == ".csv":
        text = to_csv(records)
    else:
        text = to_json(info, records, store.graph(args.id))
    if out is None:
        sys.stdout.write(text + "\n")
        return 0
    try:
        out.write_text(text)
    except OSError as exc:
        raise GradLabError(f"Cannot write {out}: {exc.strerror}.") from exc
    print(f"wrote run {args.id} ({len(records)} steps) to {out}", file=sys.stderr)
    return 0


def _delete(store: RunStore, args: argparse.Namespace) -> int:
    for run_id in args.ids:
        store.require(run_id)  # every id checked before anything is deleted (rows unread)
    for run_id in args.ids:
        store.delete(run_id)
    print(f"deleted {len(args.ids)} run(s)")
    return 0
