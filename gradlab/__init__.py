"""GradLab: see and debug what PyTorch's autograd really does."""

from gradlab.backward import backward
from gradlab.diagnose import diagnose
from gradlab.errors import ExportError, GradLabError, TraceError
from gradlab.export import load, save
from gradlab.graph import EdgeAttrs, NodeAttrs, TensorSummary, engine_order, nodes_of, op_nodes
from gradlab.record import Recording, record
from gradlab.render.dot import to_dot
from gradlab.summary import summarize, summarize_many
from gradlab.trace import trace
from gradlab.viewer import show

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
