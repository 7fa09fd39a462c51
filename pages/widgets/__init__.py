"""Widgets the pages share: the graph viewer component, programs run in the worker, the code box."""
