"""The training loop and the capture, with torch as the oracle; each built-in scenario learns."""

from __future__ import annotations

import copy
import io
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from gradlab.core.capture import capture_backward
from gradlab.core.errors import GradLabError
from gradlab.core.trace import trace
from gradlab.core.walk import walk
from gradlab.plugins import PluginError, discover
from gradlab.train import (
    Controls,
    Lease,
    Outcome,
    Sink,
    Trainer,
    TrainingError,
    configure,
    drive,
    train,
)
from gradlab.train.controls import NOBODY
from gradlab.train.records import StepRecord
from gradlab.train.sinks import MemorySink, StoreSink, StreamSink
from gradlab.train.store import RunStore
from gradlab.zoo.models import LeNet

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_linear_regression_finds_the_line() -> None:
    result = train("linear_regression", steps=150, every=0)
    final = result.records[-1].metrics
    assert final["weight"] == pytest.approx(3.0, abs=0.25)
    assert final["bias"] == pytest.approx(2.0, abs=0.25)
    assert final["prediction_at_4"] == pytest.approx(14.0, abs=1.0)
    # The weight and bias are recorded on every step, and they are the model's own.
    weights = [r.metrics["weight"] for r in result.records]
    assert len(weights) == 150 and weights[0] != weights[-1]


def test_three_points_go_to_w2_b0() -> None:
    final = train("three_points", {"reduction": "sum"}, steps=100).records[-1].metrics
    assert final["weight"] == pytest.approx(2.0, abs=0.05)
    assert final["bias"] == pytest.approx(0.0, abs=0.1)


def test_three_points_reduction_none_records_each_point_and_sums() -> None:
    none = train("three_points", {"reduction": "none"}, steps=3).records
    summed = train("three_points", {"reduction": "sum"}, steps=3).records
    assert [r.loss for r in none] == pytest.approx([r.loss for r in summed])
    first = none[0].metrics
    assert sum(first[f"loss_point{i}"] for i in range(3)) == pytest.approx(none[0].loss)
    mean = train("three_points", {"reduction": "mean"}, steps=1).records[0].loss
    assert mean == pytest.approx(summed[0].loss / 3)


def test_classifier_learns_moons() -> None:
    result = train("classify_2d", {"dataset": "moons"}, steps=300, every=100)
    assert result.records[-1].metrics["accuracy"] > 0.95


@pytest.mark.parametrize("dataset", ["circles", "spiral", "xor"])
def test_classifier_builds_every_point_set(dataset: str) -> None:
    result = train("classify_2d", {"dataset": dataset, "activation": "tanh"}, steps=5, every=0)
    assert all(math.isfinite(r.loss) for r in result.records)


def test_digits_cnn_above_90_percent() -> None:
    result = train("digits_cnn", steps=300, every=100)
    assert result.records[-1].metrics["accuracy"] > 0.90


def _named_leaf_ids(G: object, model: nn.Module) -> dict[str, str]:
    """Trace's leaf id of every parameter name."""
    names = {d["name"]: n for n, d in G.nodes(data=True) if d["kind"] == "leaf"}  # type: ignore[attr-defined]
    return {name: names[name] for name, _ in model.named_parameters()}


def test_captured_gradients_equal_torch_grad_and_hooks() -> None:
    torch.manual_seed(0)
    model = LeNet(classes=10, size=8)
    twin = copy.deepcopy(model)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    loss = nn.functional.cross_entropy(model(x), y)
    G = trace(loss, model=model, values=False)
    captured = capture_backward(loss, keep_grads=True)
    assert captured.grads is not None
    # Oracle 1: a plain backward() on an identical copy puts the same numbers in .grad.
    twin_loss = nn.functional.cross_entropy(twin(x), y)
    fns, _ = walk([twin_loss.grad_fn])
    arrived: dict[int, torch.Tensor] = {}
    for i, fn in enumerate(fns):
        fn.register_hook(lambda _sent, got, i=i: arrived.__setitem__(i, got[0]))
    twin_loss.backward()
    for name, leaf in _named_leaf_ids(G, model).items():
        torch.testing.assert_close(captured.grads[leaf], dict(twin.named_parameters())[name].grad)
        assert torch.equal(captured.grads[leaf], dict(model.named_parameters())[name].grad)
    # Oracle 2: what a hook on every node sees arriving, node by node.
    for i in arrived:
        torch.testing.assert_close(captured.grads[f"fn{i}"], arrived[i])
    norms = captured.resolve(captured.norms.tolist()).as_dict()
    assert set(norms) <= set(G.nodes)
    for n, g in captured.grads.items():
        assert norms[n] == pytest.approx(g.norm().item(), rel=1e-5)


def test_capture_matches_backward_when_grads_accumulate() -> None:
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    (w * 3).sum().backward()
    before = w.grad.clone()
    capture_backward((w**2).sum())
    assert torch.equal(w.grad, before + 2 * w.detach())


def test_capture_explains_a_loss_without_graph_or_with_many_elements() -> None:
    with pytest.raises(GradLabError, match="no grad_fn"):
        capture_backward(torch.tensor(1.0))
    x = torch.ones(3, requires_grad=True)
    with pytest.raises(GradLabError, match=r"loss.mean\(\) or loss.sum\(\)"):
        capture_backward(x * 2)


@pytest.mark.parametrize("every", [1, 3, 7])
def test_capture_every_k_records_exactly_those_steps(every: int) -> None:
    records = train("linear_regression", steps=20, every=every).records
    assert [r.step for r in records if r.nodes is not None] == list(range(0, 20, every))
    assert [r.step for r in records if r.params] == list(range(0, 20, every))


def test_capture_never_with_every_zero() -> None:
    records = train("linear_regression", steps=5, every=0).records
    assert all(r.nodes is None and not r.params for r in records)


def test_node_ids_are_the_traced_graph_and_leaves_carry_param_grads() -> None:
    scenario = discover().get("classify_2d")
    trainer = Trainer(scenario, configure(scenario, steps=2, every=1))
    record = trainer.step()
    assert trainer.graph is not None and record.nodes is not None
    assert set(record.nodes.ids) <= set(trainer.graph.nodes)
    norms = record.nodes.as_dict()
    leaves = _named_leaf_ids(trainer.graph, trainer.parts.model)
    for stat in record.params:
        assert norms[leaves[stat.name]] == pytest.approx(stat.grad_norm, rel=1e-6)


def test_a_seed_makes_a_run_repeatable() -> None:
    first = [r.loss for r in train("custom_data", steps=30, seed=7).records]
    again = [r.loss for r in train("custom_data", steps=30, seed=7).records]
    other = [r.loss for r in train("custom_data", steps=30, seed=8).records]
    assert first == again
    assert first != other


def test_optimizer_race_starts_level_and_every_racer_learns() -> None:
    records = train("optimizer_race", steps=60, every=30).records
    racers = [k for k in records[0].metrics if k.startswith("loss_")]
    assert len(racers) == 9 and "loss_lbfgs" in racers
    start = {records[0].metrics[k] for k in racers}
    assert len({round(v, 6) for v in start}) == 1  # same weights, same data
    for k in racers:
        assert records[-1].metrics[k] < records[0].metrics[k], k
    assert records[-1].loss == records[-1].metrics["loss_sgd"]


@pytest.mark.parametrize("name", ["step", "cosine", "one_cycle"])
def test_lr_schedules_record_torch_schedulers_learning_rates(name: str) -> None:
    from torch.optim import lr_scheduler

    records = train("lr_schedules", {"schedule": name, "horizon": 40}, steps=40, every=0).records
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9)
    scheduler = {
        "step": lambda: lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5),
        "cosine": lambda: lr_scheduler.CosineAnnealingLR(optimizer, T_max=40),
        "one_cycle": lambda: lr_scheduler.OneCycleLR(optimizer, max_lr=0.1, total_steps=41),
    }[name]()
    expected = []
    for _ in range(40):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert [r.lr for r in records] == pytest.approx(expected)


def test_frozen_layers_leave_the_graph_and_only_the_head_learns() -> None:
    scenario = discover().get("fine_tune")
    trainer = Trainer(scenario, configure(scenario, {"pretrain_steps": 5}, steps=3, every=1))
    frozen = {n: p.detach().clone() for n, p in trainer.parts.model.named_parameters()}
    records = [trainer.step() for _ in range(3)]
    assert trainer.graph is not None
    leaves = sorted(d["name"] for _, d in trainer.graph.nodes(data=True) if d["kind"] == "leaf")
    assert leaves == ["4.bias", "4.weight"]
    with_grad = {p.name for p in records[0].params if p.grad_norm is not None}
    assert with_grad == {"4.weight", "4.bias"}
    for n, p in trainer.parts.model.named_parameters():
        assert torch.equal(p, frozen[n]) == (not n.startswith("4."))
    unfrozen = train("fine_tune", {"freeze": False, "pretrain_steps": 5}, steps=1).records[0]
    assert all(p.grad_norm is not None for p in unfrozen.params)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_accumulation_gives_the_big_batchs_gradients(checkpoint: bool) -> None:
    records = train("accumulation", {"checkpoint": checkpoint}, steps=3, every=1).records
    assert all(r.metrics["max_grad_diff_vs_full_batch"] < 1e-5 for r in records)
    assert all(r.nodes is not None for r in records)


def test_checkpointing_saves_less_for_backward_and_learns_the_same() -> None:
    plain = train("accumulation", {"checkpoint": False}, steps=5, every=0).records
    ckpt = train("accumulation", {"checkpoint": True}, steps=5, every=0).records
    assert (
        ckpt[0].metrics["saved_kib_per_micro_batch"]
        < plain[0].metrics["saved_kib_per_micro_batch"] / 2
    )
    assert [r.loss for r in ckpt] == pytest.approx([r.loss for r in plain], rel=1e-5)


def test_custom_data_batch_size_and_shuffle_change_the_curve() -> None:
    def losses(batch_size: int, shuffle: bool) -> list[float]:
        records = train(
            "custom_data", {"batch_size": batch_size, "shuffle": shuffle}, steps=32, every=0
        ).records
        assert all(r.samples == batch_size for r in records)
        return [r.loss for r in records]

    small = losses(4, True)
    assert small != losses(4, False)
    assert small != losses(16, True)
    # Unshuffled, the sorted points come in the same order every epoch (16 batches of 4).
    ordered = losses(4, False)
    assert ordered[16:32] != ordered[0:16]  # the model has learned meanwhile...
    first_epoch_order = [round(v, 3) for v in ordered[:16]]
    assert first_epoch_order != sorted(first_epoch_order)  # ...but the loss follows the data


def test_bad_parameters_and_devices_get_clear_errors() -> None:
    with pytest.raises(PluginError, match="lr must be between"):
        train("linear_regression", {"lr": 5.0}, steps=1)
    with pytest.raises(PluginError, match="has no parameter depth"):
        train("linear_regression", {"depth": 3}, steps=1)
    with pytest.raises(TrainingError, match="steps must be between"):
        train("linear_regression", steps=0)
    with pytest.raises(TrainingError, match="not a device"):
        train("linear_regression", steps=1, device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(TrainingError, match="CUDA is not available"):
            train("linear_regression", steps=1, device="cuda")


def test_divergence_is_reported_with_the_learning_rate() -> None:
    with pytest.raises(TrainingError, match=r"training diverged.*smaller learning rate"):
        train("linear_regression", {"lr": 2.0}, steps=200)


@pytest.mark.slow
def test_ddp_two_processes_agree_after_averaging() -> None:
    records = train("ddp", {"processes": 2}, steps=6, every=3).records
    assert [r.step for r in records] == list(range(6))
    for r in records:
        assert r.metrics["grad_diff_across_ranks"] == 0.0
        assert r.metrics["grad_diff_vs_mean_of_ranks"] < 1e-6
        assert {"loss_rank0", "loss_rank1"} <= set(r.metrics)
        assert r.loss == r.metrics["loss_rank0"]
        assert r.metrics["loss_rank0"] != r.metrics["loss_rank1"]  # different shards
    assert records[0].nodes is not None and records[3].nodes is not None
    assert records[-1].loss < records[0].loss


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_run_matches_cpu_run() -> None:
    cpu = train("classify_2d", steps=5, every=1).records
    gpu = train("classify_2d", steps=5, every=1, device="cuda").records
    assert [r.loss for r in gpu] == pytest.approx([r.loss for r in cpu], rel=1e-4)
    assert gpu[0].nodes is not None and cpu[0].nodes is not None
    assert gpu[0].nodes.ids == cpu[0].nodes.ids
    assert gpu[0].nodes.norms == pytest.approx(cpu[0].nodes.norms, rel=1e-4)


def test_accumulation_draws_saved_memory_with_and_without_checkpointing() -> None:
    scenario = discover().get("accumulation")
    trainer = Trainer(scenario, configure(scenario, {"checkpoint": True}, steps=2, every=0))
    trainer.step()
    (picture,) = trainer.pictures()
    bar = picture.figure.data[0]
    kib = dict(zip(bar.x, bar.y, strict=True))
    assert kib["plain"] > 2 * kib["checkpointed"] > 0
    assert trainer.parts.model.checkpointed is True  # drawing leaves the choice as it was


class _Log(Sink):
    """A sink that writes down what it hears, in order."""

    draws = True

    def __init__(self) -> None:
        self.heard: list[tuple[str, object]] = []

    def on_graph(self, G: object) -> None:
        self.heard.append(("graph", G))

    def on_record(self, record: StepRecord) -> None:
        self.heard.append(("record", record.step))

    def on_pictures(self, pictures: tuple[object, ...]) -> None:
        self.heard.append(("pictures", len(pictures)))

    def on_status(self, status: str, error: str | None) -> None:
        self.heard.append(("status", (status, error)))


def test_the_driver_hands_every_step_to_its_sinks_and_closes_the_source(tmp_path: Path) -> None:
    scenario = discover().get("linear_regression")
    config = configure(scenario, steps=3, every=2)
    trainer = Trainer(scenario, config)
    log, kept, stream = _Log(), MemorySink(), io.StringIO()
    store = RunStore(tmp_path / "runs.sqlite")
    stored = StoreSink(store, config)
    outcome = drive(trainer, config.steps, [log, kept, StreamSink(stream), stored])
    assert outcome == Outcome("finished")
    # The graph comes once, before the first record (a torchrun reader relies on it).
    kinds = [k for k, _ in log.heard]
    assert kinds == ["graph", "record", "record", "record", "pictures", "status"]
    assert log.heard[0][1] is trainer.graph is kept.graph
    assert log.heard[-1] == ("status", ("finished", None))
    assert [r.step for r in kept.records] == [0, 1, 2] and kept.status == "finished"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert list(lines[0]) == ["graph"]
    assert [line["record"]["step"] for line in lines[1:]] == [0, 1, 2]
    info = store.run(stored.run_id)
    assert (info.status, info.recorded) == ("finished", 3)
    assert [r.loss for r in store.records(stored.run_id)] == [r.loss for r in kept.records]
    with pytest.raises(StopIteration):  # closed: the trainer dropped its batches
        next(trainer._batches)


def test_a_failing_run_tells_every_sink_why_before_the_error_goes_on(tmp_path: Path) -> None:
    scenario = discover().get("linear_regression")
    config = configure(scenario, {"lr": 2.0}, steps=200, every=0)
    store = RunStore(tmp_path / "runs.sqlite")
    log, stored = _Log(), StoreSink(store, config)
    with pytest.raises(TrainingError, match="diverged") as caught:
        drive(Trainer(scenario, config), config.steps, [log, stored])
    assert log.heard[-1] == ("status", ("failed", str(caught.value)))
    records = [v for k, v in log.heard if k == "record"]
    assert "pictures" not in [k for k, _ in log.heard]  # a failed run draws no last picture
    info = store.run(stored.run_id)
    assert (info.status, info.error, info.recorded) == ("failed", str(caught.value), len(records))
    assert not math.isfinite(store.records(stored.run_id)[-1].loss)  # the step that diverged


def test_controls_pause_single_step_and_stop_the_driver() -> None:
    scenario = discover().get("linear_regression")
    config = configure(scenario, steps=1000, every=0)
    controls, log = Controls(), _Log()
    assert controls.begin(paused=True) == "paused"
    for _ in range(2):
        controls.step()

    class StopAtTwo(Sink):
        def on_record(self, record: StepRecord) -> None:
            if record.step == 1:
                controls.stop()

    outcome = drive(Trainer(scenario, config), config.steps, [log, StopAtTwo()], controls)
    assert outcome == Outcome("stopped")
    # Two single steps while paused (no "running" in between), then the stop.
    assert [k for k, _ in log.heard] == ["record", "record", "pictures", "status"]
    assert log.heard[-1] == ("status", ("stopped", None))


def test_an_expired_lease_interrupts_the_run_before_its_next_step() -> None:
    scenario = discover().get("linear_regression")
    config = configure(scenario, steps=5, every=0)
    log = _Log()
    outcome = drive(Trainer(scenario, config), config.steps, [log], Controls(Lease(grace=-1)))
    assert outcome == Outcome("interrupted", NOBODY)
    assert log.heard == [("status", ("interrupted", NOBODY))]  # no step, no picture
