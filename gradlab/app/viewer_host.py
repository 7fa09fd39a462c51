"""The viewer inside the app: glue between a Streamlit component and :mod:`gradlab.render.viewer`.

:func:`host_js` is the component's entry (``export default function``).
Streamlit calls it on every rerun with the component's data; it mounts
``GradLabViewer`` once per graph and keeps it (step, zoom, pan, card) while
the data's ``digest`` stays the same, so a rerun never costs the browser its
place. It opens a node's card when the data's ``select.seq`` changes, sends
a clicked node back (a trigger, ``"selected"``: one rerun per click) only when the page
asked for it (``send``), and with ``url`` keeps the step, presenter mode,
predict-first and the open card in the address bar (``history.replaceState``:
no rerun). :func:`mount_data` is what Python sends it for a graph. Nothing
here imports Streamlit; the page module (``pages/widgets/graph_view.py``) mounts it.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from gradlab.core.graph import Graph
from gradlab.render.viewer import payload

_HOST_JS = r"""
const HOSTS = new WeakMap();

function ensureStyle() {
  // Streamlit leaves a component's css out when it is not isolated in a shadow root.
  if (document.getElementById("gradlab-viewer-style")) return;
  const style = document.createElement("style");
  style.id = "gradlab-viewer-style";
  style.textContent = GRADLAB_CSS;
  document.head.appendChild(style);
}

function setParam(url, name, value) {
  if (value === null || value === undefined || value === "") url.searchParams.delete(name);
  else url.searchParams.set(name, value);
}

function syncUrl(root, total) {
  const url = new URL(window.location.href);
  const k = parseInt(root.getAttribute("data-step") || "-1", 10);
  // no step: every step done (how a graph opens); 0: before backward; s: s steps done
  setParam(url, "step", total && k < total - 1 ? String(k + 1) : null);
  setParam(url, "present", root.getAttribute("data-presenter") === "1" ? "1" : null);
  setParam(url, "predict", root.getAttribute("data-predict") === "1" ? "1" : null);
  setParam(url, "node", root.getAttribute("data-selected") || null);
  if (url.href !== window.location.href) {
    window.history.replaceState(window.history.state, "", url.href);
  }
}

function applySelect(host, select) {
  if (!select || select.seq === host.seq) return;
  host.seq = select.seq;
  if (!select.id) return;
  host.muted = true;
  try {
    host.view.select(select.id);
    if (select.center) {
      host.centered = select.id;
      host.view.centerOn(select.id);
      // the card opens beside the graph: bring both into view, wherever the button was
      host.box.style.scrollMarginTop = "72px";  // below the app's header
      host.box.scrollIntoView({ block: "start", behavior: "instant" });
    }
  } finally {
    host.muted = false;
  }
}

function mountViewer(parentElement, data, setTriggerValue) {
  // The frame holds the height; the viewer fills it (and the window in presenter mode,
  // which an inline height on the viewer itself would stop).
  const frame = document.createElement("div");
  frame.className = "gradlab-host";
  frame.style.height = data.height + "px";
  const box = document.createElement("div");
  box.style.height = "100%";
  frame.appendChild(box);
  while (parentElement.firstChild) parentElement.removeChild(parentElement.firstChild);
  parentElement.appendChild(frame);
  const host = {
    digest: data.digest, seq: null, muted: false, box: frame, observer: null, centered: false,
  };
  const options = Object.assign({}, data.options, {
    onSelect: function (node) {
      if (host.muted || !data.send || !node) return;
      setTriggerValue("selected", node.id);
    },
  });
  host.payload = data.payload;
  host.view = window.GradLabViewer.mount(box, data.payload, options);
  if (data.presenter) host.view.setPresenter(true);
  // Streamlit may attach the element before it has its width: fit again once it is laid
  // out, unless the page asked to centre on a node (applySelect does that).
  requestAnimationFrame(function () {
    if (host.centered) host.view.centerOn(host.centered);
    else if (!data.presenter) host.view.fit();
  });
  if (data.url) {
    const root = box;
    const total = (data.payload.steps || []).length;
    host.observer = new MutationObserver(function () { syncUrl(root, total); });
    host.observer.observe(root, {
      attributes: true,
      attributeFilter: ["data-step", "data-presenter", "data-predict", "data-selected"],
    });
  }
  return host;
}

function retint(host, tint) {
  // Same graph, new colour values: write them into the nodes the viewer draws and
  // repaint with the colouring chosen, without a remount.
  const nodes = host.payload.nodes;
  let changed = false;
  for (let i = 0; i < nodes.length && i < tint.length; i++) {
    if (nodes[i].gnorm !== tint[i]) { nodes[i].gnorm = tint[i]; changed = true; }
  }
  if (!changed) return;
  const select = host.box.querySelector(".glv-color");
  host.view.setColor(select ? select.value : "grad");
}

function unmount(host) {
  if (host.observer) host.observer.disconnect();
  host.view.destroy();
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component;
  ensureStyle();
  let host = HOSTS.get(parentElement);
  if (host && host.digest !== data.digest) {
    unmount(host);
    host = undefined;
  }
  if (!host) {
    host = mountViewer(parentElement, data, setTriggerValue);
    HOSTS.set(parentElement, host);
  } else if (data.tint && data.tint.length) {
    retint(host, data.tint);
  }
  host.box.style.height = data.height + "px";
  applySelect(host, data.select);
  return function () {
    const held = HOSTS.get(parentElement);
    if (held) unmount(held);
    HOSTS.delete(parentElement);
  };
}
"""

#: The host box fills the component; the side panel stays readable in the app's narrower columns.
_HOST_CSS = """
.gradlab-host { width: 100%; }
.gradlab-host .glv-side { flex-basis: 300px; }
.gradlab-host .glv h3, .gradlab-host .glv h4 { padding: 0; line-height: 1.3; scroll-margin: 0; }
.gradlab-host .glv pre { background: transparent; padding: 0; border: 0; }
.gradlab-host .glv p { font-size: inherit; margin: 0 0 6px; }
/* No steps, findings or printed output, and no card open: the graph takes the whole width. */
.gradlab-host .glv-side"""
_HOST_CSS += ":not(:has(> .glv-step, > .glv-findings, > .glv-printed, > .glv-caption))"
_HOST_CSS += ":has(> .glv-card:empty) { display: none; }\n"



def host_js(viewer_js: str, viewer_css: str) -> str:
    """The component's JavaScript module: the viewer, its style sheet, and the host."""
    css = json.dumps(viewer_css + "\n" + _HOST_CSS)
    return f"{viewer_js}\nconst GRADLAB_CSS = {css};\n{_HOST_JS}"


def browser_step(step: int, total: int) -> int:
    """The viewer's step index for a link's ``step`` (0: before backward, ``s``: ``s`` done).

    Examples
    --------
    >>> browser_step(0, 5), browser_step(3, 5), browser_step(99, 5)
    (-1, 2, 4)
    """
    return min(max(step, 0), total) - 1


def recolour(data: dict[str, Any], values: Mapping[str, float]) -> None:
    """Colour the payload's nodes by ``values`` (log10 numbers) instead of their gradient norms.

    The viewer's "‖grad‖" colouring reads each node's ``gnorm``; nodes without
    a value are drawn grey.

    Examples
    --------
    >>> data = {"nodes": [{"id": "a", "gnorm": 1.0}, {"id": "b", "gnorm": 2.0}]}
    >>> recolour(data, {"a": -3.0, "b": float("nan")})
    >>> [n["gnorm"] for n in data["nodes"]]
    [-3.0, None]
    """
    for node in data["nodes"]:
        value = values.get(node["id"])
        node["gnorm"] = round(value, 4) if value is not None and math.isfinite(value) else None


#: Chain-rule cards cost about 1 ms a node on every rerun: bigger graphs go without them.
CARDS_UP_TO = 800
#: The URL parameters the browser keeps up to date (a page's ``url=True``).
BROWSER_PARAMS = ("step", "present", "predict", "node")


def mount_data(
    G: Graph,
    *,
    highlight: Collection[str] = (),
    findings: Iterable[Any] = (),
    color: str = "kind",
    colors: Mapping[str, float] | None = None,
    step: int | None = None,
    predict: bool = False,
    printed: str | None = None,
    caption: str | None = None,
    title: str | None = None,
    steps: bool = True,
    cards: bool = True,
) -> dict[str, Any]:
    """What the component mounts the viewer with: ``payload``, ``options``, ``tint``, ``digest``.

    ``step`` (0: before backward, ``s``: ``s`` steps done, ``None``: all) and
    ``predict`` are where the browser starts. ``colors`` replaces the gradient
    norms the viewer colours by (log10 values), sent again as ``tint``. The
    ``digest`` leaves the colours out: the browser keeps the mounted graph (and
    its zoom, pan and open card) while it stays the same, and repaints a new
    ``tint`` in place. Graphs over :data:`CARDS_UP_TO` nodes go without cards.
    """
    data = payload(
        G, steps=steps, cards=cards and G.number_of_nodes() <= CARDS_UP_TO, findings=findings,
        highlight=highlight, printed=printed, caption=caption, title=title,
    )  # fmt: skip
    if colors is not None:
        recolour(data, colors)
    # A graph opens with every step done (every gradient shown); a link may name a step.
    step_at = "end" if step is None else browser_step(step, len(data["steps"]))
    options: dict[str, Any] = {"color": color, "predict": predict, "step": step_at}
    tint = [n["gnorm"] for n in data["nodes"]] if colors is not None else []
    uncoloured = {**data, "nodes": [{**n, "gnorm": None} for n in data["nodes"]]}
    return {
        "payload": data, "digest": digest(uncoloured, options), "tint": tint, "options": options,
    }  # fmt: skip


def digest(data: Mapping[str, Any], options: Mapping[str, Any]) -> str:
    """A short fingerprint of a payload and its options (the host remounts when it changes)."""
    text = json.dumps([data, options], sort_keys=True, default=str)
    return format(zlib.crc32(text.encode()), "08x")


def browser_params(params: Mapping[str, str]) -> dict[str, str]:
    """The URL parameters the browser keeps (:data:`BROWSER_PARAMS`), from a page's query.

    Examples
    --------
    >>> browser_params({"p": "x", "step": "2", "node": "fn0"})
    {'step': '2', 'node': 'fn0'}
    """
    return {k: params[k] for k in BROWSER_PARAMS if k in params}
