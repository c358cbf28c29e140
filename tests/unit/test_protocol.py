"""collab.protocol: project ids, payload checks and the awareness codec."""

from __future__ import annotations

import json
from typing import Any

import pycrdt
import pytest

from collab.errors import InvalidAwareness, InvalidProjectId, InvalidUpdate
from collab.protocol import (
    MAX_AWARENESS_ENTRIES,
    MAX_AWARENESS_STATE_BYTES,
    MAX_SAFE_INTEGER,
    NAMESPACE_PREFIX,
    AwarenessEntry,
    as_bytes,
    check_project_id,
    decode_awareness,
    dumps_state,
    encode_awareness,
    project_id_from_namespace,
)

# -- project ids ---------------------------------------------------------------------------

VALID_IDS = ["a", "0", "A0", "3f2a9c0d1e4b5a6c", "a-b_c.d:e", "org:42.doc-7", "a" * 128]
INVALID_IDS = {
    "empty": "",
    "too-long": "a" * 129,
    "question-mark": "a?b=1",
    "hash": "a#b",
    "comma": "a,b",
    "slash": "a/b",
    "space": "a b",
    "percent": "a%20b",
    "leading-dash": "-a",
    "leading-underscore": "_a",
    "leading-dot": ".a",
    "leading-colon": ":a",
    "non-ascii": "ä",
    "trailing-newline": "a\n",
    "nul": "a\x00",
    "pipe": "a|b",
}


@pytest.mark.parametrize("project_id", VALID_IDS)
def test_valid_project_ids(project_id: str) -> None:
    check_project_id(project_id)
    assert project_id_from_namespace(NAMESPACE_PREFIX + project_id) == project_id


@pytest.mark.parametrize("project_id", INVALID_IDS.values(), ids=INVALID_IDS.keys())
def test_invalid_project_ids(project_id: str) -> None:
    with pytest.raises(InvalidProjectId) as exc:
        check_project_id(project_id)
    assert exc.value.code == "INVALID_PROJECT_ID"
    assert exc.value.details == {"project_id": project_id}
    with pytest.raises(InvalidProjectId):
        project_id_from_namespace(NAMESPACE_PREFIX + project_id)


def test_invalid_project_id_details_are_truncated() -> None:
    with pytest.raises(InvalidProjectId) as exc:
        check_project_id("?" * 1000)
    assert exc.value.details["project_id"] == "?" * 200


@pytest.mark.parametrize("namespace", ["/", "/other", "/yjs", "yjs|a", "/YJS|a", "/yjs/a"])
def test_namespaces_that_are_not_documents(namespace: str) -> None:
    with pytest.raises(InvalidProjectId) as exc:
        project_id_from_namespace(namespace)
    assert exc.value.details == {"namespace": namespace}


def test_only_the_first_prefix_is_removed() -> None:
    with pytest.raises(InvalidProjectId):
        project_id_from_namespace("/yjs|/yjs|a")  # the id would be "/yjs|a"


# -- binary payloads -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [b"\x00\x00", bytearray(b"\x00\x00"), memoryview(b"\x00\x00")],
    ids=["bytes", "bytearray", "memoryview"],
)
def test_as_bytes_accepts_binary(payload: Any) -> None:
    result = as_bytes(payload, "sync-update")
    assert result == b"\x00\x00" and type(result) is bytes


@pytest.mark.parametrize(
    ("payload", "received"),
    [
        ("text", "str"),
        (5, "int"),
        (1.5, "float"),
        (None, "NoneType"),
        ([0, 0], "list"),
        ({"a": 1}, "dict"),
        (True, "bool"),
    ],
)
def test_as_bytes_refuses_everything_else(payload: object, received: str) -> None:
    with pytest.raises(InvalidUpdate) as exc:
        as_bytes(payload, "sync-update")
    assert exc.value.code == "INVALID_UPDATE"
    assert "sync-update" in exc.value.message
    assert exc.value.details == {"received": received}


# -- awareness codec -----------------------------------------------------------------------


def var_uint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def entry_bytes(client_id: int, clock: int, state_json: bytes) -> bytes:
    return var_uint(client_id) + var_uint(clock) + var_uint(len(state_json)) + state_json


def update_bytes(*entries: bytes, count: int | None = None) -> bytes:
    return var_uint(len(entries) if count is None else count) + b"".join(entries)


def test_decode_hand_written_update() -> None:
    data = update_bytes(
        entry_bytes(1, 2, b'{"cursor":{"x":1}}'),
        entry_bytes(300, 7, b"null"),
    )
    assert decode_awareness(data) == [
        AwarenessEntry(1, 2, {"cursor": {"x": 1}}),
        AwarenessEntry(300, 7, None),
    ]


def test_decode_empty_update() -> None:
    assert decode_awareness(b"\x00") == []


def test_encode_matches_y_protocols_layout() -> None:
    encoded = encode_awareness([(1, 2, '{"a":1}'), (300, 7, "null")])
    assert encoded == update_bytes(entry_bytes(1, 2, b'{"a":1}'), entry_bytes(300, 7, b"null"))
    assert encode_awareness([]) == b"\x00"


def test_pycrdt_reads_what_we_encode() -> None:
    """Cross-check against an independent implementation (pycrdt's port of y-protocols)."""
    state = {"user": {"name": "Ana ä"}, "cursor": {"x": 1.5}}
    encoded = encode_awareness([(4242, 3, dumps_state(state))])
    aw = pycrdt.Awareness(pycrdt.Doc())
    aw.apply_awareness_update(encoded, "test")
    assert aw.states[4242] == state
    assert aw.meta[4242]["clock"] == 3


def test_we_read_what_pycrdt_encodes() -> None:
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    aw = pycrdt.Awareness(doc)
    aw.set_local_state({"cursor": {"x": 3}, "name": "Zoë"})
    entries = decode_awareness(aw.encode_awareness_update([doc.client_id]))
    assert [(e.client_id, e.state) for e in entries] == [
        (doc.client_id, {"cursor": {"x": 3}, "name": "Zoë"})
    ]


ROUND_TRIP_STATES: dict[str, dict[str, Any] | None] = {
    "null": None,
    "empty": {},
    "ascii": {"cursor": {"x": 1, "y": 2}, "selected": ["n1", "n2"], "dragging": False},
    "non-ascii": {"user": {"name": "Ana ä Ωmega ✓"}, "label": "日本語"},
    "astral": {"emoji": "😀👍🏽", "math": "𝔸"},
    "nested": {"a": {"b": {"c": [1, 2.5, None, True, "x"]}}},
}


@pytest.mark.parametrize("state", ROUND_TRIP_STATES.values(), ids=ROUND_TRIP_STATES.keys())
def test_round_trip(state: dict[str, Any] | None) -> None:
    encoded = encode_awareness([(7, 1, dumps_state(state)), (MAX_SAFE_INTEGER, 9, "null")])
    assert decode_awareness(encoded) == [
        AwarenessEntry(7, 1, state),
        AwarenessEntry(MAX_SAFE_INTEGER, 9, None),
    ]


def test_string_length_is_the_utf8_byte_length() -> None:
    """lib0 ``writeVarString`` prefixes the UTF-8 byte length, not the character count."""
    text = '{"n":"ä😀"}'
    encoded = encode_awareness([(1, 1, text)])
    raw = text.encode("utf-8")
    assert encoded == b"\x01\x01\x01" + var_uint(len(raw)) + raw
    assert len(raw) != len(text)


def test_decode_json_written_by_javascript() -> None:
    """``JSON.stringify`` writes non-ASCII characters as is (UTF-8 on the wire) and
    escapes lone surrogates as ``\\udXXX``."""
    data = update_bytes(entry_bytes(1, 1, '{"name":"Ana ä 😀"}'.encode()))
    assert decode_awareness(data)[0].state == {"name": "Ana ä 😀"}
    lone = update_bytes(entry_bytes(1, 1, b'{"name":"cut \\ud83d"}'))
    assert decode_awareness(lone)[0].state == {"name": "cut \ud83d"}


def test_lone_surrogate_round_trips() -> None:
    state = {"name": "cut \ud83d", "other": "\udc00 too"}
    text = dumps_state(state)
    assert decode_awareness(encode_awareness([(1, 1, text)]))[0].state == state


def test_huge_integers_decode_like_json_parse() -> None:
    """Beyond 64 bits an integer becomes a double, as ``JSON.parse`` makes it."""
    data = update_bytes(entry_bytes(1, 1, b'{"n":123456789012345678901234567890}'))
    (entry,) = decode_awareness(data)
    assert entry.state == {"n": 1.2345678901234568e29}
    assert json.loads(dumps_state(entry.state)) == {"n": 1.2345678901234568e29}


MALFORMED: dict[str, bytes] = {
    "empty": b"",
    "count-only-missing-entry": b"\x01",
    "truncated-varint": b"\x80",
    "truncated-entry": update_bytes(entry_bytes(1, 1, b'{"a":1}'))[:-2],
    "string-past-end": b"\x01\x01\x01" + var_uint(100) + b"{}",
    "count-larger-than-entries": update_bytes(entry_bytes(1, 1, b"{}"), count=2),
    "trailing-bytes": update_bytes(entry_bytes(1, 1, b"{}")) + b"\x00",
    "bad-json": update_bytes(entry_bytes(1, 1, b'{"a":')),
    "json-array": update_bytes(entry_bytes(1, 1, b"[1,2]")),
    "json-string": update_bytes(entry_bytes(1, 1, b'"x"')),
    "json-number": update_bytes(entry_bytes(1, 1, b"3")),
    "json-true": update_bytes(entry_bytes(1, 1, b"true")),
    "empty-json": update_bytes(entry_bytes(1, 1, b"")),
    "invalid-utf8": update_bytes(entry_bytes(1, 1, b'{"a":"\xff"}')),
    "client-id-over-2**53": update_bytes(entry_bytes(MAX_SAFE_INTEGER + 1, 1, b"{}")),
    "clock-over-2**53": update_bytes(entry_bytes(1, MAX_SAFE_INTEGER + 1, b"{}")),
    "varint-over-64-bits": b"\x01" + b"\xff" * 10 + b"\x01",
    "bad-second-entry": update_bytes(entry_bytes(1, 1, b"{}"), entry_bytes(2, 1, b"[")),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_awareness_updates_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidAwareness) as exc:
        decode_awareness(data)
    assert exc.value.code == "INVALID_AWARENESS"
    assert exc.value.message


def test_too_many_entries_is_refused_before_reading_them() -> None:
    data = var_uint(MAX_AWARENESS_ENTRIES + 1)  # no entries follow at all
    with pytest.raises(InvalidAwareness) as exc:
        decode_awareness(data)
    assert exc.value.details == {"entries": MAX_AWARENESS_ENTRIES + 1, "max": MAX_AWARENESS_ENTRIES}
    huge = var_uint(2**40)
    with pytest.raises(InvalidAwareness):
        decode_awareness(huge)


def test_the_maximum_number_of_entries_is_accepted() -> None:
    entries = [(i, 1, "null") for i in range(MAX_AWARENESS_ENTRIES)]
    assert len(decode_awareness(encode_awareness(entries))) == MAX_AWARENESS_ENTRIES


def test_state_over_the_size_limit_is_refused() -> None:
    big = json.dumps({"blob": "x" * MAX_AWARENESS_STATE_BYTES}).encode()
    with pytest.raises(InvalidAwareness) as exc:
        decode_awareness(update_bytes(entry_bytes(1, 1, big)))
    assert exc.value.details == {"max_bytes": MAX_AWARENESS_STATE_BYTES}
    fits = json.dumps({"b": "x" * (MAX_AWARENESS_STATE_BYTES - 9)}).encode()
    assert len(fits) == MAX_AWARENESS_STATE_BYTES
    assert decode_awareness(update_bytes(entry_bytes(1, 1, fits)))[0].state is not None
    one_more = json.dumps({"b": "x" * (MAX_AWARENESS_STATE_BYTES - 8)}).encode()
    with pytest.raises(InvalidAwareness):
        decode_awareness(update_bytes(entry_bytes(1, 1, one_more)))


def test_dumps_state() -> None:
    assert dumps_state(None) == "null"
    assert json.loads(dumps_state({"a": [1, "ä"]})) == {"a": [1, "ä"]}
    assert dumps_state({"a": 1}) == '{"a":1}'  # compact, like JSON.stringify
