"""Errors GradLab raises on purpose, each with a message that says what to do."""

from __future__ import annotations


class GradLabError(Exception):
    """Base class: the message is meant for a person and names the fix."""


class TraceError(GradLabError, ValueError):
    """A tensor cannot be traced, or a graph does not belong to a tensor."""


class ExportError(GradLabError):
    """A graph cannot be written to the requested file."""
