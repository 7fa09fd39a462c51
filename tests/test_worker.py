"""The worker pool: results equal in-process runs, isolation, the fair queue, failures.

One pool (one warm worker parent) serves the module; tests that need their
own queue behaviour start a pool of size one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

import networkx as nx
import pytest
import torch

from gradlab.isolation import pool, sandbox, wire
from gradlab.isolation.model_code import Reply
from gradlab.program.run import ProgramResult, run_program
from gradlab.teach import examples
from tests.test_tutorials import TUTORIALS

pytestmark = [
    pytest.mark.skipif(not sandbox.status().complete, reason="no OS sandbox here"),
    pytest.mark.xdist_group("worker"),
]

CHAIN = examples.get("chain").source if examples.get("chain") else (
    "x = torch.ones(2, 2, requires_grad=True)\ny = x + 2\nz = y * y * 3\nout = z.mean()\n"
    "out.backward()"
)
SPIN = "import time\nt = time.process_time()\nwhile time.process_time() - t < {s}:\n    pass\n"


@pytest.fixture(scope="module")
def workers() -> Iterator[pool.Pool]:
    p = pool.Pool(2)
    p.wait_ready()
    yield p
    p.close()


def trusted(p: pool.Pool, code: str, *, session: str = "", seconds: float = 10) -> pool.Job:
    return p.submit("trusted", {"code": code, "memory_mb": 1024, "task": "inspect"},
                    session=session, mode="trusted",
                    limits=sandbox.Limits(cpu_seconds=seconds, memory_mb=1024))  # fmt: skip


def model_code(body: str = "") -> str:
    head = "import torch\nfrom torch import nn\n"
    return f"{head}{body}\nmodel = nn.Linear(2, 1)\nx = torch.ones(3, 2)\n"


def test_every_lesson_gives_the_same_facts_as_in_process(workers: pool.Pool) -> None:
    for example in examples.EXAMPLES:
        isolated = pool.run_program(example.source, pool=workers)
        here = run_program(example.source)
        assert isinstance(isolated, ProgramResult)
        assert isolated.ok == here.ok, example.id
        assert isolated.output == here.output, example.id
        assert isolated.variables == here.variables, example.id
        assert (isolated.graph is None) == (here.graph is None), example.id
        if here.graph is not None and isolated.graph is not None:
            assert facts(isolated.graph) == facts(here.graph), example.id


def facts(G: nx.MultiDiGraph) -> tuple[object, ...]:
    """Everything of a graph; autograd's sequence numbers as their order (each process counts
    from where it stands)."""
    order = {s: i for i, s in enumerate(sorted(s for _, s in G.nodes(data="seq") if s is not None))}
    nodes = [(n, {**a, "seq": order.get(a.get("seq"))}) for n, a in G.nodes(data=True)]
    return G.graph, nodes, list(G.edges(keys=True, data=True))


def test_the_chain_through_the_worker_matches_torch(workers: pool.Pool) -> None:
    result = pool.run_program(CHAIN, pool=workers)
    x = torch.ones(2, 2, requires_grad=True)
    ((x + 2) * (x + 2) * 3).mean().backward()
    grads = {v.name: v.grad for v in result.variables}
    assert grads["x"] is not None
    assert torch.equal(torch.tensor(grads["x"]["values"]), x.grad)


def test_what_one_run_changes_never_reaches_the_next(workers: pool.Pool) -> None:
    tamper = model_code("torch.add = None\nimport torch.nn.functional as F\nF.relu = 0\n"
                        "torch.nn.Linear.forward = lambda self, x: x * 0")  # fmt: skip
    outcome = trusted(workers, tamper, session="mallory").result(60)
    assert outcome.ok
    after = pool.run_program("a = torch.tensor([1., -2.], requires_grad=True)\n"
                             "b = torch.add(F.relu(a), 1)\nb.sum().backward()",
                             session="alice", pool=workers)  # fmt: skip
    assert after.ok, after.error
    assert [v.grad["values"] for v in after.variables if v.name == "a"] == [[1.0, 0.0]]
    check = trusted(workers, model_code("assert torch.add is not None"), session="bob")
    assert check.result(60).ok
    assert check.result().value.status == "ok"


def test_limits_count_cpu_time_not_time_in_the_queue() -> None:
    one = pool.Pool(1)
    try:
        one.wait_ready()
        jobs = [trusted(one, model_code(SPIN.format(s=1.2)), session=f"s{i}", seconds=2)
                for i in range(3)]  # fmt: skip
        outcomes = [j.result(120) for j in jobs]
        assert [o.status for o in outcomes] == ["ok", "ok", "ok"]
        assert all(o.value.status == "ok" for o in outcomes)
        assert outcomes[2].waited > 2  # it waited for two runs, and still had its full budget
    finally:
        one.close()


def test_the_queue_is_fair_between_sessions() -> None:
    one = pool.Pool(1)
    try:
        one.wait_ready()
        spin = model_code(SPIN.format(s=0.5))
        a = [trusted(one, spin, session="a") for _ in range(3)]
        b = trusted(one, spin, session="b")
        assert a[0].ahead() == 0
        assert a[1].ahead() == 0  # a[0] runs; a[1] is next, then b, then a[2]
        assert b.ahead() == 1
        assert a[2].ahead() == 2
        finished = {}
        for name, job in [("a1", a[1]), ("b", b), ("a2", a[2])]:
            job.result(120)
            finished[name] = time.monotonic()
        assert finished["b"] < finished["a2"]
    finally:
        one.close()


def test_cancel_a_queued_and_a_running_run() -> None:
    one = pool.Pool(1)
    try:
        one.wait_ready()
        running = trusted(one, model_code("while True:\n    pass"), seconds=60)
        queued = trusted(one, model_code())
        queued.cancel()
        assert queued.result(5).status == "cancelled"
        while running.state != "running":
            time.sleep(0.05)
        time.sleep(0.3)
        running.cancel()
        assert running.result(30).status == "cancelled"
        assert trusted(one, model_code()).result(60).ok  # the pool goes on
    finally:
        one.close()


def test_a_dead_worker_parent_fails_its_runs_and_comes_back() -> None:
    one = pool.Pool(1)
    try:
        one.wait_ready()
        job = trusted(one, model_code("while True:\n    pass"), seconds=60)
        while job.state != "running":
            time.sleep(0.05)
        assert one._process is not None
        one._process.kill()
        outcome = job.result(30)
        assert outcome.status == "crashed" and "again" in outcome.message
        assert trusted(one, model_code()).result(120).ok
    finally:
        one.close()


def test_a_child_that_forges_its_reply_sends_only_data(workers: pool.Pool) -> None:
    forged = model_code(
        "import os, struct, json\n"
        "fake = json.dumps({'status': 'ok', 'reply': json.dumps({'value': "
        "{'$record': 'Popen', 'fields': {'args': ['sh']}}, 'stdout': '', 'stderr': ''})})\n"
        "for fd in range(3, 30):\n"
        "    try:\n"
        "        os.write(fd, struct.pack('<I', len(fake)) + fake.encode())\n"
        "    except OSError:\n"
        "        pass\n"
        "os._exit(0)\n"
    )
    outcome = trusted(workers, forged).result(60)
    assert outcome.status == "crashed"
    assert "malformed" in outcome.message and "Popen" in outcome.message
    assert pool.run_program(CHAIN, pool=workers).ok


def test_print_floods_are_cut(workers: pool.Pool) -> None:
    flood = model_code("for i in range(200000):\n    print('x' * 50)")
    outcome = trusted(workers, flood).result(60)
    assert outcome.ok
    assert len(outcome.stdout) < 25_000 and "more characters not kept" in outcome.stdout


# -- the codec --------------------------------------------------------------------------


def test_wire_round_trips_a_program_result_exactly() -> None:
    result = run_program(CHAIN)
    back = wire.decode(wire.encode(result))
    assert isinstance(back, ProgramResult)
    assert back.variables == result.variables and back.output == result.output
    assert list(back.graph.nodes(data=True)) == list(result.graph.nodes(data=True))
    assert list(back.graph.edges(keys=True, data=True)) == list(
        result.graph.edges(keys=True, data=True)
    )
    assert back.graph.graph == result.graph.graph


def test_wire_keeps_special_floats_tuples_and_int_keys() -> None:
    value = {"a": (1, 2.5, math.inf), "b": [-math.inf], 3: "three"}
    back = wire.decode(wire.encode(value))
    assert back["a"] == (1, 2.5, math.inf) and back["b"] == [-math.inf] and back[3] == "three"
    assert math.isnan(wire.decode(wire.encode(math.nan)))


@pytest.mark.parametrize(
    "text",
    [
        '{"$record": "Popen", "fields": {}}',
        '{"$record": "Reply", "fields": {"status": "ok", "evil": 1}}',
        '{"$float": "1e999999"}',
        "[" * 100_000 + "]" * 100_000,
        '{"$graph": {"nodes": [[{"x": 1}, {}]]}}',
        '{"$unknown": 1}',
        "not json",
    ],
)
def test_wire_refuses_what_is_not_facts(text: str) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(text)


def test_wire_refuses_huge_replies_and_live_objects() -> None:
    with pytest.raises(wire.WireError):
        wire.decode(" " * (wire.MAX_BYTES + 1))
    with pytest.raises(wire.WireError):
        wire.encode(torch.ones(2))
    assert wire.decode(wire.encode(Reply("error", message="m", line=3))) == Reply(
        "error", message="m", line=3
    )


@pytest.mark.parametrize("name", sorted(TUTORIALS))
def test_every_tutorial_runs_in_the_worker_as_it_does_here(workers: pool.Pool, name: str) -> None:
    isolated = pool.run_program(TUTORIALS[name], pool=workers)
    assert isolated.error is None, isolated.error
    assert isolated.output == run_program(TUTORIALS[name]).output
