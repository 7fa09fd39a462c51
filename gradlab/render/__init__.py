"""Drawing: pictures and files made from graph facts, never from autograd.

:mod:`~gradlab.render.dot` (Graphviz), :mod:`~gradlab.render.plotly` and
:mod:`~gradlab.render.layout` draw a traced graph; :mod:`~gradlab.render.viewer`
is the interactive viewer shared by the app, notebooks and HTML files;
:mod:`~gradlab.render.steps`, :mod:`~gradlab.render.card` and
:mod:`~gradlab.render.table` write the teaching facts as text and tables;
:mod:`~gradlab.render.curves` draws training records and
:mod:`~gradlab.render.diagnosis` the Debugger's charts; every file format
GradLab writes or reads is one row of :data:`~gradlab.render.formats.FORMATS`
(the graph codecs themselves live in :mod:`gradlab.core.files`).
"""

from gradlab.render.dot import to_dot
from gradlab.render.formats import load, save

__all__ = ["load", "save", "to_dot"]
