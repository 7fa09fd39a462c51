"""Renderers draw from the graph of facts; they never touch autograd."""
