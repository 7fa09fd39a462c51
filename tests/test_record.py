"""record(): every op's forward value, module paths, copy-on-write."""

import threading
import warnings

import torch
import torch.nn.functional as F
from torch import nn

import gradlab
from gradlab.core.record import recorded_value


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


def test_an_embedding_with_a_padding_index_can_be_built_inside_record() -> None:
    # Its reset_parameters zeroes the padding row under no_grad, in place on a view.
    with gradlab.record():
        emb = nn.Embedding(10, 4, padding_idx=0)
        loss = emb(torch.tensor([0, 3])).sum()
    G = gradlab.trace(loss, model=emb)
    ops = [G.nodes[n]["op"] for n in gradlab.op_nodes(G)]
    assert ops == ["SumBackward0", "EmbeddingBackward0", "AccumulateGrad"]
    assert torch.equal(emb.weight[0], torch.zeros(4))


def test_nothing_is_kept_of_ops_run_with_grad_mode_off() -> None:
    a = torch.randn(3, requires_grad=True)
    with gradlab.record() as rec, torch.no_grad():
        (a * 2).sum()
    assert rec.ops == 0


def _classes(loss: torch.Tensor) -> list[str]:
    from gradlab.core.walk import walk

    return sorted(type(fn).__name__ for fn in walk([loss.grad_fn])[0])


def test_record_keeps_the_plain_run_s_reshape_classes_and_their_values() -> None:
    x = torch.randn(2, 3, 4, requires_grad=True)

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = x * 1
        viewable = y[..., :2].reshape(6, 2)  # a view, not contiguous: ReshapeAliasBackward0
        copied = y.transpose(0, 1).reshape(3, 8)  # no view possible: a copy
        batched = torch.matmul(y.transpose(1, 2), y)  # expand + reshape inside matmul
        return viewable, copied, batched

    plain = [type(t.grad_fn).__name__ for t in run()]
    assert plain == ["ReshapeAliasBackward0", "UnsafeViewBackward0", "UnsafeViewBackward0"]
    with gradlab.record():
        outs = run()
        loss = sum(t.sum() for t in outs)
    assert [type(t.grad_fn).__name__ for t in outs] == plain
    G = gradlab.trace(loss)
    node = {(d["op"], d["seq"]): d for _, d in G.nodes(data=True) if d["kind"] == "op"}

    def of(fn: object) -> dict:  # type: ignore[type-arg]
        return node[(type(fn).__name__, fn._sequence_nr())]  # type: ignore[attr-defined]

    alias = of(outs[0].grad_fn)
    assert alias["value"]["values"] == outs[0].tolist() and alias["module"] is None
    clone = of(outs[1].grad_fn.next_functions[0][0])  # the copy reshape made
    assert clone["op"] == "CloneBackward0"
    assert clone["value"]["values"] == (x * 1).transpose(0, 1).tolist()
    assert all(d["value"] is not None for d in G.nodes.values() if d.get("kind") == "op"
               and d["op"] != "AccumulateGrad")  # fmt: skip


def test_a_transformer_s_graph_is_the_same_inside_record() -> None:
    torch.manual_seed(0)
    with warnings.catch_warnings():  # nested tensors need batch_first
        warnings.simplefilter("ignore", UserWarning)
        model = nn.Transformer(d_model=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=32)  # fmt: skip
    src, tgt = torch.randn(5, 2, 16), torch.randn(4, 2, 16)
    torch.manual_seed(1)
    plain = _classes(model(src, tgt).sum())
    assert "ReshapeAliasBackward0" in plain
    torch.manual_seed(1)
    with gradlab.record():
        loss = model(src, tgt).sum()
    assert _classes(loss) == plain


def test_reshape_under_another_dispatch_mode_is_left_to_it() -> None:
    from torch.utils._python_dispatch import TorchDispatchMode

    seen: list[str] = []

    class Log(TorchDispatchMode):  # type: ignore[misc]
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            seen.append(str(func))
            return func(*args, **(kwargs or {}))

    x = torch.randn(2, 3, 4, requires_grad=True)
    with gradlab.record(), Log():
        y = x[..., :2].reshape(6, 2)
    assert "aten.view.default" in seen  # the inner mode saw PyTorch's own decomposition
    assert type(y.grad_fn).__name__ == "ViewBackward0"
    # and once record() is over, reshape is PyTorch's alone again
    assert type(x[..., :2].reshape(6, 2).grad_fn).__name__ == "ReshapeAliasBackward0"
