"""Finding 5: silent shape traps in a loss.

* A prediction of shape ``(N, 1)`` against a target of shape ``(N,)``: the
  difference broadcasts to ``(N, N)``, every prediction is compared with every
  target, and the loss runs without an error. PyTorch warns for
  ``F.mse_loss``/``l1_loss``; a hand-written ``((pred - y) ** 2).mean()`` gets
  no warning, so the call log is read too.
* ``cross_entropy`` fed probabilities (rows in [0, 1] summing to 1) where it
  wants logits: it applies log_softmax itself, so the softmax is applied twice
  and the gradients shrink. ``nll_loss`` fed non-negative values where it
  wants log-probabilities.
"""

from __future__ import annotations

import torch

from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding
from gradlab.diagnose.observe import Call
from gradlab.teach.explain import explain

_SUB = ("sub", "__sub__", "__rsub__", "rsub")
_BROADCAST_FIX = (
    "Make the shapes equal: loss_fn(pred.squeeze(1), y), or y = y.view(-1, 1) (y.unsqueeze(1))."
)


@check(kinds=("broadcast_loss", "wrong_loss_input"), family="shapes", order=50)
def find(ev: Evidence) -> list[Finding]:
    """Broadcast losses and loss functions fed the wrong kind of input."""
    findings: list[Finding] = []
    broadcast = _broadcast_from_warnings(ev) or _broadcast_from_calls(ev)
    if broadcast is not None:
        findings.append(broadcast)
    if ev.calls is not None:
        wrong = next((f for c in ev.calls if (f := _wrong_input(c, ev)) is not None), None)
        if wrong is not None:
            findings.append(wrong)
    return findings


def _broadcast_from_warnings(ev: Evidence) -> Finding | None:
    for message in ev.warnings:
        lesson = explain(message)
        if lesson is not None and lesson.kind == "loss_broadcast":
            node = _loss_node(ev)
            return Finding(
                "broadcast_loss", "warning", (node,) if node else (),
                "The loss broadcasts the target against the prediction",
                lesson.why + " PyTorch only warns; training runs and learns the wrong thing "
                "(towards the mean of the targets).",
                _BROADCAST_FIX, "loss", "warning",
            )  # fmt: skip
    return None


def _broadcast_from_calls(ev: Evidence) -> Finding | None:
    for call in ev.calls or ():
        if call.name not in _SUB or not isinstance(call.out, torch.Tensor):
            continue
        shapes = [tuple(a.shape) for a in call.inputs() if isinstance(a, torch.Tensor)]
        if len(shapes) != 2:
            continue
        (a, b), out = shapes, tuple(call.out.shape)
        n = out[0] if len(out) == 2 and out[0] == out[1] and out[0] > 1 else 0
        if n and {a, b} == {(n, 1), (n,)}:
            node = ev.index.tensor(call.out)
            return Finding(
                "broadcast_loss", "warning", (node,) if node else (),
                "A difference broadcasts (N, 1) against (N,) into (N, N)",
                f"pred - y with shapes {a} and {b} gives a {out} matrix: every prediction is "
                "compared with every target. No error, no warning: the loss is silently wrong "
                "and the model learns towards the mean of the targets.",
                _BROADCAST_FIX, "subtraction", "subtract",
            )  # fmt: skip
    return None


def _wrong_input(call: Call, ev: Evidence) -> Finding | None:
    if call.name not in ("cross_entropy", "nll_loss") or not call.args:
        return None
    x = call.args[0]
    if not isinstance(x, torch.Tensor) or x.dim() < 2 or not x.is_floating_point():
        return None
    values = x.detach()
    node = ev.index.tensor(x)
    nodes = (node,) if node else ()
    if call.name == "cross_entropy":
        rows = values.sum(dim=1)
        in_range = bool((values >= 0).all()) and bool((values <= 1).all())
        probabilities = in_range and torch.allclose(rows, torch.ones_like(rows), atol=1e-4)
        if probabilities:
            return Finding(
                "wrong_loss_input", "warning", nodes,
                "CrossEntropyLoss fed probabilities instead of logits",
                "cross_entropy applies log_softmax itself, so it wants raw scores (logits). Its "
                "input here is already a softmax (every row is in [0, 1] and sums to 1): softmax "
                "is applied twice, the loss can never reach 0, and the gradients shrink.",
                "Remove the softmax before the loss: F.cross_entropy(logits, target). Apply "
                "softmax only to read probabilities.",
                "cross_entropy", "probabilities",
            )  # fmt: skip
        return None
    if bool((values >= 0).all()) and bool((values > 0).any()):
        return Finding(
            "wrong_loss_input", "warning", nodes,
            "nll_loss fed non-negative values instead of log-probabilities",
            "nll_loss wants log-probabilities (all ≤ 0, from log_softmax). Its input here is "
            "non-negative: probabilities or raw scores, so the loss is not the cross-entropy.",
            "F.nll_loss(F.log_softmax(logits, dim=1), target), or F.cross_entropy(logits, target).",
            "nll_loss", "not_log_probabilities",
        )  # fmt: skip
    return None


def _loss_node(ev: Evidence) -> str | None:
    if ev.loss is not None:
        return ev.index.tensor(ev.loss)
    G = ev.graph
    if G is not None and G.graph.get("roots"):
        producers = list(G.predecessors(G.graph["roots"][0]))
        return str(producers[0]) if producers else None
    return None
