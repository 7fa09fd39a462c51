"""Old home of :mod:`gradlab.zoo.data`, kept so that existing plugins still import."""

from gradlab.zoo.data import digits, points, split

__all__ = ["digits", "points", "split"]
