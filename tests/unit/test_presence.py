"""collab.presence: clock rules, identity stamping, ownership, coalescing, removal and
expiry of a room's awareness states."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from auth.principal import Principal
from collab.errors import InvalidAwareness
from collab.presence import OUTDATED_TIMEOUT_S, Presence
from collab.protocol import decode_awareness, encode_awareness

ALICE = Principal("alice", "Alice")
BOB = Principal("bob", "Bob")


def aw(*entries: tuple[int, int, dict[str, Any] | None]) -> bytes:
    return encode_awareness(
        [(cid, clock, json.dumps(state, separators=(",", ":"))) for cid, clock, state in entries]
    )


def decoded(payload: bytes) -> dict[int, tuple[int, dict[str, Any] | None]]:
    return {e.client_id: (e.clock, e.state) for e in decode_awareness(payload)}


def stamped(state: dict[str, Any], who: Principal) -> dict[str, Any]:
    user = dict(state.get("user") or {})
    user.update(id=who.user_id, name=who.display_name)
    return {**state, "user": user}


# -- apply and clock rules -------------------------------------------------------------------


def test_a_new_entry_is_applied_stamped_and_flushed() -> None:
    p = Presence()
    assert p.apply_local("s1", ALICE, aw((1, 1, {"cursor": {"x": 1}})))
    assert p.states() == {1: {"cursor": {"x": 1}, "user": {"id": "alice", "name": "Alice"}}}
    out = p.take_dirty()
    assert out is not None
    assert decoded(out.payload) == {1: (1, p.states()[1])}
    assert out.local_payload == out.payload  # changed here: for the other instances too
    assert out.owners == {"s1"}  # the owner need not get its own entry back
    assert p.take_dirty() is None


@pytest.mark.parametrize(
    ("clock", "state", "applied"),
    [
        (6, {"cursor": {"x": 2}}, True),  # newer
        (5, {"cursor": {"x": 2}}, False),  # same clock, a state: already known
        (4, {"cursor": {"x": 2}}, False),  # older
        (5, None, True),  # same clock, removal of a present entry (y-protocols rule)
        (4, None, False),  # older removal
    ],
    ids=["newer", "same-clock", "older", "same-clock-removal", "older-removal"],
)
def test_clock_rules(clock: int, state: dict[str, Any] | None, applied: bool) -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 5, {"cursor": {"x": 1}})))
    p.take_dirty()
    assert p.apply_local("s1", ALICE, aw((1, clock, state))) is applied
    if applied:
        assert p.entries[1].clock == clock
        assert (p.take_dirty() is not None) is True
    else:
        assert p.entries[1].clock == 5
        assert p.take_dirty() is None


def test_removed_entry_refuses_older_clocks_afterwards() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 5, {"a": 1})))
    p.apply_local("s1", ALICE, aw((1, 6, None)))
    assert p.states() == {}
    assert not p.apply_local("s1", ALICE, aw((1, 5, {"a": 2})))
    assert p.apply_local("s1", ALICE, aw((1, 7, {"a": 3})))
    assert p.states()[1]["a"] == 3


# -- stamping ----------------------------------------------------------------------------------


def test_identity_is_stamped_from_the_token() -> None:
    p = Presence()
    claim = {"cursor": {"x": 1}, "user": {"id": "mallory", "name": "Mallory", "color": "#f00"}}
    p.apply_local("s1", BOB, aw((1, 1, claim)))
    assert p.states()[1] == {
        "cursor": {"x": 1},
        "user": {"id": "bob", "name": "Bob", "color": "#f00"},
    }
    assert p.users() == [
        {"client_id": 1, "user": {"id": "bob", "name": "Bob", "color": "#f00"}, "local": True}
    ]


@pytest.mark.parametrize("user", ["a string", 42, ["list"], None])
def test_a_user_field_that_is_not_an_object_is_replaced(user: Any) -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"user": user})))
    assert p.states()[1] == {"user": {"id": "alice", "name": "Alice"}}


def test_display_name_falls_back_to_the_user_id() -> None:
    p = Presence()
    p.apply_local("s1", Principal("u-7"), aw((1, 1, {})))
    assert p.states()[1] == {"user": {"id": "u-7", "name": "u-7"}}


def test_removal_is_not_stamped() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {})))
    p.take_dirty()
    p.apply_local("s1", ALICE, aw((1, 2, None)))
    out = p.take_dirty()
    assert out is not None and decoded(out.payload) == {1: (2, None)}


# -- ownership and echoes ----------------------------------------------------------------------


def test_another_sockets_entry_cannot_be_overwritten() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"mine": True})))
    p.take_dirty()
    for clock, state in [(1, {"evil": 1}), (50, {"evil": 1}), (50, None), (1, None)]:
        assert not p.apply_local("s2", BOB, aw((1, clock, state)))
    assert p.states() == {1: stamped({"mine": True}, ALICE)}
    assert p.entries[1].owner == "s1"
    assert p.take_dirty() is None


def test_echoes_are_ignored_and_own_entries_applied_in_the_same_message() -> None:
    """The stock client re-emits others' states it received: such entries are echoes."""
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 3, {"a": 1})))
    assert p.apply_local("s2", BOB, aw((1, 3, stamped({"a": 1}, ALICE)), (2, 1, {"b": 1})))
    assert p.entries[1].owner == "s1" and p.entries[2].owner == "s2"
    assert p.states()[1] == stamped({"a": 1}, ALICE)


def test_echo_of_a_remote_entry_is_ignored() -> None:
    p = Presence()
    assert p.apply_remote(aw((9, 4, {"from": "elsewhere"})))
    assert not p.apply_local("s1", ALICE, aw((9, 4, {"from": "elsewhere"})))
    assert not p.apply_local("s1", ALICE, aw((9, 3, {"from": "elsewhere"})))
    assert p.entries[9].owner is None


def test_remote_instances_cannot_overwrite_local_entries() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"mine": True})))
    assert not p.apply_remote(aw((1, 99, {"theirs": True})))
    assert not p.apply_remote(aw((1, 99, None)))
    assert p.states()[1] == stamped({"mine": True}, ALICE)


def test_remote_entries_are_applied_as_stamped_elsewhere() -> None:
    p = Presence()
    state = {"user": {"id": "carol", "name": "Carol"}, "cursor": {"x": 1}}
    assert p.apply_remote(aw((9, 1, state)))
    assert p.states()[9] == state  # not re-stamped here
    out = p.take_dirty()
    assert out is not None
    assert out.local_payload is None  # not to be published again
    assert out.owners == set()  # every local socket gets it
    assert p.users() == [{"client_id": 9, "user": state["user"], "local": False}]


# -- removal -----------------------------------------------------------------------------------


def test_remove_sid_removes_its_entries_for_everyone() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 4, {"a": 1}), (2, 1, {"tab": 2})))
    p.apply_local("s2", BOB, aw((3, 1, {"b": 1})))
    p.take_dirty()
    assert p.remove_sid("s1")
    out = p.take_dirty()
    assert out is not None
    assert decoded(out.payload) == {1: (5, None), 2: (2, None)}  # clock + 1, null state
    assert out.owners == set()  # the owner is gone: send to all
    assert out.local_payload == out.payload
    assert set(p.states()) == {3}
    assert decoded(p.encode_all()) == {3: (1, stamped({"b": 1}, BOB))}
    assert not p.remove_sid("s1")
    assert not p.remove_sid("never-connected")


def test_a_reconnecting_client_reclaims_its_id_past_the_removal() -> None:
    """After we announced its removal (clock 5), the client reconnects (new sid) with
    its old clock: accepted, and renumbered past the removal so others take it."""
    p = Presence()
    p.apply_local("old", ALICE, aw((1, 4, {"v": 1})))
    p.remove_sid("old")
    p.take_dirty()
    assert p.apply_local("new", ALICE, aw((1, 4, {"v": 2})))
    assert p.entries[1].clock == 6 and p.entries[1].owner == "new"
    assert p.apply_local("new", ALICE, aw((1, 5, {"v": 3})))
    assert p.entries[1].clock == 7
    assert p.states()[1]["v"] == 3
    out = p.take_dirty()
    assert out is not None and decoded(out.payload)[1][0] == 7


# -- coalescing --------------------------------------------------------------------------------


def test_changes_between_flushes_are_coalesced() -> None:
    p = Presence()
    for i in range(1, 50):
        p.apply_local("s1", ALICE, aw((1, i, {"cursor": {"x": i}})))
    p.apply_local("s2", BOB, aw((2, 1, {"b": 1})))
    out = p.take_dirty()
    assert out is not None
    assert decoded(out.payload) == {
        1: (49, stamped({"cursor": {"x": 49}}, ALICE)),
        2: (1, stamped({"b": 1}, BOB)),
    }
    assert out.owners == set()  # two owners: everyone gets the message
    assert p.take_dirty() is None


def test_nothing_changed_means_nothing_to_flush() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"a": 1})))
    p.take_dirty()
    p.apply_local("s1", ALICE, aw((1, 1, {"a": 1})))
    assert p.take_dirty() is None


def test_encode_all_for_a_newcomer() -> None:
    p = Presence()
    assert p.encode_all() == b"\x00"
    p.apply_local("s1", ALICE, aw((1, 1, {"a": 1})))
    p.apply_local("s2", BOB, aw((2, 3, {"b": 1})))
    p.apply_local("s2", BOB, aw((2, 4, None)))
    assert decoded(p.encode_all()) == {1: (1, stamped({"a": 1}, ALICE))}


# -- malformed input ---------------------------------------------------------------------------


def test_malformed_update_applies_nothing() -> None:
    p = Presence()
    good_then_bad = aw((1, 1, {"a": 1}))[:-1] + b"\x05"
    with pytest.raises(InvalidAwareness):
        p.apply_local("s1", ALICE, good_then_bad)
    two = encode_awareness([(1, 1, '{"a":1}'), (2, 1, "[1]")])
    with pytest.raises(InvalidAwareness):
        p.apply_local("s1", ALICE, two)
    assert p.entries == {} and p.take_dirty() is None


def test_lone_surrogate_in_a_state_is_applied() -> None:
    p = Presence()
    data = encode_awareness([(1, 1, '{"label":"cut \\ud83d"}')])
    assert p.apply_local("s1", ALICE, data)
    assert p.states()[1]["label"] == "cut \ud83d"


# -- expiry ------------------------------------------------------------------------------------


def test_remote_entries_expire_local_ones_do_not() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"local": True})))
    p.apply_remote(aw((9, 2, {"remote": True})))
    p.take_dirty()
    now = time.monotonic()
    assert not p.expire(now + OUTDATED_TIMEOUT_S - 1)
    assert p.take_dirty() is None
    assert p.expire(now + OUTDATED_TIMEOUT_S + 1)
    assert set(p.states()) == {1}
    out = p.take_dirty()
    assert out is not None and decoded(out.payload) == {9: (3, None)}


def test_entries_of_a_dead_instance_are_dropped_at_once() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"local": True})))
    p.apply_remote(aw((8, 1, {"on": "i1"})), "i1")
    p.apply_remote(aw((9, 4, {"on": "i2"})), "i2")
    p.apply_remote(aw((7, 1, None)), "i2")  # a removal: nothing to drop later
    assert p.remote_origins() == {"i1", "i2"}
    p.take_dirty()
    assert not p.drop_origins({"i3"})
    assert p.drop_origins({"i2"})
    assert set(p.states()) == {1, 8}
    assert p.remote_origins() == {"i1"}
    out = p.take_dirty()
    assert out is not None and decoded(out.payload) == {9: (5, None)}
    assert out.local_payload is None  # each instance drops them itself
    # The tombstone keeps refusing the dead client's late, older states.
    assert not p.apply_remote(aw((9, 4, {"late": True})), "i2")
    assert not p.drop_origins({"i2"})


def test_renewed_remote_entries_do_not_expire() -> None:
    p = Presence()
    p.apply_remote(aw((9, 1, {"v": 1})))
    t0 = time.monotonic()
    p.entries[9].updated = t0 - OUTDATED_TIMEOUT_S + 5  # renewed 25 s ago
    assert not p.expire(t0)
    p.apply_remote(aw((9, 2, {"v": 2})))  # renewed now
    assert not p.expire(t0 + 10)
    assert p.states()[9] == {"v": 2}


def test_tombstones_are_dropped_after_the_timeout() -> None:
    p = Presence()
    p.apply_local("s1", ALICE, aw((1, 1, {"a": 1})))
    p.remove_sid("s1")
    now = time.monotonic()
    # Not yet flushed: kept, so that the removal still goes out.
    assert not p.expire(now + OUTDATED_TIMEOUT_S + 1)
    assert 1 in p.entries
    out = p.take_dirty()
    assert out is not None and decoded(out.payload) == {1: (2, None)}
    assert not p.expire(now + OUTDATED_TIMEOUT_S - 1)
    assert 1 in p.entries  # still refusing older clocks
    assert not p.apply_remote(aw((1, 1, {"late": True})))
    p.expire(now + OUTDATED_TIMEOUT_S + 1)
    assert 1 not in p.entries
    assert p.take_dirty() is None
