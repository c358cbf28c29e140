"""The app's components, built once in ``create_app`` and reached through one AppKey."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from auth.tokens import TokenVerifier
from collab.broker.base import Broker
from collab.commit import Committer
from collab.metrics import Metrics
from collab.rooms import RoomManager
from collab.settings import Settings
from collab.transport import CollabServer, SocketTransport
from persistence.base import Store

if TYPE_CHECKING:
    from collab.cluster import Cluster
    from collab.compaction import Compactor
    from collab.notifications import Notifier
    from collab.registry import Registry
    from collab.versions import Versions


@dataclass(slots=True)
class Services:
    settings: Settings
    store: Store
    broker: Broker
    committer: Committer
    rooms: RoomManager
    sio: CollabServer
    transport: SocketTransport
    verifier: TokenVerifier
    metrics: Metrics
    versions: Versions
    cluster: Cluster
    notifier: Notifier
    registry: Registry
    compactor: Compactor
    started_at: float = 0.0
    dev_secret: str | None = None
