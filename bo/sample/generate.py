"""The demo's bundled sample: a few thousand realistic Debezium change events.

``python -m bo.sample.generate`` rewrites ``bo/sample/events.jsonl``; the same seed
always gives the same bytes (a test checks the committed file is current).

What the sample covers, so every lookup in the demo has something to show:

1. payment orders created, moved through PENDING to SETTLED / FAILED / CANCELLED
   (``version`` and ``updated_at`` on every change);
2. their ledger legs: COMPLETE pairs with the PAYMENT leg first and with the
   RECEIVE leg first, INCOMPLETE pairs (one leg only), CONFLICTs (a leg twice),
   pairs broken by a deleted leg, legs updated PENDING → POSTED, and one update
   delivered before the change it supersedes;
3. entries that are not pairing candidates: FEE legs, ``related_type`` REFUND,
   top-ups and withdrawals with a null ``related_id``;
4. a snapshot (``op r``) of the balances that existed before streaming began;
5. all of Debezium's common encodings: decimals as strings, as JSON numbers and as
   ``org.apache.kafka.connect.data.Decimal`` bytes inside JsonConverter schema
   envelopes; timestamps as ISO-8601 (with and without offset), epoch microseconds and
   ``io.debezium.time.MicroTimestamp`` / ``io.debezium.time.Timestamp``;
6. a credential column (``payer_card_pan``) and a nested ``api_key`` that redaction
   replaces, legacy rows without ``version``/``updated_at``, redelivered duplicates,
   a tombstone, and a handful of malformed lines that become dead letters.
"""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

SEED = 20260301
SAMPLE = Path(__file__).resolve().parent / "events.jsonl"
STATUS_MAP = Path(__file__).resolve().parent / "status_map.json"

_BASE = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURRENCIES = (("KRW", 1000, 900_000), ("KRW", 1000, 90_000), ("USD", 1, 900))
_WALLETS = 60
_ORDERS = 520

Row = dict[str, Any]


@dataclass
class Change:
    """One OLTP change before it is encoded: commit time, arrival delay, rows."""

    table: str
    op: str
    before: Row | None
    after: Row | None
    commit_ms: int
    delay_ms: int = 0
    snapshot: bool = False
    lsn: int = 0
    tx: int = 0
    encoding: str = "string"  # string | number | schema | legacy
    variant: int = 0  # ISO-8601 form: Z, +09:00, no offset
    jitter_ms: int = 0  # connector processing time (top-level ts_ms - commit)


@dataclass
class Builder:
    rng: random.Random
    changes: list[Change] = field(default_factory=list)
    tx_seq: int = 0

    # ------------------------------------------------------------ helpers

    def next_tx_id(self) -> str:
        self.tx_seq += 1
        return f"TX-{self.tx_seq:06d}"

    def wallet(self) -> str:
        return f"W-{self.rng.randrange(1, _WALLETS + 1):04d}"

    def amount(self, currency_index: int) -> Decimal:
        _, low, high = _CURRENCIES[currency_index]
        if currency_index == 2:
            cents = self.rng.randrange(low * 100, high * 100)
            return Decimal(cents).scaleb(-2)
        return Decimal(self.rng.randrange(low, high) // 10 * 10).quantize(Decimal("0.01"))

    def encoding(self) -> str:
        roll = self.rng.random()
        if roll < 0.07:
            return "schema"
        if roll < 0.30:
            return "number"
        return "string"

    def add(self, table: str, op: str, before: Row | None, after: Row | None, at: int) -> Change:
        change = Change(
            table,
            op,
            dict(before) if before else None,
            dict(after) if after else None,
            at,
            encoding=self.encoding(),
            variant=self.rng.randrange(0, 3),
            jitter_ms=self.rng.randrange(40, 900),
        )
        self.changes.append(change)
        return change

    # ------------------------------------------------------------ scenarios

    def snapshot(self) -> None:
        """Opening balances that existed before streaming began (``op r``)."""
        at = _ms(_BASE) - 3_600_000
        for n in range(1, _WALLETS + 1):
            row = self.entry(
                f"W-{n:04d}", "TOPUP", Decimal(self.rng.randrange(100, 5000) * 1000), "KRW", at
            )
            row["status"] = "POSTED"
            change = self.add("ledger_entries", "r", None, row, at)
            change.snapshot = True
            change.encoding = "string"
            at += 7

    def entry(self, wallet: str, kind: str, amount: Decimal, currency: str, at: int) -> Row:
        amount = amount.quantize(Decimal("0.01"))
        return {
            "tx_id": self.next_tx_id(),
            "wallet_id": wallet,
            "type": kind,
            "amount": amount,
            "amount_signed": None,
            "currency": currency,
            "related_id": None,
            "related_type": None,
            "status": "PENDING",
            "created_at": at,
            "updated_at": at,
            "version": 1,
            "memo": None,
        }

    def order(self, n: int) -> None:
        """One payment order and whatever happened to its legs."""
        at = _ms(_BASE) + n * 9_000 + self.rng.randrange(0, 8_000)
        currency_index = self.rng.choice((0, 0, 0, 1, 1, 2))
        currency = _CURRENCIES[currency_index][0]
        amount = self.amount(currency_index)
        payer, receiver = self.wallet(), self.wallet()
        while receiver == payer:
            receiver = self.wallet()
        order_id = f"PO-{n:06d}"
        order: Row = {
            "order_id": order_id,
            "payer_wallet_id": payer,
            "receiver_wallet_id": receiver,
            "amount": amount,
            "currency": currency,
            "status": "CREATED",
            "created_at": at,
            "updated_at": at,
            "settled_at": None,
            "failed_at": None,
            "version": 1,
            "merchant_ref": f"M{self.rng.randrange(10_000, 99_999)}",
        }
        if n % 9 == 0:  # a column that should never have been captured
            order["payer_card_pan"] = f"4111{self.rng.randrange(10**11, 10**12)}"
        if n % 23 == 0:
            order["pg_meta"] = {"provider": "toss", "api_key": f"sk_test_{n:08x}"}
        self.add("payment_orders", "c", None, dict(order), at)

        scenario = self.rng.choices(
            (
                "complete_pay_first",
                "complete_receive_first",
                "incomplete_payment",
                "incomplete_receive",
                "conflict",
                "deleted_leg",
                "failed",
                "cancelled",
                "refund",
            ),
            weights=(46, 14, 9, 4, 4, 4, 8, 4, 4),
        )[0]
        t = at + self.rng.randrange(20, 400)
        if scenario in ("failed", "cancelled"):
            self.order_update(order, "FAILED" if scenario == "failed" else "CANCELLED", t + 900)
            return
        self.order_update(order, "PENDING", t)
        if scenario == "incomplete_receive":  # only the RECEIVE leg ever arrives
            self.leg(order, "RECEIVE", receiver, t + 40)
            return
        if scenario == "complete_receive_first":  # the RECEIVE leg commits first
            receive = self.leg(order, "RECEIVE", receiver, t + 10)
            pay = self.leg(order, "PAYMENT", payer, t + 600)
        else:
            pay = self.leg(order, "PAYMENT", payer, t + 30)
            if scenario == "incomplete_payment":
                return
            receive = self.leg(order, "RECEIVE", receiver, t + 250)
        if scenario == "conflict":  # a retried debit booked twice against the same order
            self.leg(order, "PAYMENT", payer, t + 320)
        if scenario == "refund":  # related to the order, but not a pairing candidate
            refund = self.entry(payer, "RECEIVE", order["amount"], currency, t + 5_000)
            refund.update(related_id=order_id, related_type="REFUND")
            self.add("ledger_entries", "c", None, refund, t + 5_000)
        if n % 5 == 0:  # fees are related to the order too, but are not legs
            fee = self.entry(receiver, "FEE", Decimal(order["amount"]) / 100, currency, t + 260)
            fee.update(related_id=order_id, related_type="PAYMENT_ORDER")
            self.add("ledger_entries", "c", None, fee, t + 260)
        self.post(pay, t + 700)
        self.post(receive, t + 720, reorder=n % 37 == 0)
        self.order_update(order, "SETTLED", t + 800)
        if scenario == "deleted_leg":
            self.add("ledger_entries", "d", receive, None, t + 30_000)

    def leg(self, order: Row, kind: str, wallet: str, at: int) -> Row:
        row = self.entry(wallet, kind, Decimal(order["amount"]), order["currency"], at)
        row["related_id"] = order["order_id"]
        if self.rng.random() < 0.6:
            row["related_type"] = "PAYMENT_ORDER"
        if self.rng.random() < 0.5:
            row["amount_signed"] = -row["amount"] if kind == "PAYMENT" else row["amount"]
        self.add("ledger_entries", "c", None, row, at)
        return row

    def post(self, row: Row, at: int, *, reorder: bool = False) -> None:
        """PENDING → POSTED (version 2), then a memo edit (version 3)."""
        before = dict(row)
        row.update(status="POSTED", updated_at=at, version=2)
        first = self.add("ledger_entries", "u", before, dict(row), at)
        if not reorder:
            return
        before = dict(row)
        row.update(memo="reconciled", updated_at=at + 40, version=3)
        second = self.add("ledger_entries", "u", before, dict(row), at + 40)
        first.delay_ms = 400  # version 2 arrives after version 3: LWW must keep version 3
        second.delay_ms = 0

    def order_update(self, order: Row, status: str, at: int) -> None:
        before = dict(order)
        order.update(status=status, updated_at=at, version=int(order["version"]) + 1)
        if status == "SETTLED":
            order["settled_at"] = at
        if status in ("FAILED", "CANCELLED"):
            order["failed_at"] = at
        self.add("payment_orders", "u", before, dict(order), at)

    def unpaired(self, n: int) -> None:
        """Top-ups and withdrawals: real ledger entries with no related order."""
        at = _ms(_BASE) + n * 41_000 + 17
        kind = "TOPUP" if n % 3 else "WITHDRAWAL"
        row = self.entry(self.wallet(), kind, self.amount(0), "KRW", at)
        row["status"] = "POSTED"
        change = self.add("ledger_entries", "c", None, row, at)
        if n % 4 == 0:  # rows from a legacy writer: neither version nor updated_at
            change.encoding = "legacy"


def _ms(value: datetime) -> int:
    return int((value - _EPOCH).total_seconds() * 1000)


# ---------------------------------------------------------------- encoding

_LEDGER_COLUMNS = (
    ("tx_id", "string"),
    ("wallet_id", "string"),
    ("type", "string"),
    ("amount", "decimal"),
    ("amount_signed", "decimal"),
    ("currency", "string"),
    ("related_id", "string"),
    ("related_type", "string"),
    ("status", "string"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
    ("version", "int64"),
    ("memo", "string"),
)
_ORDER_COLUMNS = (
    ("order_id", "string"),
    ("payer_wallet_id", "string"),
    ("receiver_wallet_id", "string"),
    ("amount", "decimal"),
    ("currency", "string"),
    ("status", "string"),
    ("created_at", "timestamp"),
    ("updated_at", "timestamp"),
    ("settled_at", "timestamp"),
    ("failed_at", "timestamp"),
    ("version", "int64"),
    ("merchant_ref", "string"),
)
_COLUMNS = {"ledger_entries": _LEDGER_COLUMNS, "payment_orders": _ORDER_COLUMNS}
_TIMESTAMPS = {c for cols in _COLUMNS.values() for c, kind in cols if kind == "timestamp"}
_DECIMALS = {c for cols in _COLUMNS.values() for c, kind in cols if kind == "decimal"}


def _iso(ms: int, variant: int) -> str:
    value = _EPOCH + timedelta(milliseconds=ms)
    if variant == 1:  # ZonedTimestamp with an offset (Asia/Seoul)
        return (value + timedelta(hours=9)).strftime("%Y-%m-%dT%H:%M:%S.%f+09:00")
    if variant == 2:  # no offset: UTC
        return value.strftime("%Y-%m-%dT%H:%M:%S.%f")
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _connect_decimal(value: Decimal, scale: int = 2) -> str:
    unscaled = int(value.scaleb(scale).to_integral_value())
    size = max(1, (unscaled.bit_length() + 8) // 8)
    return base64.b64encode(unscaled.to_bytes(size, "big", signed=True)).decode()


def _plain_row(row: Row, change: Change) -> Row:
    out: Row = {}
    for key, value in row.items():
        if key in _TIMESTAMPS and value is not None:
            out[key] = value * 1000 if change.encoding == "number" else _iso(value, change.variant)
        elif key in _DECIMALS and value is not None:
            out[key] = value if change.encoding == "number" else format(value, "f")
        else:
            out[key] = value
    if change.encoding == "legacy":
        out.pop("version", None)
        out.pop("updated_at", None)
    return out


def _schema_row(row: Row, table: str) -> Row:
    out: Row = {}
    for column, kind in _COLUMNS[table]:
        value = row.get(column)
        if value is None:
            out[column] = None
        elif kind == "decimal":
            out[column] = _connect_decimal(Decimal(value))
        elif kind == "timestamp":
            out[column] = value * 1000  # MicroTimestamp
        else:
            out[column] = value
    return out


def _field_schema(column: str, kind: str) -> Row:
    if kind == "decimal":
        return {
            "type": "bytes",
            "optional": True,
            "name": "org.apache.kafka.connect.data.Decimal",
            "version": 1,
            "parameters": {"scale": "2", "connect.decimal.precision": "18"},
            "field": column,
        }
    if kind == "timestamp":
        return {
            "type": "int64",
            "optional": True,
            "name": "io.debezium.time.MicroTimestamp",
            "version": 1,
            "field": column,
        }
    return {"type": kind, "optional": column not in ("tx_id", "order_id"), "field": column}


def _envelope_schema(table: str) -> Row:
    columns = [_field_schema(c, k) for c, k in _COLUMNS[table]]
    value = f"oltp.public.{table}.Value"
    source = [
        {"type": "string", "optional": False, "field": f}
        for f in ("version", "connector", "name", "db", "schema", "table")
    ] + [
        {
            "type": "int64",
            "optional": False,
            "name": "io.debezium.time.Timestamp",
            "field": "ts_ms",
        },
        {"type": "string", "optional": True, "field": "snapshot"},
        {"type": "int64", "optional": True, "field": "txId"},
        {"type": "int64", "optional": True, "field": "lsn"},
    ]
    return {
        "type": "struct",
        "optional": False,
        "name": f"oltp.public.{table}.Envelope",
        "version": 1,
        "fields": [
            {
                "type": "struct",
                "optional": True,
                "name": value,
                "field": "before",
                "fields": columns,
            },
            {
                "type": "struct",
                "optional": True,
                "name": value,
                "field": "after",
                "fields": columns,
            },
            {"type": "struct", "optional": False, "field": "source", "fields": source},
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
        ],
    }


def encode(change: Change, *, redelivered_ms: int = 0) -> bytes:
    """One Debezium record value as JSON bytes (a redelivery differs only in ``ts_ms``)."""
    source = {
        "version": "2.7.3.Final",
        "connector": "postgresql",
        "name": "oltp",
        "ts_ms": change.commit_ms,
        "snapshot": "true" if change.snapshot else "false",
        "db": "payments",
        "schema": "public",
        "table": change.table,
        "txId": change.tx,
        "lsn": change.lsn,
    }
    arrived = change.commit_ms + change.delay_ms + change.jitter_ms + redelivered_ms
    if change.encoding == "schema":
        payload = {
            "before": _schema_row(change.before, change.table) if change.before else None,
            "after": _schema_row(change.after, change.table) if change.after else None,
            "source": source,
            "op": change.op,
            "ts_ms": arrived,
        }
        doc: Row = {"schema": _envelope_schema(change.table), "payload": payload}
    else:
        doc = {
            "before": _plain_row(change.before, change) if change.before else None,
            "after": _plain_row(change.after, change) if change.after else None,
            "source": source,
            "op": change.op,
            "ts_ms": arrived,
        }
    return orjson.dumps(doc, default=_number)


def _number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f").encode())  # exact text, never a float
    raise TypeError(type(value).__name__)


# Lines a real pipeline sees now and then; each becomes a dead letter with a reason.
MALFORMED: tuple[bytes, ...] = (
    b'{"before":null,"after":{"tx_id":"TX-BROKEN-1"',  # cut off mid-record
    b"connector restarted: offsets committed",  # not JSON
    b'["ledger_entries","c"]',  # not an object
    b'{"op":"x","source":{"table":"ledger_entries","ts_ms":1772409600000},'
    b'"after":{"tx_id":"TX-BROKEN-2"}}',  # unknown op
    b'{"op":"c","source":{"table":"users","ts_ms":1772409600000},'
    b'"after":{"user_id":"U1","email":"ops@example.com","password":"hunter2"}}',  # unknown table
    b'{"op":"t","source":{"table":"ledger_entries","ts_ms":1772409600000}}',  # truncate
    b'{"op":"c","source":{"table":"ledger_entries","ts_ms":1772409600000},'
    b'"after":{"wallet_id":"W-0001","type":"PAYMENT","amount":"10.00"}}',  # no primary key
    b'{"op":"c","source":{"table":"ledger_entries","ts_ms":1772409600000},'
    b'"after":{"tx_id":"TX-BROKEN-3","wallet_id":"W-0001","type":"PAYMENT",'
    b'"amount":"12,50","currency":"KRW"}}',  # undecodable amount
    b'{"op":"c","source":{"table":"payment_orders","ts_ms":1772409600000},'
    b'"after":{"order_id":"PO-BROKEN-4","amount":"10.00","created_at":"yesterday"}}',
    b'{"op":"d","source":{"table":"payment_orders","ts_ms":1772409600000},'
    b'"before":null}',  # before missing for a delete
)


def generate(seed: int = SEED) -> list[bytes]:
    """Every line of the sample, in arrival order."""
    rng = random.Random(seed)
    builder = Builder(rng)
    builder.snapshot()
    for n in range(1, _ORDERS + 1):
        builder.order(n)
    for n in range(1, 120):
        builder.unpaired(n)
    changes = builder.changes
    # commit order defines lsn and txId, as in the OLTP write-ahead log
    for tx, change in enumerate(sorted(changes, key=lambda c: c.commit_ms), start=1):
        change.tx = 90_000 + tx
        change.lsn = 2_400_000_000 + tx * 312
    arrival = sorted(changes, key=lambda c: c.commit_ms + c.delay_ms)
    lines = [encode(change) for change in arrival]
    for index in sorted(rng.sample(range(len(arrival)), 24), reverse=True):
        # at-least-once delivery: the same change again, processed 30 s later
        again = encode(arrival[index], redelivered_ms=30_000)
        lines.insert(min(len(lines), index + rng.randrange(5, 60)), again)
    lines.insert(len(lines) // 3, b"null")  # a Kafka tombstone
    step = len(lines) // (len(MALFORMED) + 1)
    for k, bad in enumerate(MALFORMED, start=1):
        lines.insert(k * step, bad)
    return lines


def write(path: Path = SAMPLE, seed: int = SEED) -> int:
    """Write the sample file; return the number of lines."""
    lines = generate(seed)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return len(lines)


def write_status_map(path: Path = STATUS_MAP) -> None:
    """The sample's status mapping (``BO_STATUS_MAP``) for payment_orders version 2."""
    mapping = {
        "SUCCESS": ["SETTLED"],
        "FAIL": ["FAILED", "CANCELLED"],
        "IN_PROGRESS": ["CREATED", "PENDING"],
    }
    path.write_bytes(orjson.dumps(mapping, option=orjson.OPT_INDENT_2) + b"\n")


def main() -> None:
    count = write()
    write_status_map()
    print(f"wrote {count} lines to {SAMPLE}")


if __name__ == "__main__":
    main()
