"""One graph viewer for the browser: the app, notebooks and standalone HTML files.

The contract
------------
Python side (all JSON-safe, computed once; the browser computes nothing about autograd)::

    from gradlab.render.viewer import payload, assets
    data = payload(G, steps=True, cards=True, findings=(), highlight=(), focus=None,
                   printed=None, caption=None, title=None)    # -> dict, json.dumps-able
    js, css = assets()                                         # -> (str, str), no network

``data`` holds ``nodes`` (each: ``id``, ``kind``, ``label``, ``name``, ``op``,
``lines`` (the box text: name, shape, data, grad), ``value``/``grad`` (short
text), ``vnorm``/``gnorm`` (log10 norms), ``fill``, ``module``,
``module_type``, ``x``, ``y``, ``w``, ``h`` (box centre and size from GradLab's
layered layout), ``reach`` (the step after which it holds its gradient),
``details`` (``[heading, text]`` pairs), ``card`` (the chain-rule card as
text) or ``nocard`` (why not)), ``edges`` (``u``, ``v`` node indices,
``grad``, ``at`` (the step that sent it), ``count``), ``steps`` (engine
order: ``node`` index, ``title``, ``arrived`` and ``sent`` lines,
``receivers``), ``findings`` (``nodes`` ids, ``severity``, ``title``,
``kind``), ``highlight``, ``focus``, ``printed``, ``caption``, ``title``.

Browser side, after the CSS and the JS are on the page::

    const view = GradLabViewer.mount(element, data, {
        onSelect: (node) => {},  // node = {id, kind, label, name, module} or null (card closed)
        predict: false,          // predict-first: hide what each step sends until Reveal
        color: "kind",           // "kind" | "grad" | "value"
        step: -1,                // where stepping starts: -1 (before backward), a step, or "end"
        renderer: "auto",        // "svg" | "canvas" | "auto" (canvas above 100 nodes)
    });
    view.next(); view.prev(); view.reset(); view.goTo(k); view.play(); view.pause();
    view.reveal(); view.setPredict(on); view.setPresenter(on); view.setColor(c);
    view.select(id); view.centerOn(id); view.state(); view.destroy();
    view.fit();      // the whole graph, or for one too big to read whole a readable zoom
    view.fit(true);  // every node on screen, however small (the Fit button)

``element`` should have a height (the viewer fills it). Keys ← → Space
PageUp PageDown Home End (and R to reveal) go to the viewer last clicked
(or mounted), from anywhere on the page. The root element carries
``data-step``, ``data-predict``, ``data-revealed``, ``data-selected`` and
``data-drawn`` for tests. Strings are always inserted as text.

Hosts: :func:`gradlab.show` (notebooks, in :mod:`gradlab.app.notebook`), :func:`page` (a
whole HTML document, used
by ``gradlab.save(G, "lesson.html")``), :func:`frame` (an ``<iframe
srcdoc>``), :func:`to_svg` (a still picture).
"""

from gradlab.render.viewer.html import assets, frame, page, safe_json
from gradlab.render.viewer.payload import card_text, payload
from gradlab.render.viewer.svg import to_svg

__all__ = [
    "assets",
    "card_text",
    "frame",
    "page",
    "payload",
    "safe_json",
    "to_svg",
]
