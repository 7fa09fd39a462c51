"""GradLab: see and debug what PyTorch's autograd really does."""

from gradlab.app.notebook import show
from gradlab.core.backward import backward
from gradlab.core.errors import ExportError, GradLabError, TraceError
from gradlab.core.graph import EdgeAttrs, NodeAttrs, TensorSummary, engine_order, nodes_of, op_nodes
from gradlab.core.record import Recording, record
from gradlab.core.summary import summarize, summarize_many
from gradlab.core.trace import trace
from gradlab.diagnose import diagnose
from gradlab.render.dot import to_dot
from gradlab.render.formats import load, save

__all__ = [
    "EdgeAttrs",
    "ExportError",
    "GradLabError",
    "NodeAttrs",
    "Recording",
    "TensorSummary",
    "TraceError",
    "backward",
    "diagnose",
    "engine_order",
    "load",
    "nodes_of",
    "op_nodes",
    "record",
    "save",
    "show",
    "summarize",
    "summarize_many",
    "to_dot",
    "trace",
]
