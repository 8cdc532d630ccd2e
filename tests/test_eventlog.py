"""The event log (SPEC §3) on SQLite and PostgreSQL: positions, dedupe, immutability, chain."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import DBAPIError

from eventlog.db import make_engine
from eventlog.errors import ChainBroken
from eventlog.ingest import ingest_stream, read_lines
from eventlog.migrate import upgrade
from eventlog.schema import events
from eventlog.store import EventLog, Prepared, Rejected, SourceRef, iter_events, prepare
from eventlog.verify import verify_log
from projections.runner import Runner
from tests.fixtures_eventlog import event, ledger_row, order_row, sample_stream

BO = str(Path(sys.executable).with_name("bo"))


def url_of(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def append_lines(engine: Engine, lines: list[bytes], **source: Any) -> Any:
    return EventLog(engine).append([prepare(raw, SourceRef(**source)) for raw in lines])


def stored(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(events).order_by(events.c.position)))


# ---------------------------------------------------------------- append and read


def test_positions_are_gapless_and_chain_links(migrated: Engine) -> None:
    lines = [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(7)]
    first = append_lines(migrated, lines[:3])
    second = append_lines(migrated, lines[3:])
    assert first.positions == [1, 2, 3]
    assert second.positions == [4, 5, 6, 7]
    assert second.head == 7
    rows = stored(migrated)
    assert [r.position for r in rows] == list(range(1, 8))
    assert rows[0].prev_hash == "0" * 64
    assert all(rows[i].prev_hash == rows[i - 1].hash for i in range(1, len(rows)))
    report = verify_log(migrated)
    assert (report.events, report.head, report.head_hash) == (7, 7, rows[-1].hash)


def test_stored_columns_describe_the_change(migrated: Engine) -> None:
    append_lines(
        migrated,
        [event(after=ledger_row("T1", related_id="O9"), lsn=5)],
        topic="t",
        partition=2,
        offset=40,
    )
    row = stored(migrated)[0]
    assert (row.table_name, row.op, row.entity_key, row.group_key) == (
        "ledger_entries",
        "c",
        "ledger_entries:T1",
        "pair:O9",
    )
    assert (row.source_topic, row.source_partition, row.source_offset) == ("t", 2, 40)
    assert row.source_ts == "2026-01-01T00:00:00.000000Z"
    assert row.ingested_at.endswith("Z")
    assert len(row.ingested_at) == 27
    assert orjson.loads(row.redacted_paths) == []


def test_iter_events_yields_decoded_changes_in_order(migrated: Engine) -> None:
    lines = [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(12)]
    outcomes = [prepare(raw) for raw in lines]
    EventLog(migrated).append(outcomes)
    with migrated.connect() as conn:
        batches = list(iter_events(conn, after=2, upto=11, batch=4))
    assert [len(b) for b in batches] == [4, 4, 1]
    seen = [e for b in batches for e in b]
    assert [e.position for e in seen] == list(range(3, 12))
    assert all(isinstance(o, Prepared) for o in outcomes)
    assert [e.change for e in seen] == [o.change for o in outcomes[2:11]]  # type: ignore[union-attr]


def test_also_runs_in_the_same_transaction(migrated: Engine) -> None:
    def fail(_conn: Connection) -> None:
        raise RuntimeError("offset commit failed")

    with pytest.raises(RuntimeError):
        EventLog(migrated).append([prepare(event())], also=fail)
    assert stored(migrated) == []


# ---------------------------------------------------------------- dedupe


def test_redelivery_with_another_connector_time_is_a_duplicate(migrated: Engine) -> None:
    original = event(after=ledger_row(), top_ts_ms=1)
    redelivered = event(after=ledger_row(), top_ts_ms=2)
    assert original != redelivered
    assert append_lines(migrated, [original]).appended == 1
    again = append_lines(migrated, [redelivered])
    assert (again.appended, again.duplicate, again.positions) == (0, 1, [])
    assert len(stored(migrated)) == 1


def test_same_content_at_another_kafka_coordinate_is_a_duplicate(migrated: Engine) -> None:
    raw = event(after=ledger_row())
    append_lines(migrated, [raw], topic="oltp.public.ledger_entries", partition=0, offset=1)
    again = append_lines(
        migrated, [raw], topic="oltp.public.ledger_entries", partition=3, offset=77
    )
    assert again.duplicate == 1
    assert stored(migrated)[0].source_offset == 1  # the first delivery is what is kept


def test_duplicates_within_one_batch_are_dropped(migrated: Engine) -> None:
    raw = event(after=ledger_row())
    result = append_lines(migrated, [raw, raw, event(after=ledger_row(), top_ts_ms=9)])
    assert (result.appended, result.duplicate) == (1, 2)


def test_a_real_change_is_not_a_duplicate(migrated: Engine) -> None:
    result = append_lines(
        migrated,
        [
            event(after=ledger_row(version=1), lsn=1),
            event(op="u", after=ledger_row(version=2), lsn=2),
            event(op="u", after=ledger_row(version=2), lsn=3),  # same row, later commit
            event(op="d", before={"tx_id": "T1"}, after=None, lsn=4),
        ],
    )
    assert (result.appended, result.duplicate) == (4, 0)


# ---------------------------------------------------------------- immutability


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET op = 'u'",
        "UPDATE {t} SET payload = payload",
        "DELETE FROM {t}",
        "DELETE FROM {t} WHERE position = 1",
    ],
)
def test_log_refuses_update_and_delete(migrated: Engine, statement: str) -> None:
    append_lines(migrated, [event()])
    table = "events" if migrated.dialect.name == "sqlite" else "eventlog.events"
    with pytest.raises(DBAPIError, match="append-only"), migrated.begin() as conn:
        conn.execute(text(statement.format(t=table)))
    assert len(stored(migrated)) == 1


def test_postgres_log_refuses_truncate(pg_url: str, engine_factory: Any) -> None:
    engine = engine_factory(pg_url)
    append_lines(engine, [event()])
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE eventlog.events"))
    assert len(stored(engine)) == 1


# ---------------------------------------------------------------- tamper evidence


def _unlock(conn: Connection) -> str:
    """Drop the immutability triggers, as the owner could; return the table name."""
    if conn.dialect.name == "sqlite":
        conn.execute(text("DROP TRIGGER events_no_update"))
        conn.execute(text("DROP TRIGGER events_no_delete"))
        return "events"
    conn.execute(text("DROP TRIGGER events_immutable ON eventlog.events"))
    return "eventlog.events"


def _flip_byte(conn: Connection, table: str, position: int, offset: int = 10) -> None:
    payload = bytearray(
        conn.execute(text(f"SELECT payload FROM {table} WHERE position = {position}")).scalar_one()
    )
    payload[offset] ^= 0x01
    conn.execute(
        text(f"UPDATE {table} SET payload = :p WHERE position = :n"),
        {"p": bytes(payload), "n": position},
    )


TAMPERS = {
    "one payload byte": lambda c, t: _flip_byte(c, t, 3),
    "one byte inside a JSON string": lambda c, t: _flip_byte(c, t, 3, offset=40),
    "hash column": lambda c, t: c.execute(
        text(f"UPDATE {t} SET hash = replace(hash, substr(hash, 1, 1), 'f') WHERE position = 3")
    ),
    "prev_hash column": lambda c, t: c.execute(
        text(f"UPDATE {t} SET prev_hash = '{'1' * 64}' WHERE position = 3")
    ),
    "derived column": lambda c, t: c.execute(
        text(f"UPDATE {t} SET entity_key = 'ledger_entries:X' WHERE position = 3")
    ),
    "a deleted event": lambda c, t: c.execute(text(f"DELETE FROM {t} WHERE position = 3")),
    "redacted_paths not JSON": lambda c, t: c.execute(
        text(f"UPDATE {t} SET redacted_paths = 'notjson' WHERE position = 3")
    ),
    "redacted_paths not a list": lambda c, t: c.execute(
        text(f"UPDATE {t} SET redacted_paths = '5' WHERE position = 3")
    ),
}


@pytest.mark.parametrize("tamper", sorted(TAMPERS))
def test_verify_names_the_first_bad_position_after_tampering(migrated: Engine, tamper: str) -> None:
    append_lines(migrated, [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(5)])
    verify_log(migrated)
    with migrated.begin() as conn:
        TAMPERS[tamper](conn, _unlock(conn))
    with pytest.raises(ChainBroken) as broken:
        verify_log(migrated)
    assert broken.value.position == 3


# SQLite stores any value in any column: an owner's UPDATE can change a value's type
# (replace() on the payload returns TEXT), which the walk must report, not crash on.
RETYPES = {
    "payload cast to TEXT": "UPDATE events SET payload = CAST(payload AS TEXT) WHERE position = 3",
    "payload edited with replace()": (
        "UPDATE events SET payload = replace(payload, 'T2', 'T9') WHERE position = 3"
    ),
    "event_id as bytes": "UPDATE events SET event_id = X'00' WHERE position = 3",
    "hash as bytes": "UPDATE events SET hash = X'00FF' WHERE position = 3",
}


@pytest.mark.parametrize("retype", sorted(RETYPES))
def test_verify_reports_a_value_of_another_type_on_sqlite(tmp_path: Path, retype: str) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'bo.db'}")
    upgrade(engine)
    append_lines(engine, [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(5)])
    with engine.begin() as conn:
        _unlock(conn)
        conn.execute(text(RETYPES[retype]))
    with pytest.raises(ChainBroken) as broken:
        verify_log(engine)
    assert broken.value.position == 3
    env = dict(os.environ, BO_DATABASE_URL=url_of(engine))
    out = subprocess.run([BO, "log", "verify", "--json"], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert orjson.loads(out.stdout)["position"] == 3
    engine.dispose()


def test_verify_notices_events_cut_from_the_end(migrated: Engine) -> None:
    """A chain alone cannot show a shortened tail; a projection that applied past the new
    head can."""
    append_lines(migrated, [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(5)])
    Runner(migrated, None).run_once()
    verify_log(migrated)
    with migrated.begin() as conn:
        table = _unlock(conn)
        conn.execute(text(f"DELETE FROM {table} WHERE position >= 4"))
    with pytest.raises(ChainBroken, match="applied up to 5") as broken:
        verify_log(migrated)
    assert broken.value.position == 4


def test_bo_log_verify_exits_1_naming_the_position(migrated: Engine) -> None:
    append_lines(migrated, [event(after=ledger_row(f"T{n}"), lsn=n) for n in range(5)])
    env = dict(os.environ, BO_DATABASE_URL=url_of(migrated))
    ok = subprocess.run([BO, "log", "verify", "--json"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert orjson.loads(ok.stdout)["ok"] is True

    with migrated.begin() as conn:
        _flip_byte(conn, _unlock(conn), 4)
    bad = subprocess.run([BO, "log", "verify", "--json"], env=env, capture_output=True, text=True)
    assert bad.returncode == 1
    report = orjson.loads(bad.stdout)
    assert (report["ok"], report["position"]) == (False, 4)
    human = subprocess.run([BO, "log", "verify"], env=env, capture_output=True, text=True)
    assert human.returncode == 1
    assert "position 4" in human.stdout
    assert "Traceback" not in human.stderr


# ---------------------------------------------------------------- the same file, two backends


def test_same_file_gives_the_same_log_on_sqlite_and_postgresql(
    tmp_path: Path, sqlite_url: str, pg_url: str, engine_factory: Any
) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(sample_stream()) + b"\n\nnull\n")
    results = {}
    for url in (sqlite_url, pg_url):
        engine = engine_factory(url)
        log = EventLog(engine)
        with path.open("rb") as stream:
            first = ingest_stream(log, read_lines(stream, path.name), path.name, batch=7)
        with path.open("rb") as stream:
            again = ingest_stream(log, read_lines(stream, path.name), path.name, batch=7)
        assert again.appended == 0
        assert again.duplicate == first.appended + first.duplicate
        rows = [(r.position, r.event_id, r.payload, r.prev_hash, r.hash) for r in stored(engine)]
        results[engine.dialect.name] = (first.summary(), verify_log(engine).head_hash, rows)
    lite, pg = results["sqlite"], results["postgresql"]
    assert lite[0] == pg[0]
    assert lite[0]["appended"] > 0
    assert lite[0]["duplicate"] > 0
    assert lite[0]["dead_letter"] > 0
    assert lite[0]["tombstone"] == 1
    assert lite[1] == pg[1]
    assert [r[:2] + r[3:] for r in lite[2]] == [r[:2] + r[3:] for r in pg[2]]
    assert [bytes(r[2]) for r in lite[2]] == [bytes(r[2]) for r in pg[2]]


# ---------------------------------------------------------------- concurrent appenders


WRITERS, BATCHES, PER_BATCH = 4, 12, 8


def _writer(url: str, writer: int) -> None:
    engine = make_engine(url)
    log = EventLog(engine)
    for batch in range(BATCHES):
        lines = [
            event("payment_orders", after=order_row(f"O{writer}-{batch}-{n}"), lsn=n)
            for n in range(PER_BATCH)
        ]
        log.append([prepare(raw) for raw in lines])
    engine.dispose()


def test_concurrent_writers_never_expose_a_gap(pg_url: str, engine_factory: Any) -> None:
    engine = engine_factory(pg_url)
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_writer, args=(pg_url, w)) for w in range(WRITERS)]
    observations: list[list[int]] = []
    done = threading.Event()

    def read() -> None:
        with engine.connect() as conn:
            while True:
                finished = done.is_set()  # read once more after the writers stopped
                positions = list(
                    conn.execute(select(events.c.position).order_by(events.c.position)).scalars()
                )
                conn.rollback()
                observations.append(positions)
                if finished:
                    return

    reader = threading.Thread(target=read)
    reader.start()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
        assert proc.exitcode == 0
    done.set()
    reader.join(timeout=60)

    total = WRITERS * BATCHES * PER_BATCH
    assert observations[-1] == list(range(1, total + 1))
    partial = [o for o in observations if 0 < len(o) < total]
    assert partial, "the reader never saw the log while it was being written"
    for seen in observations:  # every snapshot is a prefix 1..N: no gap is ever visible
        assert seen == list(range(1, len(seen) + 1))
    assert verify_log(engine).events == total


def test_read_lines_skips_blanks_and_a_bom_and_accepts_crlf(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + event() + b"\r\n\r\n  \n" + event(lsn=2) + b"\n")
    with path.open("rb") as stream:
        lines = list(read_lines(stream, "bom.jsonl"))
    assert [n for n, _ in lines] == [1, 4]
    assert all(isinstance(prepare(raw), Prepared) for _, raw in lines)


def test_a_line_of_other_whitespace_is_input_not_blank(tmp_path: Path) -> None:
    """Only JSON's whitespace makes a line blank: form feeds and vertical tabs are a dead
    letter, never dropped unseen (SPEC §2.4)."""
    path = tmp_path / "odd.jsonl"
    path.write_bytes(event() + b"\n\x0c\n \t \n\x0b\x0b\n")
    with path.open("rb") as stream:
        lines = list(read_lines(stream, "odd.jsonl"))
    assert [n for n, _ in lines] == [1, 2, 4]
    assert [type(prepare(raw)) for _, raw in lines] == [Prepared, Rejected, Rejected]


def test_worker_processes_give_the_same_log(
    tmp_path: Path, sqlite_url: str, engine_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventlog.ingest.CHUNK", 7)  # many chunks, out-of-order completion
    lines = sample_stream(30)
    heads = []
    for workers, url in ((1, sqlite_url), (3, f"sqlite:///{tmp_path / 'parallel.db'}")):
        engine = engine_factory(url)
        result = ingest_stream(
            EventLog(engine), enumerate(lines, 1), "f", batch=20, workers=workers
        )
        heads.append((result.summary(), verify_log(engine).head_hash))
    assert heads[0] == heads[1]


def test_nul_characters_never_break_an_append(migrated: Engine) -> None:
    lines = [
        event(after=ledger_row("T\u0000bad"), lsn=1),
        event(after=ledger_row("T2", related_id="O\u00001"), lsn=2),
        event(after=ledger_row("T3", **{"pass\u0000word": "hunter2", "memo": "a\u0000b"}), lsn=3),
    ]
    result = append_lines(migrated, lines)
    assert (result.appended, result.dead_letter) == (1, 2)
    row = stored(migrated)[0]
    assert row.entity_key == "ledger_entries:T3"
    assert orjson.loads(row.redacted_paths) == ['after["pass\x00word"]']
    assert b"hunter2" not in bytes(row.payload)


def _die(_name: str, _chunk: list[tuple[int, bytes]]) -> list[Any]:
    os._exit(3)  # a worker killed mid-chunk (out of memory, SIGKILL)


def test_a_dead_worker_fails_the_ingest_instead_of_hanging(
    sqlite_url: str, engine_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eventlog.ingest.prepare_slim_chunk", _die)
    engine = engine_factory(sqlite_url)
    with pytest.raises(BrokenProcessPool):
        ingest_stream(EventLog(engine), enumerate(sample_stream(3), 1), "f", workers=2)
    assert stored(engine) == []
