"""The faces people use: the ``gradlab`` command, notebooks and the app's helpers.

:mod:`~gradlab.app.cli` is the command line; :mod:`~gradlab.app.notebook`
shows a graph in Jupyter (:func:`gradlab.show`); :mod:`~gradlab.app.viewer_host`
hosts the viewer in the Streamlit app; :mod:`~gradlab.app.share` packs a view
into a link; :mod:`~gradlab.app.targets` loads ``file.py:function`` targets.
The Streamlit pages (``pages/``) are the app's other face; nothing in
``gradlab/`` imports Streamlit.
"""

from gradlab.app.notebook import Shown, show

__all__ = ["Shown", "show"]
