"""Scenarios 1-6 of SCENARIOS.md through run_program, checked against torch run directly."""

from __future__ import annotations

import torch

from gradlab.core.graph import saved_by
from gradlab.program import ProgramResult, run_program
from gradlab.teach.chain import card


def variable(result: ProgramResult, name: str):  # type: ignore[no-untyped-def]
    return next(v for v in result.variables if v.name == name)


def ops(result: ProgramResult) -> list[str]:
    assert result.graph is not None
    return sorted(d["op"] for _, d in result.graph.nodes(data=True) if d["kind"] == "op")


def test_scenario_1_leaf() -> None:
    r = run_program("x = torch.tensor([[1., 2., 3.], [4., 5., 6.]], requires_grad=True)")
    x = variable(r, "x")
    assert r.ok and x.is_leaf and x.requires_grad and x.grad_fn is None
    assert x.value["shape"] == [2, 3] and x.value["dtype"] == "float32"
    assert x.value["values"] == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]


def test_scenario_2_square_and_both_fixes() -> None:
    base = "x = torch.tensor([2., 3.], requires_grad=True)\ny = x ** 2\n"
    plain = run_program(base)
    pow_node = next(d for _, d in plain.graph.nodes(data=True) if d.get("op") == "PowBackward0")
    assert pow_node["value"]["values"] == [4.0, 9.0] and pow_node["name"] == "y"

    failed = run_program(base + "y.backward()")
    error = failed.error
    assert error is not None and error.line == 3 and error.kind == "runtime"
    assert error.explanation is not None and error.explanation.kind == "non_scalar_backward"
    assert any("y.sum().backward()" in f for f in error.explanation.fixes)
    assert any("torch.ones_like(y)" in f for f in error.explanation.fixes)
    assert failed.graph is not None and failed.graph.nodes[error.node]["op"] == "PowBackward0"

    for fix in ("y.sum().backward()", "y.backward(torch.ones_like(y))"):
        fixed = run_program(base + fix)
        assert fixed.ok and variable(fixed, "x").grad["values"] == [4.0, 6.0]


def test_scenario_3_the_classic_chain() -> None:
    r = run_program(
        "x = torch.ones(2, 2, requires_grad=True)\ny = x + 2\nz = y * y * 3\nout = z.mean()\n"
        "out.backward()"
    )
    assert r.ok and r.root == "out" and r.backward_calls == 1
    assert variable(r, "out").value["values"] == 27.0
    assert variable(r, "x").grad["values"] == [[4.5, 4.5], [4.5, 4.5]]
    assert ops(r) == [
        "AccumulateGrad",
        "AddBackward0",
        "MeanBackward0",
        "MulBackward0",
        "MulBackward0",
    ]
    G = r.graph
    add = next(n for n, d in G.nodes(data=True) if d.get("name") == "y")
    edges = list(G.out_edges(add, data=True))
    assert len(edges) == 2 and {d["slot"] for _, _, d in edges} == {0, 1}
    assert [d["grad"]["values"] for _, _, d in edges] == [[[2.25, 2.25], [2.25, 2.25]]] * 2
    assert G.nodes[add]["grad"]["values"] == [[4.5, 4.5], [4.5, 4.5]]
    order = [
        G.nodes[n]["op"]
        for n in sorted(
            (n for n in G if G.nodes[n].get("step") is not None), key=lambda n: G.nodes[n]["step"]
        )
    ]
    assert order == [
        "MeanBackward0",
        "MulBackward0",
        "MulBackward0",
        "AddBackward0",
        "AccumulateGrad",
    ]


def test_scenario_4_creating_tensors() -> None:
    r = run_program(
        "a = torch.empty(5, 3)\nb = torch.rand(5, 3)\nc = torch.zeros(5, 3, dtype=torch.long)\n"
        "d = torch.tensor([5.5, 3])\ne = d.new_ones(5, 3, dtype=torch.double)\n"
        "f = torch.randn_like(e, dtype=torch.float)\n"
        "shape, dtype, device = f.shape, f.dtype, f.device"
    )
    assert r.ok
    assert variable(r, "c").value["dtype"] == "int64"
    assert (
        variable(r, "e").value["dtype"] == "float64"
        and variable(r, "e").value["values"] == [[1.0] * 3] * 5
    )
    assert variable(r, "f").value["dtype"] == "float32"
    assert variable(r, "shape").text == "torch.Size([5, 3])"
    assert variable(r, "a").value["values"] == [[0.0] * 3] * 5  # empty is zero-filled here


def test_scenario_5_operations_and_both_in_place_errors() -> None:
    r = run_program(
        "y = torch.rand(5, 3)\nz = torch.rand(5, 3)\ns = y + z\nt = torch.add(y, z)\nz.add_(y)\n"
        "rows = torch.cat([y, z], dim=0)\ncols = torch.cat([y, z], dim=1)\nm = y @ y.T\ne = y * y"
    )
    assert r.ok
    assert variable(r, "rows").value["shape"] == [10, 3] and variable(r, "cols").value["shape"] == [
        5,
        6,
    ]
    assert variable(r, "m").value["shape"] == [5, 5] and variable(r, "e").value["shape"] == [5, 3]
    assert variable(r, "s").value == variable(r, "t").value

    leaf = run_program("w = torch.tensor([1., 2.], requires_grad=True)\nw.add_(1)")
    assert leaf.error is not None and leaf.error.explanation.kind == "inplace_leaf"
    assert leaf.error.line == 2

    needed = run_program(
        "x = torch.tensor([1., 2.], requires_grad=True)\ny = x.exp()\ny.add_(1)\ny.sum().backward()"
    )
    error = needed.error
    assert (
        error is not None and error.line == 4 and error.explanation.kind == "inplace_needed_tensor"
    )
    assert error.explanation.op == "ExpBackward0"
    assert needed.graph.nodes[error.node]["op"] == "ExpBackward0"
    assert "version" in error.explanation.why


def test_scenario_6_device() -> None:
    r = run_program(
        'device = "cuda" if torch.cuda.is_available() else "cpu"\nx = torch.ones(3).to(device)\n'
        "model = nn.Linear(3, 1).to(device)\nout = model(x)"
    )
    assert r.ok
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert variable(r, "x").text.endswith(expected)


def test_gradients_equal_torch_run_directly() -> None:
    program = (
        "torch.manual_seed(1)\nw = torch.randn(3, 3, requires_grad=True)\n"
        "b = torch.randn(3, requires_grad=True)\nh = torch.tanh(w @ torch.ones(3) + b)\n"
        "loss = (h * h).sum()\nloss.backward()"
    )
    r = run_program(program)
    torch.manual_seed(1)
    w = torch.randn(3, 3, requires_grad=True)
    b = torch.randn(3, requires_grad=True)
    h = torch.tanh(w @ torch.ones(3) + b)
    (gw, gb, gh) = torch.autograd.grad((h * h).sum(), [w, b, h])
    assert variable(r, "w").grad["values"] == gw.tolist()
    assert variable(r, "b").grad["values"] == gb.tolist()
    h_node = next(d for _, d in r.graph.nodes(data=True) if d.get("name") == "h")
    assert h_node["grad"]["values"] == gh.tolist()


def test_print_output_and_non_leaf_grad_notice() -> None:
    r = run_program(
        "x = torch.ones(2, requires_grad=True)\ny = x * 2\ny.sum().backward()\nprint(y.grad)"
    )
    assert r.ok and r.output == "None\n"
    assert any(
        n.explanation is not None and n.explanation.kind == "non_leaf_grad" for n in r.notices
    )


def test_without_backward_the_last_variable_is_traced() -> None:
    r = run_program("a = torch.ones(2, requires_grad=True)\nb = a * 3\nc = b.sum()")
    assert r.root == "c" and r.graph is not None
    assert all(d.get("step") is None for _, d in r.graph.nodes(data=True))


def test_syntax_errors_and_unknown_names_are_errors_with_lines() -> None:
    syntax = run_program("x = (1,\n")
    assert syntax.error is not None and syntax.error.kind == "syntax"
    unknown = run_program("x = 1\ny = nope + 1")
    assert unknown.error is not None and unknown.error.line == 2 and "nope" in unknown.error.message


def test_functions_loops_comprehensions_and_jacobian() -> None:
    r = run_program(
        "def f(x, p=3):\n    return (x ** p).sum()\nx = torch.tensor([1., 2.])\n"
        "j = torch.autograd.functional.jacobian(f, x)\nsquares = [i * i for i in range(4)]\n"
        "total = 0\nfor s in squares:\n    if s % 2 == 0:\n        continue\n    total += s\n"
        "a, *rest = squares"
    )
    assert r.ok, r.error
    assert variable(r, "j").value["values"] == [3.0, 12.0]
    assert variable(r, "total").text == "10" and variable(r, "rest").text == "[1, 4, 9]"


def test_what_ops_saved_for_backward_is_kept_and_equals_torch() -> None:
    source = (
        "x = torch.tensor([[1., 2.], [3., -1.]], requires_grad=True)\n"
        "t = torch.tensor([1, 0])\n"
        "loss = F.cross_entropy(x.exp() * 2, t)\n"
        "loss.backward()\n"
    )
    result = run_program(source)
    assert result.ok and result.graph is not None
    G = result.graph
    saved = {G.nodes[u]["attr"]: (u, v) for u, v in G.edges() if G.nodes[u]["kind"] == "saved"}
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    _, nll = saved["target"]
    assert G.nodes[nll]["op"] == "NllLossBackward0"
    assert G.nodes[saved["target"][0]]["value"]["values"] == [1, 0]
    exp_node = next(n for n, op in G.nodes(data="op") if op == "ExpBackward0")
    result_node = next(u for u in saved_by(G, exp_node) if G.nodes[u]["attr"] == "result")
    torch.testing.assert_close(torch.tensor(G.nodes[result_node]["value"]["values"]), x.exp())
    assert G.nodes[exp_node]["saved_bytes"] == x.numel() * 4
    rule = card(G, nll).rules[0]  # the target is known, so the rule's numbers are computed
    assert rule.computed is not None and rule.agrees


def test_tensor_comparisons_give_masks_as_in_python() -> None:
    result = run_program(
        "x = torch.tensor([-1., 2., 3.], requires_grad=True)\n"
        "mask = x > 0\n"
        "y = (x * mask).sum() + (x[x >= 3] ** 2).sum()\n"
        "y.backward()\n"
        "chained = 1 < 2 < 3\n"
    )
    assert result.ok, result.error
    x = torch.tensor([-1.0, 2.0, 3.0], requires_grad=True)
    ((x * (x > 0)).sum() + (x[x >= 3] ** 2).sum()).backward()
    assert variable(result, "x").grad["values"] == x.grad.tolist()  # type: ignore[union-attr]
    assert variable(result, "mask").value["values"] == [False, True, True]
    assert variable(result, "chained").text == "True"
    chain = run_program("x = torch.tensor([1., 2.])\nok = 0 < x < 3\n")  # as Python: ambiguous
    assert chain.error is not None and "ambiguous" in chain.error.message


# -- what tutorial code needs, beyond the lessons of test_tutorials.py ---------------------


def test_f_strings_format_as_python_does() -> None:
    source = (
        "x = 3.14159\nn = 42\nt = torch.tensor(2.5)\nname = 'loss'\n"
        "print(f'{name}: {x:.3f} {n:>5d} {n:05} {x:e} {t:.2f} {t} [{name:^9}] {n:,}')\n"
    )
    result = run_program(source)
    assert result.ok, result.error
    x, n, t, name = 3.14159, 42, torch.tensor(2.5), "loss"
    assert result.output == f"{name}: {x:.3f} {n:>5d} {n:05} {x:e} {t:.2f} {t} [{name:^9}] {n:,}\n"


def test_classes_super_and_imports_as_tutorials_write_them() -> None:
    source = (
        "from torch import nn\nfrom torch.nn import functional as F2\n"
        "class Base(nn.Module):\n"
        "    scale = 2.0\n"
        "    def __init__(self, width):\n"
        "        super(Base, self).__init__()\n"
        "        self.fc = nn.Linear(width, 1)\n"
        "class Net(Base):\n"
        "    def __init__(self):\n"
        "        super().__init__(3)\n"
        "        self.extra = [1, 2]\n"
        "    def forward(self, x):\n"
        "        return F2.relu(self.fc(x)) * self.scale + super().forward_base(x)\n"
        "    def forward_base(self, x):\n"
        "        return 0\n"
        "torch.manual_seed(0)\n"
        "net = Net()\n"
        "out = net(torch.ones(2, 3)).sum()\n"
        "total = sum(p.numel() for p in net.parameters())\n"
        "is_module = isinstance(net, nn.Module) and isinstance(net.extra, list)\n"
    )
    result = run_program(source)
    assert result.error is not None  # Base has no forward_base: Python says so, as it would
    assert "forward_base" in result.error.message
    fixed = run_program(source.replace("super().forward_base(x)", "self.forward_base(x)"))
    assert fixed.ok, fixed.error
    torch.manual_seed(0)
    fc = torch.nn.Linear(3, 1)
    expected = (torch.relu(fc(torch.ones(2, 3))) * 2.0).sum().item()
    assert variable(fixed, "out").value["values"] == expected  # type: ignore[index]
    assert variable(fixed, "total").text == "4"
    assert variable(fixed, "is_module").text == "True"


def test_program_functions_refuse_to_run_after_the_program() -> None:
    import ast

    from gradlab.program.limits import Limits
    from gradlab.program.policy import Refused
    from gradlab.program.run import _Run

    source = "def f():\n    return 1\nclass A(nn.Module):\n    def forward(self, x):\n" \
        "        return x\na = A()\n"  # fmt: skip
    done = _Run(source, Limits())
    result = done.run(ast.parse(source))
    assert result.ok
    namespace = done.interpreter.namespace
    for late in (lambda: namespace["f"](), lambda: namespace["a"](torch.ones(1))):
        try:
            late()
        except Refused as exc:
            assert "after the program" in str(exc)
        else:
            raise AssertionError("a program's function ran after the program ended")


def test_settings_a_program_changes_are_restored() -> None:
    result = run_program("torch.set_grad_enabled(False)\nx = torch.ones(2, requires_grad=True) * 2")
    assert result.ok
    assert torch.is_grad_enabled()


def test_hook_errors_name_the_line_inside_the_hook() -> None:
    result = run_program(
        "x = torch.ones(3, requires_grad=True)\n"
        "def hook(g):\n"
        "    return g + torch.ones(30000, 30000).sum()\n"
        "h = x.register_hook(hook)\n"
        "(x * 2).sum().backward()\n"
    )
    assert result.error is not None and result.error.kind == "limit"
    assert result.error.line == 3
