"""Dead letters (SPEC §2.4): every malformed class gets a reason, ingest goes on; the CLI."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, insert, select

from eventlog import decode
from eventlog.deadletters import (
    count_dead_letters,
    list_dead_letters,
    retry_dead_letters,
    show_dead_letter,
)
from eventlog.errors import UsageError
from eventlog.ingest import ingest_stream
from eventlog.schema import dead_letters, events
from eventlog.store import EventLog
from tests.fixtures_eventlog import envelope, event, ledger_row

BO = str(Path(sys.executable).with_name("bo"))


def _without(column: str) -> bytes:
    row = ledger_row()
    del row[column]
    return event(after=row)


def _source_without_table() -> bytes:
    doc = envelope(after=ledger_row())
    del doc["source"]["table"]
    return orjson.dumps(doc)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not JSON": (b'{"op": "c", "after": {', "not JSON"),
    "not JSON (binary)": (b"\x00\x01\xff\xfe", "not JSON"),
    "not an object (array)": (b"[1, 2, 3]", "not an object (JSON array)"),
    "not an object (string)": (b'"hello"', "not an object (JSON string)"),
    "not an object (number)": (b"42", "not an object (JSON number)"),
    "unknown op": (event(op="x"), "unknown op 'x'"),
    "missing op": (
        orjson.dumps({"after": {}, "source": {"table": "ledger_entries"}}),
        "unknown op",
    ),
    "unknown table": (event("users"), "unknown table 'users'"),
    "no source table": (_source_without_table(), "unknown table: source.table missing"),
    "missing primary key": (_without("tx_id"), "missing primary key tx_id"),
    "empty primary key": (event(after=ledger_row(tx_id="")), "missing primary key tx_id"),
    "boolean primary key": (
        event(after=ledger_row(tx_id=True)),
        "undecodable primary key tx_id: expected a string or an integer, got bool",
    ),
    "fractional primary key": (
        b'{"op":"c","before":null,"after":{"tx_id":1.5,"wallet_id":"W","type":"PAYMENT",'
        b'"amount":"1","currency":"KRW","created_at":"2026-01-01T00:00:00Z"},'
        b'"source":{"table":"ledger_entries","ts_ms":1}}',
        "undecodable primary key tx_id: expected a string or an integer",
    ),
    "after missing for c": (event(op="c", after=None), "after missing for op c"),
    "after missing for u": (event(op="u", after=None), "after missing for op u"),
    "after missing for r": (event(op="r", after=None), "after missing for op r"),
    "before missing for d": (event(op="d", before=None, after=None), "before missing for op d"),
    "undecodable amount": (event(after=ledger_row(amount="12,50")), "undecodable amount"),
    "undecodable timestamp": (
        event(after=ledger_row(created_at="31/12/2025")),
        "undecodable timestamp created_at",
    ),
    "value over 1 MiB": (event(after=ledger_row(memo="x" * (1024 * 1024))), "value over 1 MiB"),
    "op t (truncate)": (event(op="t", after=None), "truncate event (op t) is not supported"),
}


def ingest(engine: Engine, lines: list[bytes], name: str = "bad.jsonl") -> Any:
    return ingest_stream(EventLog(engine), enumerate(lines, start=1), name)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_class_is_dead_lettered_and_ingest_continues(
    sqlite_url: str, engine_factory: Any, case: str
) -> None:
    migrated = engine_factory(sqlite_url)
    raw, reason = MALFORMED[case]
    good_before = event(after=ledger_row("T-before"), lsn=1)
    good_after = event(after=ledger_row("T-after"), lsn=2)
    result = ingest(migrated, [good_before, raw, good_after])
    assert (result.appended, result.dead_letter) == (2, 1)

    [letter] = list_dead_letters(migrated)
    assert letter["reason"].startswith(reason), letter["reason"]
    assert (letter["source_file"], letter["source_line"], letter["status"]) == (
        "bad.jsonl",
        2,
        "open",
    )
    assert letter["received_at"].endswith("Z")
    shown = show_dead_letter(migrated, letter["id"])
    assert shown["raw_bytes"] == len(raw)  # nothing to redact: the bytes are kept whole
    if "raw_base64" in shown:  # not UTF-8: the exact bytes are shown too
        assert base64.b64decode(shown["raw_base64"]) == raw
    with migrated.connect() as conn:
        kept = conn.execute(select(dead_letters.c.raw)).scalar_one()
    assert bytes(kept) == raw


def test_every_malformed_class_in_one_file_on_both_backends(migrated: Engine) -> None:
    cases = sorted(MALFORMED)
    lines: list[bytes] = []
    for n, case in enumerate(cases):
        lines += [MALFORMED[case][0], event(after=ledger_row(f"T{n}"), lsn=n)]
    result = ingest(migrated, lines)
    assert (result.appended, result.dead_letter, result.dead_letter_repeated) == (
        len(cases),
        len(cases),
        0,
    )
    letters = list_dead_letters(migrated, limit=1000)
    assert [d["source_line"] for d in letters] == list(range(1, 2 * len(cases), 2))
    for case, letter in zip(cases, letters, strict=True):
        assert letter["reason"].startswith(MALFORMED[case][1]), (case, letter["reason"])


def test_dead_letter_keeps_kafka_coordinates(migrated: Engine) -> None:
    from eventlog.store import SourceRef, prepare

    EventLog(migrated).append([prepare(b"nope", SourceRef("oltp.public.x", 3, 1234))])
    [letter] = list_dead_letters(migrated)
    assert (letter["source_topic"], letter["source_partition"], letter["source_offset"]) == (
        "oltp.public.x",
        3,
        1234,
    )


def test_dead_letter_raw_is_redacted(migrated: Engine) -> None:
    bad = event(after=ledger_row(amount="??", password="hunter2"))
    truncated = b'{"after": {"password": "hunter3", "tx_id": '
    ingest(migrated, [bad, truncated])
    letters = [show_dead_letter(migrated, d["id"]) for d in list_dead_letters(migrated)]
    assert len(letters) == 2
    for letter in letters:
        assert "hunter" not in letter["raw"]
        assert "[REDACTED]" in letter["raw"]


def test_reingesting_a_bad_file_does_not_pile_up_dead_letters(migrated: Engine) -> None:
    lines = [b"not json", b"not json", event("users"), event(after=ledger_row())]
    first = ingest(migrated, lines)
    assert (first.dead_letter, first.dead_letter_repeated) == (3, 1)
    second = ingest(migrated, lines)
    assert (second.appended, second.duplicate) == (0, 1)
    assert (second.dead_letter, second.dead_letter_repeated) == (3, 3)
    assert count_dead_letters(migrated) == {"open": 2}


def test_retry_appends_what_now_parses_after_a_fix(
    migrated: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    refunds = event("refunds", after={"refund_id": "R1", "amount": "5.00"})
    ingest(migrated, [refunds, b"still broken"])
    letters = list_dead_letters(migrated)
    assert [d["reason"] for d in letters] == ["unknown table 'refunds'", letters[1]["reason"]]

    # the fix: the service now understands the refunds table
    spec = decode.TableSpec(
        key="refund_id",
        decimals=frozenset({"amount"}),
        timestamps=frozenset(),
        integers=frozenset(),
        texts=frozenset({"refund_id"}),
        group=None,
    )
    monkeypatch.setitem(decode.TABLES, "refunds", spec)
    result = retry_dead_letters(migrated, None)
    assert result.summary() == {
        "retried": 2,
        "resolved": 1,
        "still_failing": 1,
        "appended": 1,
        "duplicate": 0,
    }
    assert count_dead_letters(migrated) == {"open": 1, "resolved": 1}
    resolved = list_dead_letters(migrated, status="resolved")[0]
    assert resolved["resolved_position"] == 1
    assert resolved["retried_at"] is not None
    with migrated.connect() as conn:
        assert conn.execute(select(events.c.entity_key)).scalar_one() == "refunds:R1"

    again = retry_dead_letters(migrated, None)
    assert (again.retried, again.resolved, again.still_failing) == (1, 0, 1)


def test_retry_does_not_append_input_whose_defect_redaction_removed(migrated: Engine) -> None:
    """Input that was not JSON only inside a credential value: the kept copy is redacted
    and parses, the input never did — a retry with nothing fixed appends nothing."""
    good = event(after=ledger_row("T9"))
    defects = [b'"password":NaN', b'"password":"ab\xff\xfe"', b'"password": SEKRIT']
    lines = [good.replace(b'"tx_id":"T9"', b'"tx_id":"T9",' + d, 1) for d in defects]
    first = ingest(migrated, lines)
    assert (first.appended, first.dead_letter) == (0, 3)
    for _ in range(2):  # the explanation is added once
        result = retry_dead_letters(migrated, None)
        assert (result.resolved, result.appended, result.still_failing) == (0, 0, 3)
    reasons = [d["reason"] for d in list_dead_letters(migrated)]
    assert all(r.startswith("not JSON") and r.count("not retryable") == 1 for r in reasons)
    with migrated.connect() as conn:
        assert conn.execute(select(events.c.position)).first() is None


def test_retry_of_an_unknown_or_resolved_id_is_a_usage_error(migrated: Engine) -> None:
    with pytest.raises(UsageError, match="no open dead letter with id 99"):
        retry_dead_letters(migrated, [99])
    with pytest.raises(UsageError, match="no dead letter with id 99"):
        show_dead_letter(migrated, 99)


# ---------------------------------------------------------------- the CLI


def bo(engine: Engine, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, BO_DATABASE_URL=engine.url.render_as_string(hide_password=False))
    return subprocess.run([BO, *args], env=env, capture_output=True, text=True, timeout=120)


def _plant_fixed_letter(engine: Engine) -> None:
    """A dead letter whose bytes parse today (recorded by an older, stricter version)."""
    with engine.begin() as conn:
        conn.execute(
            insert(dead_letters).values(
                received_at="2026-01-01T00:00:00.000000Z",
                reason="unknown table 'ledger_entries' (before the fix)",
                raw=event(after=ledger_row("T-fixed")),
                status="open",
                source_file="old.jsonl",
                source_line=9,
            )
        )


def test_dead_letters_cli_list_show_retry(migrated: Engine, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"not json\n" + event("users") + b"\n")
    ingested = bo(migrated, "ingest", "--json", "--no-project", str(bad))
    assert ingested.returncode == 0, ingested.stderr
    assert json.loads(ingested.stdout)["dead_letter"] == 2
    _plant_fixed_letter(migrated)

    listed = bo(migrated, "dead-letters", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["count"] == 3
    first, second, fixed = data["items"]
    assert first["reason"].startswith("not JSON")
    assert second["reason"] == "unknown table 'users'"
    assert "raw" not in first  # the list is a summary; show has the bytes

    shown = bo(migrated, "dead-letters", "show", str(second["id"]), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["raw"] == event("users").decode()

    retried = bo(migrated, "dead-letters", "retry", str(fixed["id"]), "--json")
    assert retried.returncode == 0, retried.stderr
    summary = json.loads(retried.stdout)
    assert (summary["retried"], summary["resolved"], summary["appended"]) == (1, 1, 1)

    everything = bo(migrated, "dead-letters", "retry", "--all", "--json")
    assert everything.returncode == 0, everything.stderr
    assert json.loads(everything.stdout)["still_failing"] == 2

    assert [d["status"] for d in list_dead_letters(migrated, status=None)] == [
        "open",
        "open",
        "resolved",
    ]


USAGE_ERRORS = [
    (["dead-letters", "show", "999"], "no dead letter with id 999"),
    (["dead-letters", "retry"], "give a dead letter id or --all"),
    (["dead-letters", "retry", "5", "--all"], "give a dead letter id or --all"),
    (["dead-letters", "list", "--status", "weird"], "--status must be open, resolved or all"),
    (["dead-letters", "show", "abc"], "letter_id"),
]


def test_dead_letters_cli_usage_errors_are_one_line_exit_2(
    sqlite_url: str, engine_factory: Any
) -> None:
    engine = engine_factory(sqlite_url)
    with ThreadPoolExecutor(max_workers=len(USAGE_ERRORS)) as pool:
        outs = list(pool.map(lambda case: bo(engine, *case[0]), USAGE_ERRORS))
    for (args, message), out in zip(USAGE_ERRORS, outs, strict=True):
        assert out.returncode == 2, (args, out.stderr)
        assert message in out.stderr, args
        assert len(out.stderr.strip().splitlines()) == 1, args
        assert "Traceback" not in out.stderr
