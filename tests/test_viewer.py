"""The viewer's payload, its HTML and SVG hosts, and the .html export (no browser here).

Torch is the oracle: every value and gradient the payload shows is what
PyTorch computes, and the steps come in the engine's order.
"""

from __future__ import annotations

import itertools
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
import torch
from torch import nn

import gradlab
from gradlab.app import viewer_host
from gradlab.app.notebook import show
from gradlab.app.targets import trace_case
from gradlab.core.collapse import collapse
from gradlab.core.text import short
from gradlab.render.viewer import assets, frame, page, payload, safe_json, to_svg
from gradlab.render.viewer.geometry import MAX_CHARS
from gradlab.teach.steps import steps
from gradlab.zoo import presets

EVIL = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'


def classic_chain() -> tuple[gradlab.core.graph.Graph, torch.Tensor, dict[str, torch.Tensor]]:
    x = torch.ones(2, 2, requires_grad=True)
    with gradlab.record():
        y = x + 2
        z = y * y * 3
        out = z.mean()
    names = {"x": x, "y": y, "z": z, "out": out}
    G = gradlab.backward(out, gradlab.trace(out, params=names))
    return G, out, names


def node(p: dict, label: str) -> dict:
    return next(n for n in p["nodes"] if n["label"] == label)


def test_values_and_gradients_are_torchs() -> None:
    G, out, names = classic_chain()
    p = payload(G)
    x, y, z = names["x"], names["y"], names["z"]
    xo = x.detach().clone().requires_grad_()
    yo = xo + 2
    yo.retain_grad()
    zo = yo * yo * 3
    zo.retain_grad()
    zo.mean().backward()
    assert node(p, "x")["grad"] == short(gradlab.summarize(xo.grad))
    assert node(p, "x")["value"] == short(gradlab.summarize(x))
    add = next(n for n in p["nodes"] if n["op"] == "AddBackward0")
    assert add["value"] == short(gradlab.summarize(y))
    assert add["grad"] == short(gradlab.summarize(yo.grad))  # 4.5 everywhere: summed
    assert "[[4.5, 4.5], [4.5, 4.5]]" in add["lines"][-1]
    mul_z = next(n for n in p["nodes"] if n["op"] == "MulBackward0" and n["name"] == "z")
    assert mul_z["value"] == short(gradlab.summarize(z))
    assert mul_z["grad"] == short(gradlab.summarize(zo.grad))
    assert node(p, "out")["value"] == short(gradlab.summarize(out))


def test_steps_follow_the_engine() -> None:
    G, _, _ = classic_chain()
    p = payload(G)
    engine = [s.node for s in steps(G)]
    assert [p["nodes"][s["node"]]["id"] for s in p["steps"]] == engine
    ops = [p["nodes"][s["node"]]["op"] for s in p["steps"]]
    assert ops == [
        "MeanBackward0",
        "MulBackward0",
        "MulBackward0",
        "AddBackward0",
        "AccumulateGrad",
    ]
    assert p["steps"][0]["title"] == "Step 1 of 5: MeanBackward0 (→ out)"
    # the y * y step: what it sends down both slots goes to the same node
    mul_yy = p["steps"][2]
    assert len(mul_yy["sent"]) == 2 and all("AddBackward0" in s for s in mul_yy["sent"])
    assert p["steps"][3]["summed"]  # y's gradient arrives along two edges
    last = p["steps"][4]
    assert last["sent"] == [
        "x.grad += [[4.5, 4.5], [4.5, 4.5]]  →  x.grad = [[4.5, 4.5], [4.5, 4.5]]"
    ]
    # a node holds its gradient from its own step on; the leaf from its AccumulateGrad's
    for k, s in enumerate(p["steps"]):
        assert p["nodes"][s["node"]]["reach"] == k
    assert node(p, "x")["reach"] == 4 and node(p, "out")["reach"] == -1
    # every edge's gradient is sent at the step of its consumer
    for e in p["edges"]:
        v = p["nodes"][e["v"]]
        if v["kind"] == "op":
            assert e["at"] == v["reach"]
    assert any(e["count"] == 2 for e in p["edges"])  # y * y: one line, two edges


def test_cards_and_names_read_real_names() -> None:
    model = nn.Linear(2, 1)
    xin = torch.tensor([[1.0, 2.0]])
    with gradlab.record():
        loss = model(xin).pow(2).sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"linear": model, "x": xin}))
    p = payload(G)
    labels = {n["label"] for n in p["nodes"]}
    assert {"linear.weight", "linear.bias"} <= labels
    assert not any(re.fullmatch(r"leaf\d+", label) for label in labels)
    # node ids appear only as references ("node leaf0"), never as a symbol in a formula
    texts = [re.sub(r"node \w+", "", n.get("card") or "") for n in p["nodes"]]
    assert any("linear.weight" in t for t in texts)
    assert not any(re.search(r"\bleaf\d+\b", t) for t in texts)
    weight = node(p, "linear.weight")
    model.zero_grad()
    model(xin).pow(2).sum().backward()
    assert weight["grad"] == short(gradlab.summarize(model.weight.grad))


def test_show_names_from_the_callers_scope_and_runs_backward() -> None:
    lin = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    loss = lin(x).tanh().sum()
    shown = show(loss)
    labels = {n["label"] for n in shown.data["nodes"]}
    assert {"lin.weight", "lin.bias"} <= labels
    assert len(shown.data["steps"]) > 0
    ref = nn.Linear(3, 2)
    ref.load_state_dict(lin.state_dict())
    ref(x).tanh().sum().backward()
    assert torch.equal(lin.weight.grad, ref.weight.grad)
    assert node(shown.data, "lin.weight")["grad"] == short(gradlab.summarize(ref.weight.grad))


def test_show_takes_graphs_and_collapsed_views_and_refuses_the_rest() -> None:
    G = trace_case(presets.get("lenet").build(0))
    C = collapse(G)
    for graph in (G, C):
        bundle = show(graph)._repr_mimebundle_()
        assert set(bundle) == {"text/html", "image/svg+xml", "text/plain"}
        assert bundle["text/html"].startswith('<div class="gradlab-show"><img')
        assert "<iframe" in bundle["text/html"] and "\n" not in bundle["text/html"]
    assert any(n["kind"] == "module" for n in show(C).data["nodes"])
    with pytest.raises(gradlab.GradLabError, match="takes a graph"):
        show([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(gradlab.GradLabError, match="no grad_fn"):
        show(torch.ones(2))


def test_every_preset_and_collapsed_view_has_no_overlapping_boxes() -> None:
    for name in presets.PRESETS:
        G = trace_case(presets.get(name).build(0))
        for graph in (G, collapse(G)):
            p = payload(graph, cards=False)
            assert_no_overlap(p)
            for n in p["nodes"]:
                assert all(len(line) <= MAX_CHARS for line in n["lines"])


def test_every_lesson_has_no_overlapping_boxes() -> None:
    from gradlab.program import run_program
    from gradlab.teach.examples import EXAMPLES

    drawn = 0
    for example in EXAMPLES:
        result = run_program(example.source)
        if result.graph is None:
            continue
        assert_no_overlap(payload(result.graph, printed=result.output, caption=example.lesson))
        drawn += 1
    assert drawn >= 10


def assert_no_overlap(p: dict) -> None:
    """No two node boxes share a pixel: within a layer side by side, layers stacked apart."""
    rows: dict[float, list[dict]] = {}
    for n in p["nodes"]:
        rows.setdefault(n["y"], []).append(n)
    for row in rows.values():
        row.sort(key=lambda n: n["x"])
        for a, b in itertools.pairwise(row):
            assert a["x"] + a["w"] / 2 < b["x"] - b["w"] / 2, (a["id"], b["id"])
    layers = [rows[y] for y in sorted(rows)]
    for upper, lower in itertools.pairwise(layers):
        bottom = max(n["y"] + n["h"] / 2 for n in upper)
        top = min(n["y"] - n["h"] / 2 for n in lower)
        assert bottom < top


def test_findings_highlight_and_focus() -> None:
    G, _, _ = classic_chain()
    finding = {"nodes": ["fn3"], "severity": "error", "title": "the culprit", "kind": "x"}
    p = payload(G, findings=[finding], highlight=["fn1", "nope"], focus="fn2")
    assert p["findings"] == [finding]
    assert [p["nodes"][i]["id"] for i in p["highlight"]] == ["fn1"]
    assert p["nodes"][p["focus"]]["id"] == "fn2"


def test_safe_json_cannot_close_the_script_element() -> None:
    data = {"s": "</script><!-- \u2028\u2029 & done", "t": EVIL}
    text = safe_json(data)
    assert "</" not in text and "<!--" not in text and "\u2028" not in text and "<" not in text
    assert json.loads(text) == data


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "script":
            self.scripts.append(dict(attrs))


def evil_graph() -> gradlab.core.graph.Graph:
    G, _, _ = classic_chain()
    for _n, attrs in G.nodes(data=True):
        attrs["name"] = EVIL
        attrs["module"] = EVIL
        attrs["module_type"] = EVIL
        if attrs["kind"] == "leaf":
            attrs["label"] = EVIL
    return G


def test_program_strings_stay_data_in_the_page() -> None:
    doc = page(payload(evil_graph(), printed=EVIL, caption=EVIL, title=EVIL))
    parsed = _Scripts()
    parsed.feed(doc)
    # the three script elements of the page itself, and no other element from the data
    assert len(parsed.scripts) == 3 and "img" not in parsed.tags
    assert EVIL not in doc
    js, _ = assets()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "outerHTML" not in js
    assert "http://" not in doc.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in doc


def test_frame_and_svg_keep_strings_as_text() -> None:
    p = payload(evil_graph(), printed=EVIL)
    picture = to_svg(p)
    html_frame = frame(p, still=picture)
    parsed = _Scripts()
    parsed.feed(html_frame)
    assert parsed.tags == ["div", "img", "iframe"]  # the rest sits in attributes
    assert "<script" not in picture and "<img" not in picture
    assert "&lt;script&gt;" in picture


def test_the_still_svg_carries_the_gradients() -> None:
    G, _, _ = classic_chain()
    picture = to_svg(payload(G))
    assert picture.startswith("<svg") and picture.rstrip().endswith("</svg>")
    assert "grad [[4.5, 4.5], [4.5, 4.5]]" in picture


def test_save_html_writes_one_offline_page(tmp_path: Path) -> None:
    G, _, _ = classic_chain()
    path = gradlab.save(G, tmp_path / "lesson.html")
    text = path.read_text("utf-8")
    assert text.startswith("<!DOCTYPE html>") and "GradLabViewer.mount" in text
    assert "<script src" not in text and "<link" not in text
    data = re.search(
        r'<script type="application/json" id="gradlab-data">(.*?)</script>', text, re.S
    )
    assert data is not None
    assert len(json.loads(data.group(1))["steps"]) == 5
    assert "html" in gradlab.render.formats.FORMATS


def test_cli_export_html(tmp_path: Path) -> None:
    from gradlab.app.cli import main

    out = tmp_path / "lenet.html"
    assert main(["export", "--preset", "lenet", "-o", str(out)]) == 0
    assert out.stat().st_size > 10_000
    assert "LogSoftmaxBackward0" in out.read_text("utf-8")


def test_nan_and_inf_are_drawn_not_refused() -> None:
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    with gradlab.record():
        loss = x.log().sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}))
    p = payload(G)
    x_node = node(p, "x")
    assert x_node["grad"] == "[inf, 1.]" and x_node["fill"] == "#ff6347"
    assert x_node["gnorm"] == 0.0  # log10 of the norm of the finite entries (1.)
    assert "inf" in page(p)  # the page is made (strict JSON: no NaN literal in it)


def test_saved_tensors_are_in_the_card_not_on_the_graph() -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    with gradlab.record():
        loss = (x.exp() * x).sum()
    G = gradlab.backward(loss, gradlab.trace(loss, params={"x": x}, show_saved=True))
    p = payload(G)
    assert all(n["kind"] != "saved" for n in p["nodes"])
    exp = next(n for n in p["nodes"] if n["op"] == "ExpBackward0")
    saved = dict(exp["details"])["Saved for backward"]
    from gradlab.teach.chain import show as show_tensor

    assert saved == f"result: {show_tensor(gradlab.summarize(x.detach().exp()))}"


def test_the_app_mounts_one_graph_until_more_than_its_colours_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x = torch.tensor([2.0, 3.0], requires_grad=True)
    y = (x * x).sum()
    G = gradlab.backward(y, gradlab.trace(y))
    plain = viewer_host.mount_data(G)
    assert plain["options"] == {"color": "kind", "predict": False, "step": "end"}
    assert plain["tint"] == [] and plain["payload"] == payload(G)
    tinted = viewer_host.mount_data(G, color="grad", colors={"fn0": -1.0})
    again = viewer_host.mount_data(G, color="grad", colors={"fn0": 2.5, "leaf0": 0.0})
    assert tinted["digest"] == again["digest"] != plain["digest"]  # recoloured in place
    ids = [n["id"] for n in again["payload"]["nodes"]]
    assert again["tint"] == [{"fn0": 2.5, "leaf0": 0.0}.get(n) for n in ids]
    stepped = viewer_host.mount_data(G, step=0)
    assert stepped["options"]["step"] == -1 and stepped["digest"] != plain["digest"]
    assert all("card" in n for n in plain["payload"]["nodes"])
    monkeypatch.setattr(viewer_host, "CARDS_UP_TO", G.number_of_nodes() - 1)
    assert not any("card" in n for n in viewer_host.mount_data(G)["payload"]["nodes"])
