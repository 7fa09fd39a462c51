"""Finding 6: autograd errors (and the warnings that go with them) as lessons.

The text is :func:`gradlab.teach.explain`'s: what PyTorch said, why, and the fixes.
The finding is pinned to the node the error concerns: the op an in-place
error names (with the tensor and its version counter, from PyTorch's own
message), or the root's op for a non-scalar or second backward.
"""

from __future__ import annotations

from gradlab.core.graph import Graph
from gradlab.diagnose.checks import check
from gradlab.diagnose.evidence import Evidence
from gradlab.diagnose.finding import Finding, Severity
from gradlab.diagnose.look import ProgramFailure
from gradlab.teach.explain import Explanation, explain

#: Lessons that other checks report better (a broadcast loss is a shape trap).
_ELSEWHERE = ("loss_broadcast",)


@check(kinds=("autograd_error",), family="autograd_error", order=10)
def find(ev: Evidence) -> list[Finding]:
    """A finding for the error the code raised, and for autograd warnings it gave."""
    findings: list[Finding] = []
    if ev.error is not None:
        lesson = explain(ev.error)
        message = str(ev.error).split("\n")[0].strip()
        if lesson is not None:
            findings.append(_finding(lesson, "error", message, _node(ev, lesson)))
        else:
            raised = _raised(ev.error, message)
            findings.append(Finding(
                "autograd_error", "error", (ev.error_node,) if ev.error_node else (),
                f"The code raised {raised}",
                message or raised,
                "Read the message above; it is not an autograd mistake GradLab knows.",
                raised, "unknown",
            ))  # fmt: skip
    seen: set[str] = set()
    for message in ev.warnings:
        lesson = explain(message)
        if lesson is None or lesson.kind in _ELSEWHERE or lesson.kind in seen:
            continue
        seen.add(lesson.kind)
        findings.append(_finding(lesson, "warning", message.split("\n")[0], None))
    return findings


def _raised(error: BaseException, message: str) -> str:
    """The exception's class; a program's error carries it at the start of its message."""
    if isinstance(error, ProgramFailure):
        head = message.split(":")[0].strip()
        return head if head.isidentifier() else "an error"
    return type(error).__name__


def _finding(lesson: Explanation, severity: Severity, message: str, node: str | None) -> Finding:
    return Finding(
        kind="autograd_error",
        severity=severity,
        nodes=(node,) if node else (),
        title=lesson.title,
        explanation=f"{lesson.why} PyTorch said: “{message}”",
        fix="\n".join(lesson.fixes),
        where=lesson.op or "",
        cause=lesson.kind,
    )


def _node(ev: Evidence, lesson: Explanation) -> str | None:
    if ev.error_node is not None:
        return ev.error_node
    G = ev.graph
    if G is None:
        return None
    return node_of(G, lesson)


def node_of(G: Graph, lesson: Explanation) -> str | None:
    """The node an explained error points at: the op it names, or the root's op."""
    if lesson.op is not None:
        for n, op in G.nodes(data="op"):
            if op == lesson.op:
                return str(n)
    if lesson.kind in ("non_scalar_backward", "backward_twice") and G.graph.get("roots"):
        out = G.graph["roots"][0]
        producers = list(G.predecessors(out))
        return str(producers[0]) if producers else str(out)
    return None
