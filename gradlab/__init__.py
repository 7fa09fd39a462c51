"""GradLab: see and debug what PyTorch's autograd really does."""

from gradlab.backward import backward
from gradlab.errors import ExportError, GradLabError, TraceError
from gradlab.graph import EdgeAttrs, NodeAttrs, TensorSummary, engine_order, nodes_of, op_nodes
from gradlab.record import Recording, record
from gradlab.summary import summarize, summarize_many
from gradlab.trace import trace

__all__ = [
    "backward",
    "EdgeAttrs",
    "ExportError",
    "GradLabError",
    "NodeAttrs",
    "Recording",
    "TensorSummary",
    "TraceError",
    "engine_order",
    "nodes_of",
    "op_nodes",
    "record",
    "summarize",
    "summarize_many",
    "trace",
]
