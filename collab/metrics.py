"""Every counter, gauge and histogram of the server, in one place (Prometheus).

One ``Metrics`` per app, on its own registry (no module-level state), served at
``/metrics``. Gauges that mirror live state (rooms, connections, stream lag) are
refreshed by ``Metrics.refresh`` callbacks when scraped.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.connections = Gauge("collab_connections", "Open document connections", registry=r)
        self.rooms = Gauge("collab_rooms", "Rooms loaded on this instance", registry=r)
        self.updates_in = Counter(
            "collab_updates_in_total", "Updates received", ["origin"], registry=r
        )
        self.update_bytes_in = Counter(
            "collab_update_bytes_in_total", "Bytes of updates received", registry=r
        )
        self.updates_refused = Counter(
            "collab_updates_refused_total", "Updates refused", ["code"], registry=r
        )
        self.messages_out = Counter(
            "collab_messages_out_total", "Socket messages sent to clients", ["event"], registry=r
        )
        self.fanout_seconds = Histogram(
            "collab_fanout_seconds",
            "Time to hand an update to local sockets",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "collab_commit_seconds",
            "Duration of one group-commit transaction",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "collab_commit_latency_seconds",
            "Accepted -> durable, per update",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_batch_size = Histogram(
            "collab_commit_batch_size",
            "Updates per commit",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.commit_pending = Gauge(
            "collab_commit_pending", "Updates waiting for the store (commit lag)", registry=r
        )
        self.commit_failures = Counter(
            "collab_commit_failures_total", "Failed commit attempts", registry=r
        )
        self.commit_lag_seconds = Gauge(
            "collab_commit_lag_seconds", "Age of the oldest update not yet stored", registry=r
        )
        self.stream_lag_seconds = Gauge(
            "collab_stream_lag_seconds",
            "Publish -> delivery delay of the newest stream entry read",
            registry=r,
        )
        self.broker_dropped = Gauge(
            "collab_broker_dropped_ops", "Broker writes dropped past the queue bound", registry=r
        )
        self.presence_messages = Counter(
            "collab_presence_in_total", "Awareness updates received", registry=r
        )
        self.compactions = Counter(
            "collab_compactions_total", "Log compactions", ["result"], registry=r
        )
        self.versions = Counter("collab_versions_total", "Versions created", ["kind"], registry=r)
        self.room_loads = Histogram(
            "collab_room_load_seconds",
            "Time to load a room",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._refreshers: list[Callable[[], None]] = []

    def on_scrape(self, refresh: Callable[[], None]) -> None:
        self._refreshers.append(refresh)

    def render(self) -> bytes:
        for refresh in self._refreshers:
            refresh()
        return generate_latest(self.registry)
