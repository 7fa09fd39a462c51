"""Distributed scenarios: torchrun launches, and the process group each worker joins.

:class:`Torchrun` starts ``torchrun --standalone`` with one worker per
process the scenario asks for; every worker runs ``python -m gradlab train``,
which sees it is one (:func:`in_torchrun`), joins the process group
(:func:`process_group`: ``gloo`` on CPU, ``nccl`` on GPU) and trains as its
rank with the one driver (:func:`gradlab.train.driver.train`). Rank 0 writes
its records, one JSON line each, to the file named by ``GRADLAB_STREAM``
(:func:`report_stream`), which the launching process reads as they come. The
same command, started by a person with ``torchrun --nnodes=N --node-rank=I
--rdzv-endpoint=HOST:PORT -m gradlab train NAME ...`` on each machine, runs
across several machines.

This module sits above :mod:`gradlab.train.loop` and below the driver.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import IO

import networkx as nx
import torch
import torch.distributed as dist

from gradlab.core.graph import Graph
from gradlab.train.loop import TrainingError, check_device
from gradlab.train.records import RunConfig, StepRecord
from gradlab.train.scenario import PROCESSES, Picture, Scenario, to_flags

ENV_STREAM = "GRADLAB_STREAM"  # set by the launcher: where rank 0 writes its records


def in_torchrun() -> bool:
    """Whether this process is a worker that torchrun started."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


@contextlib.contextmanager
def process_group(config: RunConfig) -> Iterator[tuple[RunConfig, int, int]]:
    """Inside torchrun: join the process group for the run, and leave it afterwards.

    Gives the config on this process's device (its own GPU under ``nccl``),
    this process's rank and the world size.
    """
    device = check_device(config.device)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=120))
    try:
        yield replace(config, device=str(device)), dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()


@contextlib.contextmanager
def report_stream() -> Iterator[IO[str] | None]:
    """Where rank 0 writes its records for the process that launched it (``None``: nowhere)."""
    target = os.environ.get(ENV_STREAM)
    with open(target, "a") if target else contextlib.nullcontext() as stream:
        yield stream


class Torchrun:
    """A distributed scenario launched with ``torchrun --standalone``; rank 0's records streamed.

    The workers run ``python -m gradlab train NAME ...`` (so the scenario must be
    installed or built in). Pausing stops the whole process group (SIGSTOP).
    """

    TIMEOUT = 300.0  # seconds without a record before giving up

    def __init__(self, scenario: Scenario, config: RunConfig) -> None:
        self.graph: Graph | None = None
        self._folder = Path(tempfile.mkdtemp(prefix="gradlab-torchrun-"))
        stream = self._folder / "records.jsonl"
        stream.touch()
        self._log = self._folder / "torchrun.log"
        processes = int(config.params[PROCESSES])
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={processes}", "-m", "gradlab", "train", scenario.name,
            *to_flags(scenario.params, config.params), "--steps", str(config.steps), "--every",
            str(config.every), "--seed", str(config.seed), "--device", config.device,
            "--no-store", "--quiet",
        ]  # fmt: skip
        env = {**os.environ, ENV_STREAM: str(stream), "PYTHONUNBUFFERED": "1"}
        with self._log.open("w") as log:
            self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self._file = stream.open("rb")
        self._buffer = b""
        self._paused = False

    def step(self) -> StepRecord:
        """The next record rank 0 wrote; waits for it, or says why the run ended."""
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            ended = self._proc.poll() is not None
            line = self._next_line()
            if line is not None:
                data = json.loads(line)
                if "graph" in data:
                    self.graph = nx.node_link_graph(data["graph"], edges="edges")
                    continue
                return StepRecord.from_json(data["record"])
            if ended:
                raise TrainingError(
                    f"The distributed run ended (exit code {self._proc.returncode}) before its "
                    f"last step. torchrun said: {self._tail()}"
                )
            if not self._paused and time.monotonic() > deadline:
                raise TrainingError(f"No step from the distributed run in {self.TIMEOUT:.0f} s.")
            time.sleep(0.02)

    def _next_line(self) -> bytes | None:
        while b"\n" not in self._buffer:
            chunk = self._file.read(1 << 16)
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line

    def _tail(self) -> str:
        lines = [s for s in self._log.read_text(errors="replace").splitlines() if s.strip()]
        errors = [s for s in lines if "Error" in s or "error:" in s]
        return (errors[-1] if errors else lines[-1] if lines else "nothing").strip()

    def pictures(self) -> tuple[Picture, ...]:
        """Distributed runs draw no pictures of their own."""
        return ()

    def pause(self) -> None:
        """Stop every process of the run (they keep their state)."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """Let the processes go on."""
        self._signal(signal.SIGCONT)
        self._paused = False

    def close(self) -> None:
        """End the processes if they still run, and remove the temporary files."""
        if self._proc.poll() is None:
            self._signal(signal.SIGCONT)
            self._signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self._proc.wait()
        self._file.close()
        shutil.rmtree(self._folder, ignore_errors=True)

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, sig)
