"""backward(): engine order, what flows into every node and along every edge."""

import pytest
import torch
from torch import nn

import gradlab
from gradlab.core.errors import TraceError
from gradlab.core.walk import walk


def test_scenario_2_non_scalar_fails_and_both_fixes_give_the_gradient() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    y = x**2
    G = gradlab.trace(y)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        gradlab.backward(y, G)
    gradlab.backward(y, G, gradient=torch.ones_like(y))  # fix 2: pass a gradient
    assert G.nodes["leaf0"]["grad"]["values"] == [4.0, 6.0]
    assert G.nodes["fn0"]["grad"]["values"] == [1.0, 1.0]

    x.grad = None
    s = (x**2).sum()  # fix 1: reduce first
    G = gradlab.backward(s, gradlab.trace(s))
    assert G.nodes["leaf0"]["grad"]["values"] == [4.0, 6.0] == x.grad.tolist()


def test_scenario_3_the_chain_rule_in_numbers() -> None:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    G = gradlab.trace(out, params={"x": x, "y": y, "z": z, "out": out})
    gradlab.backward(out, G)
    order = [(G.nodes[n]["op"], G.nodes[n]["grad"]["values"]) for n in gradlab.engine_order(G)]
    quarter, three_quarters, four_and_a_half = ([[v, v], [v, v]] for v in (0.25, 0.75, 4.5))
    assert order == [
        ("MeanBackward0", 1.0),
        ("MulBackward0", quarter),
        ("MulBackward0", three_quarters),
        ("AddBackward0", four_and_a_half),
        ("AccumulateGrad", four_and_a_half),
    ]
    add = next(n for n in G if G.nodes[n].get("name") == "y")
    into_square = [d["grad"]["values"] for _, _, d in G.out_edges(add, data=True)]
    assert into_square == [[[2.25, 2.25], [2.25, 2.25]]] * 2  # two edges, summed into 4.5
    assert x.grad.tolist() == four_and_a_half
    assert out.item() == 27.0


def test_engine_order_equals_hooks_registered_independently() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    loss = model(torch.randn(3, 4)).pow(2).sum()
    G = gradlab.trace(loss)
    fns, _ = walk([loss.grad_fn])
    seen: list[str] = []
    hooks = [fn.register_prehook(lambda g, fn=fn: seen.append(type(fn).__name__)) for fn in fns]
    gradlab.backward(loss, G, retain_graph=True)
    for h in hooks:
        h.remove()
    assert [G.nodes[n]["op"] for n in gradlab.engine_order(G)] == seen
    assert len(seen) == len(gradlab.op_nodes(G))


def test_backward_on_one_root_of_a_two_root_graph() -> None:
    x = torch.randn(3, requires_grad=True)
    e = x.exp()
    a, b = (e * 2).sum(), e.sin().sum()
    G = gradlab.trace(a, b)
    (want,) = torch.autograd.grad(b, x, retain_graph=True)
    gradlab.backward(b, G)
    assert G.nodes["leaf0"]["grad"]["values"] == want.tolist()
    stepped = {G.nodes[n]["op"] for n in gradlab.engine_order(G)}
    assert "SinBackward0" in stepped and "MulBackward0" not in stepped


def test_a_graph_from_another_tensor_is_refused() -> None:
    x = torch.randn(3, requires_grad=True)
    G = gradlab.trace((x * 2).sum())
    with pytest.raises(TraceError, match="not a root"):
        gradlab.backward((x * 3).sum(), G)
    with pytest.raises(TraceError, match="leaf"):
        gradlab.backward(x, G)


def test_backward_twice_needs_retain_graph_and_accumulates() -> None:
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    G = gradlab.trace(y)
    gradlab.backward(y, G, retain_graph=True)
    gradlab.backward(y, G)
    assert G.nodes["leaf0"]["grad"]["values"] == [4.0, 8.0]  # accumulated twice
    with pytest.raises(RuntimeError, match="second time"):
        gradlab.backward(y, G)


def test_multi_output_nodes_get_one_gradient_per_output() -> None:
    x = torch.arange(4.0, requires_grad=True)
    a, b = x.split(2)
    y = (a * 2 + b * 3).sum()
    G = gradlab.backward(y, gradlab.trace(y))
    split = next(n for n in gradlab.op_nodes(G) if G.nodes[n]["op"] == "SplitBackward0")
    grads = [g["values"] for g in G.nodes[split]["output_grads"]]
    assert grads == [[2.0, 2.0], [3.0, 3.0]]


def test_the_hooks_are_gone_after_an_error() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    y = x**2
    G = gradlab.trace(y)
    with pytest.raises(RuntimeError):
        gradlab.backward(y, G)
    calls: list[int] = []
    y.grad_fn.register_hook(lambda *_: calls.append(1))
    y.backward(torch.ones(2))  # runs once, with only our own hook
    assert calls == [1]


@pytest.mark.parametrize(
    "case", ["fresh", "accumulated", "leaf hook", "node prehook", "used twice"]
)
def test_edges_into_leaves_carry_what_the_consumer_sent(case: str) -> None:
    # What an edge into an AccumulateGrad carries can differ from the .grad it makes:
    # a tensor hook, a prehook on the node, an earlier .grad or a second consumer.
    torch.manual_seed(0)
    w = torch.randn(3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    x = torch.randn(2, 3)
    if case == "accumulated":
        w.grad, b.grad = torch.ones_like(w), torch.ones_like(b)
    if case == "leaf hook":
        w.register_hook(lambda g: g * 10)
    if case == "node prehook":
        accumulate = w.view_as(w).grad_fn.next_functions[0][0]  # type: ignore[union-attr]
        accumulate.register_prehook(lambda grads: (grads[0] * 10,))
    h = torch.addmm(b, x, w.t())
    loss = (h @ w).sum() if case == "used twice" else h.sum()
    G = gradlab.trace(loss, params={"w": w, "b": b})
    fns, _ = walk([loss.grad_fn])
    sent: dict[tuple[str, int], torch.Tensor] = {}  # (consumer op, slot) -> what it sent

    def keep(fn: object) -> object:
        def hook(grad_inputs: tuple, _: tuple) -> None:
            for slot, g in enumerate(grad_inputs):
                if g is not None:
                    sent[type(fn).__name__, slot] = g.clone()

        return hook

    hooks = [fn.register_hook(keep(fn)) for fn in fns if type(fn).__name__ != "AccumulateGrad"]
    gradlab.backward(loss, G)
    for handle in hooks:
        handle.remove()
    checked = 0
    for u, v, d in G.edges(data=True):
        if G.nodes[u].get("op") == "AccumulateGrad" and G.nodes[v]["kind"] == "op":
            want = sent[G.nodes[v]["op"], d["slot"]]
            assert d["grad"]["norm"] == pytest.approx(float(want.double().norm()), rel=1e-6)
            assert d["grad"]["min"] == want.min().item() and d["grad"]["max"] == want.max().item()
            checked += 1
    assert checked == (3 if case == "used twice" else 2)
    leaf = next(n for n in G if G.nodes[n].get("name") == "w")
    assert G.nodes[leaf]["grad"]["norm"] == pytest.approx(float(w.grad.double().norm()))
    if case in ("leaf hook", "node prehook"):  # the hook took effect on .grad, not the edge
        assert torch.allclose(w.grad, sent["TBackward0", 0] * 10)
