"""What the Debugger draws from a diagnosis: the gradient along the depth, the gradient check.

Plain functions from the records of :func:`gradlab.diagnose.examine`'s report
to a Plotly figure and per-node colour values, so that the Debugger page, a
notebook or a test only places them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import plotly.graph_objects as go

from gradlab.core.graph import Graph
from gradlab.diagnose.measures import Agreement
from gradlab.diagnose.scale import Layer

#: The families of findings (:data:`gradlab.diagnose.FAMILY`'s values) as a page titles them.
FAMILY_TITLES = {
    "no_gradient": "No gradient", "nonfinite": "NaN / Inf", "scale": "Vanishing, exploding, dead",
    "loop": "Training loop", "shapes": "Shape traps", "autograd_error": "Autograd errors",
    "gradcheck": "Gradient check",
}  # fmt: skip


def depth_profile(layers: Sequence[Layer]) -> go.Figure | None:
    """Gradient RMS per layer along the depth as bars on a log scale; ``None`` when fewer
    than two layers have a finite, nonzero gradient (nothing to compare).

    Examples
    --------
    >>> from types import SimpleNamespace as Layer
    >>> fig = depth_profile([Layer(name="0", rms=1e-3), Layer(name="", rms=0.0),
    ...                      Layer(name="fc", rms=2.0)])
    >>> list(fig.data[0].x), list(fig.data[0].y)
    (['0: 0', '1: fc'], [0.001, 2.0])
    """
    shown = [layer for layer in layers if layer.rms > 0 and math.isfinite(layer.rms)]
    if len(shown) < 2:
        return None
    names = [f"{i}: {layer.name or 'top'}" for i, layer in enumerate(shown)]
    fig = go.Figure(go.Bar(x=names, y=[layer.rms for layer in shown], marker_color="#6b8cbe"))
    fig.update_layout(height=260, yaxis_type="log", yaxis_title="RMS",
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})  # fmt: skip
    return fig


@dataclass(frozen=True)
class CheckColors:
    """Leaves coloured by the gradient check's error (log10), and the caption that says so."""

    colors: dict[str, float]  # node id -> log10 of its worst error (above 0: disagrees)
    caption: str


def gradcheck_colors(checks: Sequence[Agreement], G: Graph) -> CheckColors | None:
    """The leaves of ``G`` coloured by the gradient check, or ``None`` when none was made."""
    if not checks:
        return None
    worst = max(checks, key=lambda c: c.worst)
    colors = {
        c.node: math.log10(max(c.worst, 1e-12))
        for c in checks
        if c.node is not None and c.node in G
    }
    caption = (
        "Leaves coloured by the gradient check's error, log₁₀ (the legend's ‖grad‖; above "
        f"0, PyTorch's gradient and the numerical one disagree). The largest: "
        f"{worst.worst:.3g}, for `{worst.name}`."
    )
    return CheckColors(colors, caption)
