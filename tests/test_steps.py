"""The step-through of backward(): order, arriving and leaving gradients, checked against torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import gradlab
from gradlab.app.cli import main
from gradlab.core.errors import GradLabError
from gradlab.core.graph import Graph, engine_order
from gradlab.render.steps import step_lines
from gradlab.teach.steps import as_of, reached, steps


def engine_run(loss: torch.Tensor) -> list[tuple[str, list[torch.Tensor | None]]]:
    """An independent record of backward: a prehook on every Node, in the order they run."""
    seen: list[tuple[str, list[torch.Tensor | None]]] = []
    handles = []
    stack, visited = [loss.grad_fn], set()
    while stack:
        fn = stack.pop()
        if fn is None or fn in visited:
            continue
        visited.add(fn)

        def hook(grads: Any, fn: Any = fn) -> None:
            seen.append((type(fn).__name__, [g.clone() if g is not None else None for g in grads]))

        handles.append(fn.register_prehook(hook))
        stack.extend(f for f, _ in fn.next_functions)
    loss.backward(retain_graph=True)
    for h in handles:
        h.remove()
    return seen


def as_tensor(summary: Any) -> torch.Tensor:
    return torch.tensor(summary["values"])


def chain() -> tuple[Graph, dict[str, torch.Tensor]]:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    G = gradlab.trace(out, params={"x": x, "y": y, "z": z, "out": out})
    return G, {"x": x, "y": y, "z": z, "out": out}


PROGRAMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "chain": lambda x: ((x + 2) * (x + 2) * 3).mean(),
    "two paths": lambda x: (x.exp() * x.sin()).sum(),
    "split": lambda x: sum(p.pow(2).sum() for p in x.split(2)) + x[0],  # type: ignore[return-value]
    "softmax": lambda x: torch.softmax(x, 0).max() + torch.tanh(x).mean(),
}


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_the_steps_are_the_engines_own_order_with_its_gradients(name: str) -> None:
    x = torch.tensor([0.5, -1.0, 2.0, 0.25], requires_grad=True)
    with gradlab.record():
        loss = PROGRAMS[name](x)
    G = gradlab.trace(loss, params={"x": x})
    oracle = engine_run(loss)
    x.grad = None
    gradlab.backward(loss, G)
    listed = steps(G)
    assert [s.op for s in listed] == [op for op, _ in oracle]
    for step, (_, grads) in zip(listed, oracle, strict=True):
        if step.leaf is None and step.incoming is not None and grads[0] is not None:
            # what arrived is what the engine handed the op's backward
            torch.testing.assert_close(as_tensor(step.incoming), grads[0], rtol=0, atol=0)
    last = listed[-1]
    assert last.op == "AccumulateGrad" and last.leaf is not None
    assert x.grad is not None
    torch.testing.assert_close(as_tensor(last.leaf_grad), x.grad, rtol=0, atol=0)


def test_where_two_paths_meet_the_pieces_add_up_to_torchs_gradient() -> None:
    G, t = chain()
    gradlab.backward(t["out"], G)
    (dy,) = torch.autograd.grad(((t["x"] + 2) * (t["x"] + 2) * 3).mean(), t["x"])
    add = next(s for s in steps(G) if s.op == "AddBackward0")
    assert add.summed and len(add.arrivals) == 2
    assert [a.slot for a in add.arrivals] == [0, 1]
    pieces = sum(as_tensor(a.grad) for a in add.arrivals)
    torch.testing.assert_close(pieces, as_tensor(add.incoming))
    torch.testing.assert_close(as_tensor(add.incoming), dy)  # dL/dy == dL/dx for y = x + 2
    assert [as_tensor(a.grad).tolist() for a in add.arrivals] == [[[2.25, 2.25], [2.25, 2.25]]] * 2


def test_departures_are_what_each_op_sent_to_each_input() -> None:
    G, t = chain()
    dz, dy = torch.autograd.grad(t["out"], [t["z"], t["y"]], retain_graph=True)
    gradlab.backward(t["out"], G)
    mean = steps(G)[0]
    assert mean.op == "MeanBackward0" and [d.slot for d in mean.departures] == [0]
    torch.testing.assert_close(as_tensor(mean.departures[0].grad), dz)
    assert as_tensor(mean.departures[0].grad).tolist() == [[0.25, 0.25], [0.25, 0.25]]
    mul = steps(G)[2]  # y * y: sends a piece of y's gradient down each slot
    assert [d.receiver for d in mul.departures] == [mul.departures[0].receiver] * 2
    assert G.nodes[mul.departures[0].receiver]["op"] == "AddBackward0"
    torch.testing.assert_close(sum(as_tensor(d.grad) for d in mul.departures), dy)


def test_a_multi_output_op_keeps_its_outputs_apart() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    with gradlab.record():
        a, b = x.split(2)
        loss = (a * 2).sum() + (b * b).sum() + a.sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    split = next(s for s in steps(G) if s.op == "SplitBackward0")
    pieces = split.pieces()
    assert sorted(pieces) == [0, 1]
    assert as_tensor(pieces[0][1]).tolist() == [3.0, 3.0]  # 2 + 1
    assert as_tensor(pieces[1][1]).tolist() == [6.0, 8.0]  # 2·b
    assert as_tensor(split.departures[0].grad).tolist() == [3.0, 3.0, 6.0, 8.0]


def test_as_of_shows_only_what_the_engine_had_computed() -> None:
    G, t = chain()
    gradlab.backward(t["out"], G)
    order = engine_order(G)
    before = {n: dict(a) for n, a in G.nodes(data=True)}
    for k in range(-1, len(order)):
        H = as_of(G, k)
        holding = {n for n, g in H.nodes(data="grad") if g is not None}
        assert holding == reached(G, k)
        assert holding == {"out0", *order[: k + 1], *(["leaf0"] if k == len(order) - 1 else [])}
        for u, v, e in H.edges(data=True):
            ran = H.nodes[v]["kind"] == "output" or v in order[: k + 1]
            assert ("grad" in e) == ran, (u, v, k)
    assert {n: dict(a) for n, a in G.nodes(data=True)} == before  # G itself is untouched


def test_hiding_what_the_current_op_sends() -> None:
    G, t = chain()
    gradlab.backward(t["out"], G)
    H = as_of(G, 4, sent=False)  # AccumulateGrad of x, not yet revealed
    assert H.nodes["fn4"].get("grad") is not None  # what arrived is known
    assert H.nodes["leaf0"].get("grad") is None  # what x.grad becomes is hidden
    assert all("grad" not in e for _, v, e in H.edges(data=True) if v == "fn4")


def test_the_steps_read_in_words() -> None:
    G, t = chain()
    gradlab.backward(t["out"], G)
    listed = steps(G)
    assert step_lines(G, listed[3], len(listed)) == [
        "Step 4 of 5: AddBackward0 (→ y)",
        "Gradient arriving along 2 edges, summed:",
        "  from MulBackward0 (slot 0): [[2.25, 2.25], [2.25, 2.25]]",
        "  from MulBackward0 (slot 1): [[2.25, 2.25], [2.25, 2.25]]",
        "  sum: [[4.5, 4.5], [4.5, 4.5]]",
        "Sends down input 0 to AccumulateGrad of x: [[4.5, 4.5], [4.5, 4.5]]",
    ]


def test_a_graph_without_backward_has_no_steps() -> None:
    G, _ = chain()
    with pytest.raises(GradLabError, match="no backward pass yet"):
        steps(G)


def test_gradlab_steps_prints_every_step(capsys: pytest.CaptureFixture[str]) -> None:
    program = "x = torch.ones(2, 2, requires_grad=True)\ny = x + 2\nout = (y * y * 3).mean()\n"
    assert main(["steps", "--expr", program + "out.backward()"]) == 0
    out = capsys.readouterr().out
    assert out.count("Step ") == 5 and "sum: [[4.5, 4.5], [4.5, 4.5]]" in out
    assert "x.grad += [[4.5, 4.5], [4.5, 4.5]]" in out
    assert main(["steps", "--expr", program]) == 1
    assert "never calls backward()" in capsys.readouterr().err
