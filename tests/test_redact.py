"""Credentials never land (SPEC §2.5): not in the log, dead letters, database file, or logs."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loguru import logger
from sqlalchemy import Engine, select

from eventlog.redact import REDACTED, is_credential_key, redact_text, redact_tree
from eventlog.schema import dead_letters, events
from eventlog.store import EventLog, Prepared, Rejected, prepare
from tests.fixtures_eventlog import envelope, ledger_row

# ---------------------------------------------------------------- the key rule

CREDENTIAL_KEYS = [
    "password",
    "Password",
    "PASSWORD",
    "passwd",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refreshToken",
    "api_key",
    "api-key",
    "apiKey",
    "APIKEY",
    "X_Api_Key",
    "x-api-key",
    "credential",
    "credentials",
    "private_key",
    "privateKey",
    "pin",
    "PIN",
    "pin_code",
    "cvv",
    "CVV",
    "cvv2",
    "cvc",
    "card_number",
    "cardNumber",
    "Card-Number",
    "pan",
    "PAN",
    "authorization",
    "Authorization",
    "cookie",
    "Set-Cookie",
    "session",
    "session_id",
    "api.key",
    "api key",
    # separators are ignored (SPEC §2.5): the unseparated spelling of a redacted key is one
    "pincode",
    "PINCODE",
    "cardpin",
    "userpin",
    "cardcvv",
    "CARDCVV2",
    "oldpwd",
    "pannumber",
    "card_pin_hash",
    # judged on the key without separators and case: each as its separated spelling
    "cardpan",
    "CARDPAN",
    "payerpan",
    "cardcvvcode",
    "userpinhash",
    "oldpwdhash",
    "cardpanlast4",
    "card_pan_last4",
    "holderPinBlock",
]
SAFE_KEYS = [
    "tx_id",
    "wallet_id",
    "amount",
    "status",
    "company",
    "spinner",
    "currency",
    "created_at",
    "memo",
    "type",
    "related_id",
    "version",
    "expand",
    "shipping",
    "mapping",
    "opinion",
    "span",
    "timespan",
    "japan",
    "participant",
    "japan_code",
    "span_number",
    "expandedNumber",
    "company_no",
]
# Ordinary words that begin or end with a short name: redacted, by choice (module docstring)
OVER_REDACTED = ["panel", "pinned", "spin"]


@pytest.mark.parametrize("key", CREDENTIAL_KEYS)
def test_credential_keys_are_recognised(key: str) -> None:
    assert is_credential_key(key)


@pytest.mark.parametrize("key", SAFE_KEYS)
def test_ordinary_columns_are_not_credentials(key: str) -> None:
    assert not is_credential_key(key)


def test_separators_and_case_never_decide() -> None:
    """SPEC §2.5 ("any case, -/_ ignored"): every spelling of a credential key that differs
    only in case and separators is redacted alike."""
    for key in CREDENTIAL_KEYS:
        plain = "".join(ch for ch in key if ch.isalnum())
        assert is_credential_key(plain.lower()), plain
        assert is_credential_key(plain.upper()), plain


@pytest.mark.parametrize("key", OVER_REDACTED)
def test_a_short_name_at_either_end_of_a_word_is_redacted(key: str) -> None:
    assert is_credential_key(key)


def test_redact_tree_records_paths_in_nested_objects_and_arrays() -> None:
    doc: dict[str, Any] = {
        "after": {
            "tx_id": "T1",
            "Password": "a",
            "profile": {"api-key": {"nested": "b"}, "list": [{"CVV": "c"}, "ok"]},
            "odd.key": {"token": "d"},
        }
    }
    found: list[str] = []
    assert redact_tree(doc, "", found)
    assert doc["after"]["Password"] == REDACTED
    assert doc["after"]["profile"]["api-key"] == REDACTED
    assert doc["after"]["profile"]["list"][0]["CVV"] == REDACTED
    assert sorted(found) == sorted(
        [
            "after.Password",
            "after.profile.api-key",
            "after.profile.list[0].CVV",
            'after["odd.key"].token',
        ]
    )


@pytest.mark.parametrize(
    "text",
    [
        b'{"after": {"password": "hunter2", "x": ',  # truncated JSON
        b'{"after": {"password": "hunter2',  # cut inside the value
        b"password=hunter2&user=bob",
        b"{'api_key': 'hunter2'}",
        b'{"token": {"deep": ["hunter2", {"more": "hunter2"}]}, broken',
        b'\xff\xfe{"cvv": "hunter2"',  # not UTF-8
        b'{"a":1,"__password":"hunter2"',
        b'"pin": hunter2, "x": 1',
        b'{"after": {"pass\\u0077ord": "hunter2", "x": ',  # a key spelled with an escape
        b'{"after": {"pass\\/word": "hunter2"',
        b'{"meta": "{\\"t\\u006fken\\": \\"hunter2',  # escaped twice: text in text
    ],
)
def test_text_that_is_not_json_is_redacted_textually(text: bytes) -> None:
    out = redact_text(text)
    assert b"hunter2" not in out
    assert REDACTED.encode() in out


@pytest.mark.parametrize(
    "text",
    [
        b'{"password" => "hunter2", "Authorization" => "Bearer hunter2"}',  # Ruby's inspect
        b'{"password": hunter2 with spaces',  # a bare value runs to its delimiter
        b'{"api_key" : hunter2 unquoted value, broken',
        b'{"tx_id":"R6","user:password":"hunter2", broken',  # any character in a quoted key
        '{"password\u20ac":"hunter2", broken'.encode(),
        '{"password":"hunter2"}'.encode("utf-16"),  # UTF-16 with a byte-order mark
        '{"password":"hunter2"}'.encode("utf-16-le"),  # and without: valid UTF-8 with NULs
        '{"password":"hunter2"}'.encode("utf-16-be"),
        '{"password":"hunter2"}'.encode("utf-16") + b"x",  # truncated mid-character
    ],
)
def test_odd_text_shapes_lose_their_credentials(text: bytes) -> None:
    out = redact_text(text)
    for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
        assert "hunter2".encode(encoding) not in out
    assert any(REDACTED.encode(e) in out for e in ("utf-8", "utf-16-le", "utf-16-be"))


def test_a_key_of_any_length_is_judged_whole() -> None:
    """A bare key is the whole run of key characters before its separator, however long
    (it was cut at 100 characters: a credential name at the start of a longer run leaked)."""
    text = b"password" + b"x" * 150 + b"=hunter2&y=1"
    assert b"hunter2" not in redact_text(text)
    assert redact_text(b"x" * 200_000) == b"x" * 200_000  # one run: judged once, unchanged


def test_text_without_credentials_is_unchanged() -> None:
    text = b'{"after": {"tx_id": "T1", "memo": "a:b=c"'
    assert redact_text(text) is text


# ---------------------------------------------------------------- property: nowhere at all

_counter = itertools.count()
_safe_key = st.sampled_from(["memo", "profile", "items", "meta", "detail", "note", "extra"])
_credential_key = st.sampled_from(CREDENTIAL_KEYS)


@st.composite
def secret(draw: st.DrawFn) -> str:
    return f"zq{next(_counter)}x{draw(st.integers(10_000, 99_999))}sekrit"


@st.composite
def credential_value(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["text", "list", "object"]))
    if kind == "text":
        return draw(secret())
    if kind == "list":
        return [draw(secret()), draw(secret())]
    return {"inner": draw(secret())}


def _paths(tree: Any, prefix: str) -> list[str]:
    """Where credential keys sit (not below another credential key)."""
    out: list[str] = []
    if isinstance(tree, dict):
        for key, value in tree.items():
            here = f"{prefix}.{key}" if key.replace("-", "").replace("_", "").isalnum() else None
            if here is None:  # odd keys ("api.key", "api key") are quoted in paths
                here = f'{prefix}["{key}"]'
            if is_credential_key(key):
                out.append(here)
            else:
                out += _paths(value, here)
    elif isinstance(tree, list):
        for index, item in enumerate(tree):
            out += _paths(item, f"{prefix}[{index}]")
    return out


def _secrets(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        return [s for v in tree.values() for s in _secrets(v)]
    if isinstance(tree, list):
        return [s for v in tree for s in _secrets(v)]
    return [tree] if isinstance(tree, str) and tree.endswith("sekrit") else []


nested_rows = st.recursive(
    st.dictionaries(_credential_key, credential_value(), min_size=1, max_size=2),
    lambda children: st.one_of(
        st.dictionaries(_safe_key, children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=2).map(lambda items: {"items": items}),
        st.dictionaries(_credential_key, credential_value(), min_size=1, max_size=2),
    ),
    max_leaves=6,
)


@pytest.fixture
def captured_logs() -> Iterator[list[str]]:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="TRACE", serialize=True)
    yield lines
    logger.remove(sink)


def _database_bytes(engine: Engine) -> bytes:
    """Everything the log and dead-letter tables hold, plus the SQLite files themselves."""
    blob = bytearray()
    with engine.connect() as conn:
        for table in (events, dead_letters):
            for row in conn.execute(select(table)):
                for value in row:
                    blob += (
                        bytes(value)
                        if isinstance(value, bytes | memoryview)
                        else str(value).encode()
                    )
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database:
        for suffix in ("", "-wal", "-journal"):
            path = Path(database + suffix)
            if path.exists():
                blob += path.read_bytes()
    return bytes(blob)


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(tree=nested_rows)
def test_no_credential_value_survives_anywhere(
    migrated: Engine, captured_logs: list[str], tree: dict[str, Any]
) -> None:
    secrets = _secrets(tree)
    assert secrets
    n = next(_counter)
    row = ledger_row(f"T{n}", **tree)
    good = orjson.dumps(envelope(after=row, lsn=n))
    bad_amount = orjson.dumps(envelope(after=dict(row, amount="nope"), lsn=n))
    truncated = good[: len(good) - 3]  # not JSON any more
    not_object = orjson.dumps([envelope(after=row, lsn=n)])

    outcomes = [prepare(raw) for raw in (good, bad_amount, truncated, not_object)]
    appended = EventLog(migrated).append(outcomes)
    assert (appended.appended, appended.dead_letter) == (1, 3)

    stored = outcomes[0]
    assert isinstance(stored, Prepared)
    assert sorted(stored.redacted_paths) == sorted(_paths(row, "after"))
    assert all(isinstance(o, Rejected) for o in outcomes[1:])

    everything = _database_bytes(migrated)
    logs = "\n".join(captured_logs)
    for value in secrets:
        assert value.encode() not in everything, value
        assert value not in logs, value


def test_redacted_paths_are_stored_with_the_event(migrated: Engine) -> None:
    raw = orjson.dumps(envelope(after=ledger_row(password="pw", profile={"apiKey": "k"})))
    EventLog(migrated).append([prepare(raw)])
    with migrated.connect() as conn:
        stored = conn.execute(select(events.c.redacted_paths, events.c.payload)).one()
    assert orjson.loads(stored.redacted_paths) == ["after.password", "after.profile.apiKey"]
    assert b'"pw"' not in bytes(stored.payload)


def test_the_whole_envelope_is_redacted_not_only_before_and_after() -> None:
    doc = envelope(after=ledger_row())
    doc["source"]["token"] = "hunter2"
    doc["extra"] = {"Authorization": "Bearer hunter3"}
    outcome = prepare(orjson.dumps(doc))
    assert isinstance(outcome, Prepared)
    assert sorted(outcome.redacted_paths) == ["extra.Authorization", "source.token"]
    assert b"hunter" not in outcome.payload


def test_stored_bytes_keep_exact_numbers_when_rewritten() -> None:
    raw = (
        b'{"op":"c","source":{"table":"ledger_entries","seq":18446744073709551617},'
        b'"after":{"tx_id":"T1","amount":12345678901234567.89,"rate":0.10,"pin":"1234"}}'
    )
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert outcome.payload == (
        b'{"op":"c","source":{"table":"ledger_entries","seq":18446744073709551617},'
        b'"after":{"tx_id":"T1","amount":12345678901234567.89,"rate":0.10,"pin":"[REDACTED]"}}'
    )
    assert outcome.change.row["amount"] == "12345678901234567.89"


# ---------------------------------------------------------------- JSON carried as text


def _with_meta(meta: Any, table: str = "ledger_entries") -> bytes:
    """A change whose ``meta`` column holds ``meta`` as JSON text (a json/jsonb column)."""
    row = {
        **ledger_row(),
        "meta": orjson.dumps(meta).decode() if not isinstance(meta, str) else meta,
    }
    doc = {"op": "c", "source": {"table": table, "sequence": '["1","2"]'}, "after": row}
    return orjson.dumps(doc)


@pytest.mark.parametrize(
    ("meta", "paths"),
    [
        ({"password": "SEC", "n": 1}, ["after.meta.password"]),
        ([{"apiKey": "SEC"}, {"ok": 1}], ["after.meta[0].apiKey"]),
        ({"inner": '{"token": "SEC"}'}, ["after.meta.inner.token"]),  # text within text
        ('{"pin": "SEC", "pin": "x"}', ["after.meta.pin"]),  # a duplicate key inside the text
        ([[{"token": "SEC"}]], ["after.meta[0][0].token"]),  # arrays of arrays (jsonb)
        ([1, {"token": "SEC"}], ["after.meta[1].token"]),
        (["a", {"secret": "SEC"}], ["after.meta[1].secret"]),
        ('[ {"password": "SEC"}]', ["after.meta[0].password"]),
        ('  \n{"password": "SEC"}', ["after.meta.password"]),  # a json column keeps its text
        ('{"password": "SEC", "n": ', ["after.meta"]),  # truncated: redacted as text
        ('{"pass\\u0077ord": "SEC", "n": ', ["after.meta"]),  # truncated, key escaped
        (orjson.dumps({"password": "SEC"}).decode(), ["after.meta.password"]),
        (
            orjson.dumps(orjson.dumps({"password": "SEC"}).decode()).decode(),
            ["after.meta.password"],
        ),
    ],
)
def test_credentials_inside_json_text_are_redacted(meta: Any, paths: list[str]) -> None:
    """Debezium sends json/jsonb columns as strings: their keys are keys of ``after`` too
    (SPEC §2.5), in the log and in dead letters."""
    outcome = prepare(_with_meta(meta))
    assert isinstance(outcome, Prepared)
    assert b"SEC" not in outcome.payload
    assert outcome.redacted_paths == paths
    stored = orjson.loads(outcome.payload)["after"]["meta"]
    assert REDACTED in stored
    if paths != ["after.meta"]:  # JSON text stays JSON text (the truncated one: as text)
        assert orjson.loads(stored)
        text = meta if isinstance(meta, str) else orjson.dumps(meta).decode()
        assert type(orjson.loads(stored)) is type(orjson.loads(text))  # as often encoded
    rejected = prepare(_with_meta(meta, table="nope"))
    assert isinstance(rejected, Rejected)
    assert b"SEC" not in rejected.raw


@pytest.mark.parametrize(
    "meta",
    [
        '{"password" => "SEC-1", "Authorization" => "Bearer SEC-2"}',  # Ruby's Hash#inspect
        '{"password": SEC with spaces',
        "{password -> SEC}",  # no syntax the textual redaction knows: the word decides
        "[token SEC]",
    ],
)
def test_unparseable_json_text_that_names_a_credential_is_removed_whole(meta: str) -> None:
    """Text in a column that starts like JSON but does not parse goes to the immutable log:
    any sign of a credential in it removes the whole value (its syntax is anyone's)."""
    outcome = prepare(_with_meta(meta))
    assert isinstance(outcome, Prepared)
    assert b"SEC" not in outcome.payload
    assert orjson.loads(outcome.payload)["after"]["meta"] == REDACTED
    assert outcome.redacted_paths == ["after.meta"]


@pytest.mark.parametrize("meta", ["{not json", '{"a": 1}', "[1, 2]", '[{"b": 2.50}]'])
def test_json_text_without_credentials_is_stored_as_received(meta: str) -> None:
    raw = _with_meta(meta)
    outcome = prepare(raw)
    assert isinstance(outcome, Prepared)
    assert outcome.payload == raw
    assert outcome.redacted_paths == []


def test_a_truncated_line_with_json_text_keeps_no_credential() -> None:
    """Not JSON at all (cut short): the dead letter's textual redaction also reads keys
    whose quotes are escaped, as in JSON carried inside a string."""
    full = _with_meta({"password": "my SEC, x", "ok": 1})
    cut = full[: full.index(b"ok") + 2]
    rejected = prepare(cut)
    assert isinstance(rejected, Rejected)
    assert b"SEC" not in rejected.raw


def test_a_dead_letters_reason_quotes_no_credential() -> None:
    """The reason quotes the value it could not read; when that value carries a credential
    (JSON text in a timestamp column, truncated, its key spelled with an escape), the reason
    is redacted like the value: it is stored, logged and sent to the DLQ topic."""
    row = {**ledger_row(), "created_at": '{"pass\\u0077ord":"hunter2"'}
    rejected = prepare(orjson.dumps(envelope(after=row)))
    assert isinstance(rejected, Rejected)
    assert "created_at" in rejected.reason
    assert "hunter2" not in rejected.reason
    assert REDACTED in rejected.reason
    assert b"hunter2" not in rejected.raw


def test_the_rest_of_a_schema_wrapped_document_loses_its_credentials() -> None:
    """JsonConverter documents are stored whole: a credential column's schema ``default``
    and keys beside ``schema``/``payload`` are redacted too (log and dead letters)."""
    schema = {
        "type": "struct",
        "fields": [
            {
                "type": "struct",
                "field": "after",
                "fields": [
                    {"type": "string", "field": "api_token", "default": "SEC-default"},
                    {"type": "string", "field": "memo", "default": "kept"},
                ],
            }
        ],
    }
    payload = envelope(after=ledger_row(api_token="SEC-value"))
    doc = {"schema": schema, "payload": payload, "password": "SEC-sibling", "x": {"pin": 1}}
    outcome = prepare(orjson.dumps(doc))
    assert isinstance(outcome, Prepared)
    assert b"SEC" not in outcome.payload
    assert b'"default":"kept"' in outcome.payload
    assert sorted(outcome.redacted_paths) == [
        "after.api_token",
        "password",
        "schema.after.api_token.default",
        "x.pin",
    ]
    payload["source"]["table"] = "nope"  # the same document as a dead letter
    rejected = prepare(orjson.dumps(doc))
    assert isinstance(rejected, Rejected)
    assert b"SEC" not in rejected.raw
