"""Kafka client security settings (SASL/TLS, e.g. Azure Event Hubs' Kafka endpoint)."""

from __future__ import annotations

import pytest

from eventlog.errors import ConfigError
from eventlog.settings import load_settings


def test_plaintext_by_default() -> None:
    assert load_settings().kafka_client_options() == {"security_protocol": "PLAINTEXT"}


def test_event_hubs_options_and_the_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=s3cr3t-value"
    monkeypatch.setenv("BO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BO_KAFKA_SASL_USERNAME", "$ConnectionString")
    monkeypatch.setenv("BO_KAFKA_SASL_PASSWORD", secret)
    monkeypatch.setenv("BO_KAFKA_SSL_CAFILE", "/etc/ssl/certs/ca.pem")
    settings = load_settings()
    assert settings.kafka_client_options() == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "$ConnectionString",
        "sasl_plain_password": secret,
        "ssl_cafile": "/etc/ssl/certs/ca.pem",
    }
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in str(settings.model_dump())


def test_sasl_without_credentials_is_one_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BO_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BO_KAFKA_SASL_USERNAME", "$ConnectionString")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "BO_KAFKA_SASL_PASSWORD" in message
    assert "\n" not in message


def test_unknown_protocol_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BO_KAFKA_SECURITY_PROTOCOL", "SASL_TLS")
    with pytest.raises(ConfigError, match="BO_KAFKA_SECURITY_PROTOCOL"):
        load_settings()
