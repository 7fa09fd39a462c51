"""Teaching: the backward pass in the engine's order, and the chain rule in numbers.

:func:`steps` reads the engine's steps off a graph that
:func:`gradlab.backward` filled (what arrived at each node, what it sent on);
:func:`card` writes one node's chain-rule card with the local derivative of
its op, from the rules declared with ``@rule`` in :mod:`gradlab.teach.derivatives`;
:func:`explain` turns an error into a plain sentence and its fix;
:mod:`gradlab.teach.examples` holds the expressions the lessons start from.
Reads graph facts from :mod:`gradlab.core`; nothing here draws.
"""

from gradlab.teach.chain import Card, card, has_card, no_card
from gradlab.teach.explain import Explanation, explain
from gradlab.teach.steps import Step, as_of, reached, steps

__all__ = [
    "Card",
    "Explanation",
    "Step",
    "as_of",
    "card",
    "explain",
    "has_card",
    "no_card",
    "reached",
    "steps",
]
