"""What a training run is and what each step recorded, and the run as JSON or CSV.

A run is a :class:`RunConfig` (scenario, parameters, steps, capture
interval, seed, device) and one :class:`StepRecord` per step. :func:`to_json`
writes the format of ``gradlab train --out`` and ``gradlab runs export``;
:func:`to_csv` writes one row per step (node norms only in JSON).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeAlias, cast

import networkx as nx

from gradlab.core.capture import NodeNorms
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.train.params import ParamValue

RunStatus: TypeAlias = Literal[
    "pending", "running", "paused", "finished", "stopped", "interrupted", "failed"
]
#: States in which a run's process is still expected to write to it.
LIVE: tuple[RunStatus, ...] = ("pending", "running", "paused")
FORMAT = "gradlab-run"


@dataclass(frozen=True)
class RunConfig:
    """What a run is asked to do. ``every`` = k captures steps 0, k, 2k, ... (0: never)."""

    scenario: str
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    steps: int = 100
    every: int = 1
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class ParamStat:
    """One parameter on a captured step, after the optimizer step: its values and ``.grad``.

    For a one-element parameter (a regression's weight or bias) ``mean`` is its value.
    """

    name: str
    numel: int
    norm: float
    mean: float
    grad_norm: float | None  # None: no .grad (a frozen layer)


@dataclass(frozen=True)
class StepRecord:
    """One training step, 0-based. ``params`` and ``nodes`` are filled on captured steps.

    ``seconds`` is the step's wall time (evaluation excluded), ``samples`` the
    examples it used; ``metrics`` are the scenario's own numbers (accuracy,
    each rank's loss, ...). ``lr`` is the first parameter group's learning
    rate during the step.
    """

    step: int
    loss: float
    lr: float
    seconds: float
    samples: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    params: tuple[ParamStat, ...] = ()
    nodes: NodeNorms | None = None

    @property
    def throughput(self) -> float:
        """Samples per second."""
        return self.samples / self.seconds if self.seconds > 0 else math.nan

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict: ``step``, ``loss``, ..., ``nodes`` (captured steps only)."""
        out: dict[str, object] = {
            "step": self.step,
            "loss": self.loss,
            "lr": self.lr,
            "seconds": self.seconds,
            "samples": self.samples,
            "metrics": dict(self.metrics),
        }
        if self.params:
            out["params"] = {
                p.name: {"numel": p.numel, "norm": p.norm, "mean": p.mean, "grad_norm": p.grad_norm}
                for p in self.params
            }
        if self.nodes is not None:
            out["nodes"] = self.nodes.as_dict()
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> StepRecord:
        """The record :meth:`to_json` wrote."""
        params = cast("Mapping[str, Mapping[str, object]]", data.get("params") or {})
        nodes = cast("Mapping[str, float] | None", data.get("nodes"))
        return cls(
            step=int(cast(int, data["step"])),
            loss=number(data["loss"]),
            lr=number(data.get("lr")),
            seconds=number(data.get("seconds")),
            samples=int(cast(int, data.get("samples", 0))),
            metrics={
                k: number(v) for k, v in cast(dict[str, object], data.get("metrics", {})).items()
            },
            params=tuple(
                ParamStat(
                    name,
                    int(cast(int, p["numel"])),
                    number(p["norm"]),
                    number(p["mean"]),
                    None if p.get("grad_norm") is None else number(p["grad_norm"]),
                )
                for name, p in params.items()
            ),
            nodes=None
            if nodes is None
            else NodeNorms(tuple(nodes), tuple(map(number, nodes.values()))),
        )


@dataclass(frozen=True)
class RunInfo:
    """A stored run: its configuration, state and a summary of what it recorded."""

    id: int | None
    config: RunConfig
    status: RunStatus
    error: str | None = None
    created: float = 0.0
    ended: float | None = None
    recorded: int = 0
    last_loss: float | None = None


def number(value: object) -> float:
    """A stored or read number; SQLite keeps NaN as NULL, so ``None`` reads back as NaN."""
    return math.nan if value is None else float(cast(float, value))


def to_json(info: RunInfo, records: Sequence[StepRecord], graph: Graph | None = None) -> str:
    """The run as JSON: scenario, parameters, seed, device, status and one object per step."""
    data: dict[str, object] = {
        "format": FORMAT,
        "version": 1,
        "id": info.id,
        "scenario": info.config.scenario,
        "params": dict(info.config.params),
        "steps": info.config.steps,
        "every": info.config.every,
        "seed": info.config.seed,
        "device": info.config.device,
        "status": info.status,
        "error": info.error,
        "records": [r.to_json() for r in records],
    }
    if graph is not None:
        data["graph"] = nx.node_link_data(graph, edges="edges")
    return json.dumps(data, indent=1)


def read_json(text: str) -> tuple[RunInfo, list[StepRecord]]:
    """Read what :func:`to_json` wrote; a clear error for anything else."""
    try:
        data = json.loads(text)
        if data.get("format") != FORMAT:
            raise ValueError("not a GradLab run file")
        config = RunConfig(
            data["scenario"], data["params"], data["steps"], data["every"], data["seed"],
            data["device"],
        )  # fmt: skip
        info = RunInfo(data.get("id"), config, data["status"], data.get("error"))
        return info, [StepRecord.from_json(r) for r in data["records"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise GradLabError(f"This is not a GradLab run file ({exc}).") from exc


def to_csv(records: Sequence[StepRecord]) -> str:
    """One row per step: step, loss, lr, seconds, samples, throughput, metrics, parameters."""
    metrics = sorted({k for r in records for k in r.metrics})
    names = list(dict.fromkeys(p.name for r in records for p in r.params))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    head = ["step", "loss", "lr", "seconds", "samples", "samples_per_second", *metrics]
    writer.writerow(head + [f"{n}.{s}" for n in names for s in ("norm", "mean", "grad_norm")])
    for r in records:
        stats = {p.name: p for p in r.params}
        row: list[object] = [r.step, r.loss, r.lr, r.seconds, r.samples, r.throughput]
        row += [r.metrics.get(k, "") for k in metrics]
        for n in names:
            p = stats.get(n)
            row += ["", "", ""] if p is None else [p.norm, p.mean, _blank(p.grad_norm)]
        writer.writerow(row)
    return out.getvalue()


def _blank(value: float | None) -> object:
    return "" if value is None else value
