"""GradLab on real architectures nobody here wrote (see ``tests/real_models.py``).

For every model of the corpus: the recorded graph has the plain run's node
classes and equals an independent walk of ``next_functions`` and torchviz's
node count; every gradient GradLab shows is PyTorch's, bit for bit; the
debugger is silent on the healthy model and right on broken copies; the CLI
runs a ``make()`` that builds it; and the collapsed view names real modules.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import gradlab
from gradlab.app.cli import main
from gradlab.core.collapse import collapse
from gradlab.core.record import FOREIGN
from gradlab.core.summary import summarize
from gradlab.diagnose import examine
from tests import real_models
from tests.real_models import ARCHS, BY_NAME, make
from tests.test_oracles import gradlab_edges, independent_walk

ROOT = Path(__file__).resolve().parents[1]


def arch_params(names: list[str] | None = None) -> list[Any]:
    """The corpus as pytest params: the slow ones marked, the transformers ones skipped
    where it is not installed."""
    chosen = [a for a in ARCHS if names is None or a.name in names]
    params = []
    for a in chosen:
        marks = [pytest.mark.slow] if a.slow else []
        if a.hf and not real_models.HAS_TRANSFORMERS:
            marks.append(pytest.mark.skip(reason="transformers is not installed"))
        params.append(pytest.param(a.name, marks=marks, id=a.name))
    return params


def recorded(name: str) -> tuple[nn.Module, torch.Tensor, gradlab.Recording]:
    with gradlab.record() as recording:
        model, loss = make(name)
    return model, loss, recording


def walk_classes(loss: torch.Tensor, names: dict[int, str]) -> tuple[Counter[str], Counter[tuple]]:
    """Node classes and (child, parent, slot) edges of an independent walk; nodes keyed by
    class, AccumulateGrad by its parameter's name."""

    def key(fn: Any) -> str:
        if type(fn).__name__ == "AccumulateGrad":
            return f"acc:{names.get(id(fn.variable), '?')}"
        return type(fn).__name__

    classes: Counter[str] = Counter()
    edges: Counter[tuple] = Counter()
    todo = [loss.grad_fn]
    seen = set(todo)
    while todo:
        fn = todo.pop()
        classes[key(fn)] += 1
        for slot, (child, _) in enumerate(fn.next_functions):
            if child is None:
                continue
            edges[(key(child), key(fn), slot)] += 1
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return classes, edges


def leaf_names(model: nn.Module, loss: torch.Tensor) -> dict[int, str]:
    names = {id(p): n for n, p in model.named_parameters()}
    # leaves that are not parameters (a checkpointed input) get a name of their own
    todo, seen, inputs = [loss.grad_fn], {loss.grad_fn}, 0
    while todo:
        fn = todo.pop()
        if type(fn).__name__ == "AccumulateGrad" and id(fn.variable) not in names:
            names[id(fn.variable)] = f"input{inputs}"
            inputs += 1
        for child, _ in fn.next_functions:
            if child is not None and child not in seen:
                seen.add(child)
                todo.append(child)
    return names


@pytest.mark.parametrize("name", arch_params())
def test_the_recorded_graph_is_the_plain_one_and_equals_an_independent_walk(name: str) -> None:
    model, loss = make(name)
    plain = walk_classes(loss, leaf_names(model, loss))
    model, loss, recording = recorded(name)
    names = leaf_names(model, loss)
    # record() leaves PyTorch's graph as it is: the same classes and edges as a plain run
    assert walk_classes(loss, names) == plain
    assert recording.ops > 0
    params = {n: t for t, n in ((t, n) for n, t in model.named_parameters())}
    G = gradlab.trace(loss, model=model)
    inputs = [d for _, d in G.nodes(data=True) if d["kind"] == "leaf" and d["name"] is None]
    for i, d in enumerate(inputs):  # the walk's names for leaves that are not parameters
        d["name"] = d["name"] or f"input{i}"
    if not inputs:
        assert gradlab_edges(G) == independent_walk((loss,), names)
    assert len(gradlab.op_nodes(G)) == sum(plain[0].values())
    # every recorded op node holds its value; parameters are named as named_parameters()
    ops = [G.nodes[n] for n in gradlab.op_nodes(G) if G.nodes[n]["op"] != "AccumulateGrad"]
    assert all(d["value"] is not None for d in ops if d["module"] is not None)
    leaves = {d["name"] for _, d in G.nodes(data=True) if d["kind"] == "leaf"}
    in_graph = {n.removeprefix("acc:") for n in plain[0] if n.startswith("acc:")}
    assert in_graph <= leaves
    assert {n for n in in_graph if not n.startswith("input")} <= set(params)


@pytest.mark.parametrize("name", arch_params())
def test_torchviz_draws_the_same_number_of_autograd_nodes(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import torchviz
    model, loss, _ = recorded(name)
    G = gradlab.trace(loss, model=model)
    dot = torchviz.make_dot(loss, params=dict(model.named_parameters()))
    node_lines = [line for line in dot.body if re.match(r"\s*\d+ \[label=", line)]
    fn_nodes = [line for line in node_lines if "fillcolor" not in line]
    assert len(fn_nodes) == len(gradlab.op_nodes(G))


def module_outputs(model: nn.Module) -> tuple[list[tuple[str, torch.Tensor]], list[Any]]:
    """Forward hooks that keep every module's tensor output (with history)."""
    kept: list[tuple[str, torch.Tensor]] = []

    def hook(name: str) -> Callable[..., None]:
        def keep(module: nn.Module, args: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and out.grad_fn is not None:
                kept.append((name, out))

        return keep

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()]
    return kept, handles


@pytest.mark.parametrize("name", arch_params())
def test_every_gradient_is_pytorch_s_bit_for_bit(name: str) -> None:
    model, loss = make(name)
    loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert plain

    arch = BY_NAME[name]
    model = arch.build()
    model.train(arch.train)
    kept, handles = module_outputs(model)
    torch.manual_seed(10)
    with gradlab.record():
        loss = arch.loss(model)
    for h in handles:
        h.remove()
    G = gradlab.trace(loss, model=model)
    outs = [(n, t) for n, t in kept if t.output_nr == 0]
    assert outs
    expected = torch.autograd.grad(loss, [t for _, t in outs], retain_graph=True)
    gradlab.backward(loss, G)

    # parameters: .grad equals the plain run's, and the graph shows it
    by_name = {d["name"]: d for _, d in G.nodes(data=True) if d["kind"] == "leaf" and d["name"]}
    for n, p in model.named_parameters():
        if n not in plain:
            assert p.grad is None
            continue
        assert torch.equal(p.grad, plain[n]), n
        if n in by_name:  # a tied parameter is named once
            assert by_name[n]["grad"] == summarize(p.grad), n
    # module outputs: the gradient that arrived at the op that made each one
    node_of = {(d["op"], d["seq"]): d for _, d in G.nodes(data=True) if d["kind"] == "op"}
    checked = 0
    for (module, t), want in zip(outs, expected, strict=True):
        d = node_of[(type(t.grad_fn).__name__, t.grad_fn._sequence_nr())]
        assert d["grad"] == summarize(want), module
        checked += 1
    assert checked >= 1


def broken(name: str, change: Callable[[nn.Module], str | None]) -> Callable[[], Any]:
    """A target that builds ``name``, changes it and returns ``(model, loss)``."""
    arch = BY_NAME[name]

    def target() -> tuple[nn.Module, torch.Tensor]:
        model = arch.build()
        model.train(arch.train)
        change(model)
        torch.manual_seed(10)
        return model, arch.loss(model)

    return target


def wrap_forward(
    model: nn.Module, path: str, after: Callable[[torch.Tensor], torch.Tensor]
) -> None:
    module = model.get_submodule(path)
    forward = module.forward

    def patched(*args: Any, **kwargs: Any) -> Any:
        return after(forward(*args, **kwargs))

    module.forward = patched  # type: ignore[method-assign]


@pytest.mark.parametrize("name", arch_params())
def test_the_debugger_is_silent_on_the_healthy_model_and_right_on_broken_copies(name: str) -> None:
    healthy = gradlab.diagnose(broken(name, lambda m: None))
    by_design = [n for n, p in BY_NAME[name].build().named_parameters() if not p.requires_grad]
    # silent, but for the parameters frozen by design (Whisper's sinusoidal positions)
    assert [(f.kind, f.where) for f in healthy] == (
        [("frozen", ", ".join(by_design))] if by_design else []
    )

    def unused(model: nn.Module) -> None:
        model.add_module("extra", nn.Linear(4, 4))

    found = [f for f in gradlab.diagnose(broken(name, unused)) if f.kind != "frozen"]
    assert [(f.kind, f.cause, f.where) for f in found] == [
        ("no_gradient", "unused", "extra.weight, extra.bias")
    ]

    layer = BY_NAME[name].layer

    def detached(model: nn.Module) -> None:
        wrap_forward(model, layer, torch.Tensor.detach)

    found = gradlab.diagnose(broken(name, detached))
    errors = [f for f in found if f.severity == "error"]
    # a reentrant checkpoint runs its forward under no_grad: the cut is found in its rerun
    cause = "checkpoint" if name == "checkpoint_reentrant" else "detach"
    assert [(f.kind, f.cause) for f in errors] == [("no_gradient", cause)]
    assert f"{layer}.weight" in errors[0].where

    def log_zero(model: nn.Module) -> None:
        wrap_forward(model, layer, lambda t: torch.log(t * 0))

    report = examine(broken(name, log_zero))
    first = report.findings[0]
    # forward when the -inf reaches the loss; backward when a ReLU after it turns it into 0
    assert first.kind in ("nonfinite_forward", "nonfinite_backward") and first.cause == "log"
    assert first.severity == "error"
    if name != "checkpoint_reentrant":  # there the log ran under no_grad: no node until backward
        assert report.graph is not None and first.nodes
        node = report.graph.nodes[first.nodes[0]]
        assert (node["op"], node["module"]) == ("LogBackward0", layer)

    def frozen(model: nn.Module) -> None:
        params = list(model.parameters())
        for p in params[: len(params) // 2]:
            p.requires_grad_(False)

    found = gradlab.diagnose(broken(name, frozen))
    assert [f.kind for f in found] == ["frozen"]  # no error, no vanishing gradients


CLI_MODELS = ["gpt2", "bert", "vit", "cnn_channels_last", "checkpoint"]


def target_file(tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}_target.py"
    path.write_text(
        f"import sys\nsys.path.insert(0, {str(ROOT)!r})\n" + real_models.source(name),
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("name", arch_params(CLI_MODELS))
def test_the_cli_runs_a_make_that_builds_the_model(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = f"{target_file(tmp_path, name)}:make"
    out = tmp_path / "graph.json"
    assert main(["export", spec, "-o", str(out)]) == 0, capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert '"AccumulateGrad"' in text and '"grad"' in text
    capsys.readouterr()
    assert main(["steps", spec]) == 0
    steps = capsys.readouterr().out
    model, loss = make(name)
    count = sum(walk_classes(loss, leaf_names(model, loss))[0].values())
    assert f"Step 1 of {count}: " in steps and f"Step {count} of {count}: AccumulateGrad" in steps
    assert main(["doctor", spec]) == 0
    assert capsys.readouterr().out.strip() == f"{spec}: no problems found with the gradients."


@pytest.mark.parametrize("name", arch_params())
def test_collapse_names_are_the_model_s_modules(name: str) -> None:
    model, loss, _ = recorded(name)
    G = gradlab.trace(loss, model=model)
    modules = dict(model.named_modules())
    paths = {d["module"] for _, d in G.nodes(data=True) if d.get("module")}
    assert paths
    assert {p for p in paths if FOREIGN not in p} <= set(modules)
    for depth in (1, 2, 3):
        C = collapse(G, depth=depth)
        for _, d in C.nodes(data=True):
            if d["kind"] == "module" and d["repeat"] == 1 and FOREIGN not in d["name"]:
                assert d["name"] in modules, d["name"]


def test_a_loss_module_made_in_forward_is_marked() -> None:
    class Head(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return nn.CrossEntropyLoss()(self.fc(x), y)  # type: ignore[no-any-return]

    model = Head()
    with gradlab.record():
        loss = model(torch.randn(2, 4), torch.tensor([0, 2]))
    G = gradlab.trace(loss, model=model)
    paths = {d["module"] for _, d in G.nodes(data=True) if d.get("module")}
    assert paths == {"fc", "CrossEntropyLoss" + FOREIGN}
    with pytest.raises(AttributeError):
        model.get_submodule("CrossEntropyLoss" + FOREIGN)
