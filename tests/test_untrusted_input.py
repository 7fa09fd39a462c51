"""Everything that reads untrusted input fails with one clear line, never a traceback.

Graph files (:func:`gradlab.load`), the run store (``gradlab runs``) and shared
links (``?p=``). The files are made hostile by hand from real ones: a graph
traced from torch, a store written by a real run.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
import torch

import gradlab
from gradlab.app.share import MAX_PROGRAM_CHARS, MAX_TOKEN_CHARS, from_params, pack, unpack
from gradlab.core.capture import NodeNorms
from gradlab.core.collapse import collapse
from gradlab.core.errors import ExportError, GradLabError
from gradlab.core.files import MAX_LOAD_BYTES
from gradlab.core.graph import EdgeAttrs, NodeAttrs, check_graph
from gradlab.core.memory import inspect_model
from gradlab.teach import examples
from gradlab.train.records import ParamStat, RunConfig, StepRecord
from gradlab.train.store import RunStore
from gradlab.zoo import presets
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def graph() -> nx.MultiDiGraph:
    """x * w + exp: values recorded, backward run, saved tensors shown."""
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], requires_grad=True)
    w = torch.tensor([0.3, -0.7], requires_grad=True)
    with gradlab.record():
        y = ((x * w).exp() + x).sum()
    G = gradlab.trace(y, params={"x": x, "w": w}, show_saved=True)
    gradlab.backward(y, G)
    return G


@pytest.fixture
def saved(graph: nx.MultiDiGraph, tmp_path: Path) -> dict[str, Any]:
    """The graph as JSON data and as GraphML text."""
    gradlab.save(graph, tmp_path / "g.json")
    gradlab.save(graph, tmp_path / "g.graphml")
    return {
        "json": json.loads((tmp_path / "g.json").read_text()),
        "graphml": (tmp_path / "g.graphml").read_text(),
    }


def refused(path: Path, data: bytes | str, *fragments: str) -> str:
    """Write ``data``, load it: one ExportError line naming the file and ``fragments``."""
    if isinstance(data, str):
        data = data.encode()
    path.write_bytes(data)
    with pytest.raises(ExportError) as caught:
        gradlab.load(path)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 600, message
    assert message.startswith(f"Cannot read '{path}'"), message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- graph files ----------------------------------------------------------------------------


def test_saved_graphs_still_load_equal(graph: nx.MultiDiGraph, tmp_path: Path) -> None:
    for suffix in ("json", "graphml"):
        back = gradlab.load(gradlab.save(graph, tmp_path / f"g.{suffix}"))
        assert nx.utils.graphs_equal(back, graph)
        assert dict(back.nodes(data=True)) == dict(graph.nodes(data=True))


def every_kind_of_graph() -> list[nx.MultiDiGraph]:
    graphs = []
    for name in ("linear", "lenet", "transformer", "resnet_block", "lstm"):
        case = presets.get(name).build(0)
        loss = case.loss_fn
        target = case.target
        run = inspect_model(case.model, [case.inputs], lambda out, f=loss, t=target: f(out, t))
        graphs += [run.graph, collapse(run.graph, 1, ())]
    from gradlab.program.run import run_program

    for example in examples.EXAMPLES[:12]:
        result = run_program(example.source)
        if result.graph is not None:
            graphs.append(result.graph)
    return graphs


def test_every_graph_gradlab_makes_passes_the_check(tmp_path: Path) -> None:
    graphs = every_kind_of_graph()
    assert len(graphs) >= 15
    for i, G in enumerate(graphs):
        check_graph(G)
        for suffix in ("json", "graphml"):
            back = gradlab.load(gradlab.save(G, tmp_path / f"g{i}.{suffix}"))
            assert sorted(back.nodes) == sorted(G.nodes)


def test_malformed_json(tmp_path: Path) -> None:
    refused(tmp_path / "a.json", "{not json", "not valid JSON", "line 1")
    refused(tmp_path / "b.json", bytes(range(256)) * 4, "not valid JSON")
    refused(tmp_path / "c.json", "", "not valid JSON")
    refused(tmp_path / "d.json", '{"a": ' + "9" * 5000 + "}", "Python will not read")


def test_deeply_nested_json(tmp_path: Path) -> None:
    refused(tmp_path / "a.json", "[" * 200_000 + "]" * 200_000, "nested too deeply")


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as f:
        f.truncate(MAX_LOAD_BYTES + 1)  # sparse: no disk used
    with pytest.raises(ExportError, match="bigger than the 64 MB GradLab loads") as caught:
        gradlab.load(path)
    assert "\n" not in str(caught.value)


def test_missing_and_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="No such file"):
        gradlab.load(tmp_path / "missing.json")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(ExportError, match="Is a directory"):
        gradlab.load(tmp_path / "folder.json")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda d: [1, 2, 3], "no 'nodes' and 'edges' lists"),
        (lambda d: {**d, "nodes": {}}, "no 'nodes' and 'edges' lists"),
        (lambda d: {**d, "directed": False}, "directed multigraphs"),
        (lambda d: {**d, "multigraph": False}, "directed multigraphs"),
        (lambda d: {**d, "graph": [1]}, "'graph' attributes"),
        (lambda d: {**d, "nodes": [*d["nodes"], 7]}, "has no string 'id'"),
        (lambda d: {**d, "nodes": [{"kind": "op"}]}, "has no string 'id'"),
        (lambda d: {**d, "nodes": [{"id": 3, "kind": "op", "label": "x"}]}, "string 'id'"),
        (lambda d: {**d, "edges": [{**d["edges"][0], "target": "nowhere"}]}, "'nowhere'"),
        (lambda d: {**d, "edges": [{**d["edges"][0], "key": "0"}]}, "integer 'key'"),
        (lambda d: {**d, "edges": [{**d["edges"][0], "key": True}]}, "integer 'key'"),
        (lambda d: {**d, "edges": ["x"]}, "does not join two of its nodes"),
    ],
)
def test_wrong_json_shapes(
    saved: dict[str, Any], tmp_path: Path, change: Any, fragment: str
) -> None:
    refused(tmp_path / "g.json", json.dumps(change(saved["json"])), fragment)


def node(data: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any] = next(n for n in data["nodes"] if n["kind"] == kind)
    return found


def test_missing_kind_or_label(saved: dict[str, Any], tmp_path: Path) -> None:
    for key in ("kind", "label"):
        data = json.loads(json.dumps(saved["json"]))
        op = node(data, "op")
        del op[key]
        refused(tmp_path / "g.json", json.dumps(data), f"node '{op['id']}' has no '{key}'")


@pytest.mark.parametrize("key", sorted(NodeAttrs.__annotations__))
def test_every_declared_node_attribute_is_checked(
    saved: dict[str, Any], tmp_path: Path, key: str
) -> None:
    data = saved["json"]
    data["nodes"][0][key] = {"wrong": {"x": None}}  # no declared attribute is such a thing
    message = refused(tmp_path / "g.json", json.dumps(data), f"its '{key}'")
    assert f"node '{data['nodes'][0]['id']}'" in message


@pytest.mark.parametrize("key", sorted(EdgeAttrs.__annotations__))
def test_every_declared_edge_attribute_is_checked(
    saved: dict[str, Any], tmp_path: Path, key: str
) -> None:
    data = saved["json"]
    data["edges"][0][key] = "wrong"
    refused(tmp_path / "g.json", json.dumps(data), f"its '{key}'", "edge ")


@pytest.mark.parametrize(
    ("where", "value", "fragment"),
    [
        ("kind", "bogus", "one of 'op'"),
        ("step", "first", "int | None"),
        ("step", 1.5, "int | None"),
        ("step", True, "int | None"),
        ("shape", [2, "x"], "its 'shape' is [2, 'x']"),
        ("value.dtype", 3, "summary has 'dtype'"),
        ("value.nan", None, "summary has 'nan'"),
        ("value.values", [[1.0, "x"]], "summary has 'values'"),
        ("value", {"shape": [2]}, "summary has no dtype"),
        ("args", {"dim": {"x": 1}}, "its 'args'"),
    ],
)
def test_attributes_of_the_wrong_kind(
    saved: dict[str, Any], tmp_path: Path, where: str, value: object, fragment: str
) -> None:
    data = saved["json"]
    op = next(n for n in data["nodes"] if n["kind"] == "op" and n.get("value"))
    key, _, inner = where.partition(".")
    if inner:
        op[key][inner] = value
    else:
        op[key] = value
    refused(tmp_path / "g.json", json.dumps(data), fragment)


def test_values_nested_past_any_tensor(saved: dict[str, Any], tmp_path: Path) -> None:
    data = saved["json"]
    deep: object = 1.0
    for _ in range(500):
        deep = [deep]
    node(data, "op")["value"]["values"] = deep
    refused(tmp_path / "g.json", json.dumps(data), "nested more than")


def test_graph_attributes(saved: dict[str, Any], tmp_path: Path) -> None:
    data = saved["json"]
    data["graph"]["roots"] = ["nowhere"]
    refused(tmp_path / "a.json", json.dumps(data), "'roots'")
    data["graph"]["roots"] = []
    data["graph"]["module_types"] = {"": 3}
    refused(tmp_path / "b.json", json.dumps(data), "'module_types'")


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">\n' for i in range(1, 10)).replace(
        "&lol0;", "&lol;"
    )
    + ']>\n<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
    '<key id="d0" for="node" attr.name="label" attr.type="string"/>'
    '<graph edgedefault="directed"><node id="a"><data key="d0">&lol9;</data></node>'
    "</graph></graphml>"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE g [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">'
    '<key id="d0" for="node" attr.name="label" attr.type="string"/>'
    '<graph edgedefault="directed"><node id="a"><data key="d0">&xxe;</data></node>'
    "</graph></graphml>"
)
PARAMETER_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE g [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/x.dtd">'
    " %remote;]>\n<graphml/>"
)


@pytest.mark.parametrize("text", [BILLION_LAUGHS, EXTERNAL_ENTITY, PARAMETER_ENTITY])
def test_graphml_with_a_dtd_is_refused_before_it_is_parsed(tmp_path: Path, text: str) -> None:
    message = refused(tmp_path / "g.graphml", text, "declares a DTD")
    assert "root:" not in message and "lollol" not in message


def test_graphml_from_the_same_file_in_utf16_is_refused_too(tmp_path: Path) -> None:
    text = EXTERNAL_ENTITY.replace(
        '<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>'
    )
    refused(tmp_path / "g.graphml", text.encode("utf-16"), "declares a DTD")


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda t: t[: len(t) // 2], "not valid XML"),
        (lambda t: "<a>" * 100 + "</a>" * 100, "nested more than 32 deep"),
        (lambda t: '<graphml xmlns="http://graphml.graphdrawing.org/xmlns"/>', "no GraphML graph"),
        (lambda t: t.replace('edgedefault="directed"', 'edgedefault="undirected"'), "directed"),
        (lambda t: t.replace(">op<", ">bogus<", 1), "one of 'op'"),
        (lambda t: t.replace('attr.name="gradlab_json"', 'attr.name="other"'), "not a graph"),
        (lambda t: t.replace('"node": [', '"node": 7, "x": [', 1), "'gradlab_json'"),
        (lambda t: t.replace('attr.type="long"', 'attr.type="complex"', 1), "not a graph"),
    ],
)
def test_broken_graphml(saved: dict[str, Any], tmp_path: Path, change: Any, fragment: str) -> None:
    text = change(saved["graphml"])
    assert text != saved["graphml"]
    refused(tmp_path / "g.graphml", text, fragment)


def test_graphml_values_that_do_not_parse(saved: dict[str, Any], tmp_path: Path) -> None:
    text: str = saved["graphml"]
    # The step of an op, declared an integer by GraphML's own key, made text.
    key = next(
        line.split('id="')[1].split('"')[0]
        for line in text.splitlines()
        if 'attr.name="step"' in line
    )
    broken = text.replace(f'<data key="{key}">0</data>', f'<data key="{key}">zero</data>', 1)
    assert broken != text
    refused(tmp_path / "g.graphml", broken, "not a graph saved by GradLab")


# --- the run store --------------------------------------------------------------------------


def gradlab_cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GRADLAB_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "gradlab", *args],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def real_store(path: Path) -> int:
    """A store with one finished run: records with node norms and a graph."""
    store = RunStore(path)
    run = store.create(RunConfig("linear_regression", {"lr": 0.1}, steps=300, every=1))
    ids = tuple(f"fn{i}" for i in range(50))
    records = [
        StepRecord(
            step, 1.0 / (step + 1), 0.1, 0.01, 8, {"accuracy": 0.5},
            (ParamStat("weight", 1, 0.5, 0.5, 0.1),),
            NodeNorms(ids, tuple(float(i) for i in range(50))),
        )
        for step in range(300)
    ]  # fmt: skip
    store.append(run, records)
    x = torch.ones(2, requires_grad=True)
    store.set_graph(run, gradlab.trace((x * 2).sum()))
    store.set_status(run, "finished")
    store.close()
    return run


def damage(path: Path, sql: str) -> None:
    db = sqlite3.connect(path)
    db.execute(sql)
    db.commit()
    db.close()


@pytest.mark.slow
def test_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    (tmp_path / "runs.sqlite").write_text("these are my notes, not a database\n" * 20)
    result = gradlab_cli("runs", home=tmp_path)
    one_line_error(result, "is not a SQLite database", f"mv {tmp_path / 'runs.sqlite'}")
    # The advice works: moved away, a new store starts.
    (tmp_path / "runs.sqlite").rename(tmp_path / "runs.sqlite.old")
    result = gradlab_cli("runs", home=tmp_path)
    assert result.returncode == 0 and "No runs" in result.stdout


@pytest.mark.slow
def test_a_corrupt_store(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    real_store(path)
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096  # the records fill pages past the first ones
    noise = random.Random(0).randbytes(len(data) - 4096)
    path.write_bytes(bytes(data[:4096]) + noise)  # the header stays: SQLite opens it
    result = gradlab_cli("runs", home=tmp_path)
    one_line_error(result, "is damaged", "Move it away")


@pytest.mark.slow
def test_a_store_written_by_something_else(tmp_path: Path) -> None:
    damage(tmp_path / "runs.sqlite", "CREATE TABLE runs (id INTEGER PRIMARY KEY, what TEXT)")
    result = gradlab_cli("runs", home=tmp_path)
    one_line_error(result, "not written by GradLab", "'runs' has no", "scenario")


@pytest.mark.slow
def test_an_unwritable_gradlab_home(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    result = gradlab_cli("runs", home=tmp_path / "a-file" / "gradlab")
    one_line_error(result, "Set GRADLAB_HOME to a writable folder")


@pytest.mark.slow
def test_a_folder_given_as_the_store(tmp_path: Path) -> None:
    result = gradlab_cli("runs", "--db", str(tmp_path), home=tmp_path)
    one_line_error(result, "is a folder")


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("UPDATE runs SET steps = 'many'", "'many'"),
        ("UPDATE runs SET params = 'not json'", "not what GradLab writes"),
        ("UPDATE runs SET params = '[1, 2]'", "parameters that are not a table"),
        ("UPDATE runs SET created = 'NaN'", "a bad time"),
        ("UPDATE runs SET created = 1e300", "a bad time"),
        ("UPDATE runs SET status = 'exploded'", "unknown state 'exploded'"),
        ("UPDATE runs SET error = x'00ff'", "error message that is not text"),
    ],
)
def test_run_rows_with_bad_values(tmp_path: Path, sql: str, fragment: str) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, sql)
    with pytest.raises(GradLabError, match=f"Run {run} in the run store") as caught:
        RunStore(path).runs()
    assert fragment in str(caught.value) and f"gradlab runs delete {run}" in str(caught.value)


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("UPDATE records SET step = 'x' WHERE step = 3", "not an integer"),
        ("UPDATE records SET metrics = '[1]' WHERE step = 3", "cannot read"),
        ('UPDATE records SET metrics = \'{"a": "b"}\' WHERE step = 3', "cannot read"),
        ("UPDATE records SET params = '[[1]]' WHERE step = 3", "cannot read"),
        ("UPDATE records SET node_norms = x'0102' WHERE step = 3", "multiple of item size"),
        ("UPDATE records SET node_ids = '[\"a\"]' WHERE step = 3", "50 norms for 1 node ids"),
        ("UPDATE records SET node_ids = '" + "[" * 5000 + "' WHERE step = 0", "cannot read"),
        ("UPDATE records SET node_norms = zeroblob(20000000) WHERE step = 3", "of 20 MB"),
        (
            "UPDATE records SET metrics = CAST(zeroblob(20000000) AS TEXT) WHERE step = 3",
            "of 20 MB",
        ),
    ],
)
def test_step_records_with_bad_values(tmp_path: Path, sql: str, fragment: str) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, sql)
    store = RunStore(path)
    assert store.runs()[0].id == run  # the run's own row is fine
    with pytest.raises(GradLabError) as caught:
        store.records(run)
    message = str(caught.value)
    assert "\n" not in message and fragment in message and "gradlab runs delete" in message


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("UPDATE runs SET graph = '{\"nodes\": 3}'", "damaged graph"),
        ("UPDATE runs SET graph = 'x'", "not valid JSON"),
        ("UPDATE runs SET graph = zeroblob(70000000)", "a graph of 70 MB"),
        ("UPDATE runs SET graph = CAST(zeroblob(70000000) AS TEXT)", "a graph of 70 MB"),
    ],
)
def test_a_kept_graph_that_is_damaged_or_huge(tmp_path: Path, sql: str, fragment: str) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, sql)
    with pytest.raises(GradLabError, match=fragment):
        RunStore(path).graph(run)


@pytest.mark.slow
def test_cli_on_bad_rows_says_what_and_the_advice_works(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, "UPDATE runs SET created = 'NaN'")
    one_line_error(gradlab_cli("runs", home=tmp_path), f"gradlab runs delete {run}")
    deleted = gradlab_cli("runs", "delete", str(run), home=tmp_path)
    assert deleted.returncode == 0, deleted.stderr
    listed = gradlab_cli("runs", home=tmp_path)
    assert listed.returncode == 0 and "No runs" in listed.stdout


@pytest.mark.slow
def test_cli_export_of_a_damaged_record(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, "UPDATE records SET node_norms = x'0102' WHERE step = 7")
    result = gradlab_cli("runs", "export", str(run), "-o", str(tmp_path / "r.csv"), home=tmp_path)
    one_line_error(result, f"Run {run}", "gradlab runs delete")
    assert not (tmp_path / "r.csv").exists()


# --- shared links ---------------------------------------------------------------------------


def token(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(zlib.compress(data, 9)).decode().rstrip("=")


@pytest.mark.parametrize(
    "bad",
    [
        token(b"a" * 50_000_000),  # a zlib bomb: 50 MB from about 50 kB
        token("é".encode() * (MAX_PROGRAM_CHARS + 1)),
        token(b"\xff\xfe" * 100),  # not UTF-8
        pack("x = 1")[:-4],  # cut short
        "A" * (MAX_TOKEN_CHARS + 1),
        "!!!",
        "ÿÿÿÿ",
        "",
    ],
)
def test_bad_program_tokens_give_none(bad: str) -> None:
    assert unpack(bad) is None
    assert from_params({"p": bad}).program is None


def test_the_longest_program_still_travels() -> None:
    program = "# " + "é" * (MAX_PROGRAM_CHARS - 2)
    assert len(pack(program)) <= MAX_TOKEN_CHARS
    assert unpack(pack(program)) == program


@pytest.mark.parametrize(
    "params",
    [
        {"step": "²"},
        {"step": "٣"},  # an Arabic-Indic digit
        {"step": "9" * 5000},
        {"node": "n" * 10_000},
        {"example": "e" * 10_000},
        {"view": "x" * 10_000, "present": "1" * 1000},
    ],
)
def test_hostile_view_parameters_fall_back_to_defaults(params: dict[str, str]) -> None:
    state = from_params(params)
    assert state.step is None and state.node is None and state.example is None
    assert state.view == "plotly" and not state.presenter


@pytest.mark.slow
def test_the_playground_opens_a_hostile_link_without_an_exception() -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.query_params.update(
        {"p": token(b"a" * 20_000_000), "step": "²", "node": "n" * 5000, "example": "x" * 500}
    )
    at.run()
    at.switch_page("playground.py")
    at.run()
    assert not at.exception, at.exception


@pytest.mark.slow
@pytest.mark.parametrize("damage_kind", ["not sqlite", "bad row"])
def test_the_training_page_says_what_is_wrong_with_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage_kind: str
) -> None:
    from streamlit.testing.v1 import AppTest

    path = tmp_path / "runs.sqlite"
    if damage_kind == "not sqlite":
        path.write_text("not a database\n" * 50)
        expected = "is not a SQLite database"
    else:
        run = real_store(path)
        damage(path, "UPDATE runs SET status = 'exploded'")
        expected = f"gradlab runs delete {run}"
    monkeypatch.setenv("GRADLAB_HOME", str(tmp_path))
    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("training.py")
    at.run()
    assert not at.exception, at.exception
    assert any(expected in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
@pytest.mark.parametrize(
    "query",
    [
        {"depth": "²", "code": token(b"a" * 20_000_000)},
        {"preset": "mlp", "mlp.depth": "٣", "depth": "9" * 5000},
    ],
)
def test_the_model_graph_page_opens_a_hostile_link(query: dict[str, str]) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "app.py"), default_timeout=60)
    at.query_params.update(query)
    at.run()
    at.switch_page("model_graph.py")
    at.run()
    assert not at.exception, at.exception


def test_whole_numbers_from_links() -> None:
    from gradlab.app.share import whole_number

    assert whole_number("42") == 42 and whole_number("7", 1, 6) is None
    for bad in ("²", "٣", "-1", "1e3", " 4", "9" * 5000, ""):
        assert whole_number(bad) is None, bad


@pytest.mark.parametrize(
    ("column", "text"),
    [
        ("params", "printf('%.*c', 20000000, 'x')"),
        ("error", "printf('%.*c', 20000000, 'x')"),
        ("scenario", "CAST(zeroblob(20000000) AS TEXT)"),  # NULs: length() of text says 0
    ],
)
def test_a_run_row_with_a_huge_text_is_refused_unread(
    tmp_path: Path, column: str, text: str
) -> None:
    path = tmp_path / "runs.sqlite"
    run = real_store(path)
    damage(path, f"UPDATE runs SET {column} = {text}")
    store = RunStore(path)
    for read in (store.runs, lambda: store.run(run)):
        with pytest.raises(GradLabError, match=f"Run {run} .* holds 20 MB of settings"):
            read()
