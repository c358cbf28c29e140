"""Tests of collab.graph: materialize, validate, apply and diff node graphs."""

from __future__ import annotations

import copy
import json
import math
import string
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Array, Doc, Map, Text, TransactionEvent, XmlElement, XmlFragment, XmlText

from collab.graph import (
    Graph,
    GraphJSON,
    GraphLimits,
    GraphValidationError,
    apply_graph,
    counts,
    diff_graphs,
    diff_is_empty,
    materialize,
    summarize,
    validate_graph,
)

LIMITS = GraphLimits()

# A document written by the npm `yjs` 13.6.33 client (node, clientID 4242), and what
# `JSON.stringify({nodes: nodes.toJSON(), edges: edges.toJSON(), meta: meta.toJSON()})`
# printed for it. Written by:
#   meta.set('name','Demo'); meta.set('rev',3)
#   n1 = Y.Map {type:'Scale', x:10, y:-2.5, label:'Scale', color:'#ff0000',
#               params: Y.Map {factor:1, mode:'fast', list:[1,2.5,{deep:true}], nothing:null},
#               notes: Y.Text 'hello', tags: Y.Array [1,'a']}
#   nodes.set('n2', {type:'Blur', x:0, y:300, params:{radius:4, sigma:0.5}})  (plain JSON)
#   nodes.set('bad', {x:'12', y:1})
#   edges: e1 = Y.Map n1.out -> n2.in; e2 = plain {n2.out -> gone.in, weight:2};
#          e3 = plain {source:'n1', target:'n2'}
JS_UPDATE = bytes.fromhex(
    "011a9221002801046d657461046e616d6501770444656d6f2801046d65746103726576017d032701056e6f"
    "646573026e3101280092210204747970650177055363616c6528009221020178017d0a28009221020179"
    "017cc02000002800922102056c6162656c0177055363616c65270092210206706172616d73012800922107"
    "06666163746f72017d012800922107046d6f6465017704666173742800922107046c6973740175037d017c"
    "4020000076010464656570782800922107076e6f7468696e67017e280092210205636f6c6f7201770723"
    "6666303030302801056e6f646573026e3201760404747970657704426c757201787d0001797dac040670"
    "6172616d737602067261646975737d04057369676d617c3f0000002801056e6f646573036261640176020178"
    "7702313201797d01270105656467657302653101280092210f06736f757263650177026e31280092210f"
    "0c736f75726365536f636b65740177036f7574280092210f067461726765740177026e32280092210f0c74"
    "6172676574536f636b6574017702696e280105656467657302653201760506736f7572636577026e320c73"
    "6f75726365536f636b657477036f7574067461726765747704676f6e650c746172676574536f636b6574"
    "7702696e067765696768747d02280105656467657302653301760206736f7572636577026e310674617267"
    "657477026e322700922102056e6f7465730204009221160568656c6c6f2700922102047461677300080092"
    "211c027d0177016100"
)
JS_JSON = (
    '{"nodes":{"n1":{"type":"Scale","x":10,"y":-2.5,"label":"Scale","params":{"factor":1,'
    '"mode":"fast","list":[1,2.5,{"deep":true}],"nothing":null},"color":"#ff0000",'
    '"notes":"hello","tags":[1,"a"]},"n2":{"type":"Blur","x":0,"y":300,"params":{"radius":4,'
    '"sigma":0.5}},"bad":{"x":"12","y":1}},"edges":{"e1":{"source":"n1","sourceSocket":"out",'
    '"target":"n2","targetSocket":"in"},"e2":{"source":"n2","sourceSocket":"out",'
    '"target":"gone","targetSocket":"in","weight":2},"e3":{"source":"n1","target":"n2"}},'
    '"meta":{"name":"Demo","rev":3}}'
)


# --------------------------------------------------------------------------- helpers


def canon(value: object) -> str:
    """Strict JSON text: tells 1 from 1.0 from True, ignores key order."""
    return json.dumps(value, sort_keys=True, allow_nan=False)


def content(graph: GraphJSON | Graph) -> dict[str, Any]:
    """The graph without its problems, meta defaulting to {} as materialize has it."""
    return {"nodes": graph["nodes"], "edges": graph["edges"], "meta": graph.get("meta", {})}


def sync(source: Doc[Any], target: Doc[Any]) -> None:
    target.apply_update(source.get_update(target.get_state()))


@contextmanager
def recorded(doc: Doc[Any]) -> Iterator[list[bytes]]:
    """Collect the updates of the transactions committed inside the block."""
    updates: list[bytes] = []

    def on_change(event: TransactionEvent) -> None:
        updates.append(event.update)

    subscription = doc.observe(on_change)
    try:
        yield updates
    finally:
        doc.unobserve(subscription)


def node_of(graph: GraphJSON, node_id: str) -> dict[str, Any]:
    value = graph["nodes"][node_id]
    assert isinstance(value, dict)
    return value


def graph_of(data: object) -> Graph:
    return validate_graph(data, limits=LIMITS)


def node(type_: str, x: float, y: float, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "x": x, "y": y, "params": fields.pop("params", {}), **fields}


def edge(source: str, target: str, sock_out: str = "out", sock_in: str = "in") -> dict[str, Any]:
    return {"source": source, "sourceSocket": sock_out, "target": target, "targetSocket": sock_in}


def version_one() -> dict[str, Any]:
    return {
        "nodes": {
            "src": node("Noise", 0, 0, params={"seed": 1}),
            "scale": node("Scale", 100, 0, label="Scale", params={"factor": 1.0, "mode": "fast"}),
            "blur": node("Blur", 200, 0, params={"radius": 4}),
            "out": node("Output", 300, 0),
        },
        "edges": {
            "e1": edge("src", "scale"),
            "e2": edge("scale", "blur"),
            "e3": {**edge("blur", "out"), "color": "red"},
        },
        "meta": {"name": "Demo"},
    }


def doc_with(data: object) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    with doc.transaction(origin="test"):
        apply_graph(doc, graph_of(data))
    return doc


def roots(doc: Doc[Any]) -> tuple[Map[Any], Map[Any], Map[Any]]:
    return (
        doc.get("nodes", type=Map),
        doc.get("edges", type=Map),
        doc.get("meta", type=Map),
    )


# --------------------------------------------------------------------------- materialize


def test_materialize_empty_doc_changes_nothing() -> None:
    doc: Doc[Any] = Doc()
    state = doc.get_state()
    with recorded(doc) as updates:
        graph = materialize(doc)
        assert counts(doc) == (0, 0)
    assert graph == {"nodes": {}, "edges": {}, "meta": {}, "problems": []}
    assert updates == []
    assert doc.get_state() == state


def test_materialize_doc_written_with_pycrdt() -> None:
    doc: Doc[Any] = Doc()
    nodes, edges, meta = roots(doc)
    with doc.transaction():
        nodes["n1"] = Map(
            {
                "type": "Scale",
                "x": 10,
                "y": -2.5,
                "label": "Big",
                "params": Map({"factor": 2, "nested": Map({"a": [1, 2.5]}), "on": True}),
                "notes": Text("hello"),
                "tags": Array([1, "a", Map({"k": 3})]),
                "stamp": 1700000000000,
            }
        )
        nodes["n2"] = {"type": "Blur", "x": 0.5, "y": 3, "params": {"radius": 4}}
        edges["e1"] = Map(edge("n1", "n2"))
        meta["name"] = "Project"
        meta["tags"] = Array(["x"])
    other: Doc[Any] = Doc()
    sync(doc, other)  # through the wire format, as the server holds it
    expected = {
        "nodes": {
            "n1": {
                "label": "Big",
                "notes": "hello",
                "params": {"factor": 2, "nested": {"a": [1, 2.5]}, "on": True},
                "stamp": 1700000000000,
                "tags": [1, "a", {"k": 3}],
                "type": "Scale",
                "x": 10,
                "y": -2.5,
            },
            "n2": {"params": {"radius": 4}, "type": "Blur", "x": 0.5, "y": 3},
        },
        "edges": {"e1": edge("n1", "n2")},
        "meta": {"name": "Project", "tags": ["x"]},
        "problems": [],
    }
    for source in (doc, other):
        graph = materialize(source)
        assert canon(graph) == canon(expected)
        assert list(graph["nodes"]) == ["n1", "n2"]  # sorted, deterministic
        assert counts(source) == (2, 1)


def test_materialize_js_client_doc_equals_json_stringify() -> None:
    doc: Doc[Any] = Doc()
    doc.apply_update(JS_UPDATE)
    graph = materialize(doc)
    assert canon(content(graph)) == canon(json.loads(JS_JSON))
    # Integers written by JS come back as floats from pycrdt and are emitted as ints.
    n1 = graph["nodes"]["n1"]
    assert isinstance(n1, dict)
    assert type(n1["x"]) is int
    assert graph["problems"] == [
        {"kind": "dangling_edge", "edge": "e2", "missing": "gone"},
        {"kind": "invalid_edge", "edge": "e3", "reason": "sourceSocket is missing"},
        {"kind": "invalid_edge", "edge": "e3", "reason": "targetSocket is missing"},
        {"kind": "invalid_node", "node": "bad", "reason": "type is missing"},
        {"kind": "invalid_node", "node": "bad", "reason": "x is not a number"},
    ]
    assert counts(doc) == (3, 3)


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        (3.0, "3"),
        (3, "3"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e-7, "1e-07"),
        (float(2**53), "9007199254740992"),
        (-float(2**53), "-9007199254740992"),
        (float(2**53 + 2), "9007199254740994.0"),  # beyond ±2**53: stays a float
        (2**53 + 1, "9007199254740992.0"),  # pycrdt stores this int as a 64-bit integer
        (float(2**63), "9.223372036854776e+18"),  # yrs' to_json saturates this one
        (-float(2**63), "-9.223372036854776e+18"),
        (1.5 * 2**63, "1.3835058055282164e+19"),
        (1e300, "1e+300"),
        (float("nan"), "null"),  # as JSON.stringify(NaN)
        (float("inf"), "null"),
        (True, "true"),
        (None, "null"),
        ("3", '"3"'),
    ],
)
def test_number_normalization(written: object, expected: str) -> None:
    doc: Doc[Any] = Doc()
    _, _, meta = roots(doc)
    meta["v"] = written
    meta["plain"] = {"v": written}
    meta["list"] = Array([written])
    replica: Doc[Any] = Doc()
    sync(doc, replica)
    for source in (doc, replica):
        got = materialize(source)["meta"]
        assert json.dumps(got["v"]) == expected
        assert json.dumps(got["plain"]) == '{"v": ' + expected + "}"
        assert json.dumps(got["list"]) == "[" + expected + "]"


def test_materialize_other_shared_types() -> None:
    doc: Doc[Any] = Doc()
    _, _, meta = roots(doc)
    with doc.transaction():
        meta["xml"] = XmlFragment([XmlElement("p", {"a": "1"}, [XmlText("hi")])])
        meta["bin"] = b"\x01\x02"
        sub: Doc[Any] = Doc()
        meta["sub"] = sub
    got = materialize(doc)["meta"]
    assert got == {"bin": [1, 2], "sub": {"guid": sub.guid}, "xml": '<p a="1">hi</p>'}


def test_dangling_edge_after_concurrent_delete() -> None:
    alice = doc_with({"nodes": {"a": node("A", 0, 0), "b": node("B", 1, 1)}, "edges": {}})
    bob: Doc[Any] = Doc()
    sync(alice, bob)
    del roots(alice)[0]["b"]  # Alice deletes node b ...
    roots(bob)[1]["e1"] = Map(edge("a", "b"))  # ... while Bob connects a to it.
    roots(bob)[1]["e2"] = Map(edge("b", "b"))
    sync(alice, bob)
    sync(bob, alice)
    for doc in (alice, bob):
        graph = materialize(doc)
        assert sorted(graph["nodes"]) == ["a"]
        assert graph["edges"] == {"e1": edge("a", "b"), "e2": edge("b", "b")}  # kept
        assert graph["problems"] == [
            {"kind": "dangling_edge", "edge": "e1", "missing": "b"},
            {"kind": "dangling_edge", "edge": "e2", "missing": "b"},  # once per node
        ]
    assert canon(materialize(alice)) == canon(materialize(bob))


def test_invalid_nodes_and_edges_are_problems() -> None:
    doc: Doc[Any] = Doc()
    nodes, edges, _ = roots(doc)
    with doc.transaction():
        nodes["ok"] = Map(node("T", 0, 0))
        nodes["scalar"] = 5
        nodes["no_type"] = {"x": 1, "y": 1}
        nodes["int_type"] = {"type": 7, "x": 1, "y": 1}
        nodes["empty_type"] = {"type": "", "x": 1, "y": 1}
        nodes["bad_xy"] = Map({"type": "T", "x": "1", "y": True, "params": [1]})
        nodes["nan"] = {"type": "T", "x": float("nan"), "label": 3}
        edges["list"] = [1]
        edges["partial"] = {"source": "ok", "sourceSocket": 3, "target": "", "targetSocket": "in"}
        edges["fine"] = Map(edge("ok", "ok"))
    assert materialize(doc)["problems"] == [
        {"kind": "invalid_edge", "edge": "list", "reason": "not an object"},
        {"kind": "invalid_edge", "edge": "partial", "reason": "sourceSocket is not a string"},
        {"kind": "invalid_edge", "edge": "partial", "reason": "target is empty"},
        {"kind": "invalid_node", "node": "bad_xy", "reason": "params is not an object"},
        {"kind": "invalid_node", "node": "bad_xy", "reason": "x is not a number"},
        {"kind": "invalid_node", "node": "bad_xy", "reason": "y is not a number"},
        {"kind": "invalid_node", "node": "empty_type", "reason": "type is empty"},
        {"kind": "invalid_node", "node": "int_type", "reason": "type is not a string"},
        {"kind": "invalid_node", "node": "nan", "reason": "label is not a string"},
        {"kind": "invalid_node", "node": "nan", "reason": "x is not a number"},
        {"kind": "invalid_node", "node": "nan", "reason": "y is missing"},
        {"kind": "invalid_node", "node": "no_type", "reason": "type is missing"},
        {"kind": "invalid_node", "node": "scalar", "reason": "not an object"},
    ]


# --------------------------------------------------------------------------- validation

SMALL = GraphLimits(max_nodes=2, max_edges=1, max_params=2, max_string=5, max_depth=2)
LONG_ID = "a" * 129


def ok_graph(**changes: Any) -> dict[str, Any]:
    graph: dict[str, Any] = {
        "nodes": {"n1": node("T", 0, 0), "n2": node("T", 1, 1)},
        "edges": {"e1": edge("n1", "n2")},
    }
    graph.update(changes)
    return graph


def with_node(**fields: Any) -> dict[str, Any]:
    graph = ok_graph()
    graph["nodes"]["n1"] = fields
    return graph


def with_edge(value: object) -> dict[str, Any]:
    graph = ok_graph()
    graph["edges"]["e1"] = value
    return graph


INVALID: list[tuple[str, object, GraphLimits, list[tuple[str, str]]]] = [
    ("not-an-object", [], LIMITS, [("", "must be an object")]),
    ("empty-object", {}, LIMITS, [("/edges", "is required"), ("/nodes", "is required")]),
    (
        "sections-not-objects",
        {"nodes": [], "edges": "x", "meta": 1},
        LIMITS,
        [
            ("/edges", "must be an object"),
            ("/meta", "must be an object"),
            ("/nodes", "must be an object"),
        ],
    ),
    ("unknown-top-level", ok_graph(extra=1), LIMITS, [("/extra", "unknown field")]),
    (
        "bad-ids",
        {
            "nodes": {"a b": node("T", 0, 0), "a/b": node("T", 0, 0), "": node("T", 0, 0)},
            "edges": {},
        },
        LIMITS,
        [
            ("/nodes/", "invalid id '': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
            ("/nodes/a b", "invalid id 'a b': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
            ("/nodes/a~1b", "invalid id 'a/b': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
        ],
    ),
    (
        "id-too-long",
        {"nodes": {LONG_ID: node("T", 0, 0)}, "edges": {}},
        LIMITS,
        [
            (
                "/nodes/" + LONG_ID,
                f"invalid id '{'a' * 40}': must be 1-128 characters of A-Z a-z 0-9 _ . : -",
            )
        ],
    ),
    (
        "node-not-object",
        ok_graph(nodes={"n1": 3, "n2": node("T", 0, 0)}),
        LIMITS,
        [("/nodes/n1", "must be an object")],
    ),
    (
        "node-fields-missing",
        with_node(),
        LIMITS,
        [
            ("/nodes/n1/type", "is required"),
            ("/nodes/n1/x", "is required"),
            ("/nodes/n1/y", "is required"),
        ],
    ),
    (
        "type-not-string",
        with_node(type=1, x=0, y=0),
        LIMITS,
        [("/nodes/n1/type", "must be a string")],
    ),
    ("type-empty", with_node(type="", x=0, y=0), LIMITS, [("/nodes/n1/type", "must not be empty")]),
    (
        "type-too-long",
        with_node(type="t" * 129, x=0, y=0),
        LIMITS,
        [("/nodes/n1/type", "must be at most 128 characters")],
    ),
    (
        "coordinates-not-numbers",
        with_node(type="T", x="1", y=True),
        LIMITS,
        [("/nodes/n1/x", "must be a number"), ("/nodes/n1/y", "must be a number")],
    ),
    (
        "coordinates-not-finite",
        with_node(type="T", x=math.nan, y=-math.inf),
        LIMITS,
        [("/nodes/n1/x", "must be a finite number"), ("/nodes/n1/y", "must be a finite number")],
    ),
    (
        "int-out-of-range",
        with_node(type="T", x=10**400, y=0),
        LIMITS,
        [("/nodes/n1/x", "number out of range")],
    ),
    (
        "params-not-object",
        with_node(type="T", x=0, y=0, params=[]),
        LIMITS,
        [("/nodes/n1/params", "must be an object")],
    ),
    (
        "param-values-not-json",
        with_node(type="T", x=0, y=0, params={"a": [1, math.inf], "b": {"c": {1, 2}}}),
        LIMITS,
        [
            ("/nodes/n1/params/a/1", "must be a finite number"),
            ("/nodes/n1/params/b/c", "must be a JSON value"),
        ],
    ),
    (
        "label-not-string",
        with_node(type="T", x=0, y=0, label=5),
        LIMITS,
        [("/nodes/n1/label", "must be a string or null")],
    ),
    (
        "extra-field-not-json",
        with_node(type="T", x=0, y=0, when=object()),
        LIMITS,
        [("/nodes/n1/when", "must be a JSON value")],
    ),
    ("edge-not-object", with_edge("n1->n2"), LIMITS, [("/edges/e1", "must be an object")]),
    (
        "edge-fields-missing",
        with_edge({}),
        LIMITS,
        [
            ("/edges/e1/source", "is required"),
            ("/edges/e1/sourceSocket", "is required"),
            ("/edges/e1/target", "is required"),
            ("/edges/e1/targetSocket", "is required"),
        ],
    ),
    (
        "edge-bad-endpoints",
        with_edge({"source": "n9", "sourceSocket": "", "target": 2, "targetSocket": "s" * 129}),
        LIMITS,
        [
            ("/edges/e1/source", "unknown node 'n9'"),
            ("/edges/e1/sourceSocket", "must not be empty"),
            ("/edges/e1/target", "must be a string"),
            ("/edges/e1/targetSocket", "must be at most 128 characters"),
        ],
    ),
    (
        "too-many-nodes-and-edges",
        ok_graph(
            nodes={"a": node("T", 0, 0), "b": node("T", 0, 0), "c": node("T", 0, 0)},
            edges={"e1": edge("a", "b"), "e2": edge("b", "zz")},
        ),
        SMALL,
        # one error per section, no per-edge noise about endpoints
        [("/edges", "too many edges (2, at most 1)"), ("/nodes", "too many nodes (3, at most 2)")],
    ),
    (
        "too-many-params",
        with_node(type="T", x=0, y=0, params={"a": 1, "b": 2, "c": 3}),
        SMALL,
        [("/nodes/n1/params", "too many params (3, at most 2)")],
    ),
    (
        "strings-too-long",
        ok_graph(
            nodes={
                "n1": node("T", 0, 0, params={"p": "abcdef", "longkey": 1}),
                "n2": node("T", 0, 0),
            },
            meta={"name": "abcdef"},
        ),
        SMALL,
        [
            ("/meta/name", "must be at most 5 characters"),
            ("/nodes/n1/params/longkey", "must be at most 5 characters"),
            ("/nodes/n1/params/p", "must be at most 5 characters"),
        ],
    ),
    (
        "too-deep",
        with_node(
            type="T", x=0, y=0, params={"ok": [[1]], "deep": [[[1]]]}, extra={"a": {"b": {}}}
        ),
        SMALL,
        [
            ("/nodes/n1/extra/a/b", "nested too deeply (at most 2 levels)"),
            ("/nodes/n1/params/deep/0/0", "nested too deeply (at most 2 levels)"),
        ],
    ),
    (
        "meta-not-json",
        ok_graph(meta={"when": b"x"}),
        LIMITS,
        [("/meta/when", "must be a JSON value")],
    ),
    (
        "everything-at-once",
        {
            "nodes": {"n1": {"type": "", "x": None, "y": 0}, "n2": [], "ok": node("T", 0, 0)},
            "edges": {"e1": edge("n1", "nope"), "e 2": edge("ok", "ok"), "e3": None},
            "meta": [],
            "extra": True,
        },
        LIMITS,
        [
            ("/edges/e 2", "invalid id 'e 2': must be 1-128 characters of A-Z a-z 0-9 _ . : -"),
            ("/edges/e1/target", "unknown node 'nope'"),
            ("/edges/e3", "must be an object"),
            ("/extra", "unknown field"),
            ("/meta", "must be an object"),
            ("/nodes/n1/type", "must not be empty"),
            ("/nodes/n1/x", "must be a number"),
            ("/nodes/n2", "must be an object"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("data", "limits", "expected"),
    [pytest.param(data, limits, expected, id=name) for name, data, limits, expected in INVALID],
)
def test_validation_reports_every_offending_path(
    data: object, limits: GraphLimits, expected: list[tuple[str, str]]
) -> None:
    with pytest.raises(GraphValidationError) as info:
        validate_graph(data, limits=limits)
    assert [(e["path"], e["message"]) for e in info.value.errors] == expected
    assert expected[0][1] in str(info.value)


def test_validation_stops_after_max_errors() -> None:
    data: dict[str, Any] = {"nodes": {f"n{i}": {} for i in range(10)}, "edges": {}}
    with pytest.raises(GraphValidationError) as info:
        validate_graph(data, limits=GraphLimits(max_errors=4))
    errors = info.value.errors
    assert len(errors) == 5
    assert errors[-1] == {"path": "", "message": "too many errors; the first 4 shown"}


def test_validation_normalizes_and_keeps_extra_fields() -> None:
    data = {
        "nodes": {
            "b": {"type": "T", "x": 1.0, "y": -0.0, "color": "red", "label": None},
            "a": {"type": "T", "x": 2.5, "y": 3, "params": {"f": 4.0, "l": [1.0, True]}},
        },
        "edges": {"e": {**edge("a", "b"), "weight": 2.0}},
        "problems": [{"kind": "whatever"}],
    }
    graph = validate_graph(data, limits=LIMITS)
    assert canon(graph) == canon(
        {
            "nodes": {
                "a": {"params": {"f": 4, "l": [1, True]}, "type": "T", "x": 2.5, "y": 3},
                "b": {"color": "red", "label": None, "params": {}, "type": "T", "x": 1, "y": 0},
            },
            "edges": {"e": {**edge("a", "b"), "weight": 2}},
        }
    )
    assert "meta" not in graph
    assert list(graph["nodes"]) == ["a", "b"]
    assert validate_graph({**data, "meta": {"name": "N"}}, limits=LIMITS)["meta"] == {"name": "N"}


def test_materialized_graph_is_importable() -> None:
    doc = doc_with(version_one())
    graph = materialize(doc)
    assert canon(content(validate_graph(graph, limits=LIMITS))) == canon(content(graph))


# --------------------------------------------------------------------------- apply_graph


def test_apply_whole_graph_is_one_live_change() -> None:
    doc = doc_with(version_one())
    replica: Doc[Any] = Doc()
    sync(doc, replica)
    nodes, _, _ = roots(doc)
    # The current doc holds an extra node, a plain-JSON node and an extra edge.
    with doc.transaction():
        nodes["extra"] = Map(node("X", 0, 0))
        nodes["out"] = {"type": "Output", "x": 300, "y": 0, "params": {}}
        roots(doc)[1]["e9"] = Map(edge("extra", "out"))
    sync(doc, replica)

    target = version_one()
    target["nodes"]["scale"]["params"]["factor"] = 2.5
    target["nodes"]["new"] = node("New", 5, 6, label="N")
    target["edges"]["e4"] = edge("scale", "new")
    del target["edges"]["e1"]
    target["meta"] = {"name": "Renamed", "v": 2}
    graph = graph_of(target)
    with recorded(doc) as updates, doc.transaction(origin="import"):
        apply_graph(doc, graph)
    assert len(updates) == 1  # one transaction, one update for every client
    replica.apply_update(updates[0])

    expected = {**content(graph_of(target)), "problems": []}
    assert canon(materialize(doc)) == canon(expected)
    assert canon(materialize(replica)) == canon(expected)
    # New nodes are Y.Maps with a params Y.Map, so clients can edit them field by field;
    # the plain-JSON node "out" already equalled the graph's and was left untouched.
    new_node = nodes["new"]
    assert isinstance(new_node, Map)
    assert isinstance(new_node["params"], Map)
    assert isinstance(nodes["out"], dict)


def test_apply_identical_graph_writes_nothing() -> None:
    doc = doc_with(version_one())
    state = doc.get_state()
    with recorded(doc) as updates, doc.transaction(origin="import"):
        apply_graph(doc, graph_of(version_one()))
        apply_graph(doc, materialize(doc))
    assert updates == []
    assert doc.get_state() == state

    # A JS-written document (plain-JSON nodes, JS numbers, Y.Text, problems) is left alone
    # when its own graph JSON is applied back.
    js_doc: Doc[Any] = Doc()
    js_doc.apply_update(JS_UPDATE)
    with recorded(js_doc) as updates:
        apply_graph(js_doc, materialize(js_doc))
        apply_graph(js_doc, materialize(js_doc), nodes=["n1", "n2", "bad", "gone"])
    assert updates == []


def test_apply_changes_only_the_fields_that_differ() -> None:
    doc = doc_with(version_one())
    nodes, _, _ = roots(doc)
    events: list[tuple[list[Any], dict[str, Any]]] = []

    def on_deep(batch: list[Any]) -> None:
        events.extend((event.path, dict(event.keys)) for event in batch)

    subscription = nodes.observe_deep(on_deep)
    target = version_one()
    target["nodes"]["scale"]["params"]["factor"] = 2.5
    target["nodes"]["scale"]["x"] = 100.0  # same number as 100: not written
    apply_graph(doc, graph_of(target))
    nodes.unobserve(subscription)
    assert events == [
        (["scale", "params"], {"factor": {"action": "update", "oldValue": 1.0, "newValue": 2.5}})
    ]
    # Had the node Map been replaced, the event would be on the root (path []).
    assert node_of(materialize(doc), "scale")["params"] == {"factor": 2.5, "mode": "fast"}


def test_concurrent_edits_to_other_fields_survive_an_apply() -> None:
    alice = doc_with(version_one())
    bob: Doc[Any] = Doc()
    sync(alice, bob)
    roots(bob)[0]["scale"]["label"] = "Bob's"  # Bob relabels ...
    roots(bob)[0]["scale"]["params"]["mode"] = "slow"  # ... and sets a param
    target = version_one()
    target["nodes"]["scale"]["x"] = 150
    target["nodes"]["scale"]["params"]["factor"] = 3
    with alice.transaction(origin="import"):
        apply_graph(alice, graph_of(target))  # ... while the server applies a graph.
    sync(alice, bob)
    sync(bob, alice)
    for doc in (alice, bob):
        scale = materialize(doc)["nodes"]["scale"]
        assert canon(scale) == canon(
            {
                "label": "Bob's",
                "params": {"factor": 3, "mode": "slow"},
                "type": "Scale",
                "x": 150,
                "y": 0,
            }
        )


def test_apply_keeps_shared_types_and_refills_them() -> None:
    doc: Doc[Any] = Doc()
    nodes, _, meta = roots(doc)
    with doc.transaction():
        nodes["n"] = Map({**node("T", 0, 0), "tags": Array(["a"]), "notes": Text("old")})
        meta["name"] = "M"
    tags, notes = nodes["n"]["tags"], nodes["n"]["notes"]
    apply_graph(
        doc,
        graph_of(
            {"nodes": {"n": {**node("T", 0, 0), "tags": ["b", "c"], "notes": "new"}}, "edges": {}}
        ),
    )
    assert isinstance(nodes["n"]["tags"], Array)
    assert tags.to_py() == ["b", "c"]
    assert str(notes) == "new"
    assert meta["name"] == "M"  # a graph without meta leaves meta alone


def test_apply_partial_restore() -> None:
    v1 = version_one()
    doc = doc_with(v1)
    nodes, edges, meta = roots(doc)
    with doc.transaction():  # editing after version one
        del nodes["src"]
        del edges["e1"]
        nodes["scale"]["params"]["factor"] = 9
        nodes["blur"]["x"] = 999
        nodes["a1"] = Map(node("Add", 0, 0))
        edges["e4"] = Map(edge("scale", "a1"))  # to a node the restore deletes
        edges["e5"] = Map(edge("src", "scale", "x", "y"))  # dangling now, between restored
        edges["e6"] = Map(edge("blur", "out"))  # between untouched nodes
        meta["name"] = "Current"
    replica: Doc[Any] = Doc()
    sync(doc, replica)

    with recorded(doc) as updates, doc.transaction(origin="restore"):
        apply_graph(doc, materialize(doc_with(v1)), nodes=["scale", "src", "a1", "ghost"])
    assert len(updates) == 1
    replica.apply_update(updates[0])

    expected = version_one()
    expected["nodes"]["blur"]["x"] = 999  # not restored
    expected["edges"]["e6"] = edge("blur", "out")
    expected["meta"] = {"name": "Current"}
    for result in (doc, replica):
        assert canon(materialize(result)) == canon({**content(graph_of(expected)), "problems": []})


def test_apply_partial_restores_edges_only_between_restored_nodes() -> None:
    v1 = version_one()
    doc = doc_with(v1)
    with doc.transaction():
        roots(doc)[0]["out"]["x"] = 1
        del roots(doc)[1]["e3"]  # blur -> out
        del roots(doc)[1]["e2"]  # scale -> blur
    apply_graph(doc, graph_of(v1), nodes=["out", "scale"])
    graph = materialize(doc)
    assert sorted(graph["edges"]) == ["e1"]  # e2, e3 have an endpoint not restored
    assert graph["nodes"]["out"] == v1["nodes"]["out"]


def test_apply_refuses_non_json_before_touching_the_doc() -> None:
    doc = doc_with(version_one())
    bad = copy.deepcopy(version_one())
    bad["nodes"]["zzz"] = node("T", 0, 0, params={"p": {1, 2}})
    bad["nodes"]["big"] = node("T", 10**400, 0)
    with recorded(doc) as updates:
        with pytest.raises(TypeError):
            apply_graph(doc, bad)
        with pytest.raises(TypeError):
            apply_graph(doc, graph_of(version_one()), nodes="scale")
    assert updates == []


def test_apply_writes_ints_as_js_numbers() -> None:
    doc = doc_with({"nodes": {"n": node("T", 2**62, 3, params={"i": 2**40})}, "edges": {}})
    written = roots(doc)[0]["n"]
    assert isinstance(written["y"], float)  # what a JS client writes for 3
    assert isinstance(written["params"]["i"], float)
    # Beyond 2**53 an int cannot stay exact in a JS number (pycrdt would panic at 2**63).
    assert canon(node_of(materialize(doc), "n")) == canon(
        {"params": {"i": 2**40}, "type": "T", "x": float(2**62), "y": 3}
    )


# --------------------------------------------------------------------------- diff


def scripted_versions() -> tuple[GraphJSON, GraphJSON]:
    doc = doc_with(version_one())
    before = materialize(doc)
    nodes, edges, meta = roots(doc)
    with doc.transaction(origin="alice"):
        scale = nodes["scale"]
        scale["params"]["factor"] = 2.5
        del scale["params"]["mode"]
        scale["params"]["clamp"] = True
        nodes["blur"]["x"] = 250
        nodes["out"]["label"] = "Final"
        del nodes["src"]
        del edges["e1"]
        for i in (1, 2, 3):
            nodes[f"a{i}"] = Map(node("Add", i, 0))
        edges["e2"]["target"] = "out"
        edges["e2"]["targetSocket"] = "in2"
        edges["e3"]["color"] = "blue"
        meta["name"] = "Demo 2"
    return before, materialize(doc)


def test_diff_of_scripted_edits() -> None:
    before, after = scripted_versions()
    expected: dict[str, Any] = {
        "nodes": {
            "added": [
                {"id": f"a{i}", "node": {"params": {}, "type": "Add", "x": i, "y": 0}}
                for i in (1, 2, 3)
            ],
            "removed": [
                {"id": "src", "node": {"params": {"seed": 1}, "type": "Noise", "x": 0, "y": 0}}
            ],
            "changed": [
                {
                    "id": "blur",
                    "name": "Blur",
                    "changes": {"position": {"old": {"x": 200, "y": 0}, "new": {"x": 250, "y": 0}}},
                },
                {
                    "id": "out",
                    "name": "Final",
                    "changes": {"label": {"old": None, "new": "Final"}},
                },
                {
                    "id": "scale",
                    "name": "Scale",
                    "changes": {
                        "params": {
                            "added": {"clamp": True},
                            "removed": {"mode": "fast"},
                            "changed": {"factor": {"old": 1, "new": 2.5}},
                        }
                    },
                },
            ],
        },
        "edges": {
            "added": [],
            "removed": [{"id": "e1", "edge": edge("src", "scale")}],
            "rewired": [
                {
                    "id": "e2",
                    "old": edge("scale", "blur"),
                    "new": edge("scale", "out", "out", "in2"),
                }
            ],
            "changed": [{"id": "e3", "changes": {"color": {"old": "red", "new": "blue"}}}],
        },
        "meta": {"added": {}, "removed": {}, "changed": {"name": {"old": "Demo", "new": "Demo 2"}}},
        "summary": {
            "nodes_added": 3,
            "nodes_removed": 1,
            "nodes_changed": 3,
            "params_changed": 3,
            "edges_added": 0,
            "edges_removed": 1,
            "edges_rewired": 1,
            "edges_changed": 1,
            "meta_changed": 1,
        },
    }
    diff = diff_graphs(before, after)
    assert canon(diff) == canon(expected)
    assert summarize(diff) == (
        "3 nodes added, 1 node removed, Scale.factor 1 → 2.5, Scale.clamp = true,"
        " Scale.mode removed, 1 node moved, 1 node relabelled, 1 link removed,"
        ' 1 link rewired, 1 link changed, renamed "Demo" → "Demo 2"'
    )
    # And backwards: everything mirrors.
    back = diff_graphs(after, before)
    assert back["summary"]["nodes_removed"] == 3
    assert [e["id"] for e in back["nodes"]["added"]] == ["src"]


def test_diff_compares_numbers_as_numbers() -> None:
    a: dict[str, Any] = {
        "nodes": {"n": {"type": "T", "x": 1, "y": 2.0, "params": {"f": 1.0, "b": True}}},
        "edges": {},
    }
    b: dict[str, Any] = {
        "nodes": {"n": {"type": "T", "x": 1.0, "y": 2, "params": {"f": 1, "b": True}}},
        "edges": {},
    }
    diff = diff_graphs(a, b)
    assert diff_is_empty(diff)
    assert summarize(diff) == "no changes"
    c = copy.deepcopy(a)
    c["nodes"]["n"]["params"]["b"] = 1  # True is not 1
    changed = diff_graphs(a, c)
    assert changed["nodes"]["changed"][0]["changes"] == {
        "params": {"added": {}, "removed": {}, "changed": {"b": {"old": True, "new": 1}}}
    }
    assert summarize(changed) == "T.b true → 1"


def test_diff_absent_field_equals_null_and_odd_values() -> None:
    a = {"nodes": {"n": {"type": "T", "x": 0, "y": 0}, "s": 5}, "edges": {"e": [1]}, "meta": {}}
    b = {
        "nodes": {"n": {"type": "T", "x": 0, "y": 0, "label": None}, "s": 6},
        "edges": {"e": [2]},
        "meta": {"k": None},
    }
    diff = diff_graphs(a, b)
    assert diff["nodes"]["changed"] == []
    assert diff["nodes"]["added"] == [{"id": "s", "node": 6}]
    assert diff["nodes"]["removed"] == [{"id": "s", "node": 5}]
    assert diff["edges"]["added"] == [{"id": "e", "edge": [2]}]
    assert diff["meta"]["added"] == {"k": None}


def test_summarize_many_params_and_other_changes() -> None:
    a = {"nodes": {"n": node("Mix", 0, 0, params={str(i): i for i in range(7)})}, "edges": {}}
    b = {
        "nodes": {
            "n": {**node("Blend", 0, 0, params={str(i): -i for i in range(7)}), "color": "red"}
        },
        "edges": {},
        "meta": {"x": 1},
    }
    assert summarize(diff_graphs(a, b)) == (
        "6 parameters changed, 1 node changed type, 1 node edited, metadata changed"
    )


# --------------------------------------------------------------------------- properties

IDS = st.text(alphabet=string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=10)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
).filter(lambda value: _depth(value) <= LIMITS.max_depth)
EXTRA_FIELDS = st.dictionaries(
    st.text(max_size=6).filter(lambda key: key not in {"type", "x", "y", "params", "label"}),
    JSON_VALUES,
    max_size=2,
)


@st.composite
def graphs(draw: Callable[..., Any]) -> dict[str, Any]:
    node_ids: list[str] = draw(st.lists(IDS, unique=True, max_size=6))
    nodes: dict[str, Any] = {}
    for node_id in node_ids:
        value = {
            "type": draw(st.text(min_size=1, max_size=12)),
            "x": draw(NUMBERS),
            "y": draw(NUMBERS),
            "params": draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4)),
            **draw(EXTRA_FIELDS),
        }
        if draw(st.booleans()):
            value["label"] = draw(st.none() | st.text(max_size=12))
        nodes[node_id] = value
    edges: dict[str, Any] = {}
    if node_ids:
        for edge_id in draw(st.lists(IDS, unique=True, max_size=6)):
            ends = st.sampled_from(node_ids)
            sockets = st.text(min_size=1, max_size=6)
            edges[edge_id] = {
                "source": draw(ends),
                "sourceSocket": draw(sockets),
                "target": draw(ends),
                "targetSocket": draw(sockets),
                **draw(
                    st.dictionaries(
                        st.text(max_size=6).filter(
                            lambda k: k not in {"source", "target", "sourceSocket", "targetSocket"}
                        ),
                        JSON_VALUES,
                        max_size=2,
                    )
                ),
            }
    meta = draw(st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=3))
    return {"nodes": nodes, "edges": edges, "meta": meta}


PROPERTY_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(graphs())
def test_round_trip_through_a_doc(data: dict[str, Any]) -> None:
    graph = validate_graph(data, limits=LIMITS)
    doc: Doc[Any] = Doc()
    with doc.transaction(origin="import"):
        apply_graph(doc, graph)
    replica: Doc[Any] = Doc()
    sync(doc, replica)
    for source in (doc, replica):
        materialized = materialize(source)
        assert materialized["problems"] == []
        assert canon(content(materialized)) == canon(content(graph))
    assert diff_is_empty(diff_graphs(graph, graph))
    assert diff_is_empty(diff_graphs(graph, materialize(replica)))
    assert counts(replica) == (len(graph["nodes"]), len(graph["edges"]))
    with recorded(doc) as updates:
        apply_graph(doc, graph)
    assert updates == []


@PROPERTY_SETTINGS
@given(graphs(), graphs())
def test_apply_over_another_graph(first: dict[str, Any], second: dict[str, Any]) -> None:
    doc = doc_with(first)
    replica: Doc[Any] = Doc()
    sync(doc, replica)
    target = validate_graph(second, limits=LIMITS)
    with recorded(doc) as updates, doc.transaction(origin="import"):
        apply_graph(doc, target)
    for update in updates:
        replica.apply_update(update)
    for source in (doc, replica):
        assert canon(content(materialize(source))) == canon(content(target))
    assert diff_is_empty(diff_graphs(target, materialize(replica)))
    diff = diff_graphs(graph_of(first), target)
    summary = diff["summary"]
    assert summary["nodes_added"] == len(target["nodes"].keys() - first["nodes"].keys())
    assert summary["nodes_removed"] == len(first["nodes"].keys() - target["nodes"].keys())
    assert summary["edges_added"] == len(target["edges"].keys() - first["edges"].keys())
    assert summary["edges_removed"] == len(first["edges"].keys() - target["edges"].keys())
    if canon(content(graph_of(first))) == canon(content(target)):
        assert diff_is_empty(diff)
