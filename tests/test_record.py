"""record(): every op's forward value, module paths, copy-on-write."""

import threading

import torch
import torch.nn.functional as F
from torch import nn

import gradlab
from gradlab.record import recorded_value


def test_values_of_every_op_including_inside_composites() -> None:
    a = torch.randn(2, 3, requires_grad=True)
    target = torch.tensor([0, 2])
    with gradlab.record() as rec:
        loss = F.cross_entropy(a, target)
    G = gradlab.trace(loss)
    ops = {G.nodes[n]["op"]: G.nodes[n] for n in gradlab.op_nodes(G)}
    # cross_entropy is one Python call but two autograd nodes; both get values.
    log_probs = torch.log_softmax(a, dim=1)
    assert ops["LogSoftmaxBackward0"]["value"]["values"] == log_probs.tolist()
    assert ops["NllLossBackward0"]["value"]["values"] == loss.item()
    assert rec.ops >= 2


def test_value_is_kept_even_when_the_tensor_is_later_changed_in_place() -> None:
    a = torch.randn(3, requires_grad=True)
    with gradlab.record() as rec:
        w = a.clone()
        before = w.detach().clone()
        w.mul_(3)  # overwrites the clone's output
        out = w.sum()
    G = gradlab.trace(out)
    by_op = {G.nodes[n]["op"]: G.nodes[n]["value"] for n in gradlab.op_nodes(G)}
    assert by_op["CloneBackward0"]["values"] == before.tolist()
    assert by_op["MulBackward0"]["values"] == (before * 3).tolist()
    assert rec.copies == 1


def test_a_change_outside_the_recorder_makes_the_value_unknown_not_wrong() -> None:
    a = torch.randn(3, requires_grad=True)
    with gradlab.record():
        e = a.exp()
    assert recorded_value(e.grad_fn) is not None
    with torch.no_grad():
        e.add_(1)
    assert recorded_value(e.grad_fn) is None
    assert gradlab.trace(e).nodes["fn0"].get("value") is None


def test_module_paths_and_types() -> None:
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
    with gradlab.record():
        out = model(torch.randn(5, 3)).sum()
    G = gradlab.trace(out, model=model)
    modules = {
        (d["op"], d["module"], d["module_type"]) for _, d in G.nodes(data=True) if d["kind"] == "op"
    }
    assert ("ReluBackward0", "1", "ReLU") in modules
    assert ("AddmmBackward0", "2.0", "Linear") in modules
    assert ("AddmmBackward0", "0", "Linear") in modules
    assert ("SumBackward0", None, None) in modules  # outside any module


def test_without_record_there_are_no_op_values() -> None:
    x = torch.ones(2, requires_grad=True)
    G = gradlab.trace((x * 2).sum())
    assert all(
        G.nodes[n].get("value") is None
        for n in gradlab.op_nodes(G)
        if G.nodes[n]["op"] != "AccumulateGrad"
    )
    assert G.nodes["leaf0"]["value"]["values"] == [1.0, 1.0]  # leaves are read directly


def test_module_hooks_are_removed_and_other_threads_are_not_recorded() -> None:
    from torch.nn.modules import module as nn_module

    hooks_before = len(nn_module._global_forward_pre_hooks)
    seen_in_other_thread: list[object] = []

    def other() -> None:
        lin = nn.Linear(2, 2)
        y = lin(torch.ones(1, 2))
        seen_in_other_thread.append(y.grad_fn.metadata.get("gradlab"))

    with gradlab.record():
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen_in_other_thread == [None]
    assert len(nn_module._global_forward_pre_hooks) == hooks_before


def test_nested_record_blocks_are_one() -> None:
    x = torch.ones(2, requires_grad=True)
    with gradlab.record() as outer, gradlab.record() as inner:
        y = x * 2
    assert inner is outer
    assert recorded_value(y.grad_fn) is not None


def test_a_layer_called_from_a_module_list_is_named_by_its_path() -> None:
    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(3))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for layer in self.layers:  # the ModuleList itself is never called
                x = layer(x).tanh()
            return x

    model = Stack()
    with gradlab.record():
        out = model(torch.ones(1, 2)).sum()
    G = gradlab.trace(out, model=model)
    addmm = sorted(
        (a["seq"], a["module"]) for _, a in G.nodes(data=True) if a.get("op") == "AddmmBackward0"
    )
    assert [m for _, m in addmm] == ["layers.0", "layers.1", "layers.2"]
