"""Chain-rule cards: every rule, evaluated from the card's own numbers, equals what torch sent."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradlab
from gradlab.core.collapse import collapse
from gradlab.core.graph import Graph
from gradlab.teach.chain import Card, card, has_card, tensor
from gradlab.teach.derivatives import RULES
from tests.conftest import app_test, screenshot, wait_for_app

Make = Callable[[], tuple[torch.Tensor, list[torch.Tensor]]]


def leaf(*shape: int, positive: bool = False) -> torch.Tensor:
    t = torch.randn(*shape)
    return (t.abs() + 0.5 if positive else t).requires_grad_()


# op -> the program: the op's output and the tensors in its input slots, in slot order
CASES: dict[str, tuple[str, Make]] = {
    "add": ("AddBackward0", lambda: _two(lambda a, b: a + b)),
    "add alpha, broadcast": ("AddBackward0", lambda: _pair(leaf(2, 3), leaf(3), lambda a, b:
                             torch.add(a, b, alpha=2.5))),
    "add a number (aten add.Scalar)": ("AddBackward1", lambda: _one(
        lambda x: torch.ops.aten.add.Scalar(x, 2, alpha=3))),
    "sub": ("SubBackward0", lambda: _two(lambda a, b: a - b)),
    "sub alpha": ("SubBackward0", lambda: _two(lambda a, b: torch.sub(a, b, alpha=3))),
    "sub a number (aten sub.Scalar)": ("SubBackward1", lambda: _one(
        lambda x: torch.ops.aten.sub.Scalar(x, 2))),
    "rsub tensors": ("RsubBackward0", lambda: _two(lambda a, b: torch.rsub(a, b, alpha=2))),
    "rsub": ("RsubBackward1", lambda: _one(lambda x: 2 - x)),
    "mul": ("MulBackward0", lambda: _two(lambda a, b: a * b)),
    "mul by a number": ("MulBackward0", lambda: _one(lambda x: x * 3)),
    "mul by a constant tensor": ("MulBackward0", lambda: _one(lambda x: x * torch.arange(3.0))),
    "mul (aten mul.Scalar)": ("MulBackward1", lambda: _one(
        lambda x: torch.ops.aten.mul.Scalar(x, 2.5))),
    "div": ("DivBackward0", lambda: _pair(leaf(2, 3), leaf(2, 3, positive=True),
                                          lambda a, b: a / b)),
    "div by a number": ("DivBackward0", lambda: _one(lambda x: x / 4)),
    "a constant divided by": ("DivBackward0", lambda: _divided(leaf(2, 3, positive=True))),
    "div (aten div.Scalar)": ("DivBackward1", lambda: _one(
        lambda x: torch.ops.aten.div.Scalar(x, 4))),
    "pow": ("PowBackward0", lambda: _one(lambda x: x**3)),
    "pow tensor exponent": ("PowBackward1", lambda: _pair(leaf(2, 3, positive=True), leaf(2, 3),
                                                         lambda a, b: a**b)),
    "pow of a number": ("PowBackward2", lambda: _one(lambda x: 2**x)),
    "pow square root": ("PowBackward0", lambda: _one(lambda x: x**0.5, positive=True)),
    "neg": ("NegBackward0", lambda: _one(lambda x: -x)),
    "exp": ("ExpBackward0", lambda: _one(torch.exp)),
    "log": ("LogBackward0", lambda: _one(torch.log, positive=True)),
    "sqrt": ("SqrtBackward0", lambda: _one(torch.sqrt, positive=True)),
    "abs": ("AbsBackward0", lambda: _one(torch.abs)),
    "sin": ("SinBackward0", lambda: _one(torch.sin)),
    "cos": ("CosBackward0", lambda: _one(torch.cos)),
    "tanh": ("TanhBackward0", lambda: _one(torch.tanh)),
    "sigmoid": ("SigmoidBackward0", lambda: _one(torch.sigmoid)),
    "relu": ("ReluBackward0", lambda: _one(F.relu)),
    "threshold": ("ThresholdBackward0", lambda: _one(lambda x: F.threshold(x, 0.1, 0.0))),
    "leaky relu": ("LeakyReluBackward0", lambda: _one(lambda x: F.leaky_relu(x, 0.2))),
    "gelu": ("GeluBackward0", lambda: _one(F.gelu)),
    "gelu tanh": ("GeluBackward0", lambda: _one(lambda x: F.gelu(x, approximate="tanh"))),
    "softmax": ("SoftmaxBackward0", lambda: _one(lambda x: F.softmax(x, dim=1))),
    "log-softmax": ("LogSoftmaxBackward0", lambda: _one(lambda x: F.log_softmax(x, dim=-1))),
    "sum": ("SumBackward0", lambda: _one(torch.sum)),
    "sum dim": ("SumBackward1", lambda: _one(lambda x: x.sum(-1))),
    "mean": ("MeanBackward0", lambda: _one(torch.mean)),
    "mean dim keepdim": ("MeanBackward1", lambda: _one(lambda x: x.mean(0, keepdim=True))),
    "max": ("MaxBackward1", lambda: _one(torch.max)),
    "max dim": ("MaxBackward0", lambda: _one(lambda x: x.max(dim=1).values)),
    "min dim keepdim": ("MinBackward0", lambda: _one(lambda x: x.min(0, keepdim=True).values)),
    "min": ("MinBackward1", lambda: _one(torch.min)),
    "max with ties": ("MaxBackward1", lambda: _single(
        torch.tensor([[1.0, 3.0], [3.0, 2.0]], requires_grad=True), torch.max)),
    "amax": ("AmaxBackward0", lambda: _single(
        torch.tensor([[1.0, 3.0, 3.0], [0.0, 2.0, -1.0]], requires_grad=True),
        lambda x: x.amax(1))),
    "amin keepdim": ("AminBackward0", lambda: _one(lambda x: x.amin(0, keepdim=True))),
    "matmul": ("MmBackward0", lambda: _pair(leaf(2, 3), leaf(3, 4), lambda a, b: a @ b)),
    "mm": ("MmBackward0", lambda: _pair(leaf(2, 3), leaf(3, 2), torch.mm)),
    "matmul matrix-vector": ("MvBackward0", lambda: _pair(leaf(2, 3), leaf(3), torch.matmul)),
    "matmul dot": ("DotBackward0", lambda: _pair(leaf(3), leaf(3), torch.matmul)),
    "addmm": ("AddmmBackward0", lambda: _three(leaf(4), leaf(2, 3), leaf(3, 4),
                                               lambda c, a, b: torch.addmm(c, a, b, beta=0.5,
                                                                           alpha=2))),
    "bmm": ("BmmBackward0", lambda: _pair(leaf(2, 2, 3), leaf(2, 3, 2), torch.bmm)),
    "t": ("TBackward0", lambda: _one(torch.t)),
    "transpose": ("TransposeBackward0", lambda: _single(leaf(2, 3, 2), lambda x:
                                                        x.transpose(0, 2))),
    "permute": ("PermuteBackward0", lambda: _single(leaf(2, 3, 2), lambda x: x.permute(2, 0, 1))),
    "view": ("ViewBackward0", lambda: _one(lambda x: x.view(3, 2))),
    "reshape": ("ViewBackward0", lambda: _one(lambda x: x.reshape(-1))),
    "reshape alias (aten)": ("ReshapeAliasBackward0", lambda: _one(
        lambda x: torch.ops.aten._reshape_alias(x, (3, 2), (2, 1)))),
    "unsafe view": ("UnsafeViewBackward0", lambda: (  # its input, mm's output, is internal
        torch.matmul(leaf(2, 2, 3), torch.ones(3, 2)), [None])),
    "unsqueeze": ("UnsqueezeBackward0", lambda: _one(lambda x: x.unsqueeze(1))),
    "squeeze": ("SqueezeBackward1", lambda: _single(leaf(2, 1, 3), lambda x: x.squeeze(1))),
    "squeeze all": ("SqueezeBackward0", lambda: _single(leaf(1, 2, 1), torch.squeeze)),
    "squeeze dims": ("SqueezeBackward2", lambda: _single(leaf(1, 2, 1), lambda x:
                                                         x.squeeze((0, 2)))),
    "expand": ("ExpandBackward0", lambda: _single(leaf(3), lambda x: x.expand(4, 3))),
    "cat": ("CatBackward0", lambda: _pair(leaf(2, 3), leaf(1, 3), lambda a, b:
                                          torch.cat([a, b], 0))),
    "cat dim 1": ("CatBackward0", lambda: _pair(leaf(2, 3), leaf(2, 1), lambda a, b:
                                                torch.cat([a, b], dim=1))),
    "stack": ("StackBackward0", lambda: _two(lambda a, b: torch.stack([a, b], 1))),
    "index": ("IndexBackward0", lambda: _one(lambda x: x[torch.tensor([1, 0, 1])])),
    "index columns": ("IndexBackward0", lambda: _one(lambda x: x[:, torch.tensor([2, 2, 0])])),
    "select": ("SelectBackward0", lambda: _one(lambda x: x[1])),
    "slice": ("SliceBackward0", lambda: _one(lambda x: x[:, 1:])),
    "clone": ("CloneBackward0", lambda: _one(torch.clone)),
    "linear": ("AddmmBackward0", lambda: _linear()),
    "conv2d": ("ConvolutionBackward0", lambda: _three(
        leaf(1, 1, 4, 4), leaf(2, 1, 3, 3), leaf(2),
        lambda x, w, b: F.conv2d(x, w, b, padding=1))),
    "conv2d stride groups": ("ConvolutionBackward0", lambda: _pair(
        leaf(1, 2, 5, 5), leaf(2, 1, 3, 3), lambda x, w: F.conv2d(x, w, stride=2, groups=2))),
    "max-pool": ("MaxPool2DWithIndicesBackward0", lambda: _single(
        leaf(1, 2, 4, 4), lambda x: F.max_pool2d(x, 2))),
    "max-pool overlapping": ("MaxPool2DWithIndicesBackward0", lambda: _single(
        leaf(1, 1, 5, 5), lambda x: nn.MaxPool2d(3, stride=1, padding=1)(x))),
    "mse loss": ("MseLossBackward0", lambda: _single(leaf(2, 3), lambda a:
                                                     F.mse_loss(a, torch.ones(2, 3)))),
    "mse loss sum, target with grad": ("MseLossBackward0", lambda: _two(
        lambda a, b: F.mse_loss(a, b, reduction="sum"))),
    "nll loss": ("NllLossBackward0", lambda: _one(lambda x: F.nll_loss(x, torch.tensor([0, 2])))),
    "nll loss 2d": ("NllLoss2DBackward0", lambda: _single(
        leaf(1, 3, 2, 2), lambda x: F.nll_loss(x, torch.tensor([[[0, 2], [1, 1]]])))),
    "nll loss ignore index none": ("NllLossBackward0", lambda: _single(
        leaf(3, 3), lambda x: F.nll_loss(x, torch.tensor([0, -100, 2]), reduction="none"))),
    "nll loss one sample": ("NllLossBackward0", lambda: _single(
        leaf(3), lambda x: F.nll_loss(x, torch.tensor(2)))),
    "nll loss weighted sum": ("NllLossBackward0", lambda: _one(lambda x: F.nll_loss(
        x, torch.tensor([1, 1]), weight=torch.tensor([1.0, 2.0, 3.0]), reduction="sum"))),
    "dropout": ("NativeDropoutBackward0", lambda: _one(lambda x:
                                                       torch.native_dropout(x, 0.5, True)[0])),
    "dropout module (cpu)": ("MulBackward0", lambda: _one(nn.Dropout(0.5))),
    "layer norm": ("NativeLayerNormBackward0", lambda: _three(
        leaf(2, 3), leaf(3), leaf(3), lambda x, w, b: F.layer_norm(x, (3,), w, b))),
    "layer norm module": ("NativeLayerNormBackward0", lambda: _layer_norm()),
    "embedding": ("EmbeddingBackward0", lambda: _single(
        leaf(5, 3), lambda w: F.embedding(torch.tensor([1, 0, 1, 4]), w))),
    "embedding padding": ("EmbeddingBackward0", lambda: _single(
        leaf(4, 2), lambda w: F.embedding(torch.tensor([[0, 3], [3, 2]]), w, padding_idx=3))),
}  # fmt: skip


def _single(x: torch.Tensor, f: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, list[Any]]:
    return f(x), [x]


def _one(f: Callable[..., torch.Tensor], positive: bool = False) -> tuple[torch.Tensor, list[Any]]:
    return _single(leaf(2, 3, positive=positive), f)


def _pair(a: torch.Tensor, b: torch.Tensor, f: Callable[..., torch.Tensor]) -> Any:
    return f(a, b), [a, b]


def _two(f: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, list[Any]]:
    return _pair(leaf(2, 3), leaf(2, 3), f)


def _three(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, f: Callable[..., Any]) -> Any:
    return f(a, b, c), [a, b, c]


def _divided(b: torch.Tensor) -> tuple[torch.Tensor, list[Any]]:
    return torch.arange(1.0, 7.0).reshape(2, 3) / b, [None, b]


def _linear() -> tuple[torch.Tensor, list[Any]]:
    layer = nn.Linear(3, 2)
    x = leaf(4, 3)
    return layer(x), [layer.bias, x, None]  # slot 2 is the layer's own Wᵀ, see below


def _layer_norm() -> tuple[torch.Tensor, list[Any]]:
    norm = nn.LayerNorm(3, eps=1e-3)  # another eps: the saved 1/σ must be used
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-1, 1)
    x = leaf(2, 3)
    return norm(x), [x, norm.weight, norm.bias]


def traced(make: Make, seed: int = 0, show_saved: bool = True) -> tuple[Graph, str, Any]:
    """Run ``make`` recorded, backpropagate a weighted sum of its output; the graph, the
    output's node id, and torch.autograd.grad's gradients for the op's inputs."""
    torch.manual_seed(seed)
    with gradlab.record():
        out, inputs = make()
        weights = torch.randn(out.shape)
        loss = (out * weights).sum()
    G = gradlab.trace(loss, params={"out": out, "loss": loss}, show_saved=show_saved)
    reachable = [t for t in inputs if t is not None]
    grads = iter(
        torch.autograd.grad(out, reachable, weights, retain_graph=True) if reachable else []
    )
    expected = [None if t is None else next(grads) for t in inputs]
    gradlab.backward(loss, G)
    n = next(m for m, name in G.nodes(data="name") if name == "out" and G.nodes[m]["kind"] == "op")
    return G, n, expected


def sent(G: Graph, n: str) -> dict[int, torch.Tensor]:
    """What the engine sent down each input slot of ``n``."""
    found = {}
    for _, _, data in G.in_edges(n, data=True):
        if data["kind"] == "flow":
            t = tensor(data["grad"])
            assert t is not None
            found[data["slot"]] = t
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_every_rule_from_its_numbers_equals_what_torch_sent(case: str) -> None:
    op, make = CASES[case]
    G, n, expected = traced(make)
    c = card(G, n)
    assert c.op == op and c.specific, (c.op, c.title)
    assert c.title != op
    edges = sent(G, n)
    assert sorted(r.slot for r in c.rules) == sorted(edges)
    for rule in c.rules:
        computed = tensor(rule.computed)
        assert computed is not None, f"{case}: slot {rule.slot} not computed ({rule.numbers})"
        torch.testing.assert_close(computed, edges[rule.slot])
        assert rule.agrees is True
        assert rule.formula.startswith("∂L/∂") and "=" in rule.numbers
    by_slot = {r.slot: tensor(r.computed) for r in c.rules}
    present = [s for s in range(len(expected)) if s in by_slot]
    for slot in present:
        if expected[slot] is not None:
            torch.testing.assert_close(by_slot[slot], expected[slot])


def test_linear_sends_w_transposed_its_gradient() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(3, 2)
    x = leaf(4, 3)
    with gradlab.record():
        loss = layer(x).square().sum()
    G = gradlab.trace(loss, model=layer, params={"x": x})
    gradlab.backward(loss, G)
    c = _card_of(G, "AddmmBackward0")
    assert c.title == "Linear layer (addmm)" and c.forward == "Z = bias + x·Wᵀ"
    assert c.rules[2].formula == "∂L/∂Wᵀ = xᵀ·∂L/∂Z"
    assert layer.weight.grad is not None
    torch.testing.assert_close(tensor(c.rules[2].computed), layer.weight.grad.t())
    t = card(G, c.rules[2].input)  # the TBackward0 of W
    assert t.op == "TBackward0" and t.rules[0].formula == "∂L/∂weight = ∂L/∂yᵀ"
    torch.testing.assert_close(tensor(t.rules[0].computed), layer.weight.grad)


def test_the_real_names_under_this_torch() -> None:
    """The ops an introductory course uses map onto these autograd classes, all with rules."""
    assert set(RULES) <= set(dir(torch._C._functions))  # every rule names a real class
    assert {op for op, _ in CASES.values()} <= set(RULES)
    names = {
        "nn.Linear": (nn.Linear(3, 2)(leaf(4, 3)), "AddmmBackward0"),
        "cross_entropy": (F.cross_entropy(leaf(2, 3), torch.tensor([0, 1])), "NllLossBackward0"),
        "relu": (torch.relu(leaf(2)), "ReluBackward0"),
        "x.T": (leaf(2, 3).T, "PermuteBackward0"),
        "max()": (leaf(3).max(), "MaxBackward1"),
        "max(dim)": (leaf(2, 3).max(1).values, "MaxBackward0"),
        "x[0]": (leaf(2, 3)[0], "SelectBackward0"),
        "x[:, 1:]": (leaf(2, 3)[:, 1:], "SliceBackward0"),
        "conv": (nn.Conv2d(1, 1, 3)(leaf(1, 1, 4, 4)), "ConvolutionBackward0"),
        "dropout on cpu": (F.dropout(leaf(4), 0.5), "MulBackward0"),
    }
    for what, (t, op) in names.items():
        assert t.grad_fn is not None and type(t.grad_fn).__name__ == op, what
        assert op in RULES


def test_square_card_literal_text() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    with gradlab.record():
        y = x**2
        loss = y.sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x, "y": y}))
    c = card(G, "fn1")
    assert (c.op, c.title, c.forward) == ("PowBackward0", "Power", "y = x^2")
    assert c.incoming == "∂L/∂y = [1., 1.]"
    (rule,) = c.rules
    assert rule.formula == "∂L/∂x = ∂L/∂y · 2·x"
    assert rule.numbers == "∂L/∂x = [1., 1.] · 2·[2., 3.] = [4., 6.]"
    assert rule.computed is not None and rule.computed["values"] == [4.0, 6.0]
    assert rule.result is not None and rule.result["values"] == [4.0, 6.0]
    assert (rule.input, rule.name) == ("fn2", "x")


def test_literal_text_of_mul_sum_and_relu() -> None:
    a = torch.tensor([1.0, -2.0], requires_grad=True)
    b = torch.tensor([3.0, 4.0], requires_grad=True)
    with gradlab.record():
        z = a * b
        r = torch.relu(z)
        loss = r.sum()
    names = {"a": a, "b": b, "z": z, "r": r, "loss": loss}
    G = gradlab.backward(loss, gradlab.trace(loss, params=names))
    mul = card(G, "fn2")
    assert mul.forward == "z = a ⊙ b"
    assert [r.formula for r in mul.rules] == ["∂L/∂a = ∂L/∂z ⊙ b", "∂L/∂b = ∂L/∂z ⊙ a"]
    assert mul.rules[0].numbers == "∂L/∂a = [1., 0.] ⊙ [3., 4.] = [3., 0.]"
    relu = card(G, "fn1")
    assert relu.rules[0].formula == "∂L/∂z = ∂L/∂r ⊙ [r > 0]"
    assert relu.rules[0].numbers == "∂L/∂z = [1., 1.] ⊙ [[3., 0.] > 0] = [1., 0.]"
    total = card(G, "fn0")
    assert total.rules[0].formula == "∂L/∂r = ∂L/∂loss, copied to every element (shape (2,))"


def test_y_times_y_shows_the_sum_where_two_paths_meet() -> None:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    G = gradlab.backward(out, gradlab.trace(out, params={"x": x, "y": y, "out": out}))
    square = next(n for n in G if G.nodes[n].get("op") == "MulBackward0" and _flows_in(G, n) == 2)
    c = card(G, square)
    assert [r.formula for r in c.rules] == ["∂L/∂y = ∂L/∂z ⊙ y"] * 2
    (meet,) = c.sums
    assert meet.node == next(iter(G.predecessors(square))) and meet.name == "y"
    assert [p.slot for p in meet.parts] == [0, 1]
    assert [p.grad["values"] for p in meet.parts if p.grad] == [[[2.25, 2.25], [2.25, 2.25]]] * 2
    assert meet.total is not None and meet.total["values"] == [[4.5, 4.5], [4.5, 4.5]]
    assert meet.computed is not None and meet.computed["values"] == meet.total["values"]
    assert meet.text == "∂L/∂y = [[2.25, 2.25], [2.25, 2.25]] + [[2.25, 2.25], [2.25, 2.25]] = " \
        "[[4.5, 4.5], [4.5, 4.5]]"  # fmt: skip
    (expected,) = torch.autograd.grad((y * y * 3).mean(), [y])
    torch.testing.assert_close(tensor(meet.total), expected)
    add = card(G, meet.node)  # the add's own card shows the same sum as its incoming gradient
    assert add.sums and add.sums[0].text == meet.text


def test_playground_programs_name_tensors_as_the_graph_does() -> None:
    from gradlab.program import run_program
    from gradlab.teach import examples

    G = run_program(examples.get("chain").source).graph  # type: ignore[union-attr]
    assert G is not None
    square = next(n for n in G if G.nodes[n].get("op") == "MulBackward0" and _flows_in(G, n) == 2)
    assert card(G, square).forward == "z′ = y ⊙ y"  # its output has no name, and z is taken
    G = run_program(examples.get("linear_step").source).graph  # type: ignore[union-attr]
    assert G is not None
    linear = _card_of(G, "AddmmBackward0")
    bias = next(r for r in linear.rules if r.slot == 0)
    names = {d.get("name") for _, d in G.nodes(data=True) if d["kind"] == "leaf"}
    assert names == {"model.weight", "model.bias"}  # the module names its parameters
    assert "leaf" not in linear.forward and linear.forward == f"Z = {bias.name} + x·Wᵀ"
    assert bias.agrees is True  # the program was traced again after backward(): args survive
    mse = _card_of(G, "MseLossBackward0")  # programs keep what ops saved: the target y too
    assert all(r.computed is not None and r.agrees for r in mse.rules)
    assert "show_saved=True" not in mse.note


def test_accumulate_grad_card_and_gradients_that_pile_up() -> None:
    w = torch.tensor([1.0, -2.0], requires_grad=True)
    for _ in range(2):  # no zero_grad(): the second backward adds to .grad
        with gradlab.record():
            loss = (w * w).sum()
        G = gradlab.backward(loss, gradlab.trace(loss, params={"w": w}))
    acc = next(n for n in G if G.nodes[n].get("op") == "AccumulateGrad")
    c = card(G, acc)
    assert c.specific and c.title == "AccumulateGrad: into w.grad"
    assert c.rules[0].formula == "w.grad += ∂L/∂w"
    assert c.rules[0].numbers == "w.grad += [2., -4.]"
    assert c.accumulated is not None and c.accumulated["values"] == [4.0, -8.0]
    assert w.grad is not None and w.grad.tolist() == [4.0, -8.0]
    assert "already held a gradient" in c.note and "zero_grad" in c.note
    assert c.sums and c.sums[0].text == "∂L/∂w = [1., -2.] + [1., -2.] = [2., -4.]"  # w * w
    leaf_node = next(iter(G.predecessors(acc)))
    assert has_card(G, leaf_node) and card(G, leaf_node) == c


def test_generic_card_for_an_op_without_a_rule() -> None:
    x = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    with gradlab.record():
        y = F.softplus(x)
        loss = y.sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x, "y": y}))
    c = card(G, "fn1")
    assert c.op == "SoftplusBackward0" and "SoftplusBackward0" not in RULES
    assert not c.specific and c.title == "SoftplusBackward0"
    assert c.forward == "y = Softplus(x)"
    assert "PyTorch's `SoftplusBackward0`'s derivative" in c.note
    (rule,) = c.rules
    assert rule.formula == "∂L/∂x = PyTorch's SoftplusBackward0 derivative applied to ∂L/∂y"
    (expected,) = torch.autograd.grad(F.softplus(x).sum(), [x])
    torch.testing.assert_close(tensor(rule.result), expected)
    assert rule.numbers == "∂L/∂x = " + gradlab.core.text.values(expected.tolist())
    assert c.incoming == "∂L/∂y = [1., 1., 1.]"


def test_arguments_a_rule_was_not_written_for_give_the_generic_card() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    with gradlab.record():
        loss = (x**2).sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    G.nodes["fn1"]["args"] = {"exponent": "two"}  # not a number: PowBackward0's rule gives up
    c = card(G, "fn1")
    assert not c.specific and c.title == "PowBackward0"
    assert c.rules[0].result is not None and c.rules[0].result["values"] == [4.0, 6.0]


def test_cross_entropy_is_log_softmax_then_nll() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.1, 0.2, 3.0]], requires_grad=True)
    target = torch.tensor([1, 2])
    with gradlab.record():
        loss = F.cross_entropy(logits, target)
    G = gradlab.trace(loss, params={"logits": logits}, show_saved=True)
    gradlab.backward(loss, G)
    nll = card(G, "fn0")
    assert nll.op == "NllLossBackward0" and nll.title == "Cross-entropy (NLL loss)"
    log_softmax = card(G, nll.rules[0].input)
    assert log_softmax.op == "LogSoftmaxBackward0"
    (rule,) = log_softmax.rules
    expected = (torch.softmax(logits, 1) - F.one_hot(target, 3)) / 2
    torch.testing.assert_close(tensor(rule.computed), expected.detach())
    assert rule.agrees is True


def test_without_saved_tensors_the_card_says_how_to_see_them() -> None:
    G, n, _ = traced(CASES["nll loss"][1], show_saved=False)
    c = card(G, n)
    assert c.specific and c.rules[0].computed is None and c.rules[0].agrees is None
    assert "show_saved=True" in c.note
    assert c.rules[0].result is not None  # what was sent is still shown


def test_before_backward_the_card_has_formulas_but_no_gradients() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    with gradlab.record():
        loss = (x**2).sum()
    c = card(gradlab.trace(loss, params={"x": x}), "fn1")
    assert c.rules[0].formula == "∂L/∂x = ∂L/∂y · 2·x"
    assert c.rules[0].numbers == "∂L/∂x = ∂L/∂y · 2·[2., 3.]"
    assert c.grad is None and "run backward()" in c.incoming


def test_big_tensors_are_shown_by_shape_and_summary() -> None:
    G, n, _ = traced(lambda: _single(leaf(10, 10), torch.tanh))
    c = card(G, n)
    assert c.rules[0].computed is None and "⟨(10, 10), mean" in c.rules[0].numbers


def test_cards_for_other_kinds_of_node_are_refused_clearly() -> None:
    x = torch.tensor([1.0], requires_grad=True)
    G = gradlab.trace((x * 2).sum(), show_saved=True)
    assert not has_card(G, "out0") and not has_card(G, "nope")
    with pytest.raises(ValueError, match="output node; pick an op or a leaf"):
        card(G, "out0")
    with pytest.raises(KeyError, match="no node"):
        card(G, "nope")


def test_cards_in_a_collapsed_model_view() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(2, 3)
    with gradlab.record():
        loss = model(x).square().sum()
    G = gradlab.trace(loss, model=model)
    gradlab.backward(loss, G)
    C = collapse(G, 1)
    modules = [n for n in C if C.nodes[n]["kind"] == "module"]
    assert modules and not any(has_card(C, m) for m in modules)
    square = next(n for n in C if C.nodes[n].get("op") == "PowBackward0")
    c = card(C, square)  # its input is the last Linear's module node, with that layer's output
    assert c.rules[0].input in modules and c.rules[0].agrees is True
    torch.testing.assert_close(tensor(c.rules[0].computed), tensor(card(G, square).rules[0].result))


# -- the args attribute ----------------------------------------------------------------


def test_args_hold_the_scalars_ops_keep(tmp_path: Path) -> None:
    x = torch.randn(2, 3, requires_grad=True)
    y = F.leaky_relu(x**3, 0.2).softmax(-1).sum(dim=(0, 1))
    y = F.gelu(y, approximate="tanh") + F.nll_loss(x, torch.tensor([0, 1]))
    G = gradlab.trace(y)
    by_op = {G.nodes[n]["op"]: G.nodes[n]["args"] for n in gradlab.op_nodes(G)}
    assert by_op["PowBackward0"] == {"exponent": 3}
    assert by_op["LeakyReluBackward0"] == {"negative_slope": 0.2}
    assert by_op["SoftmaxBackward0"] == {"dim": -1}  # PyTorch hands it over as 2**64 - 1
    assert by_op["SumBackward1"] == {"dim": [0, 1], "keepdim": False, "self_sym_sizes": [2, 3]}
    assert by_op["GeluBackward0"] == {"approximate": "tanh"}
    assert by_op["NllLossBackward0"] == {"ignore_index": -100, "reduction": 1}
    assert by_op["AccumulateGrad"] == {}
    for suffix in ("json", "graphml"):
        back = gradlab.load(gradlab.save(G, tmp_path / f"g.{suffix}"))
        for n in gradlab.op_nodes(G):
            assert json.dumps(back.nodes[n]["args"]) == json.dumps(G.nodes[n]["args"]), n


def test_args_survive_backward_freeing_the_saved_tensors() -> None:
    x = torch.randn(3, requires_grad=True)
    y = (x**2).sum()
    y.backward()  # frees x, saved by PowBackward0; the exponent stays
    G = gradlab.trace(y)
    assert G.nodes["fn1"]["args"] == {"exponent": 2}


# -- the app ---------------------------------------------------------------------------


def test_playground_node_cards_carry_the_chain_rule() -> None:
    from tests.viewer_app import viewer_data

    at = app_test("playground.py")
    assert not at.exception
    nodes = {n["id"]: n for n in viewer_data(at)["payload"]["nodes"]}
    power = next(n for n in nodes.values() if n["label"] == "PowBackward0")
    assert power["card"].startswith("Chain rule: Power")
    assert "∂L/∂x = ∂L/∂y · 2·x" in power["card"]
    assert "∂L/∂x = [1., 1.] · 2·[2., 3.] = [4., 6.]" in power["card"]
    assert "✓ the formula gives what PyTorch sent" in power["card"]


@pytest.mark.browser
def test_the_card_in_a_real_browser(app_url: str, page: Any) -> None:
    page.goto(f"{app_url}/playground?example=square&node=fn1")
    wait_for_app(page)
    card = page.locator(".glv .glv-card")
    card.get_by_text("Chain rule: Power").wait_for()
    assert card.get_by_text("∂L/∂x = [1., 1.] · 2·[2., 3.] = [4., 6.]").first.is_visible()
    assert card.get_by_text("the formula gives what PyTorch sent").first.is_visible()
    screenshot(page, "chain_card")


def _card_of(G: Graph, op: str) -> Card:
    return card(G, next(n for n in G if G.nodes[n].get("op") == op))


def _flows_in(G: Graph, n: str) -> int:
    """Flow edges into ``n`` (saved-tensor edges left out)."""
    return sum(1 for _, _, kind in G.in_edges(n, data="kind") if kind == "flow")
