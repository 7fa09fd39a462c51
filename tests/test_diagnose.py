"""The graph debugger: every gallery case gives exactly its finding, healthy models are silent.

Torch is the oracle: each case's premise (no .grad, a NaN, a tiny gradient, a
wrong backward) is checked against what PyTorch itself computes, and every
node a finding points at is checked on the graph ``gradlab.trace`` draws.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, get_args

import pytest
import torch
from torch import nn

import gradlab
from gradlab.core.errors import GradLabError
from gradlab.core.walk import walk
from gradlab.diagnose import (
    FAMILY,
    Finding,
    LoopWatch,
    OptimizerStep,
    by_severity,
    checks,
    examine,
    worst,
)
from gradlab.diagnose import broken as b
from gradlab.diagnose.checks import CHECKS, Check, check, run_checks
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Family, Kind, Severity
from gradlab.diagnose.gallery import CASES, examine_case, get
from gradlab.teach import examples
from gradlab.zoo import presets

#: The op of the node each case's finding points at first.
EXPECTED_OP = {
    "detach": "AddBackward0",
    "data": "AddBackward0",
    "no_grad_region": "AddBackward0",
    "numpy_round_trip": "AddmmBackward0",
    "log_zero": "LogBackward0",
    "divide_by_zero": "DivBackward0",
    "exp_overflow": "ExpBackward0",
    "sqrt_negative": "SqrtBackward0",
    "where_nan_gradient": "LogBackward0",
    "sqrt_zero_gradient": "SqrtBackward0",
    "saturated_tanh": "TanhBackward0",
    "dead_relu": "ReluBackward0",
    "broadcast_mse": "MseLossBackward0",
    "broadcast_by_hand": "SubBackward0",
    "cross_entropy_probabilities": "SoftmaxBackward0",
    "non_scalar_backward": "PowBackward0",
    "backward_twice": "SumBackward0",
    "inplace_saved": "ExpBackward0",
}


def loud(findings: tuple[Finding, ...] | list[Finding]) -> list[tuple[str, str]]:
    """(kind, cause) of the findings above the level of a note."""
    return [(f.kind, f.cause) for f in findings if f.severity != "info"]


def test_the_gallery_covers_every_family_with_at_least_twelve_cases() -> None:
    assert len(CASES) >= 12
    families = {Finding(c.expect, "error", (), "", "", "").family for c in CASES}
    assert families == {
        "no_gradient", "nonfinite", "scale", "loop", "shapes", "autograd_error", "gradcheck"
    }  # fmt: skip
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_each_case_gives_exactly_its_finding(case: object) -> None:
    assert hasattr(case, "expect")
    report = examine_case(case)  # type: ignore[arg-type]
    assert loud(report.findings) == [(case.expect, case.cause)]  # type: ignore[attr-defined]
    finding = next(f for f in report.findings if f.severity != "info")
    assert finding.title and finding.explanation and finding.fix


@pytest.mark.parametrize("name", sorted(EXPECTED_OP))
def test_the_finding_points_at_the_right_node_of_the_drawn_graph(name: str) -> None:
    report = examine_case(get(name), graph=True)
    finding = next(f for f in report.findings if f.severity != "info")
    assert (finding.kind, finding.cause) == (get(name).expect, get(name).cause)
    G = report.graph
    assert G is not None and finding.nodes
    assert G.nodes[finding.nodes[0]]["op"] == EXPECTED_OP[name]


def test_a_detached_parameter_really_has_no_gradient_and_the_cut_is_named() -> None:
    case = b.make_numpy()
    findings = gradlab.diagnose(case)
    assert [f.where for f in findings] == ["encoder.weight, encoder.bias"]
    assert case.model.encoder.weight.grad is None  # type: ignore[union-attr]
    assert case.model.head.weight.grad is not None  # type: ignore[union-attr]
    assert "NumPy" in findings[0].title


def test_unused_layer_parameters_are_exactly_the_ones_torch_leaves_without_grad() -> None:
    case = b.make_unused_layer()
    finding = gradlab.diagnose(case)[0]
    missing = [n for n, p in case.model.named_parameters() if p.grad is None]
    assert finding.where.split(", ") == missing == ["aux_head.weight", "aux_head.bias"]


def test_nan_findings_agree_with_torch() -> None:
    x = torch.tensor([1.0, 0.0, 2.0], requires_grad=True)
    y = torch.where(x.gt(0), torch.log(x), torch.zeros(3))
    y.sum().backward()
    assert torch.isfinite(y.sum()) and x.grad is not None and torch.isnan(x.grad).any()
    finding = examine_case(get("where_nan_gradient")).findings[0]
    assert "finite" in finding.explanation and "0" in finding.explanation


def test_the_nan_finding_gives_the_range_of_the_inputs() -> None:
    finding = examine_case(get("sqrt_negative")).findings[0]
    assert "[-0.5, 2]" in finding.explanation  # x - 1 for x in [0.5, 3]


def test_the_depth_profile_is_torch_s_gradient_at_each_layer_output() -> None:
    case = b.make_vanishing()
    outputs: list[torch.Tensor] = []
    hooks = [m.register_forward_hook(lambda m, i, o: outputs.append(o)) for m in case.model
             if isinstance(m, nn.Linear)]  # fmt: skip
    loss = case.loss()
    for o in outputs:
        o.retain_grad()
    loss.backward()
    for h in hooks:
        h.remove()
    expected = [float(o.grad.pow(2).mean().sqrt()) for o in outputs]  # type: ignore[union-attr]
    report = examine(b.make_vanishing())
    assert [layer.rms for layer in report.layers] == pytest.approx(expected, rel=1e-5)
    assert report.layers[0].rms / report.layers[-1].rms < 1e-4


def test_the_gradient_check_agrees_with_torch_gradcheck() -> None:
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    assert not torch.autograd.gradcheck(b.Cube.apply, (x,), raise_exception=False)
    report = examine(b.make_wrong_backward(), gradcheck=True)
    bad = {a.name for a in report.agreements if not a.ok}
    assert bad == {"0.weight", "0.bias"}  # the layer before the cube; the head is right
    good = [a for a in report.agreements if a.ok]
    assert {a.name for a in good} == {"2.weight", "2.bias"}
    G = examine(b.make_wrong_backward(), gradcheck=True, graph=True).graph
    assert G is not None
    nodes = examine(b.make_wrong_backward(), gradcheck=True).findings[0].nodes
    assert {G.nodes[n]["name"] for n in nodes} == {"0.weight", "0.bias"}


@pytest.mark.parametrize("name", ["linear", "mlp", "lenet"])
def test_the_gradient_check_passes_on_healthy_presets(name: str) -> None:
    report = examine(presets.get(name).build(), gradcheck=True)
    assert report.agreements and all(a.ok for a in report.agreements)
    assert loud(report.findings) == []


@pytest.mark.parametrize("name", list(presets.PRESETS))
def test_presets_are_silent(name: str) -> None:
    assert loud(gradlab.diagnose(presets.get(name).build())) == []


def test_a_transformer_trained_towards_zeros_after_its_norm_truly_vanishes() -> None:
    # A target of zeros right after a LayerNorm: mean(y**2) is 1 whatever the weights
    # before the norm, so their true gradient is 0 (torch agrees, to rounding).
    case = presets.get("transformer").build()
    case.target = torch.zeros_like(case.target)
    assert loud(gradlab.diagnose(case)) == [("vanishing", "ratio")]
    attn = case.model.layers[0].self_attn.in_proj_weight  # type: ignore[index]
    norm = case.model.layers[0].norm2.weight  # type: ignore[index]
    assert attn.grad is not None and norm.grad is not None
    assert float(attn.grad.abs().max()) < 1e-5 * float(norm.grad.abs().max())


#: Lessons that show an autograd warning on purpose (the Playground runs them without error).
TAUGHT_WARNINGS = {"non_leaf_grad": "non_leaf_grad"}


@pytest.mark.parametrize("example", examples.EXAMPLES, ids=lambda e: e.id)
def test_lesson_programs_give_only_the_mistake_they_teach(example: examples.Example) -> None:
    taught = example.expect_error or TAUGHT_WARNINGS.get(example.id)
    expected = [("autograd_error", taught)] if taught else []
    assert loud(gradlab.diagnose(example.source)) == expected


def test_a_healthy_training_loop_is_silent_and_its_steps_are_recorded() -> None:
    report = examine(b.train_healthy)
    assert loud(report.findings) == []
    losses = [s.loss for s in report.steps]
    assert len(losses) == 8 and all(x is not None for x in losses)
    assert losses[-1] < losses[0]  # type: ignore[operator]


def test_loop_watch_records_the_loss_and_gradient_norm_torch_sees() -> None:
    from gradlab.diagnose.observe import CallWatch

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(4, 2), torch.randn(4, 1)
    calls = CallWatch()
    with calls, LoopWatch(calls) as loop:
        opt.zero_grad()
        loss = ((model(x) - y) ** 2).mean()
        loss.backward()
        norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))  # type: ignore[union-attr]
        before = [p.detach().clone() for p in model.parameters()]
        opt.step()
    (step,) = loop.steps
    assert step.loss == pytest.approx(loss.item())
    assert step.grad_norm == pytest.approx(norm)
    after = [p.detach() for p in model.parameters()]
    moved = math.sqrt(sum(float((a - p).pow(2).sum()) for a, p in zip(after, before, strict=True)))
    assert step.moved == pytest.approx(moved, rel=1e-5)
    assert moved == pytest.approx(0.1 * norm, rel=1e-5)  # SGD moves lr * |grad|


def test_a_model_and_batch_with_a_loss_function() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x, y = torch.randn(16, 3), torch.tensor([0, 1] * 8)
    assert gradlab.diagnose(model, x, target=y, loss_fn=nn.CrossEntropyLoss()) == []
    probs = nn.Sequential(model, nn.Softmax(dim=1))
    findings = gradlab.diagnose(probs, x, target=y, loss_fn=nn.CrossEntropyLoss())
    assert loud(findings) == [("wrong_loss_input", "probabilities")]


def test_a_traced_graph_alone_gives_the_nan_finding() -> None:
    x = torch.tensor([1.0, 0.0], requires_grad=True)
    with gradlab.record():
        loss = torch.log(x * 2).sum()
    G = gradlab.trace(loss)
    (finding,) = gradlab.diagnose(G)
    assert (finding.kind, finding.cause) == ("nonfinite_forward", "log")
    assert G.nodes[finding.nodes[0]]["op"] == "LogBackward0"


def test_frozen_parameters_are_a_note_when_others_learn() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    model[0].requires_grad_(False)  # fine-tuning the head only
    findings = gradlab.diagnose(model, torch.randn(8, 3), target=torch.randn(8, 1),
                                loss_fn=nn.MSELoss())  # fmt: skip
    assert [(f.kind, f.severity) for f in findings] == [("frozen", "info")]
    assert findings[0].where == "0.weight, 0.bias"


def test_bad_subjects_and_programs_say_what_is_wrong() -> None:
    with pytest.raises(GradLabError, match="cannot look at a int"):
        gradlab.diagnose(3)
    with pytest.raises(GradLabError, match="give the model a batch"):
        gradlab.diagnose(nn.Linear(1, 1))
    with pytest.raises(GradLabError, match="did not run: line 1: syntax error"):
        gradlab.diagnose("x = (")
    with pytest.raises(GradLabError, match="must return the loss tensor"):
        gradlab.diagnose(lambda: 3)
    with pytest.raises(GradLabError, match="No gallery case 'nope'"):
        get("nope")


def test_severity_order() -> None:
    note = Finding("frozen", "info", (), "t", "e", "f")
    error = Finding("gradcheck", "error", (), "t", "e", "f")
    warn = Finding("vanishing", "warning", (), "t", "e", "f")
    assert by_severity([note, warn, error]) == [error, warn, note]
    assert worst([note, warn]) == "warning" and worst([]) is None


class MaskedSqrt(nn.Module):
    """where(h > 0, sqrt(h), 0): finite forward, NaN gradient from the masked entries."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h)).sum()


def test_a_model_s_backward_nan_is_found_on_the_retained_graph() -> None:
    torch.manual_seed(0)
    model, x = MaskedSqrt(), torch.randn(4, 3)
    model(x).backward()
    expected = model.linear.weight.grad.clone()  # type: ignore[union-attr]
    (light,) = gradlab.diagnose(model, x)
    torch.testing.assert_close(model.linear.weight.grad, expected, equal_nan=True, rtol=0, atol=0)
    assert (light.kind, light.cause) == ("nonfinite_backward", "sqrt")
    report = examine(model, x, graph=True)  # every node's gradient, as the page draws it
    assert [(f.kind, f.nodes) for f in report.findings] == [(light.kind, light.nodes)]
    assert report.graph is not None
    assert report.graph.nodes[light.nodes[0]]["op"] == "SqrtBackward0"


def test_a_truncated_call_log_does_not_claim_a_leaf_was_unused() -> None:
    from gradlab.diagnose import gradients
    from gradlab.diagnose.evidence import Evidence
    from gradlab.diagnose.observe import CallWatch

    w = torch.ones(2, requires_grad=True)
    b0 = torch.ones(1, requires_grad=True)
    with CallWatch(limit=0) as calls:  # nothing kept: the detach is not seen
        loss = (w.detach() * 3 + b0).sum()
    loss.backward()
    assert calls.truncated and calls.calls == []
    ev = Evidence(loss=loss, params={"w": w, "b": b0}, calls=calls.calls, backward_ran=True,
                  calls_complete=False)  # fmt: skip
    (finding,) = gradients.find(ev)
    assert (finding.cause, finding.where) == ("unreached", "w")


def test_loop_watch_ignores_steps_made_by_other_threads() -> None:
    import threading

    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def step() -> None:
        model(torch.ones(1, 2)).sum().backward()
        opt.step()

    with LoopWatch() as loop:
        other = threading.Thread(target=step)
        other.start()
        other.join()
        assert loop.steps == []
        step()
    assert len(loop.steps) == 1


def scenario_cases() -> list[tuple[str, nn.Module, torch.Tensor, torch.Tensor, object]]:
    """The training scenarios' models with their first batch (those with a forward of their own)."""
    from gradlab.plugins import Setup, discover

    found = []
    for name, scenario in discover().scenarios.items():
        if scenario.distributed:
            continue
        torch.manual_seed(0)
        setup = Setup(scenario.resolve(), torch.device("cpu"), 0, torch.Generator().manual_seed(0))
        parts = scenario.build(setup)
        if type(parts.model).forward is nn.Module.forward:  # several models raced by its step
            continue
        inputs, target = next(iter(parts.batches))
        found.append((name, parts.model, inputs, target, parts.loss_fn))
    return found


def test_the_training_scenarios_models_are_silent() -> None:
    cases = scenario_cases()
    assert len(cases) >= 6
    for name, model, inputs, target, loss_fn in cases:
        findings = gradlab.diagnose(model, inputs, target=target, loss_fn=loss_fn)  # type: ignore[arg-type]
        assert loud(findings) == [], name
        frozen = [f for f in findings if f.kind == "frozen"]
        assert bool(frozen) == any(not p.requires_grad for p in model.parameters()), name


def test_every_case_shows_the_code_that_breaks_it() -> None:
    for case in CASES:
        assert case.source.strip(), case.name
    assert "class TwoHeads" in get("unused_layer").source
    assert "class Cube" in get("wrong_backward").source
    assert "def train_loop" in get("missing_zero_grad").source
    assert get("detach").source == get("detach").program


def test_a_program_s_training_loop_without_zero_grad() -> None:
    source = (
        "torch.manual_seed(0)\nx = torch.randn(16, 3)\ny = x.sum(1, keepdim=True)\n"
        "model = nn.Linear(3, 1)\nopt = torch.optim.SGD(model.parameters(), lr=0.01)\n"
        "for i in range(8):\n    loss = F.mse_loss(model(x), y)\n    ZERO\n"
        "    loss.backward()\n    opt.step()\n"
    )
    assert loud(gradlab.diagnose(source.replace("ZERO", "pass"))) == [
        ("missing_zero_grad", "accumulating")
    ]
    assert loud(gradlab.diagnose(source.replace("ZERO", "opt.zero_grad()"))) == []


def test_errors_that_are_not_autograd_mistakes_are_named_plainly() -> None:
    (program,) = gradlab.diagnose("y = q + 1")
    assert (program.title, program.cause) == ("The code raised NameError", "unknown")
    assert "name 'q' is not defined" in program.explanation
    (function,) = gradlab.diagnose(lambda: 1 / 0)
    assert (function.title, function.severity) == ("The code raised ZeroDivisionError", "error")


@pytest.mark.parametrize("reset", ["opt.zero_grad()", "opt.zero_grad(set_to_none=False)",
                                   "model.zero_grad()", "none"])  # fmt: skip
def test_every_way_of_resetting_gradients_counts_and_a_missing_one_beats_divergence(
    reset: str,
) -> None:
    def train() -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=2.0 if reset == "none" else 0.01)
        x, y = torch.randn(16, 3), torch.randn(16, 1)
        for _ in range(6):
            if reset == "opt.zero_grad()":
                opt.zero_grad()
            elif reset == "opt.zero_grad(set_to_none=False)":
                opt.zero_grad(set_to_none=False)
            elif reset == "model.zero_grad()":
                model.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
        return model, loss

    report = examine(train)
    if reset == "none":  # the loss diverges too, but the missing reset is the cause
        losses = [s.loss for s in report.steps]
        assert losses[-1] > 10 * losses[0]  # type: ignore[operator]
        assert loud(report.findings) == [("missing_zero_grad", "accumulating")]
    else:
        assert all(s.zeroed for s in report.steps[1:])  # step 0: nothing to reset yet
        assert loud(report.findings) == []


def test_a_training_run_s_records_are_diagnosed() -> None:
    from gradlab.train import train

    healthy = train("linear_regression", steps=12)
    assert loud(gradlab.diagnose(healthy)) == []
    diverging = train("linear_regression", {"lr": 1.5}, steps=12)
    losses = [r.loss for r in diverging.records]
    assert losses[-1] > 10 * losses[0]  # the trainer's own numbers
    (finding,) = gradlab.diagnose(diverging.records)
    assert (finding.kind, finding.cause) == ("lr_too_high", "diverging")
    assert "lr=1.5" in finding.explanation


def test_a_long_training_loop_keeps_about_two_steps_of_calls() -> None:
    from gradlab.diagnose.observe import CallWatch

    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(4, 2)
    sizes = []
    calls = CallWatch()
    with calls, LoopWatch(calls) as loop:
        for _ in range(30):
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
            sizes.append(len(calls.calls))
    assert len(loop.steps) == 30 and all(s.zeroed for s in loop.steps)
    assert max(sizes[5:]) == sizes[-1] < 3 * (sizes[1] - sizes[0]) + sizes[0]


class TwoSenders(nn.Module):
    """The masked sqrt and a second branch both send to the linear layer's output."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.linear(x)
        return (torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h)) + 2 * h).sum()


def _region_and_whole(model: nn.Module, x: torch.Tensor) -> list[tuple[Any, ...]]:
    """The passes the backward NaN check makes on a model: its region, then the whole graph."""
    from gradlab.diagnose import nonfinite
    from gradlab.diagnose.look import look_model

    ev = look_model(model, x, None, None)
    assert ev.loss is not None and ev.loss.grad_fn is not None
    passes: list[tuple[Any, ...]] = []
    region = nonfinite._region(ev)
    if region is not None:
        passes.append((ev, *region))
    fns, _ = walk([ev.loss.grad_fn])
    leaves = [fn.variable for fn in fns if type(fn).__name__ == "AccumulateGrad"]
    passes.append((ev, ev.loss, None, leaves, fns))
    return passes


class Deep(nn.Module):
    """Three layers with the masked sqrt between the second and the third."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3, 6), nn.Linear(6, 6), nn.Linear(6, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.b(torch.tanh(self.a(x)))
        return self.c(torch.where(h > 0, torch.sqrt(h), torch.zeros_like(h))).sum()


@pytest.mark.parametrize("model_type", [MaskedSqrt, TwoSenders, Deep])
def test_the_edge_pass_names_the_node_the_hooked_pass_stops_at(model_type: type) -> None:
    from gradlab.diagnose import nonfinite

    torch.manual_seed(0)
    model = model_type()
    for ev, *args in _region_and_whole(model, torch.randn(16, 3)):
        hooked = nonfinite._hooked_pass(ev, *args)
        assert hooked is not None and hooked.where == "SqrtBackward0"
        assert nonfinite._pass(ev, *args) == hooked  # same node, same counts, same ranges
    (finding,) = gradlab.diagnose(model, torch.randn(16, 3))
    assert (finding.kind, finding.cause) == ("nonfinite_backward", "sqrt")


def test_the_region_runs_from_the_activation_the_next_layer_took_to_the_bad_output() -> None:
    from gradlab.diagnose import nonfinite
    from gradlab.diagnose.look import look_model

    torch.manual_seed(0)
    model = Deep()
    ev = look_model(model, torch.randn(16, 3), None, None)
    region = nonfinite._region(ev)
    assert region is not None
    high, grad, (low,), fns = region
    layers = {c.name: c for c in ev.modules}
    assert [w.tensor for w in layers["c"].inputs] == [high]  # the where(...) that c took
    assert low is layers["b"].tensor  # its gradient is the last one, forward first, to be bad
    assert grad is not None and bool(torch.isfinite(grad).all())
    assert layers["b"].grad is not None and not bool(torch.isfinite(layers["b"].grad).all())
    # Only what was made between them: where, sqrt, and the op that made b's output.
    assert sorted(type(fn).__name__ for fn in fns) == [
        "AddmmBackward0", "SqrtBackward0", "WhereBackward0"]  # fmt: skip


def test_the_node_index_names_nodes_as_trace_does_whatever_the_order_of_lookups() -> None:
    from gradlab.diagnose.evidence import NodeIndex

    torch.manual_seed(0)
    model = Deep()
    loss = model(torch.randn(4, 3))
    G = gradlab.trace(loss, model=model)
    fns, _ = walk([loss.grad_fn])
    index = NodeIndex(loss)
    for i in [len(fns) // 2, len(fns) - 1, 0, *range(len(fns))]:  # the walk goes on as needed
        assert index.fn(fns[i]) == f"fn{i}"
        assert G.nodes[f"fn{i}"]["op"] == type(fns[i]).__name__
    index = NodeIndex(loss)
    for name, p in reversed(list(model.named_parameters())):
        leaf = index.tensor(p)
        assert leaf is not None and G.nodes[leaf]["name"] == name
        op = index.op_of(p)
        assert op is not None and list(G.successors(leaf)) == [op]
    assert index.tensor(torch.ones(1)) is None


def test_the_call_log_leaves_out_property_reads_that_give_plain_values() -> None:
    from gradlab.diagnose.observe import CallWatch

    x = torch.ones(2, requires_grad=True)
    with CallWatch() as calls:
        _ = x.dtype, x.shape, x.is_leaf
        y = x.data
        z = x * 2
    assert [c.name for c in calls.calls] == ["data", "mul"]
    assert calls.calls[0].out is y and calls.calls[1].out is z


def test_the_edge_pass_reads_what_the_node_sent_or_leaves_it_to_the_hooks() -> None:
    from gradlab.diagnose.received import AMBIGUOUS, first_bad_sender

    torch.manual_seed(0)
    x = torch.randn(4, 3)
    model = MaskedSqrt()
    loss = model(x)
    loss.backward(retain_graph=True)
    fns, _ = walk([loss.grad_fn])
    leaves = [fn.variable for fn in fns if type(fn).__name__ == "AccumulateGrad"]
    grads = [p.grad.clone() for p in model.parameters()]  # type: ignore[union-attr]
    sender = first_bad_sender(loss, None, leaves, fns)
    assert sender != AMBIGUOUS and sender is not None
    fn, sent = sender
    assert type(fn).__name__ == "SqrtBackward0"
    # What the sqrt node sends, computed by hand: where's gradient (1 or 0) / (2 sqrt(h)).
    h = (x @ model.linear.weight.T + model.linear.bias).detach()
    torch.testing.assert_close(sent, (h > 0).float() / (2 * h.sqrt()), equal_nan=True)
    for p, g in zip(model.parameters(), grads, strict=True):  # .grad is left as it was
        torch.testing.assert_close(p.grad, g, equal_nan=True, rtol=0, atol=0)
    two = TwoSenders()
    loss = two(x)
    fns, _ = walk([loss.grad_fn])
    leaves = [fn.variable for fn in fns if type(fn).__name__ == "AccumulateGrad"]
    assert first_bad_sender(loss, None, leaves, fns) == AMBIGUOUS  # sqrt and 2 * h meet at h


def test_layer_gradients_are_sized_in_one_go_as_torch_sizes_them() -> None:
    from gradlab.diagnose.observe import CallWatch, settle, watch_layers

    torch.manual_seed(0)
    model, x = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)), torch.randn(6, 4)
    with CallWatch() as calls:
        out = model(x)
    layers = watch_layers(calls.calls, model, dict(model.named_parameters()))
    outputs = [layer.tensor for layer in layers]
    for t in outputs:
        assert t is not None
        t.retain_grad()
    out.pow(2).sum().backward()
    assert [layer.grad_rms for layer in layers] == [None, None]  # sized when read
    settle(layers)
    for layer, t in zip(layers, outputs, strict=True):
        assert t is not None and t.grad is not None
        assert layer.grad_rms == pytest.approx(float(t.grad.double().pow(2).mean().sqrt()))


def test_the_edge_pass_defers_to_the_hooks_when_a_node_it_does_not_watch_may_run() -> None:
    from gradlab.diagnose.received import AMBIGUOUS, first_bad_sender

    torch.manual_seed(0)
    model = MaskedSqrt()
    loss = model(torch.randn(4, 3))
    fns, _ = walk([loss.grad_fn])
    leaves = [fn.variable for fn in fns if type(fn).__name__ == "AccumulateGrad"]
    assert first_bad_sender(loss, None, leaves, [loss.grad_fn]) == AMBIGUOUS
    sender = first_bad_sender(loss, None, leaves, fns)
    assert sender not in (AMBIGUOUS, None)


class _Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.head = nn.Linear(4, 5)
        self.head.weight = self.emb.weight  # the replaced weight tensor is no part of it


def _tied_forward(model: _Tied, ids: torch.Tensor) -> torch.Tensor:
    return model.head(model.emb(ids))  # type: ignore[no-any-return]


def test_tied_weights_are_not_unused_parameters() -> None:
    found = gradlab.diagnose(lambda: _tied_forward(_Tied(), torch.tensor([1, 2, 3])).mean())
    assert found == []

    def with_unused() -> torch.Tensor:
        model = _Tied()
        model.extra = nn.Linear(4, 4)  # and a layer really never used
        return _tied_forward(model, torch.tensor([1, 2, 3])).logsumexp(-1).mean()

    (finding,) = gradlab.diagnose(with_unused)
    assert (finding.kind, finding.cause) == ("no_gradient", "unused")
    assert finding.where.count("tensor") == 2  # extra's weight and bias, not the tied one


class _Attention(nn.Module):
    """BERT's self-attention: separate query, key and value projections."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.out, self.norm = nn.Linear(d, d), nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.query(x) @ self.key(x).transpose(1, 2) / x.shape[-1] ** 0.5  # (B, T, T)
        return self.norm(x + self.out(scores.softmax(-1) @ self.value(x)))  # type: ignore[no-any-return]


def test_frozen_first_layers_do_not_read_as_vanishing_gradients() -> None:
    # Attention's query and key projections at initialisation get gradients far below
    # the rest; with the embeddings frozen they are the first layers with a gradient.
    torch.manual_seed(0)
    emb = nn.Embedding(32, 32)
    model = nn.Sequential(emb, _Attention(32), _Attention(32), nn.Linear(32, 3))
    with torch.no_grad():  # BERT's initialisation: every weight N(0, 0.02)
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.02)
    emb.requires_grad_(False)
    ids = torch.randint(0, 32, (4, 8))

    def loss() -> tuple[nn.Module, torch.Tensor]:
        logits = model(ids)[:, 0]
        return model, nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0]))

    report = examine(loss)
    first, last = report.layers[0], report.layers[-1]  # the query projection, the head
    assert first.rms < 1e-4 * last.rms
    assert [f.kind for f in report.findings] == ["frozen"]


def test_the_front_of_the_depth_is_its_strongest_path() -> None:
    from gradlab.diagnose.scale import Layer, _first

    qkv = [Layer("q", 1e-9, 7), Layer("k", 2e-9, 7), Layer("v", 1e-5, 7)]
    assert _first([*qkv, Layer("out", 1e-4, 8), Layer("head", 1.0, 9)]).name == "v"
    # a stack that vanishes layer after layer still shows it from its first quarter
    stack = [Layer(str(i), 10.0 ** (i - 12), i + 1) for i in range(12)]
    front = _first(stack)
    assert front.name == "2" and front.rms / stack[-1].rms < 1e-4


def test_a_model_built_in_the_target_with_batchnorm_finds_the_log_not_the_buffer() -> None:
    def loss() -> tuple[nn.Module, torch.Tensor]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 2))
        model = model.to(memory_format=torch.channels_last)  # copies every weight, no_grad
        x = torch.randn(2, 3, 6, 6).to(memory_format=torch.channels_last)
        h = torch.log(model[0](x) * 0)  # log(0) = -inf, then BatchNorm's statistics
        return model, model[3](model[2](model[1](h))).sum()

    (first, *_) = gradlab.diagnose(loss)
    assert (first.kind, first.cause, first.where) == ("nonfinite_forward", "log", "log")


def test_gradcheck_perturbs_a_channels_last_parameter() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Flatten(), nn.Linear(12, 1)).double()
    model = model.to(memory_format=torch.channels_last)
    assert not model[0].weight.is_contiguous()
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64).to(memory_format=torch.channels_last)
    report = examine(model, x, loss_fn=lambda out: out.pow(2).sum(), gradcheck=True)
    assert report.agreements and all(a.worst < 1 for a in report.agreements)


#: Kinds with no gallery case, and why. The gallery holds mistakes; these are not.
NOT_IN_THE_GALLERY = {
    "frozen": "a note: fine-tuning freezes layers on purpose "
    "(test_frozen_parameters_are_a_note_when_others_learn)",
}


def test_the_registered_checks_and_the_kind_literal_agree() -> None:
    """Adding a kind is its ``@check(kinds=...)`` and its place in the ``Kind`` literal."""
    reported = [k for c in CHECKS for k in c.kinds]
    assert len(reported) == len(set(reported))  # each kind has one check
    assert sorted(reported) == sorted(get_args(Kind))
    assert set(FAMILY) == set(get_args(Kind))
    assert set(FAMILY.values()) == set(get_args(Family))
    assert all(FAMILY[k] == c.family for c in CHECKS for k in c.kinds)


def test_every_registered_kind_has_a_gallery_case_and_every_case_a_registered_kind() -> None:
    expected = {c.expect for c in CASES}
    assert expected <= set(FAMILY), "a gallery case expects a kind no check reports"
    missing = set(FAMILY) - expected - set(NOT_IN_THE_GALLERY)
    assert not missing, f"registered kinds without a gallery case: {sorted(missing)}"
    assert not expected & set(NOT_IN_THE_GALLERY)


def test_the_checks_run_causes_first_in_the_order_they_declare() -> None:
    assert [(c.order, c.name, c.unless, c.explains) for c in CHECKS] == [
        (10, "gradlab.diagnose.lessons.find", (), ()),
        (20, "gradlab.diagnose.gradients.find", (), ("no_grad_fn",)),
        (30, "gradlab.diagnose.loop.find", (), ()),
        (40, "gradlab.diagnose.nonfinite.find", ("lr_too_high",), ()),
        (50, "gradlab.diagnose.shapes.find", (), ()),
        (60, "gradlab.diagnose.scale.find", ("nonfinite", "loop"), ()),
        (70, "gradlab.diagnose.gradcheck.find", (), ()),
    ]


def test_a_check_that_clashes_with_the_table_is_refused_naming_it() -> None:
    before = list(CHECKS)

    def find(ev: Evidence) -> list[Finding]:
        return []

    with pytest.raises(ValueError, match=r"@check on tests\.test_diagnose\..*find: kind "
                       r"'vanishing' is gradlab\.diagnose\.scale\.find's; order 60 is "
                       r"gradlab\.diagnose\.scale\.find's\."):  # fmt: skip
        check(kinds=("vanishing",), family="scale", order=60)(find)
    with pytest.raises(ValueError, match="kind 'exploded' is not in the Kind literal"):
        check(kinds=("exploded",), family="scale", order=61)(find)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unless 'nan' is no kind or family"):
        nan: Any = ("nan",)
        check(kinds=("gradcheck",), family="gradcheck", order=71, unless=nan)(find)
    assert before == CHECKS and set(FAMILY) == set(get_args(Kind))


def test_a_cause_found_first_silences_its_effects(monkeypatch: pytest.MonkeyPatch) -> None:
    def finding(kind: Kind, severity: Severity, cause: str) -> Finding:
        return Finding(kind, severity, (), kind, "", "", cause=cause)

    lesson = finding("autograd_error", "error", "no_grad_fn")
    diverges = finding("lr_too_high", "warning", "diverging")
    nan = finding("nonfinite_forward", "error", "log")
    fake = [
        Check(lambda ev: [lesson], ("autograd_error",), "autograd_error", 10),
        Check(lambda ev: [finding("no_gradient", "info", "x")], ("no_gradient",),
              "no_gradient", 20, explains=("no_grad_fn",)),  # a note explains nothing
        Check(lambda ev: [diverges], ("lr_too_high",), "loop", 30),
        Check(lambda ev: [nan], ("nonfinite_forward",), "nonfinite", 40, unless=("lr_too_high",)),
        Check(lambda ev: [finding("vanishing", "warning", "ratio")], ("vanishing",), "scale", 60,
              unless=("nonfinite", "loop")),
    ]  # fmt: skip
    monkeypatch.setattr(checks, "CHECKS", fake)
    assert [f.kind for f in run_checks(Evidence())] == ["autograd_error", "no_gradient",
                                                         "lr_too_high"]  # fmt: skip
    fake[1] = replace(fake[1], find=lambda ev: [finding("no_gradient", "error", "frozen_all")])
    fake[2] = replace(fake[2], find=lambda ev: [])
    assert [f.kind for f in run_checks(Evidence())] == ["no_gradient", "nonfinite_forward"]


def test_step_is_the_old_name_of_an_optimizer_step_and_it_crosses_the_wire() -> None:
    from gradlab.diagnose import Report, Step
    from gradlab.isolation.wire import decode, encode

    assert Step is OptimizerStep
    report = examine(b.train_healthy)
    assert report.steps and all(isinstance(s, OptimizerStep) for s in report.steps)
    back = decode(encode(Report((), steps=report.steps)))
    assert back.steps == report.steps
