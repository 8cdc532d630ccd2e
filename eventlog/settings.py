"""Typed settings from the environment (12-factor), optionally a ``.env`` file.

Nothing reads the environment at import time: call :func:`load_settings`.
"""

from __future__ import annotations

import ipaddress
import json
from functools import cached_property
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from eventlog.errors import ConfigError

DEFAULT_TOPICS = "oltp.public.ledger_entries,oltp.public.payment_orders"
STATUS_GROUPS = ("SUCCESS", "FAIL", "IN_PROGRESS")


class Settings(BaseSettings):
    """Every ``BO_*`` variable; the README's configuration table lists the same set."""

    model_config = SettingsConfigDict(
        env_prefix="BO_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./var/bo.db"
    kafka_bootstrap: str | None = None
    kafka_topics: str = DEFAULT_TOPICS
    kafka_group: str = "bo-sync"
    dlq_topic: str | None = None
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    auth_mode: Literal["dev", "oidc"] = "dev"
    oidc_jwks_url: str | None = None
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_algorithms: str = "RS256,ES256"
    oidc_roles_claim: str = "roles"
    status_map: str | None = None
    trusted_proxies: str = ""
    log_level: Literal["TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    var_dir: Path = Field(default=Path("./var"))
    # `bo project`'s CPU niceness: on a host it shares with `bo consume`, a backlog goes
    # into the log first (the broker's retention is the deadline; projections are derived)
    project_nice: int = Field(default=10, ge=0, le=19)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        """Accept ``postgres://`` and ``postgresql://`` and pin the psycopg 3 driver."""
        value = value.strip()
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if value.startswith("sqlite://"):
            return _sqlite_file_url(value)
        if value.startswith("postgresql+psycopg://"):
            return value
        raise ValueError("must start with sqlite:// or postgresql://")

    @field_validator("oidc_algorithms")
    @classmethod
    def _safe_algorithms(cls, value: str) -> str:
        algs = [a.strip() for a in value.split(",") if a.strip()]
        allowed = {
            "RS256",
            "RS384",
            "RS512",
            "ES256",
            "ES384",
            "ES512",
            "PS256",
            "PS384",
            "PS512",
            "EdDSA",
        }
        bad = [a for a in algs if a not in allowed]
        if not algs or bad:
            raise ValueError(f"only asymmetric algorithms are allowed, got {bad or 'none'}")
        return ",".join(algs)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in (v.strip() for v in value.split(",")):
            if item:
                ipaddress.ip_network(item, strict=False)
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.auth_mode == "oidc":
            missing = [
                name
                for name, val in (
                    ("BO_OIDC_JWKS_URL", self.oidc_jwks_url),
                    ("BO_OIDC_ISSUER", self.oidc_issuer),
                    ("BO_OIDC_AUDIENCE", self.oidc_audience),
                )
                if not val
            ]
            if missing:
                raise ValueError(f"BO_AUTH_MODE=oidc needs {', '.join(missing)}")
            jwks = urlsplit(self.oidc_jwks_url or "")
            if jwks.scheme not in ("https", "http") or not jwks.hostname:
                raise ValueError(
                    f"BO_OIDC_JWKS_URL must be an https:// URL, got {self.oidc_jwks_url!r}"
                )
        return self

    @model_validator(mode="after")
    def _kafka_sasl_complete(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError(
                f"BO_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                "BO_KAFKA_SASL_USERNAME and BO_KAFKA_SASL_PASSWORD"
            )
        return self

    def kafka_client_options(self) -> dict[str, Any]:
        """Security options for kafka-python clients (e.g. Event Hubs: SASL_SSL + PLAIN)."""
        options: dict[str, Any] = {"security_protocol": self.kafka_security_protocol}
        if self.kafka_security_protocol.startswith("SASL_"):
            assert self.kafka_sasl_password is not None
            options.update(
                sasl_mechanism=self.kafka_sasl_mechanism,
                sasl_plain_username=self.kafka_sasl_username,
                sasl_plain_password=self.kafka_sasl_password.get_secret_value(),
            )
        if self.kafka_ssl_cafile:
            options["ssl_cafile"] = self.kafka_ssl_cafile
        return options

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def topics(self) -> list[str]:
        return [t.strip() for t in self.kafka_topics.split(",") if t.strip()]

    @property
    def algorithms(self) -> list[str]:
        return self.oidc_algorithms.split(",")

    @property
    def trusted_proxy_networks(self) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [
            ipaddress.ip_network(v.strip(), strict=False)
            for v in self.trusted_proxies.split(",")
            if v.strip()
        ]

    @cached_property
    def status_mapping(self) -> dict[str, str] | None:
        """Raw status → group, from the ``BO_STATUS_MAP`` file; ``None`` without one."""
        if not self.status_map:
            return None
        return load_status_map(Path(self.status_map))


def load_status_map(path: Path) -> dict[str, str]:
    """Read ``{"SUCCESS": [...], "FAIL": [...], "IN_PROGRESS": [...]}`` into status → group."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"BO_STATUS_MAP: file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"BO_STATUS_MAP: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError("BO_STATUS_MAP: expected a JSON object of group → list of statuses")
    mapping: dict[str, str] = {}
    for group, statuses in data.items():
        if group not in STATUS_GROUPS:
            raise ConfigError(
                f"BO_STATUS_MAP: unknown group {group!r} (use {', '.join(STATUS_GROUPS)})"
            )
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise ConfigError(f"BO_STATUS_MAP: group {group} must be a list of strings")
        for status in statuses:
            if status in mapping and mapping[status] != group:
                raise ConfigError(f"BO_STATUS_MAP: status {status!r} is in two groups")
            mapping[status] = group
    return mapping


def load_settings(**overrides: object) -> Settings:
    """Build settings from the environment; a bad value raises :class:`ConfigError` (one line)."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "settings"
        name = f"BO_{field.upper()}" if field != "settings" else "configuration"
        raise ConfigError(f"{name}: {first.get('msg', 'invalid')}") from exc
    except UnicodeDecodeError as exc:  # reading ./.env
        raise ConfigError(f".env: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    if settings.status_map:
        _ = settings.status_mapping  # fail at start, not at first use
    return settings


def _sqlite_file_url(value: str) -> str:
    """A SQLite URL must name a file: every ``bo`` command is a process of its own, so an
    in-memory database would be gone before the next one. Options other than SQLite URI
    ones (``?mode=ro&uri=true``) would be ignored by the driver with a warning: refused."""
    rest = value[len("sqlite://") :]
    path, _, query = rest.partition("?")
    if path in ("", "/") or path.startswith("/:memory:"):
        raise ValueError("a SQLite URL must name a file, e.g. sqlite:///./var/bo.db")
    options = parse_qs(query, keep_blank_values=True)
    if options and options.get("uri") != ["true"]:
        raise ValueError(
            f"SQLite URL options are not supported ({', '.join(sorted(options))}); "
            "SQLite URI options need uri=true, e.g. sqlite:///file:bo.db?mode=ro&uri=true"
        )
    return value
