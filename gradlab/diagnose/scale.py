"""Finding 3: vanishing or exploding gradients along the depth, saturated and dead units.

* The gradient at each layer (a module with parameters of its own, in forward
  order) is the root mean square of dL/d(its output), the gradient backward
  carries through the depth. The first layer's against the last one's is the
  ratio that vanishes or explodes: below :data:`VANISH` or above
  :data:`EXPLODE`. (Weight gradients would mix in the size of the
  activations, which grow where the gradients do.)
* A sigmoid or tanh output is saturated where it is within 0.01 of its
  limits: there its slope is below 0.01 and almost no gradient passes.
* A ReLU unit (a feature, or a channel of an image) is dead when it is zero
  for every sample of the batch: it passes no gradient at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding
from gradlab.diagnose.observe import settle

VANISH = 1e-4  # first layer's gradient RMS over the last one's
EXPLODE = 1e4
SATURATED = 0.5  # fraction of outputs within 0.01 of the limits
DEAD = 0.5  # fraction of dead units
MIN_SAMPLES = 8  # fewer samples than this say nothing about dead units
_ACTIVATIONS = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
                "tanh": "tanh", "tanh_": "tanh"}  # fmt: skip


@dataclass(frozen=True)
class Layer:
    """One layer's gradient along the depth."""

    name: str
    rms: float  # root mean square of dL/d(output)
    source: int = 0  # layers with the same nonzero source took the same input (branches)


def profile(ev: Evidence) -> list[Layer]:
    """dL/d(output) RMS of each layer with parameters, in the order forward first ran them.

    A layer called several times (a training loop) shows its last call's gradient.
    """
    settle(ev.modules)
    last: dict[int, tuple[int, str, float, int]] = {}
    for i, call in enumerate(ev.modules):
        if call.grad_rms is None:
            continue
        first = last.get(id(call.module), (i, "", 0.0, 0))[0]
        last[id(call.module)] = (first, call.name, call.grad_rms, call.source)
    return [Layer(name, rms, source) for _, name, rms, source in sorted(last.values())]


def _first(layers: list[Layer]) -> Layer:
    """The front of the depth: the layer with the largest gradient in the first quarter.

    The gradient that reaches the front is carried by its strongest path. Branches
    with a small gradient of their own (attention's query and key projections at
    initialisation get one orders of magnitude below the rest, through a nearly
    uniform softmax) do not stand for it: taken alone as the first layer, when the
    layers before them are frozen, they would read as a vanishing gradient. A stack
    that really vanishes shrinks layer after layer, and still shows it from the end
    of its first quarter.
    """
    front = layers[: max(1, len(layers) // 4)]
    if front[0].source:  # and every branch that reads the first layer's input
        front += [layer for layer in layers[len(front) : -1] if layer.source == front[0].source]
    return max(front, key=lambda layer: layer.rms)


def _node(ev: Evidence, layer: Layer) -> str | None:
    """The leaf of the layer's first parameter, as a node of the loss's graph."""
    module = next((c.module for c in ev.modules if c.name == layer.name), None)
    param = next(module.parameters(recurse=False), None) if module is not None else None
    return ev.index.tensor(param) if param is not None else None


# NaN and Inf, and a training loop gone wrong, explain odd gradient sizes.
@check(kinds=("vanishing", "exploding", "saturated", "dead_relu"), family="scale", order=60,
       unless=("nonfinite", "loop"))  # fmt: skip
def find(ev: Evidence) -> list[Finding]:
    """Dead ReLUs and saturation first (they are causes); otherwise the depth ratio."""
    if ev.error is not None:
        return []
    findings = _activations(ev)
    if findings:
        return findings
    layers = profile(ev)
    if len(layers) < 3:
        return []
    first, last = _first(layers), layers[-1]
    if not (math.isfinite(first.rms) and math.isfinite(last.rms)) or last.rms == 0:
        return []
    ratio = first.rms / last.rms
    table = "; ".join(f"{layer.name or '(top)'}: {layer.rms:.2g}" for layer in layers[:8])
    more = f", … ({len(layers)} layers)" if len(layers) > 8 else ""
    node = _node(ev, first) if ratio < VANISH or ratio > EXPLODE else None
    nodes = (node,) if node else ()
    if ratio < VANISH:
        return [Finding(
            "vanishing", "warning", nodes,
            "Vanishing gradients: the first layers hardly learn",
            "The gradient at the layer outputs (dL/d output, RMS) shrinks by "
            f"{1 / ratio:.3g}x from the last layer ({last.name}) to the "
            f"first ({first.name}). Per layer, input side first: {table}{more}. Each layer "
            "multiplies the gradient by its weights and its activation's slope (at most 0.25 "
            "for a sigmoid), so a deep stack of small factors vanishes.",
            "Use ReLU-family activations, He/Xavier initialisation, normalisation layers "
            "(BatchNorm, LayerNorm) or residual connections.",
            first.name, "ratio",
        )]  # fmt: skip
    if ratio > EXPLODE:
        return [Finding(
            "exploding", "warning", nodes,
            "Exploding gradients: the first layers get huge updates",
            "The gradient at the layer outputs (dL/d output, RMS) grows by "
            f"{ratio:.3g}x from the last layer ({last.name}) to the first "
            f"({first.name}). Per layer, input side first: {table}{more}. Weights larger than "
            "1 in every layer multiply the gradient up at each step of the chain rule.",
            "Initialise the weights smaller (nn.init.kaiming_normal_ or xavier), add "
            "normalisation, or clip: torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0).",
            first.name, "ratio",
        )]  # fmt: skip
    return []


def _activations(ev: Evidence) -> list[Finding]:
    dead: list[tuple[float, str | None, str]] = []
    saturated: list[tuple[float, str | None, str]] = []
    for kind, out in _activation_outputs(ev):
        if kind == "relu":
            fraction = _dead_fraction(out)
            if fraction is not None and fraction > DEAD:
                dead.append((fraction, ev.index.tensor(out), f"{tuple(out.shape)}"))
        else:
            fraction = _saturated_fraction(kind, out)
            if fraction > SATURATED:
                saturated.append((fraction, ev.index.tensor(out), kind))
    findings = []
    if dead:
        worst = max(dead, key=lambda d: d[0])
        findings.append(Finding(
            "dead_relu", "warning", tuple(n for _, n, _ in dead if n)[:8],
            "Dead ReLUs: units that are zero for the whole batch",
            f"{len(dead)} ReLU layer(s) have more than {DEAD:.0%} dead units; the worst has "
            f"{worst[0]:.0%} of its units at zero for every sample (output {worst[2]}). A dead "
            "unit's slope is 0, so no gradient passes through it to the weights before it.",
            "Lower the learning rate, initialise biases at 0 (not negative), use LeakyReLU or "
            "GELU, or normalise the inputs of the layer.",
            "", "dead",
        ))  # fmt: skip
    if saturated:
        worst = max(saturated, key=lambda d: d[0])
        findings.append(Finding(
            "saturated", "warning", tuple(n for _, n, _ in saturated if n)[:8],
            f"Saturated {worst[2]}: outputs stuck at the limits",
            f"{worst[0]:.0%} of a {worst[2]}'s outputs are within 0.01 of its limits, where its "
            "slope is below 0.01: the gradient through it nearly vanishes.",
            "Scale the inputs of the layer down (normalise the data, BatchNorm/LayerNorm before "
            "the activation), initialise smaller, or use ReLU-family activations.",
            worst[2], "saturated",
        ))  # fmt: skip
    return findings


def _activation_outputs(ev: Evidence) -> list[tuple[str, torch.Tensor]]:
    found: list[tuple[str, torch.Tensor]] = []
    for call in ev.calls or ():
        kind = _ACTIVATIONS.get(call.name)
        if kind is not None and isinstance(call.out, torch.Tensor):
            found.append((kind, call.out))
    return found


def _dead_fraction(out: torch.Tensor) -> float | None:
    """Fraction of units that are zero for every sample; None when too few samples."""
    if out.dim() < 2 or not out.is_floating_point():
        return None
    x = out.detach()
    x = x.movedim(-1, 1) if x.dim() == 3 else x  # (B, T, F): units are the features
    units = x.shape[1]
    samples = x.numel() // max(units, 1)
    if samples < MIN_SAMPLES or units < 2:
        return None
    alive = (x != 0).transpose(0, 1).reshape(units, -1).any(dim=1)
    return 1.0 - float(alive.float().mean())


def _saturated_fraction(kind: str, out: torch.Tensor) -> float:
    x = out.detach()
    if x.numel() < 16 or not x.is_floating_point():
        return 0.0
    stuck = (x < 0.01) | (x > 0.99) if kind == "sigmoid" else x.abs() > 0.99
    return float(stuck.float().mean())
