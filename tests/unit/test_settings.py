"""collab.settings: environment parsing, defaults and derived values."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from collab.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No COLLAB_* variable of the machine running the tests leaks in."""
    for key in list(os.environ):
        if key.upper().startswith("COLLAB_"):
            monkeypatch.delenv(key)


def test_defaults() -> None:
    s = Settings()
    assert (s.host, s.port) == ("127.0.0.1", 8000)
    assert s.cors_origins == []
    assert s.database_url is None and s.redis_url is None
    assert s.data_dir == Path(".collab")
    assert s.sqlite_path == Path(".collab") / "collab.sqlite3"
    assert not s.uses_postgres
    assert s.jwt_secret is None and s.jwt_public_key_file is None
    assert s.jwt_algorithms == ["HS256"]
    assert s.jwt_leeway_s == 30.0
    assert (s.admin_role, s.service_role) == ("admin", "service")
    assert s.max_update_bytes == 1_048_576
    assert s.max_message_bytes is None
    assert s.transport_max_bytes == 16 * 1_048_576
    assert s.messages_per_second == 200.0
    assert s.commit_window_ms == 0.0
    assert s.log_format == "json"
    assert s.dev_mode is None
    assert s.development  # nothing configured: development mode


def test_instance_ids_are_generated_per_instance() -> None:
    a, b = Settings(), Settings()
    assert a.instance_id.startswith("i-") and len(a.instance_id) == 10
    assert a.instance_id != b.instance_id


def test_environment_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLLAB_HOST", "0.0.0.0")
    monkeypatch.setenv("COLLAB_PORT", "9001")
    monkeypatch.setenv("COLLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("COLLAB_MAX_UPDATE_BYTES", "4096")
    monkeypatch.setenv("COLLAB_MESSAGES_PER_SECOND", "2.5")
    monkeypatch.setenv("COLLAB_LOG_FORMAT", "text")
    monkeypatch.setenv("COLLAB_REDIS_URL", "redis://localhost:6379/1")
    s = Settings()
    assert (s.host, s.port) == ("0.0.0.0", 9001)
    assert s.data_dir == tmp_path
    assert s.sqlite_path == tmp_path / "collab.sqlite3"
    assert s.max_update_bytes == 4096
    assert s.transport_max_bytes == 16 * 4096
    assert s.messages_per_second == 2.5
    assert s.log_format == "text"
    assert s.redis_url == "redis://localhost:6379/1"


def test_variable_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("collab_port", "9002")
    assert Settings().port == 9002


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_PORT", "9001")
    assert Settings(port=9005).port == 9005


def test_unknown_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_NO_SUCH_SETTING", "1")
    Settings()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://a.example", ["https://a.example"]),
        ("https://a.example,https://b.example", ["https://a.example", "https://b.example"]),
        (" https://a.example , https://b.example ,", ["https://a.example", "https://b.example"]),
        ("", []),
        (" , ", []),
    ],
)
def test_cors_origins_csv_or_json(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv("COLLAB_CORS_ORIGINS", raw)
    assert Settings().cors_origins == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("HS256", ["HS256"]),
        ("HS256,RS256", ["HS256", "RS256"]),
        ("RS256, ES256", ["RS256", "ES256"]),
    ],
)
def test_jwt_algorithms(monkeypatch: pytest.MonkeyPatch, raw: str, expected: list[str]) -> None:
    monkeypatch.setenv("COLLAB_JWT_ALGORITHMS", raw)
    assert Settings().jwt_algorithms == expected


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        (
            "COLLAB_CORS_ORIGINS",
            '["https://a.example", "https://b.example"]',
            ["https://a.example", "https://b.example"],
        ),
        ("COLLAB_JWT_ALGORITHMS", '["HS256", "EdDSA"]', ["HS256", "EdDSA"]),
    ],
)
def test_list_settings_in_json_form(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, expected: list[str]
) -> None:
    monkeypatch.setenv(name, raw)
    s = Settings()
    assert getattr(s, name.removeprefix("COLLAB_").lower()) == expected


@pytest.mark.parametrize("raw", ["none", "HS256,none", "HS999", "hs256", "PS256"])
def test_unknown_or_unsafe_jwt_algorithms_are_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("COLLAB_JWT_ALGORITHMS", raw)
    with pytest.raises(ValidationError):
        Settings()


def test_secret_is_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_JWT_SECRET", "super-secret-value")
    s = Settings()
    assert s.jwt_secret is not None
    assert s.jwt_secret.get_secret_value() == "super-secret-value"
    assert "super-secret-value" not in repr(s)
    assert "super-secret-value" not in str(s)
    assert not s.development


def test_a_public_key_ends_development_mode(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLLAB_JWT_PUBLIC_KEY_FILE", str(tmp_path / "key.pem"))
    s = Settings()
    assert s.jwt_public_key_file == tmp_path / "key.pem"
    assert not s.development


@pytest.mark.parametrize(
    ("dev_mode", "secret", "development"),
    [
        ("true", "s", True),
        ("1", "s", True),
        ("false", None, False),
        ("0", None, False),
        ("yes", None, True),
        ("no", "s", False),
    ],
)
def test_dev_mode_overrides(
    monkeypatch: pytest.MonkeyPatch, dev_mode: str, secret: str | None, development: bool
) -> None:
    monkeypatch.setenv("COLLAB_DEV_MODE", dev_mode)
    if secret is not None:
        monkeypatch.setenv("COLLAB_JWT_SECRET", secret)
    assert Settings().development is development


def test_explicit_transport_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLLAB_MAX_MESSAGE_BYTES", "5000000")
    assert Settings().transport_max_bytes == 5_000_000


@pytest.mark.parametrize(
    ("url", "path", "postgres"),
    [
        (None, Path("d") / "collab.sqlite3", False),
        ("sqlite:///relative/x.db", Path("relative/x.db"), False),
        ("sqlite:////var/lib/x.db", Path("/var/lib/x.db"), False),
        ("postgresql://u@h/db", Path("d") / "collab.sqlite3", True),
        ("postgres://u@h/db", Path("d") / "collab.sqlite3", True),
    ],
)
def test_database_url(url: str | None, path: Path, postgres: bool) -> None:
    s = Settings(database_url=url, data_dir=Path("d"))
    assert s.sqlite_path == path
    assert s.uses_postgres is postgres


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("COLLAB_PORT", "70000"),
        ("COLLAB_PORT", "-1"),
        ("COLLAB_PORT", "eighty"),
        ("COLLAB_MAX_UPDATE_BYTES", "1023"),
        ("COLLAB_COMMIT_WINDOW_MS", "51"),
        ("COLLAB_COMMIT_WINDOW_MS", "-1"),
        ("COLLAB_MAX_PENDING_UPDATES", "0"),
        ("COLLAB_COMPACT_AFTER_UPDATES", "1"),
        ("COLLAB_HEARTBEAT_S", "0"),
        ("COLLAB_LOG_FORMAT", "xml"),
        ("COLLAB_DEV_MODE", "maybe"),
    ],
)
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.port = 1
