"""Typed settings, read once from the environment (``COLLAB_*``).

This is the only module that reads ``os.environ``; everything else receives a
``Settings`` instance. Secrets are ``SecretStr`` so they never show in ``repr`` or logs.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

JwtAlgorithm = Literal[
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "EdDSA"
]


class Settings(BaseSettings):
    """Every setting of the server. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="COLLAB_", frozen=True, extra="ignore")

    # -- network --
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Origins allowed for REST and Socket.IO (browsers). Empty = same origin only."""

    # -- storage and broker --
    database_url: str | None = None
    """``postgresql://...`` for Postgres; ``sqlite:///path`` or unset for the embedded SQLite."""
    data_dir: Path = Path(".collab")
    """Where the embedded default keeps its SQLite file and development secret."""
    redis_url: str | None = None
    """Set to share rooms between instances through Redis; unset = in-process broker."""
    redis_prefix: str = "collab"
    instance_id: str = Field(default_factory=lambda: "i-" + secrets.token_hex(4))

    # -- auth --
    jwt_secret: SecretStr | None = None
    """HS* secret. Unset with no public key = development mode (a secret kept in data_dir)."""
    jwt_public_key_file: Path | None = None
    """PEM public key for RS*/ES*/EdDSA tokens."""
    jwt_algorithms: Annotated[list[JwtAlgorithm], NoDecode] = Field(
        default_factory=lambda: list[JwtAlgorithm](["HS256"])
    )
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: float = 30.0
    """Clock skew tolerated on exp/nbf/iat (30 s: NTP-synced hosts drift far less)."""
    admin_role: str = "admin"
    """The value in the token's ``roles`` claim that marks an admin."""
    service_role: str = "service"
    """The value in the token's ``roles`` claim that marks a platform service."""

    # -- limits --
    max_update_bytes: int = Field(default=1_048_576, ge=1024)
    """Largest accepted update (1 MiB). Larger ones get a PAYLOAD_TOO_LARGE error event."""
    max_message_bytes: int | None = None
    """Transport hard cap (engine.io); default 16 x max_update_bytes. See README."""
    max_doc_bytes: int = Field(default=64 * 1_048_576, ge=1024)
    messages_per_second: float = 200.0
    """Per connection, averaged over a 10 s window; bursts up to 10x are allowed."""
    max_connections_per_user: int = 50
    max_rooms: int = 10_000

    # -- persistence --
    commit_window_ms: float = Field(default=0.0, ge=0, le=50)
    """Extra wait for company before a transaction starts when the committer was idle.
    Group commit needs none: updates that arrive while a transaction is in flight share
    the next one. Measured (bench/durability.py): 0 ms gave the lowest ack latency and
    the highest throughput; raise it to trade latency for fewer transactions."""
    max_pending_updates: int = Field(default=100_000, ge=1)
    """Updates held in memory while the store is unreachable; past it, edits are refused."""
    max_pending_bytes: int = Field(default=256 * 1_048_576, ge=1024)
    compact_after_updates: int = Field(default=1000, ge=2)
    """Log rows after which a room's log is merged into its snapshot."""
    auto_version_minutes: float = Field(default=10.0, ge=0)
    """Minutes of editing after which a version is saved automatically (0 = never)."""
    room_grace_ms: float = Field(default=2000.0, ge=0)
    """How long an empty room stays loaded, in case its clients come straight back."""

    # -- cluster --
    heartbeat_s: float = Field(default=2.0, gt=0)
    """Interval of the room-registry heartbeat; entries expire after 3 heartbeats."""
    stream_retention_s: float = Field(default=60.0, gt=0)

    # -- operations --
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    dev_mode: bool | None = None
    """Development conveniences (dev sign-in). Default: on when no JWT key is configured."""
    shutdown_grace_s: float = 10.0
    event_loop: Literal["auto", "uvloop", "asyncio"] = "auto"
    """``auto`` = uvloop when installed (measured: about half the p99 latency and 15%
    less CPU at 2,000 deliveries/s), else asyncio's own loop."""

    @field_validator("cors_origins", "jwt_algorithms", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        """``a,b`` or a JSON list ``["a", "b"]``."""
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @property
    def development(self) -> bool:
        if self.dev_mode is not None:
            return self.dev_mode
        return self.jwt_secret is None and self.jwt_public_key_file is None

    @property
    def transport_max_bytes(self) -> int:
        return self.max_message_bytes or 16 * self.max_update_bytes

    @property
    def sqlite_path(self) -> Path:
        if self.database_url and self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return self.data_dir / "collab.sqlite3"

    @property
    def uses_postgres(self) -> bool:
        return bool(self.database_url) and self.database_url.startswith(  # type: ignore[union-attr]
            ("postgres://", "postgresql://")
        )
