"""The one training loop: a scenario built for a device, stepped and captured.

:class:`Trainer` builds a :class:`~gradlab.train.scenario.Scenario` and runs its
steps one at a time. Each step gives a :class:`~gradlab.train.records.StepRecord`
with the loss, the learning rate, the step's time and samples, and the
scenario's metrics. Every ``every``-th step (0, k, 2k, ...) is *captured*:
the backward pass goes through :func:`gradlab.core.capture.capture_backward`, so
the record also holds every node's gradient norm (ids of
:func:`gradlab.trace`) and each parameter's norm, mean and gradient norm.
All the numbers of a step leave the device in one transfer. The first
captured step also records the forward (module paths) and traces the graph
the node ids refer to (:attr:`Trainer.graph`).

:mod:`gradlab.train.driver` drives a trainer to the end (:func:`~gradlab.train.driver.train`,
``gradlab train``, the app's background runs, each rank under ``torchrun``),
handing its records to sinks; :mod:`gradlab.train.launch` launches a
``distributed`` scenario with ``torchrun``.

The global random generator is seeded with the run's seed while ``build``
runs (under a lock); data and shuffles come from :attr:`Setup.generator`.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping

import torch

from gradlab.core.capture import Captured, NodeNorms, capture_backward, capture_mode
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph
from gradlab.core.record import record
from gradlab.core.trace import trace
from gradlab.train.records import ParamStat, RunConfig, StepRecord
from gradlab.train.scenario import Batch, Parts, Picture, Scenario, Setup, StepContext

#: The most steps a run may take: :func:`configure` refuses more (``train()``, ``gradlab train``).
MAX_STEPS = 1_000_000
#: The most steps of a run watched live in the app: its page keeps every record in memory and
#: redraws its charts from all of them 2.5 times a second, which is what bounds it, not the loop.
MAX_LIVE_STEPS = 200_000
_SEED_LOCK = threading.Lock()


class TrainingError(GradLabError):
    """A run cannot start or go on; the message says why and what to change."""


def configure(
    scenario: Scenario,
    params: Mapping[str, object] | None = None,
    *,
    steps: int | None = None,
    every: int | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> RunConfig:
    """A checked :class:`RunConfig`; the scenario's suggestions fill ``steps`` and ``every``."""
    steps = scenario.steps if steps is None else steps
    every = scenario.every if every is None else every
    if not 1 <= steps <= MAX_STEPS:
        raise TrainingError(f"steps must be between 1 and {MAX_STEPS:,}; got {steps}.")
    if every < 0:
        raise TrainingError(f"every must be 0 (never capture) or more; got {every}.")
    if not 0 <= seed < 2**63:
        raise TrainingError(f"seed must be between 0 and 2**63 - 1; got {seed}.")
    check_device(device)
    return RunConfig(scenario.name, scenario.resolve(params), steps, every, seed, device)


def check_device(device: str) -> torch.device:
    """``device`` as a torch device, if this machine has it; a clear error otherwise."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise TrainingError(f"'{device}' is not a device; use cpu or cuda.") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainingError(
                "CUDA is not available on this machine (torch.cuda.is_available() is False); "
                "use the cpu device."
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise TrainingError(f"There is no {d}: this machine has {torch.cuda.device_count()}.")
        return torch.device("cuda", torch.cuda.current_device() if d.index is None else d.index)
    if d.type != "cpu":
        raise TrainingError(f"GradLab trains on cpu or cuda, not {d.type}.")
    return d


def devices() -> list[str]:
    """The devices this machine can train on: ``cpu``, then each CUDA GPU."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


class TrainerContext:
    """The :class:`~gradlab.train.scenario.StepContext` a :class:`Trainer` gives each step.

    Besides what the contract offers it keeps, for the trainer, the step's
    capture and its logged metrics.
    """

    def __init__(self, trainer: Trainer, step: int, captured: bool) -> None:
        self.parts = trainer.parts
        self.device = trainer.device
        self.step = step  # 0-based index of this step
        self.captured = captured  # whether this step's first watched backward is captured
        self.samples = 0
        self.capture: Captured | None = None
        self.metrics: list[tuple[str, torch.Tensor | float]] = []
        self._trainer = trainer

    def batch(self) -> Batch:
        """The next ``(inputs, target)`` batch on the device (the data repeat as epochs)."""
        x, y = self._trainer.next_batch()
        self.samples += len(x)
        return x, y

    def loss(self, batch: Batch) -> torch.Tensor:
        """``loss_fn(model(inputs), target)``."""
        x, y = batch
        return self.parts.loss_fn(self.parts.model(x), y)

    def backward(self, loss: torch.Tensor, *, watch: bool = True) -> None:
        """``loss.backward()``; on a captured step the first watched call is captured."""
        if watch and self.captured and self.capture is None:
            self.capture = self._trainer.captured_backward(loss)
        else:
            torch.autograd.backward(loss)

    def log(self, name: str, value: torch.Tensor | float) -> None:
        """Add a metric to this step's record; tensors leave the device with the loss."""
        self.metrics.append((name, value.detach() if isinstance(value, torch.Tensor) else value))


class Trainer:
    """One scenario built for a device, stepped by the one training loop.

    Examples
    --------
    >>> from gradlab.train.discover import discover
    >>> scenario = discover().get("linear_regression")
    >>> trainer = Trainer(scenario, configure(scenario, steps=3, every=2))
    >>> [(r.step, r.nodes is not None) for r in (trainer.step() for _ in range(3))]
    [(0, True), (1, False), (2, True)]
    >>> sorted(trainer.graph.nodes)[:3]
    ['fn0', 'fn1', 'fn2']
    """

    def __init__(
        self,
        scenario: Scenario,
        config: RunConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        keep_grads: bool = False,
        want_graph: bool = True,
    ) -> None:
        if scenario.distributed and not torch.distributed.is_initialized():
            raise TrainingError(
                f"'{scenario.name}' is distributed: run it with gradlab.train.train() or "
                "`gradlab train`, which launch torchrun."
            )
        self.scenario = scenario
        self.config = config
        self.device = check_device(config.device)
        self.keep_grads = keep_grads
        self.want_graph = want_graph
        self.graph: Graph | None = None
        self.done = 0
        self.generator = torch.Generator().manual_seed(config.seed)
        setup = Setup(config.params, self.device, config.seed, self.generator, rank, world_size)
        self.parts = self._build(setup)
        self.mode = capture_mode(self.parts.model)
        self._named = list(self.parts.model.named_parameters())
        self._batches: Iterator[Batch] = iter(self.parts.batches)
        self._ids: tuple[str, ...] = ()
        self.last_capture: Captured | None = None

    def _build(self, setup: Setup) -> Parts:
        name = self.scenario.name
        with _SEED_LOCK:
            torch.manual_seed(setup.seed)
            try:
                parts = self.scenario.build(setup)
            except GradLabError:
                raise
            except Exception as exc:
                raise TrainingError(f"Scenario '{name}' failed to build: {one_line(exc)}") from exc
        if not isinstance(parts, Parts):
            raise TrainingError(
                f"Scenario '{name}': build() returned {type(parts).__name__}, not Parts."
            )
        if not isinstance(parts.model, torch.nn.Module):
            raise TrainingError(f"Scenario '{name}': Parts.model is not an nn.Module.")
        if not isinstance(parts.optimizer, torch.optim.Optimizer):
            raise TrainingError(f"Scenario '{name}': Parts.optimizer is not a torch optimizer.")
        first = next(parts.model.parameters(), None)
        if first is not None and first.device != setup.device:
            raise TrainingError(
                f"Scenario '{name}' built its model on {first.device}, not on {setup.device}: "
                "build() must move the model to setup.device."
            )
        return parts

    def next_batch(self) -> Batch:
        """The next batch, moved to the device; the data start over when they run out."""
        try:
            batch = next(self._batches)
        except StopIteration:
            self._batches = iter(self.parts.batches)
            again = next(self._batches, None)
            if again is None:
                raise TrainingError(
                    f"Scenario '{self.scenario.name}' gave no batches (give a list or a "
                    "DataLoader, which can be read again every epoch, not a generator)."
                ) from None
            batch = again
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def captured_backward(self, loss: torch.Tensor) -> Captured:
        """The core's captured backward; the first one also traces the graph."""
        if self.graph is None and self.want_graph and loss.grad_fn is not None:
            self.graph = trace(loss, model=self.parts.model, values=False)
        captured = capture_backward(loss, mode=self.mode, keep_grads=self.keep_grads)
        self.last_capture = captured
        return captured

    def step(self) -> StepRecord:
        """Run one step and return its record."""
        i = self.done
        every = self.config.every
        ctx = TrainerContext(self, i, captured=every > 0 and i % every == 0)
        lr = float(self.parts.optimizer.param_groups[0]["lr"])
        start = time.perf_counter()
        recording = ctx.captured and self.graph is None and self.want_graph
        try:
            with record() if recording else contextlib.nullcontext():
                loss = self.parts.step(ctx) if self.parts.step else _default_step(ctx)
            if self.parts.scheduler is not None:
                self.parts.scheduler.step()
        except GradLabError:
            raise
        except Exception as exc:
            raise TrainingError(
                f"Scenario '{self.scenario.name}' failed at step {i}: {one_line(exc)}"
            ) from exc
        metrics, params, nodes, loss_value = self._collect(loss, ctx)
        seconds = time.perf_counter() - start
        self.done += 1
        due = self.parts.evaluate_every > 0 and i % self.parts.evaluate_every == 0
        if self.parts.evaluate is not None and (due or self.done == self.config.steps):
            metrics.update(self._evaluate())
        return StepRecord(i, loss_value, lr, seconds, ctx.samples, metrics, params, nodes)

    def _collect(
        self, loss: object, ctx: TrainerContext
    ) -> tuple[dict[str, float], tuple[ParamStat, ...], NodeNorms | None, float]:
        """Loss, metrics, node norms and parameter statistics in one device-to-host transfer."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise TrainingError(
                f"Scenario '{self.scenario.name}': its step must return the loss, a tensor of one "
                f"element; it returned {type(loss).__name__}."
            )
        device = loss.device
        pieces = [loss.detach().reshape(1)]
        tensors = [(n, v) for n, v in ctx.metrics if isinstance(v, torch.Tensor)]
        pieces += [v.reshape(-1)[:1].to(device) for _, v in tensors]
        metrics = {n: float(v) for n, v in ctx.metrics if not isinstance(v, torch.Tensor)}
        stats: list[torch.Tensor] = []
        if ctx.captured:
            stats = _param_stats([p for _, p in self._named])
            if ctx.capture is not None:
                pieces.append(ctx.capture.norms.to(device))
            pieces += [s.to(device) for s in stats]
        host = torch.cat([p.to(torch.float64) for p in pieces]).tolist()  # the one transfer
        metrics.update((n, host[1 + k]) for k, (n, _) in enumerate(tensors))
        offset = 1 + len(tensors)
        nodes = None
        if ctx.capture is not None:
            width = len(ctx.capture.norms)
            nodes = ctx.capture.resolve(host[offset : offset + width])
            offset += width
            if nodes.ids == self._ids:
                nodes = NodeNorms(self._ids, nodes.norms)  # share one ids tuple between steps
            self._ids = nodes.ids
        params = _param_records(self._named, host[offset:]) if ctx.captured else ()
        return metrics, params, nodes, host[0]

    def _evaluate(self) -> dict[str, float]:
        assert self.parts.evaluate is not None
        try:
            with torch.no_grad():
                found = self.parts.evaluate()
            return {str(k): float(v) for k, v in found.items()}
        except Exception as exc:
            raise TrainingError(
                f"Scenario '{self.scenario.name}' failed to evaluate: {one_line(exc)}"
            ) from exc

    def pictures(self) -> tuple[Picture, ...]:
        """The scenario's pictures of the model as it is now (none if it draws none)."""
        if self.parts.illustrate is None:
            return ()
        try:
            with torch.no_grad():
                found = tuple(self.parts.illustrate())
        except Exception as exc:
            raise TrainingError(
                f"Scenario '{self.scenario.name}' failed to draw: {one_line(exc)}"
            ) from exc
        return tuple(p for p in found if isinstance(p, Picture))

    def pause(self) -> None:
        """Nothing to do: a local run simply waits between steps."""

    def resume(self) -> None:
        """Nothing to do: a local run simply waits between steps."""

    def close(self) -> None:
        """Drop the live objects."""
        self._batches = iter(())


def _default_step(ctx: StepContext) -> torch.Tensor:
    """zero_grad, forward, loss, the core's backward, optimizer step."""
    ctx.parts.optimizer.zero_grad(set_to_none=True)
    loss = ctx.loss(ctx.batch())
    ctx.backward(loss)
    ctx.parts.optimizer.step()
    return loss


@torch.no_grad()
def _param_stats(params: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per parameter, on the device: norms, means, and the norms of the gradients there are."""
    if not params:
        return []
    weights = [p.detach() for p in params]
    grads = [p.grad for p in params if p.grad is not None]
    out = [
        torch.stack(torch._foreach_norm(weights, 2, dtype=torch.float32)),
        torch.stack([w.mean(dtype=torch.float32) for w in weights]),
    ]
    if grads:
        out.append(torch.stack(torch._foreach_norm(grads, 2, dtype=torch.float32)))
    return out


def _param_records(
    named: list[tuple[str, torch.nn.Parameter]], host: list[float]
) -> tuple[ParamStat, ...]:
    k = len(named)
    norms, means, grad_norms = host[:k], host[k : 2 * k], iter(host[2 * k :])
    return tuple(
        ParamStat(
            name, p.numel(), norms[i], means[i], next(grad_norms) if p.grad is not None else None
        )
        for i, (name, p) in enumerate(named)
    )


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
