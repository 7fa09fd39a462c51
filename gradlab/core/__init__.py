"""The core: autograd's real graph as facts.

Everything else reads what this package writes. :func:`trace` walks a root's
``grad_fn`` graph into a :class:`networkx.MultiDiGraph` of plain facts (the one data
model, described in :mod:`gradlab.core.graph`); :func:`record` keeps forward
values and module paths while a model runs; :func:`backward` runs the real
``backward()`` and writes each node's gradient and engine step onto the graph.
The rest summarises tensors, groups nodes by module, and measures memory;
:mod:`gradlab.core.walk` is the one walk of a live graph, and
:mod:`gradlab.core.hooks` owns the process-wide module hooks.
Nothing here imports another GradLab package.
"""

from gradlab.core.backward import backward
from gradlab.core.capture import Captured, NodeNorms, capture_backward, capture_mode
from gradlab.core.collapse import collapse
from gradlab.core.errors import ExportError, GradLabError, TraceError
from gradlab.core.graph import (
    ACCUMULATE_GRAD,
    EdgeAttrs,
    Graph,
    NodeAttrs,
    TensorSummary,
    engine_order,
    nodes_of,
    op_nodes,
)
from gradlab.core.memory import ModelRun, inspect_model
from gradlab.core.record import Recording, record
from gradlab.core.summary import summarize, summarize_many
from gradlab.core.trace import trace
from gradlab.core.walk import walk

__all__ = [
    "ACCUMULATE_GRAD",
    "Captured",
    "EdgeAttrs",
    "ExportError",
    "GradLabError",
    "Graph",
    "ModelRun",
    "NodeAttrs",
    "NodeNorms",
    "Recording",
    "TensorSummary",
    "TraceError",
    "backward",
    "capture_backward",
    "capture_mode",
    "collapse",
    "engine_order",
    "inspect_model",
    "nodes_of",
    "op_nodes",
    "record",
    "summarize",
    "summarize_many",
    "trace",
    "walk",
]
