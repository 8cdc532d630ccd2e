"""Lookups over the serving projections (SPEC §6), on SQLite and PostgreSQL.

Data goes through the real path: Debezium events → EventLog.append → projection runner.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta

from eventlog.timeutil import parse_ts
from tests.fixtures_api import (  # noqa: F401
    ApiEnv,
    change,
    client,
    env_fixture,
    ledger,
    order,
    pair_world,
    sqlite_env_fixture,
)

READ, AUDIT = "ADMIN_READ", "ADMIN_AUDIT"


def test_tx_with_complete_pair_has_every_field(env: ApiEnv) -> None:
    pair_world(env)
    with client(env.app()) as c:
        r = c.get("/admin/tx/T1", headers=env.headers(READ))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {
        "tx_id",
        "wallet_id",
        "type",
        "amount",
        "amount_signed",
        "currency",
        "status",
        "related_id",
        "related_type",
        "created_at",
        "updated_at",
        "deleted",
        "pairing_status",
        "paired_tx_id",
        "payer_wallet_id",
        "receiver_wallet_id",
        "payment_order",
        "data_lag_sec",
        "synced_through",
        "log_position",
    }
    assert body["amount"] == "10.00"
    assert body["amount_signed"] == "-10.00"
    assert body["related_type"] == "PAYMENT_ORDER"  # fallback: the order is known
    assert body["pairing_status"] == "COMPLETE"
    assert body["paired_tx_id"] == "T2"
    assert (body["payer_wallet_id"], body["receiver_wallet_id"]) == ("WP", "WR")
    assert body["payment_order"]["order_id"] == "O1"
    assert body["payment_order"]["status"] == "SETTLED"
    assert body["payment_order"]["status_group"] == "UNKNOWN"
    assert body["created_at"] == "2026-01-01T00:00:00.000000Z"
    assert body["data_lag_sec"] == 0.0
    assert body["log_position"] == 6
    assert body["synced_through"] == "2026-01-01T00:00:04.000000Z"
    assert r.headers["content-type"] == "application/json"


def test_related_type_and_pairing_fallbacks(env: ApiEnv) -> None:
    pair_world(env)
    with client(env.app()) as c:
        t3 = c.get("/admin/tx/T3", headers=env.headers(READ)).json()
        t4 = c.get("/admin/tx/T4", headers=env.headers(READ)).json()
        t5 = c.get("/admin/tx/T5", headers=env.headers(READ)).json()
    assert t3["related_type"] == "UNKNOWN"
    assert t3["pairing_status"] == "INCOMPLETE"
    assert t3["paired_tx_id"] is None
    assert t3["payment_order"] is None
    assert (t3["payer_wallet_id"], t3["receiver_wallet_id"]) == ("WX", None)
    assert t4["related_type"] == "REFUND"
    assert t4["pairing_status"] == "UNKNOWN"  # not a pairing candidate
    assert t4["payment_order"] is None
    assert t5["related_type"] is None
    assert t5["related_id"] is None
    assert t5["pairing_status"] == "UNKNOWN"
    assert (t5["payer_wallet_id"], t5["receiver_wallet_id"]) == (None, None)


def test_wallets_fall_back_to_the_order_and_incomplete_has_no_partner(
    sqlite_env: ApiEnv,
) -> None:
    env = sqlite_env
    env.ingest(
        change("payment_orders", order("O2", payer="WP", receiver="WR")),
        change("ledger_entries", ledger("T1", wallet="WP", type="PAYMENT", related_id="O2")),
    )
    with client(env.app()) as c:
        body = c.get("/admin/tx/T1", headers=env.headers(READ)).json()
    assert body["pairing_status"] == "INCOMPLETE"
    assert body["paired_tx_id"] is None
    assert body["payer_wallet_id"] == "WP"  # from the PAYMENT leg
    assert body["receiver_wallet_id"] == "WR"  # no RECEIVE leg: from the order


def test_conflict_and_deleted_leg(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    env.ingest(
        change("ledger_entries", ledger("A", type="PAYMENT", related_id="O3")),
        change("ledger_entries", ledger("B", type="PAYMENT", related_id="O3", wallet="W9")),
        change("ledger_entries", ledger("C", type="RECEIVE", related_id="O3", wallet="W2")),
    )
    with client(env.app()) as c:
        a = c.get("/admin/tx/A", headers=env.headers(READ)).json()
        assert a["pairing_status"] == "CONFLICT"
        assert a["paired_tx_id"] is None
        env.ingest(change("ledger_entries", ledger("B", related_id="O3", version=2), op="d", ts=9))
        b = c.get("/admin/tx/B", headers=env.headers(READ)).json()
        a = c.get("/admin/tx/A", headers=env.headers(READ)).json()
    assert b["deleted"] is True
    assert b["pairing_status"] == "UNKNOWN"
    assert b["deleted_at"] == "2026-01-01T00:00:09.000000Z"
    assert a["pairing_status"] == "COMPLETE"
    assert a["paired_tx_id"] == "C"


def test_payment_order_lookup(env: ApiEnv) -> None:
    pair_world(env)
    env.ingest(
        change(
            "ledger_entries",
            ledger(
                "T0",
                wallet="WR",
                type="RECEIVE",
                related_id="O4",
                created_at="2026-01-02T00:00:00Z",
            ),
        ),
        change(
            "ledger_entries",
            ledger(
                "T9",
                wallet="WP",
                type="PAYMENT",
                related_id="O4",
                created_at="2026-01-01T00:00:00Z",
            ),
        ),
    )
    with client(env.app()) as c:
        o1 = c.get("/admin/payment-orders/O1", headers=env.headers(READ))
        o4 = c.get("/admin/payment-orders/O4", headers=env.headers(READ))
        gone = c.get("/admin/payment-orders/NOPE", headers=env.headers(READ))
    assert o1.status_code == 200
    body = o1.json()
    assert body["order"]["order_id"] == "O1"
    assert [leg["tx_id"] for leg in body["legs"]] == ["T1", "T2"]
    assert body["pairing_status"] == "COMPLETE"
    assert (body["payment_tx_id"], body["receive_tx_id"]) == ("T1", "T2")
    assert {"data_lag_sec", "synced_through", "log_position"} <= set(body)
    # legs without a known order: still found, ordered by (created_at, tx_id)
    body = o4.json()
    assert o4.status_code == 200
    assert body["order"] is None
    assert [leg["tx_id"] for leg in body["legs"]] == ["T9", "T0"]
    assert body["pairing_status"] == "COMPLETE"
    assert gone.status_code == 404
    assert gone.headers["content-type"] == "application/problem+json"
    assert gone.json()["data_lag_sec"] == 0.0


def test_not_found_is_a_problem_with_lag(env: ApiEnv) -> None:
    pair_world(env)
    with client(env.app()) as c:
        r = c.get("/admin/tx/NOPE", headers=env.headers(READ))
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert problem["status"] == 404
    assert problem["title"] == "Not Found"
    assert "data_lag_sec" in problem


BAD_IDS = [
    "/admin/tx/" + "x" * 129,
    "/admin/tx/bad%20id",
    "/admin/tx/%C3%A9",
    "/admin/tx/%00",
    "/admin/payment-orders/o%3Bdrop",
    "/admin/wallets/w%27/tx",
]


def test_bad_ids_are_422(sqlite_env: ApiEnv) -> None:
    with client(sqlite_env.app()) as c:
        for path in BAD_IDS:
            r = c.get(path, headers=sqlite_env.headers(READ))
            assert r.status_code == 422, (path, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        # a decoded slash, an empty id or a trailing slash is an invalid id, not a new path
        for path in (
            "/admin/tx/a%2Fb",
            "/admin/tx/a/b",
            "/admin/tx/",
            "/admin/tx/T1/",
            "/admin/payment-orders/",
            "/admin/payment-orders/O1%2F..",
            "/admin/wallets//tx",
            "/admin/wallets/a%2Fb/tx",
        ):
            r = c.get(path, headers=sqlite_env.headers(READ))
            assert r.status_code == 422, (path, r.text)
        # a 60,000-character id is refused without echoing it whole (the audit keeps 2,048)
        r = c.get("/admin/tx/" + "A" * 60_000, headers=sqlite_env.headers(READ))
        assert r.status_code == 422
        assert len(r.json()["instance"]) == 2048
        assert len(r.content) < 4096
        paths = c.get("/openapi.json").json()["paths"]
    assert "/admin/tx/{tx_id}" in paths  # the documented template, without its convertor


def test_ids_with_all_allowed_characters(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    weird = "A-z.0_9:x"
    env.ingest(change("ledger_entries", ledger(weird)))
    with client(env.app()) as c:
        r = c.get(f"/admin/tx/{weird}", headers=env.headers(READ))
    assert r.status_code == 200
    assert r.json()["tx_id"] == weird


def _wallet_world(env: ApiEnv) -> None:
    lines = [
        change(
            "ledger_entries",
            ledger(f"T{i:02d}", wallet="WW", created_at=f"2026-01-01T00:00:{i // 2:02d}Z"),
            ts=i,
        )
        for i in range(12)
    ]
    lines.append(change("ledger_entries", ledger("OTHER", wallet="ZZ")))
    env.ingest(*lines)
    deleted = ledger("T05", wallet="WW", version=2, created_at="2026-01-01T00:00:02Z")
    env.ingest(change("ledger_entries", deleted, op="d", ts=50))


def test_wallet_pagination_newest_first(env: ApiEnv) -> None:
    _wallet_world(env)
    seen: list[str] = []
    cursor = None
    with client(env.app()) as c:
        for _ in range(10):
            params: dict[str, str | int] = {"limit": 4}
            if cursor:
                params["cursor"] = cursor
            page = c.get("/admin/wallets/WW/tx", params=params, headers=env.headers(READ)).json()
            seen += [item["tx_id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        everything = c.get(
            "/admin/wallets/WW/tx",
            params={"include_deleted": "true", "limit": 200},
            headers=env.headers(READ),
        ).json()
    expected = [f"T{i:02d}" for i in reversed(range(12)) if i != 5]
    assert seen == expected  # (created_at, tx_id) descending, deleted left out, no repeats
    assert [i["tx_id"] for i in everything["items"]] == [f"T{i:02d}" for i in reversed(range(12))]
    assert everything["next_cursor"] is None


def test_wallet_since_until(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    _wallet_world(env)
    with client(env.app()) as c:
        page = c.get(
            "/admin/wallets/WW/tx",
            params={"since": "2026-01-01T00:00:02Z", "until": "2026-01-01T09:00:04+09:00"},
            headers=env.headers(READ),
        ).json()
    assert [i["tx_id"] for i in page["items"]] == ["T07", "T06", "T04"]


BAD_WALLET_PARAMS: list[dict[str, object]] = [
    {"limit": 0},
    {"limit": 201},
    {"limit": "x"},
    {"cursor": "not-a-cursor"},
    {"cursor": "WzEsMiwzXQ"},  # valid base64 of [1,2,3], not ours
    # the right shape, values the listing never gives: not a stored timestamp; an offset
    # (compared as text it would page wrongly); an empty id
    {"cursor": "WyI5OTk5LTk5LTk5VDk5Ojk5Ojk5WiIsICJhIl0"},  # ["9999-99-99T99:99:99Z", "a"]
    {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwKzA5OjAwIiwgImEiXQ"},  # [".. +09:00", "a"]
    {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwLjAwMDAwMFoiLCAiIl0"},  # [".. Z", ""]
    {"since": "yesterday"},
    {"since": "2026-01-01T00:00:00"},  # no offset
    {"until": "1700000000"},
    {"include_deleted": "maybe"},
]


def test_wallet_bad_params_are_422(sqlite_env: ApiEnv) -> None:
    with client(sqlite_env.app()) as c:
        for params in BAD_WALLET_PARAMS:
            r = c.get("/admin/wallets/WW/tx", params=params, headers=sqlite_env.headers(READ))
            assert r.status_code == 422, (params, r.text)
            assert r.headers["content-type"] == "application/problem+json"
            assert r.json()["status"] == 422


def test_as_of_position_equals_the_past(env: ApiEnv) -> None:
    env.ingest(
        change("payment_orders", order("O1", status="PENDING")),
        change("ledger_entries", ledger("T1", related_id="O1", amount="5.00")),
    )
    env.ingest(
        change("ledger_entries", ledger("T2", type="RECEIVE", wallet="W2", related_id="O1")),
        change("ledger_entries", ledger("T1", related_id="O1", amount="7.00", version=2)),
        change("payment_orders", order("O1", status="SETTLED", version=2)),
    )
    with client(env.app()) as c:
        now = c.get("/admin/tx/T1", headers=env.headers(READ)).json()
        then = c.get("/admin/tx/T1?as_of_position=2", headers=env.headers(READ)).json()
        head = c.get("/admin/tx/T1?as_of_position=5", headers=env.headers(READ)).json()
        before = c.get("/admin/tx/T1?as_of_position=1", headers=env.headers(READ))
        order_then = c.get(
            "/admin/payment-orders/O1?as_of_position=2", headers=env.headers(READ)
        ).json()
        both = c.get(
            "/admin/tx/T1?as_of_position=2&as_of=2999-01-01T00:00:00Z", headers=env.headers(READ)
        ).json()
    assert now["amount"] == "7.00"
    assert now["pairing_status"] == "COMPLETE"
    assert now["as_of"] is None
    assert then["amount"] == "5.00"
    assert then["pairing_status"] == "INCOMPLETE"
    assert then["paired_tx_id"] is None
    assert then["payment_order"]["status"] == "PENDING"
    assert then["log_position"] == 2
    assert then["as_of"] is not None
    # replaying to the head gives what the serving projections say
    strip = ("as_of", "data_lag_sec", "synced_through")
    assert {k: v for k, v in head.items() if k not in strip} == {
        k: v for k, v in now.items() if k not in strip
    }
    assert before.status_code == 404
    assert order_then["order"]["status"] == "PENDING"
    assert [leg["tx_id"] for leg in order_then["legs"]] == ["T1"]
    assert both["log_position"] == 2  # both given: the earlier point
    assert both["amount"] == "5.00"


def test_as_of_time_uses_ingested_at(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    env.ingest(change("ledger_entries", ledger("T1", amount="1.00")))
    with env.engine.connect() as conn:
        from sqlalchemy import select

        from eventlog.schema import events

        first = parse_ts(str(conn.execute(select(events.c.ingested_at)).scalar_one()))
    env.ingest(change("ledger_entries", ledger("T1", amount="2.00", version=2)))
    stamp = (first + timedelta(microseconds=1)).isoformat().replace("+00:00", "Z")
    early = (first - timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    with client(env.app()) as c:
        then = c.get("/admin/tx/T1", params={"as_of": stamp}, headers=env.headers(READ)).json()
        none = c.get("/admin/tx/T1", params={"as_of": early}, headers=env.headers(READ))
    assert then["amount"] == "1.00"
    assert then["log_position"] == 1
    assert then["as_of"].startswith(stamp[:19])
    assert none.status_code == 404


def test_as_of_follows_a_leg_that_moved_to_another_order(sqlite_env: ApiEnv) -> None:
    env = sqlite_env
    env.ingest(
        change("ledger_entries", ledger("P", related_id="O1")),
        change("ledger_entries", ledger("R", type="RECEIVE", wallet="W2", related_id="O1")),
        change(
            "ledger_entries", ledger("R", type="RECEIVE", wallet="W2", related_id="O2", version=2)
        ),
    )
    with client(env.app()) as c:
        live = c.get("/admin/payment-orders/O1", headers=env.headers(READ)).json()
        replay = c.get(
            "/admin/payment-orders/O1?as_of_position=3", headers=env.headers(READ)
        ).json()
        earlier = c.get(
            "/admin/payment-orders/O1?as_of_position=2", headers=env.headers(READ)
        ).json()
    assert live["pairing_status"] == replay["pairing_status"] == "INCOMPLETE"
    assert [leg["tx_id"] for leg in replay["legs"]] == ["P"]
    assert earlier["pairing_status"] == "COMPLETE"


def test_unknown_route_and_method_are_problems(sqlite_env: ApiEnv) -> None:
    with client(sqlite_env.app()) as c:
        unknown = c.get("/nope")
        admin_unknown = c.get("/admin/nope", headers=sqlite_env.headers(READ))
        wrong_method = c.post("/admin/tx/T1", headers=sqlite_env.headers(READ))
        health_post = c.post("/healthz")
    for r, status in (
        (unknown, 404),
        (admin_unknown, 404),
        (wrong_method, 405),
        (health_post, 405),
    ):
        assert r.status_code == status
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["status"] == status


def test_views_missing_is_503_not_a_crash(sqlite_env: ApiEnv) -> None:
    with client(sqlite_env.app()) as c:
        r = c.get("/admin/tx/T1", headers=sqlite_env.headers(READ))
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"


def _cursor(values: list[object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


# Query values that pass their format but that no stored value can match, the database
# would refuse (NUL in text, an id past bigint) or whose instant leaves years 1-9999 in UTC:
# the client's error (422), never a 500 or a 503 "database down".
UNHOLDABLE = [
    (READ, "/admin/tx/T1", {"as_of": "0001-01-01T00:00:00+01:00"}),
    (READ, "/admin/tx/T1", {"as_of": "9999-12-31T23:59:59-01:00"}),
    (READ, "/admin/payment-orders/O1", {"as_of": "0001-01-01T00:00:00+14:00"}),
    (READ, "/admin/wallets/W1/tx", {"since": "0001-01-01T00:00:00+01:00"}),
    (READ, "/admin/wallets/W1/tx", {"cursor": _cursor(["2026-01-01T00:00:00.000000Z", "a\x00"])}),
    (AUDIT, "/admin/audit", {"until": "9999-12-31T23:00:00-12:00"}),
    (AUDIT, "/admin/audit", {"actor": "a\x00b"}),
    (AUDIT, "/admin/audit", {"resource_id": "\x00"}),
    (AUDIT, "/admin/audit", {"cursor": _cursor([2**63])}),
    (AUDIT, "/admin/audit", {"cursor": _cursor([-(2**63) - 1])}),
]


def test_input_the_database_cannot_hold_is_422(env: ApiEnv) -> None:
    env.ingest(change("ledger_entries", ledger("T1")))
    with client(env.app()) as c:
        for role, path, params in UNHOLDABLE:
            r = c.get(path, params=params, headers=env.headers(role))
            assert r.status_code == 422, (path, params, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json"
        ready = c.get("/readyz")
    assert ready.status_code == 200
