"""The hand-built fan-out packets equal what python-socketio encodes."""

from __future__ import annotations

import pytest
from socketio import packet

from collab.transport import binary_event_header


@pytest.mark.parametrize("namespace", ["/yjs|abc", "/yjs|p.1:x-y_z"])
@pytest.mark.parametrize("event", ["sync-update", "awareness-update"])
def test_binary_event_header_matches_python_socketio(namespace: str, event: str) -> None:
    encoded = packet.Packet(packet.EVENT, namespace=namespace, data=[event, b"\x01\x02"]).encode()
    assert encoded == [binary_event_header(namespace, event), b"\x01\x02"]
