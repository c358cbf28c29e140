"""The node-graph document model: materialize, validate, apply and diff graphs.

Every project document has three root maps (DESIGN §4)::

    nodes: Map  node id -> Map {type: str, x: number, y: number, params: Map, label?: str, ...}
    edges: Map  edge id -> Map {source: node id, sourceSocket: str,
                                target: node id, targetSocket: str, ...}
    meta:  Map  {name, ...}

Fields a client adds (a colour, a timestamp) are kept and passed through everywhere. A JS
client may also write a node or an edge as a plain JSON object instead of a ``Y.Map``; it
then cannot be edited field by field, but it materializes like any other.

The *graph JSON* is the plain-JSON view of a document::

    {"nodes": {id: {...}}, "edges": {id: {...}}, "meta": {...}, "problems": [...]}

``nodes`` and ``edges`` are exactly what the document holds (nested ``Map`` -> object,
``Array`` -> list, ``Text`` and XML types -> their string); ``problems`` lists what is
inconsistent (an edge whose node was deleted concurrently, a node without a type, ...).

**Numbers.** Yjs numbers are IEEE doubles; pycrdt hands every JS number back as a Python
``float`` (``7`` -> ``7.0``). So that the graph JSON this module produces serializes to the
same text as ``JSON.stringify`` of the same document in a browser, an integral number
within ±2**53 is emitted as an ``int`` (``3.0`` -> ``3``, ``-0.0`` -> ``0``), a non-finite
one as ``None`` (``JSON.stringify(NaN)`` is ``null``), and any other number as a ``float``
(also an integer beyond ±2**53, which a JS number cannot hold exactly either; a JS
``BigInt`` therefore loses precision there). :func:`validate_graph` normalizes the same
way. When writing (:func:`apply_graph`), every ``int`` is written as a double, exactly as a
JS client writes a number (pycrdt itself would write big ints as 64-bit integers and
panics at 2**63). Comparisons (minimal apply, diffs) are numeric: ``1 == 1.0``; ``True``
is never equal to ``1``.

Binary values (``Uint8Array``) become lists of byte values and sub-documents become
``{"guid": ...}``, as in yrs' own ``to_json``. Key order is sorted at every level, so the
output is deterministic.

This module is pure (pycrdt and the standard library): no I/O, no other collab modules.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Literal, NotRequired, TypeAlias, TypedDict, cast

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

__all__ = [
    "EDGE_ENDPOINT_FIELDS",
    "DanglingEdgeProblem",
    "DiffSummary",
    "EdgeChange",
    "EdgeEntry",
    "EdgeRewire",
    "EdgesDiff",
    "Endpoints",
    "Graph",
    "GraphDiff",
    "GraphJSON",
    "GraphLimits",
    "GraphValidationError",
    "InvalidEdgeProblem",
    "InvalidNodeProblem",
    "JSONObject",
    "JSONValue",
    "MapChanges",
    "NodeChange",
    "NodeChanges",
    "NodeEntry",
    "NodesDiff",
    "Position",
    "PositionChange",
    "Problem",
    "ValidationIssue",
    "ValueChange",
    "apply_graph",
    "counts",
    "diff_graphs",
    "diff_is_empty",
    "materialize",
    "summarize",
    "validate_graph",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]

NODES = "nodes"
EDGES = "edges"
META = "meta"
EDGE_ENDPOINT_FIELDS = ("source", "sourceSocket", "target", "targetSocket")
_NODE_FIELDS = frozenset({"type", "x", "y", "params", "label"})
_MAX_SAFE_INTEGER = 2**53
_IDENT_MAX = 128
_ID_RE = re.compile(r"[A-Za-z0-9_.:-]+")


# --------------------------------------------------------------------------- types


class DanglingEdgeProblem(TypedDict):
    """An edge whose endpoint names a node the document does not hold."""

    kind: Literal["dangling_edge"]
    edge: str
    missing: str


class InvalidNodeProblem(TypedDict):
    """A node that is not an object, has no string type, or has a non-numeric x/y."""

    kind: Literal["invalid_node"]
    node: str
    reason: str


class InvalidEdgeProblem(TypedDict):
    """An edge that is not an object, or lacks an endpoint field."""

    kind: Literal["invalid_edge"]
    edge: str
    reason: str


Problem: TypeAlias = DanglingEdgeProblem | InvalidNodeProblem | InvalidEdgeProblem


class GraphJSON(TypedDict):
    """The graph JSON of a document, as :func:`materialize` returns it."""

    nodes: dict[str, JSONValue]
    edges: dict[str, JSONValue]
    meta: JSONObject
    problems: list[Problem]


class Graph(TypedDict):
    """A validated graph (:func:`validate_graph`). ``meta`` is present only if given."""

    nodes: dict[str, JSONObject]
    edges: dict[str, JSONObject]
    meta: NotRequired[JSONObject]


class ValidationIssue(TypedDict):
    """One reason a graph was refused: a JSON pointer into the input and a message."""

    path: str
    message: str


class ValueChange(TypedDict):
    old: JSONValue
    new: JSONValue


class Position(TypedDict):
    x: JSONValue
    y: JSONValue


class PositionChange(TypedDict):
    old: Position
    new: Position


class MapChanges(TypedDict):
    """Key-by-key changes of a map (node params, meta)."""

    added: JSONObject
    removed: JSONObject
    changed: dict[str, ValueChange]


class NodeChanges(TypedDict, total=False):
    """What changed in one node; only the keys that changed are present."""

    type: ValueChange
    position: PositionChange
    label: ValueChange
    params: MapChanges
    other: dict[str, ValueChange]


class NodeEntry(TypedDict):
    id: str
    node: JSONValue


class NodeChange(TypedDict):
    id: str
    name: str  # the node's label, else its type, else its id (for humans)
    changes: NodeChanges


class NodesDiff(TypedDict):
    added: list[NodeEntry]
    removed: list[NodeEntry]
    changed: list[NodeChange]


class EdgeEntry(TypedDict):
    id: str
    edge: JSONValue


class Endpoints(TypedDict):
    source: JSONValue
    sourceSocket: JSONValue
    target: JSONValue
    targetSocket: JSONValue


class EdgeRewire(TypedDict):
    id: str
    old: Endpoints
    new: Endpoints


class EdgeChange(TypedDict):
    id: str
    changes: dict[str, ValueChange]


class EdgesDiff(TypedDict):
    added: list[EdgeEntry]
    removed: list[EdgeEntry]
    rewired: list[EdgeRewire]
    changed: list[EdgeChange]


class DiffSummary(TypedDict):
    nodes_added: int
    nodes_removed: int
    nodes_changed: int
    params_changed: int
    edges_added: int
    edges_removed: int
    edges_rewired: int
    edges_changed: int
    meta_changed: int


class GraphDiff(TypedDict):
    nodes: NodesDiff
    edges: EdgesDiff
    meta: MapChanges
    summary: DiffSummary


# --------------------------------------------------------------------------- reading


def _root(doc: Doc[Any], name: str) -> Map[Any]:
    return cast(Map[Any], doc.get(name, type=Map))


def _number(value: float) -> JSONValue:
    if not math.isfinite(value):
        return None
    if value.is_integer() and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
        return int(value)
    return value


def _integer(value: int) -> JSONValue:
    return value if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER else float(value)


def _to_json(value: object) -> JSONValue:
    """Convert a value read from the document to graph JSON (see the module docstring)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return _integer(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, Map):
        return {key: _to_json(item) for key, item in sorted(value.items())}
    if isinstance(value, Array):
        return [_to_json(item) for item in value]
    if isinstance(value, Text | XmlFragment | XmlElement | XmlText):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _to_json(item) for key, item in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, bytes | bytearray):
        return list(value)
    if isinstance(value, Doc):
        return {"guid": value.guid}
    return None


def _is_number(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    )


def _node_reasons(node: JSONValue) -> list[str]:
    if not isinstance(node, dict):
        return ["not an object"]
    reasons: list[str] = []
    if "type" not in node:
        reasons.append("type is missing")
    elif not isinstance(node["type"], str):
        reasons.append("type is not a string")
    elif not node["type"]:
        reasons.append("type is empty")
    for axis in ("x", "y"):
        if axis not in node:
            reasons.append(f"{axis} is missing")
        elif not _is_number(node[axis]):
            reasons.append(f"{axis} is not a number")
    if "params" in node and not isinstance(node["params"], dict):
        reasons.append("params is not an object")
    if node.get("label") is not None and not isinstance(node["label"], str):
        reasons.append("label is not a string")
    return reasons


def _edge_reasons(edge: JSONValue) -> list[str]:
    if not isinstance(edge, dict):
        return ["not an object"]
    reasons: list[str] = []
    for field in EDGE_ENDPOINT_FIELDS:
        if field not in edge:
            reasons.append(f"{field} is missing")
        elif not isinstance(edge[field], str):
            reasons.append(f"{field} is not a string")
        elif not edge[field]:
            reasons.append(f"{field} is empty")
    return reasons


def _problems(nodes: Mapping[str, JSONValue], edges: Mapping[str, JSONValue]) -> list[Problem]:
    problems: list[Problem] = []
    for node_id, node in nodes.items():
        for reason in _node_reasons(node):
            problems.append({"kind": "invalid_node", "node": node_id, "reason": reason})
    for edge_id, edge in edges.items():
        for reason in _edge_reasons(edge):
            problems.append({"kind": "invalid_edge", "edge": edge_id, "reason": reason})
        if isinstance(edge, dict):
            missing = {
                end
                for end in (edge.get("source"), edge.get("target"))
                if isinstance(end, str) and end and end not in nodes
            }
            for node_id in missing:
                problems.append({"kind": "dangling_edge", "edge": edge_id, "missing": node_id})
    return sorted(problems, key=_problem_key)


def _problem_key(problem: Problem) -> tuple[str, str, str]:
    if problem["kind"] == "dangling_edge":
        return (problem["kind"], problem["edge"], problem["missing"])
    if problem["kind"] == "invalid_edge":
        return (problem["kind"], problem["edge"], problem["reason"])
    return (problem["kind"], problem["node"], problem["reason"])


def materialize(doc: Doc[Any]) -> GraphJSON:
    """Read the graph JSON of ``doc``: ``{"nodes", "edges", "meta", "problems"}``.

    ``nodes`` and ``edges`` hold exactly what the document holds, converted to plain JSON
    (numbers normalized as described in the module docstring, keys sorted). ``problems``
    lists, sorted by kind then id, every dangling edge endpoint
    (``{"kind": "dangling_edge", "edge", "missing"}``), every malformed node
    (``{"kind": "invalid_node", "node", "reason"}``: not an object, type missing, not a
    string or empty, x/y missing or not a finite number, params not an object, label not a
    string) and every malformed edge (``{"kind": "invalid_edge", "edge", "reason"}``: not an
    object, an endpoint field missing, not a string or empty).

    Runs in the current transaction if there is one (never from a read-only observer
    callback: getting a root type there is refused by pycrdt).
    """
    with doc.transaction():
        nodes = _root_to_json(_root(doc, NODES))
        edges = _root_to_json(_root(doc, EDGES))
        meta = _root_to_json(_root(doc, META))
    return {"nodes": nodes, "edges": edges, "meta": meta, "problems": _problems(nodes, edges)}


def _root_to_json(root: Map[Any]) -> dict[str, JSONValue]:
    """The root map as graph JSON.

    yrs' own ``to_json`` (one native call, then the C JSON parser) is several times faster
    than walking the map through pycrdt's wrappers, and renders every value the way
    :func:`_to_json` does once normalized: NaN/infinity as null, binary as a list of
    bytes, sub-documents as ``{"guid"}``, Text/XML as strings, integral doubles as
    integers (it saturates at 2**63, which :func:`_integer` turns back into the exact
    double). Should its output ever fail to parse, the slow walk is used.
    """
    try:
        parsed = json.loads(
            str(root),
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_sorted_object,
        )
    except ValueError:  # pragma: no cover - defensive
        parsed = None
    if not isinstance(parsed, dict):  # pragma: no cover - defensive
        return {key: _to_json(value) for key, value in sorted(root.items())}
    return cast(dict[str, JSONValue], parsed)


def _parse_int(text: str) -> JSONValue:
    return _integer(int(text))


def _parse_float(text: str) -> JSONValue:
    return _number(float(text))


def _sorted_object(pairs: list[tuple[str, JSONValue]]) -> JSONObject:
    return dict(sorted(pairs, key=itemgetter(0)))


def counts(doc: Doc[Any]) -> tuple[int, int]:
    """``(node_count, edge_count)`` of ``doc``, without materializing anything."""
    with doc.transaction():
        return len(_root(doc, NODES)), len(_root(doc, EDGES))


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True, slots=True)
class GraphLimits:
    """Size limits of an imported graph.

    ``max_string`` bounds every string (values and keys), ``max_depth`` the nesting of
    lists/objects inside one field value (a param value, an extra field, a meta value),
    ``max_errors`` how many errors are collected before validation stops.
    """

    max_nodes: int = 10_000
    max_edges: int = 50_000
    max_params: int = 200
    max_string: int = 10_000
    max_depth: int = 8
    max_errors: int = 100


class GraphValidationError(ValueError):
    """A graph was refused. ``errors`` lists every offending path (a JSON pointer)."""

    def __init__(self, errors: list[ValidationIssue]) -> None:
        self.errors = errors
        shown = "; ".join(f"{e['path'] or '(root)'}: {e['message']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        super().__init__(f"invalid graph: {shown}{more}")


class _TooManyErrors(Exception):
    pass


_BAD_SECTION: dict[str, object] = {}  # identity marks a missing or refused section


def _pointer(*tokens: str | int) -> str:
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


class _Validator:
    def __init__(self, limits: GraphLimits) -> None:
        self.limits = limits
        self.errors: list[ValidationIssue] = []

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        if len(self.errors) >= self.limits.max_errors:
            raise _TooManyErrors
        self.errors.append({"path": _pointer(*path), "message": message})

    def string(self, value: str, path: tuple[str | int, ...], max_len: int | None = None) -> bool:
        limit = self.limits.max_string if max_len is None else max_len
        if len(value) > limit:
            self.error(path, f"must be at most {limit} characters")
            return False
        return True

    def identifier(self, value: str, path: tuple[str | int, ...]) -> None:
        if not value or len(value) > _IDENT_MAX or not _ID_RE.fullmatch(value):
            self.error(
                path,
                f"invalid id {value[:40]!r}: must be 1-{_IDENT_MAX} characters"
                " of A-Z a-z 0-9 _ . : -",
            )

    def number(self, value: object, path: tuple[str | int, ...]) -> JSONValue:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.error(path, "must be a number")
            return None
        if isinstance(value, float):
            if not math.isfinite(value):
                self.error(path, "must be a finite number")
                return None
            return _number(value)
        try:
            float(value)
        except OverflowError:
            self.error(path, "number out of range")
            return None
        return _integer(value)

    def json(self, value: object, path: tuple[str | int, ...], depth: int = 0) -> JSONValue:
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            self.string(value, path)
            return value
        if isinstance(value, int | float):
            return self.number(value, path)
        if isinstance(value, list | dict):
            if depth >= self.limits.max_depth:
                self.error(path, f"nested too deeply (at most {self.limits.max_depth} levels)")
                return None
            if isinstance(value, list):
                return [self.json(item, (*path, i), depth + 1) for i, item in enumerate(value)]
            return self.mapping(value, path, depth + 1)
        self.error(path, "must be a JSON value")
        return None

    def mapping(self, value: dict[Any, Any], path: tuple[str | int, ...], depth: int) -> JSONObject:
        out: JSONObject = {}
        for key in sorted(value, key=str):
            if not isinstance(key, str):
                self.error((*path, str(key)), "object keys must be strings")
                continue
            if self.string(key, (*path, key)):
                out[key] = self.json(value[key], (*path, key), depth)
        return out

    def node(self, node_id: str, node: object) -> JSONObject | None:
        path: tuple[str | int, ...] = (NODES, node_id)
        self.identifier(node_id, path)
        if not isinstance(node, dict):
            self.error(path, "must be an object")
            return None
        out: JSONObject = {}
        node_type = node.get("type")
        if "type" not in node:
            self.error((*path, "type"), "is required")
        elif not isinstance(node_type, str):
            self.error((*path, "type"), "must be a string")
        elif not node_type:
            self.error((*path, "type"), "must not be empty")
        elif self.string(node_type, (*path, "type"), _IDENT_MAX):
            out["type"] = node_type
        for axis in ("x", "y"):
            if axis not in node:
                self.error((*path, axis), "is required")
            else:
                out[axis] = self.number(node[axis], (*path, axis))
        params = node.get("params", {})
        if not isinstance(params, dict):
            self.error((*path, "params"), "must be an object")
        elif len(params) > self.limits.max_params:
            self.error(
                (*path, "params"),
                f"too many params ({len(params)}, at most {self.limits.max_params})",
            )
        else:
            out["params"] = self.mapping(params, (*path, "params"), 0)
        if "label" in node:
            label = node["label"]
            if label is not None and not isinstance(label, str):
                self.error((*path, "label"), "must be a string or null")
            else:
                out["label"] = self.json(label, (*path, "label"))
        extra = {key: node[key] for key in node if key not in _NODE_FIELDS}
        out.update(self.mapping(extra, path, 0))
        return out

    def edge(
        self, edge_id: str, edge: object, node_ids: Collection[str] | None
    ) -> JSONObject | None:
        path: tuple[str | int, ...] = (EDGES, edge_id)
        self.identifier(edge_id, path)
        if not isinstance(edge, dict):
            self.error(path, "must be an object")
            return None
        out: JSONObject = {}
        for field in EDGE_ENDPOINT_FIELDS:
            value = edge.get(field)
            field_path = (*path, field)
            if field not in edge:
                self.error(field_path, "is required")
            elif not isinstance(value, str):
                self.error(field_path, "must be a string")
            elif not value:
                self.error(field_path, "must not be empty")
            elif field in ("source", "target"):
                if node_ids is not None and value not in node_ids:
                    self.error(field_path, f"unknown node {value[:_IDENT_MAX]!r}")
                else:
                    out[field] = value
            elif self.string(value, field_path, _IDENT_MAX):
                out[field] = value
        extra = {key: edge[key] for key in edge if key not in EDGE_ENDPOINT_FIELDS}
        out.update(self.mapping(extra, path, 0))
        return out

    def graph(self, data: object) -> Graph:
        if not isinstance(data, dict):
            self.error((), "must be an object")
            return {"nodes": {}, "edges": {}}
        for key in sorted(data, key=str):
            if key not in (NODES, EDGES, META, "problems"):
                self.error((str(key),), "unknown field")
        nodes = self.section(data, NODES, self.limits.max_nodes)
        edges = self.section(data, EDGES, self.limits.max_edges)
        graph: Graph = {"nodes": {}, "edges": {}}
        for node_id, value in nodes.items():
            node = self.node(node_id, value)
            if node is not None:
                graph["nodes"][node_id] = node
        # When the nodes section itself is bad, endpoints cannot be checked: say it once.
        node_ids = None if nodes is _BAD_SECTION else nodes.keys()
        for edge_id, value in edges.items():
            edge = self.edge(edge_id, value, node_ids)
            if edge is not None:
                graph["edges"][edge_id] = edge
        if META in data:
            meta = data[META]
            if not isinstance(meta, dict):
                self.error((META,), "must be an object")
            else:
                graph["meta"] = self.mapping(meta, (META,), 0)
        return graph

    def section(self, data: dict[Any, Any], name: str, limit: int) -> dict[str, object]:
        """The id -> value entries of ``nodes`` or ``edges``, sorted by id; the entries
        whose id is not a string are reported and left out."""
        if name not in data:
            self.error((name,), "is required")
            return _BAD_SECTION
        value = data[name]
        if not isinstance(value, dict):
            self.error((name,), "must be an object")
            return _BAD_SECTION
        if len(value) > limit:
            self.error((name,), f"too many {name} ({len(value)}, at most {limit})")
            return _BAD_SECTION
        entries: dict[str, object] = {}
        for key in sorted(value, key=str):
            if isinstance(key, str):
                entries[key] = value[key]
            else:
                self.error((name, str(key)), "ids must be strings")
        return entries


def validate_graph(data: object, *, limits: GraphLimits) -> Graph:
    """Validate an imported graph JSON and return a normalized copy of it.

    Accepts ``{"nodes": {...}, "edges": {...}, "meta"?: {...}}``; a ``problems`` key (as in
    a materialized graph) is ignored, any other top-level key is an error. Ids are 1-128
    characters of ``A-Za-z0-9_.:-``. A node needs ``type`` (non-empty string, at most 128
    characters) and finite numbers ``x`` and ``y``; ``params`` (an object, default ``{}``)
    and ``label`` (a string or null) are optional; other fields are kept. An edge needs
    ``source`` and ``target`` naming nodes of the same graph and non-empty
    ``sourceSocket``/``targetSocket`` (at most 128 characters); other fields are kept. All
    values must be JSON (no NaN or infinity) within ``limits``.

    Numbers are normalized like :func:`materialize` output (``3.0`` -> ``3``); keys come
    out sorted; ``meta`` is present in the result only if it was in the input.

    Raises:
        GraphValidationError: with every offending path (JSON pointers such as
            ``/nodes/n1/x``), sorted by path; at most ``limits.max_errors`` of them, plus
            one entry at path ``""`` saying the list was cut.
    """
    validator = _Validator(limits)
    try:
        graph = validator.graph(data)
    except _TooManyErrors:
        errors = sorted(validator.errors, key=lambda e: e["path"])
        errors.append({"path": "", "message": f"too many errors; the first {len(errors)} shown"})
        raise GraphValidationError(errors) from None
    if validator.errors:
        raise GraphValidationError(sorted(validator.errors, key=lambda e: e["path"]))
    return graph


# --------------------------------------------------------------------------- writing


def _prepare(value: object) -> JSONValue:
    """The value as it will be written: every int as a float (what pycrdt stores anyway;
    ints of 2**63 or more would make pycrdt panic). Raises on non-JSON values."""
    if value is None or type(value) is str or type(value) is bool:  # fast path
        return value
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return float(value)  # OverflowError for ints beyond the double range
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list | tuple):
        return [_prepare(item) for item in value]
    if isinstance(value, dict):
        out: JSONObject = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"object key {key!r} is not a string")
            out[key] = _prepare(item)
        return out
    raise TypeError(f"{type(value).__name__} is not a JSON value")


def _json_eq(a: JSONValue, b: JSONValue) -> bool:
    """Deep JSON equality: numbers compared as numbers, booleans only equal booleans."""
    if type(a) is type(b) and (type(a) is str or type(a) is float or a is None):  # fast path
        return a == b
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(_json_eq, a, b))
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and a.keys() == b.keys()
            and all(_json_eq(a[key], b[key]) for key in a)
        )
    return type(a) is type(b) and a == b


def _put(ymap: Map[Any], key: str, value: JSONValue) -> None:
    """Make ``ymap[key]`` equal ``value`` (prepared), writing as little as possible.

    An existing nested ``Map`` is synced key by key and an ``Array``/``Text`` is refilled
    in place, so the shared type a JS client holds stays the same object.
    """
    if key not in ymap:
        ymap[key] = value
        return
    current = ymap[key]
    if isinstance(current, Map) and isinstance(value, dict):
        _sync_map(current, value)
    elif _json_eq(_to_json(current), value):
        return
    elif isinstance(current, Array) and isinstance(value, list):
        current.clear()
        current.extend(value)
    elif isinstance(current, Text) and isinstance(value, str):
        current.clear()
        current.insert(0, value)
    else:
        ymap[key] = value


def _sync_map(ymap: Map[Any], target: JSONObject) -> None:
    for key in list(ymap.keys()):
        if key not in target:
            del ymap[key]
    for key, value in target.items():
        _put(ymap, key, value)


def _new_node(node: JSONObject) -> Map[Any]:
    fields: dict[str, Any] = dict(node)
    params = node.get("params")
    if isinstance(params, dict):
        fields["params"] = Map(params)
    return Map(fields)


def _put_node(root: Map[Any], node_id: str, node: JSONValue) -> None:
    current = root.get(node_id)
    if isinstance(current, Map) and isinstance(node, dict):
        for key in list(current.keys()):
            if key not in node:
                del current[key]
        for key, value in node.items():
            if key == "params" and isinstance(value, dict):
                params = current.get(key)
                if isinstance(params, Map):
                    _sync_map(params, value)
                elif params is None or not _json_eq(_to_json(params), value):
                    current[key] = Map(value)
            else:
                _put(current, key, value)
    elif node_id in root and _json_eq(_to_json(current), node):
        return
    elif isinstance(node, dict):
        root[node_id] = _new_node(node)
    else:
        root[node_id] = node  # restoring a node that was not an object, verbatim


def _put_edge(root: Map[Any], edge_id: str, edge: JSONValue) -> None:
    current = root.get(edge_id)
    if isinstance(current, Map) and isinstance(edge, dict):
        _sync_map(current, edge)
    elif edge_id in root and _json_eq(_to_json(current), edge):
        return
    elif isinstance(edge, dict):
        root[edge_id] = Map(edge)
    else:
        root[edge_id] = edge


def _endpoint(edge: JSONValue, field: str) -> str | None:
    if isinstance(edge, dict):
        value = edge.get(field)
        return value if isinstance(value, str) else None
    return None


def _prepared_section(graph: Mapping[str, object], name: str) -> dict[str, JSONValue]:
    section = graph.get(name)
    if not isinstance(section, dict):
        raise TypeError(f"graph[{name!r}] must be a dict")
    return {str(key): _prepare(value) for key, value in section.items()}


def apply_graph(
    doc: Doc[Any], graph: Mapping[str, object], *, nodes: Collection[str] | None = None
) -> None:
    """Write ``graph`` into the live ``doc`` as one forward change that clients see live.

    ``graph`` is a :class:`Graph` (from :func:`validate_graph`), a :class:`GraphJSON`
    (from :func:`materialize`, e.g. of a version; ``problems`` is ignored) or any mapping
    with ``nodes`` and ``edges`` dicts and an optional ``meta`` dict.

    Call it inside the caller's ``with doc.transaction(origin=...)``; it joins the current
    transaction (or opens a plain one). Everything is converted first, so a value that is
    not JSON raises ``TypeError``/``ValueError``/``OverflowError`` before the document is
    touched. Writes are minimal: a node, edge or field that already holds the value (as
    numbers: ``1 == 1.0``) is not written, an existing node ``Map`` is edited field by
    field (params key by key), so concurrent edits to other fields survive, and applying
    a graph the document already equals produces no update at all.

    Whole-graph mode (``nodes=None``): afterwards the document's nodes and edges equal the
    graph's (extra ones deleted, missing ones created as ``Map`` with a nested ``params``
    ``Map``); ``meta`` is synced key by key when the graph has a ``meta``; without one
    (a validated graph whose input had none, or a mapping the caller built without it)
    the document's meta is left alone.

    Partial mode (``nodes=[ids]``): only the listed nodes are restored (created or
    overwritten from the graph; a listed node the graph lacks is deleted), then the
    graph's edges whose two endpoints are both listed. Edges of the document between two
    listed nodes that the graph does not have between them, and edges left dangling by a
    node this call deleted, are deleted too, so the listed nodes end up connected among
    themselves exactly as in the graph. Everything else, and meta, is left alone.
    """
    if isinstance(nodes, str):
        raise TypeError("nodes must be a collection of node ids, not a string")
    graph_nodes = _prepared_section(graph, NODES)
    graph_edges = _prepared_section(graph, EDGES)
    raw_meta = graph.get(META)
    meta = _prepare(raw_meta) if isinstance(raw_meta, dict) else None

    with doc.transaction():
        node_root = _root(doc, NODES)
        edge_root = _root(doc, EDGES)
        # Read everything once (fast) so that unchanged nodes and edges, usually nearly
        # all of them, are skipped without walking them field by field.
        current_nodes = _root_to_json(node_root)
        current_edges = _root_to_json(edge_root)

        def put_node(node_id: str, node: JSONValue) -> None:
            if node_id not in current_nodes or not _json_eq(current_nodes[node_id], node):
                _put_node(node_root, node_id, node)

        def put_edge(edge_id: str, edge: JSONValue) -> None:
            if edge_id not in current_edges or not _json_eq(current_edges[edge_id], edge):
                _put_edge(edge_root, edge_id, edge)

        if nodes is None:
            for node_id in sorted(current_nodes.keys() - graph_nodes.keys()):
                del node_root[node_id]
            for edge_id in sorted(current_edges.keys() - graph_edges.keys()):
                del edge_root[edge_id]
            for node_id, node in graph_nodes.items():
                put_node(node_id, node)
            for edge_id, edge in graph_edges.items():
                put_edge(edge_id, edge)
            if isinstance(meta, dict):
                _sync_map(_root(doc, META), meta)
            return

        selected = set(nodes)
        removed: set[str] = set()  # the nodes this call deletes
        for node_id in sorted(selected):
            if node_id in graph_nodes:
                put_node(node_id, graph_nodes[node_id])
            elif node_id in current_nodes:
                del node_root[node_id]
                removed.add(node_id)
        restored = {
            edge_id: edge
            for edge_id, edge in graph_edges.items()
            if _endpoint(edge, "source") in selected and _endpoint(edge, "target") in selected
        }
        for edge_id, current in current_edges.items():
            if edge_id in restored:
                continue
            ends = (_endpoint(current, "source"), _endpoint(current, "target"))
            if all(end in selected for end in ends) or any(end in removed for end in ends):
                del edge_root[edge_id]
        for edge_id, edge in restored.items():
            put_edge(edge_id, edge)


# --------------------------------------------------------------------------- diff


def _section(graph: Mapping[str, object], name: str) -> dict[str, JSONValue]:
    section = graph.get(name)
    return cast(dict[str, JSONValue], section) if isinstance(section, dict) else {}


def _field_eq(a: JSONObject, b: JSONObject, key: str) -> bool:
    """Fields of a node or edge: an absent field equals a null one."""
    return _json_eq(a.get(key), b.get(key))


def _map_changes(old: JSONObject, new: JSONObject) -> MapChanges:
    changes: MapChanges = {"added": {}, "removed": {}, "changed": {}}
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            changes["removed"][key] = old[key]
        elif key not in old:
            changes["added"][key] = new[key]
        elif not _json_eq(old[key], new[key]):
            changes["changed"][key] = {"old": old[key], "new": new[key]}
    return changes


def _map_change_count(changes: MapChanges) -> int:
    return len(changes["added"]) + len(changes["removed"]) + len(changes["changed"])


def _node_changes(old: JSONObject, new: JSONObject) -> NodeChanges:
    changes: NodeChanges = {}
    if not _field_eq(old, new, "type"):
        changes["type"] = {"old": old.get("type"), "new": new.get("type")}
    if not (_field_eq(old, new, "x") and _field_eq(old, new, "y")):
        changes["position"] = {
            "old": {"x": old.get("x"), "y": old.get("y")},
            "new": {"x": new.get("x"), "y": new.get("y")},
        }
    if not _field_eq(old, new, "label"):
        changes["label"] = {"old": old.get("label"), "new": new.get("label")}
    other: dict[str, ValueChange] = {}
    old_params, new_params = old.get("params", {}), new.get("params", {})
    if isinstance(old_params, dict) and isinstance(new_params, dict):
        params = _map_changes(old_params, new_params)
        if _map_change_count(params):
            changes["params"] = params
    elif not _field_eq(old, new, "params"):
        other["params"] = {"old": old.get("params"), "new": new.get("params")}
    for key in sorted((old.keys() | new.keys()) - _NODE_FIELDS):
        if not _field_eq(old, new, key):
            other[key] = {"old": old.get(key), "new": new.get(key)}
    if other:
        changes["other"] = dict(sorted(other.items()))
    return changes


def _node_name(node_id: str, old: JSONObject, new: JSONObject) -> str:
    for field in ("label", "type"):
        for node in (new, old):
            value = node.get(field)
            if isinstance(value, str) and value:
                return value
    return node_id


def _endpoints(edge: JSONObject) -> Endpoints:
    return {
        "source": edge.get("source"),
        "sourceSocket": edge.get("sourceSocket"),
        "target": edge.get("target"),
        "targetSocket": edge.get("targetSocket"),
    }


def diff_graphs(a: Mapping[str, object], b: Mapping[str, object]) -> GraphDiff:
    """Diff two graph JSONs (materialized or validated): what changed going from a to b.

    Result (every list sorted by id, every object by key)::

        {"nodes": {"added": [{id, node}], "removed": [{id, node}],
                   "changed": [{id, name, changes: {type?, position?, label?, params?,
                                                    other?}}]},
         "edges": {"added": [{id, edge}], "removed": [{id, edge}],
                   "rewired": [{id, old: endpoints, new: endpoints}],
                   "changed": [{id, changes: {field: {old, new}}}]},
         "meta": {"added": {k: v}, "removed": {k: v}, "changed": {k: {old, new}}},
         "summary": {nodes_added, nodes_removed, nodes_changed, params_changed,
                     edges_added, edges_removed, edges_rewired, edges_changed,
                     meta_changed}}

    ``type``/``label`` changes are ``{"old", "new"}``; ``position`` is
    ``{"old": {x, y}, "new": {x, y}}``; ``params`` is a ``MapChanges`` (``added``,
    ``removed``, ``changed`` key by key); ``other`` holds every other field. ``name`` is
    the node's label, else its type, else its id. Endpoints are ``source``,
    ``sourceSocket``, ``target``, ``targetSocket``; an edge can be both rewired and
    changed. Numbers compare as numbers (``1 == 1.0``); an absent node or edge field
    equals a null one (a missing value reads as ``None``), whereas params and meta keys
    are compared with their presence. A node or edge that is not an object on either side
    and differs is reported as removed and added. ``problems`` is ignored.
    """
    old_nodes, new_nodes = _section(a, NODES), _section(b, NODES)
    nodes: NodesDiff = {"added": [], "removed": [], "changed": []}
    params_changed = 0
    for node_id in sorted(old_nodes.keys() | new_nodes.keys()):
        old, new = old_nodes.get(node_id), new_nodes.get(node_id)
        if node_id not in new_nodes:
            nodes["removed"].append({"id": node_id, "node": old})
        elif node_id not in old_nodes:
            nodes["added"].append({"id": node_id, "node": new})
        elif isinstance(old, dict) and isinstance(new, dict):
            changes = _node_changes(old, new)
            if changes:
                name = _node_name(node_id, old, new)
                nodes["changed"].append({"id": node_id, "name": name, "changes": changes})
                if "params" in changes:
                    params_changed += _map_change_count(changes["params"])
                if "params" in changes.get("other", {}):
                    params_changed += 1
        elif not _json_eq(old, new):
            nodes["removed"].append({"id": node_id, "node": old})
            nodes["added"].append({"id": node_id, "node": new})

    old_edges, new_edges = _section(a, EDGES), _section(b, EDGES)
    edges: EdgesDiff = {"added": [], "removed": [], "rewired": [], "changed": []}
    for edge_id in sorted(old_edges.keys() | new_edges.keys()):
        old, new = old_edges.get(edge_id), new_edges.get(edge_id)
        if edge_id not in new_edges:
            edges["removed"].append({"id": edge_id, "edge": old})
        elif edge_id not in old_edges:
            edges["added"].append({"id": edge_id, "edge": new})
        elif isinstance(old, dict) and isinstance(new, dict):
            if not all(_field_eq(old, new, field) for field in EDGE_ENDPOINT_FIELDS):
                edges["rewired"].append(
                    {"id": edge_id, "old": _endpoints(old), "new": _endpoints(new)}
                )
            edge_changes: dict[str, ValueChange] = {
                key: {"old": old.get(key), "new": new.get(key)}
                for key in sorted((old.keys() | new.keys()) - set(EDGE_ENDPOINT_FIELDS))
                if not _field_eq(old, new, key)
            }
            if edge_changes:
                edges["changed"].append({"id": edge_id, "changes": edge_changes})
        elif not _json_eq(old, new):
            edges["removed"].append({"id": edge_id, "edge": old})
            edges["added"].append({"id": edge_id, "edge": new})

    meta = _map_changes(_section(a, META), _section(b, META))
    summary: DiffSummary = {
        "nodes_added": len(nodes["added"]),
        "nodes_removed": len(nodes["removed"]),
        "nodes_changed": len(nodes["changed"]),
        "params_changed": params_changed,
        "edges_added": len(edges["added"]),
        "edges_removed": len(edges["removed"]),
        "edges_rewired": len(edges["rewired"]),
        "edges_changed": len(edges["changed"]),
        "meta_changed": _map_change_count(meta),
    }
    return {"nodes": nodes, "edges": edges, "meta": meta, "summary": summary}


def diff_is_empty(diff: GraphDiff) -> bool:
    """True if ``diff`` (from :func:`diff_graphs`) records no change at all."""
    return not any(diff["summary"].values())


_SUMMARY_PARAM_LINES = 5
_VALUE_WIDTH = 40


def _show(value: JSONValue) -> str:
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, bool) or value is None or isinstance(value, int):
        text = json.dumps(value)
    else:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def summarize(diff: GraphDiff) -> str:
    """One human line for ``diff``, e.g. ``3 nodes added, Scale.factor 1 → 2.5, 1 link
    rewired``; ``no changes`` for an empty diff.

    Parameter changes are listed one by one (``Node.key old → new``, ``Node.key = v``
    when added, ``Node.key removed``), up to five; more become ``N parameters changed``.
    """
    parts: list[str] = []
    summary = diff["summary"]
    if summary["nodes_added"]:
        parts.append(_count(summary["nodes_added"], "node") + " added")
    if summary["nodes_removed"]:
        parts.append(_count(summary["nodes_removed"], "node") + " removed")

    param_lines: list[str] = []
    moved = retyped = relabelled = edited = 0
    for entry in diff["nodes"]["changed"]:
        changes = entry["changes"]
        name = entry["name"]
        params = changes.get("params")
        if params is not None:
            for key, change in params["changed"].items():
                param_lines.append(f"{name}.{key} {_show(change['old'])} → {_show(change['new'])}")
            for key, value in params["added"].items():
                param_lines.append(f"{name}.{key} = {_show(value)}")
            for key in params["removed"]:
                param_lines.append(f"{name}.{key} removed")
        moved += "position" in changes
        retyped += "type" in changes
        relabelled += "label" in changes
        edited += "other" in changes
    n_params = summary["params_changed"]
    if n_params and n_params == len(param_lines) and n_params <= _SUMMARY_PARAM_LINES:
        parts.extend(param_lines)
    elif n_params:
        parts.append(_count(n_params, "parameter") + " changed")
    if moved:
        parts.append(_count(moved, "node") + " moved")
    if retyped:
        parts.append(_count(retyped, "node") + " changed type")
    if relabelled:
        parts.append(_count(relabelled, "node") + " relabelled")
    if edited:
        parts.append(_count(edited, "node") + " edited")

    for n, verb in (
        (summary["edges_added"], "added"),
        (summary["edges_removed"], "removed"),
        (summary["edges_rewired"], "rewired"),
        (summary["edges_changed"], "changed"),
    ):
        if n:
            parts.append(_count(n, "link") + " " + verb)

    meta = diff["meta"]
    if "name" in meta["changed"]:
        change = meta["changed"]["name"]
        parts.append(f"renamed {_show(change['old'])} → {_show(change['new'])}")
    if summary["meta_changed"] - ("name" in meta["changed"]):
        parts.append("metadata changed")
    return ", ".join(parts) if parts else "no changes"
