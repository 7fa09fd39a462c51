"""The viewer as HTML: one self-contained page, and the same page framed for a notebook.

Nothing loads from the network: the script, the style sheet and the graph's
data are all inline. The data is JSON inside a ``<script type="application/json">``
element, escaped so that no string in it (a tensor name, printed output)
can close that element or start a comment: ``<``, ``>``, ``&`` and the line
separators U+2028/U+2029 are written as ``\\uXXXX`` escapes, which JSON
reads back as the same characters.
"""

from __future__ import annotations

import base64
import html
import itertools
import json
from functools import cache
from importlib import resources
from typing import Any

_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_ids = itertools.count(1)
# Nothing from the network: inline script and style only.
_CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:"


@cache
def assets() -> tuple[str, str]:
    """The viewer's JavaScript and CSS, as text (they ship inside the package)."""
    static = resources.files("gradlab.render.viewer") / "static"
    return (static / "viewer.js").read_text("utf-8"), (static / "viewer.css").read_text("utf-8")


def safe_json(data: Any) -> str:
    """JSON that can sit inside a ``<script>`` element whatever its strings hold.

    Examples
    --------
    >>> safe_json({"name": "</script><!--"})
    '{"name": "\\\\u003c/script\\\\u003e\\\\u003c!--"}'
    >>> json.loads(safe_json({"name": "</script>"}))["name"]
    '</script>'
    """
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return "".join(_ESCAPES.get(c, c) for c in text) if any(c in text for c in _ESCAPES) else text


def page(data: dict[str, Any], *, options: dict[str, Any] | None = None, fill: bool = True) -> str:
    """A whole HTML document showing the viewer, for a file or an iframe.

    ``fill`` makes the viewer fill the window (a file); otherwise it fills the
    frame it is given (a notebook output).
    """
    js, css = assets()
    title = html.escape(data.get("title") or "GradLab graph")
    opts = safe_json(options or {})
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<title>{title}</title>
<style>
html, body {{ margin: 0; height: 100%; }}
body {{ padding: {"8px" if fill else "0"}; box-sizing: border-box; background: #fff; }}
#gradlab-viewer {{ height: 100%; }}
{css}
</style>
</head>
<body>
<div id="gradlab-viewer"></div>
<script type="application/json" id="gradlab-data">{safe_json(data)}</script>
<script>
{js}
</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("gradlab-data").textContent);
  window.gradlabView = GradLabViewer.mount(document.getElementById("gradlab-viewer"), data, {opts});
}})();
</script>
</body>
</html>
"""


def frame(
    data: dict[str, Any],
    *,
    height: int = 620,
    options: dict[str, Any] | None = None,
    still: str | None = None,
) -> str:
    """The page inside an ``<iframe srcdoc>``, for a notebook output.

    The frame keeps each viewer's script, ids, styles and keys apart from the
    notebook's and from other viewers on the same page. ``still`` (SVG text)
    goes before it as an image, for where the frame cannot run (an untrusted
    notebook, Markdown from ``nbconvert``): the frame's ``onload`` takes the
    image away where it can. The output is one line, so Markdown keeps it
    whole.
    """
    doc = html.escape(page(data, options=options, fill=False), quote=True).replace("\n", "&#10;")
    name = f"gradlab-frame-{next(_ids)}"
    picture = ""
    drop = ""
    if still is not None:
        encoded = base64.b64encode(still.encode()).decode()
        picture = (
            f'<img class="gradlab-still" alt="GradLab graph (still picture)" '
            f'src="data:image/svg+xml;base64,{encoded}" style="max-width: 100%;">'
        )
        drop = ' onload="var s = this.previousElementSibling; if (s) s.remove();"'
    return (
        f'<div class="gradlab-show">{picture}<iframe class="gradlab-frame" id="{name}" '
        f'srcdoc="{doc}" style="width: 100%; height: {int(height)}px; border: 0;" '
        'sandbox="allow-scripts allow-popups" allow="fullscreen" allowfullscreen '
        f'title="GradLab graph viewer"{drop}></iframe></div>'
    )
