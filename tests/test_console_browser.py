"""The admin console in a real headless Chromium against the real app (issue 7).

Each test opens a fresh browser context (fresh session storage) on the live server
started by ``console_site``; screenshots of every view go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, ViewportSize, expect

from tests.fixtures_browser import *  # noqa: F403
from tests.fixtures_browser import (
    BIDI_TX,
    CONFLICT_ORDER,
    CONFLICT_WALLET,
    DELETED_TX,
    DESKTOP,
    MARKUP_STATUS,
    MARKUP_TX,
    PAIR_ORDER,
    PAYMENT_TX,
    PHONE,
    RECEIVE_TX,
    WALLET_ENTRIES,
    WALLET_ID,
    Site,
    audit_store_down,
)

# The first test may install Chromium with apt-get (a minute or two): allow for it.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

SHOWN = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})(\.\d+)? (UTC|KST)$")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(10_000)
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and not msg.text.startswith("Failed to load resource")
            else None
        ),
    )
    yield page
    context.close()
    # No script errors and no Content-Security-Policy violations in any scenario.
    assert problems == []


def sign_in(page: Page, site: Site, token: str) -> None:
    page.goto(site.console)
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_be_visible()


def open_signed_in(page: Page, site: Site, token: str) -> None:
    """Start a session without the form (the sign-in tests cover the form): the page
    restores a token found in session storage, as after a reload."""
    page.goto(site.console)
    page.evaluate("token => sessionStorage.setItem('bo.console.token', token)", token)
    page.reload()
    expect(page.locator("#who")).to_be_visible()


def search(page: Page, text: str, kind: str = "auto") -> None:
    page.get_by_label("Transaction, order or wallet id").fill(text)
    page.get_by_label("Search as").select_option(kind)
    page.get_by_role("button", name="Search", exact=True).click()


def shot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"console-{name}.png"), full_page=True)


def parse_shown(text: str) -> tuple[datetime, str]:
    match = SHOWN.match(text.strip())
    assert match, text
    return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S"), match.group(3)


# ---------------------------------------------------------------- sign-in


def test_sign_in_with_a_dev_token_shows_who_and_roles(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    page.goto(console_site.console)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, artifacts_dir, "signin-1280x800")

    sign_in(page, console_site, console_site.token("alice", "ADMIN_READ", "ADMIN_AUDIT"))

    expect(page.locator("#who-sub")).to_have_text("alice")
    expect(page.locator("#who-roles")).to_have_text("ADMIN_READ, ADMIN_AUDIT")
    assert SHOWN.match(page.locator("#who-exp").inner_text())
    # The token lives in session storage only.
    stored = page.evaluate("() => [sessionStorage.length, localStorage.length, document.cookie]")
    assert stored == [1, 0, ""]


def test_garbage_is_refused_before_asking_the_server(page: Page, console_site: Site) -> None:
    page.goto(console_site.console)
    page.get_by_label("Bearer token").fill("not a token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("This is not a bearer token")
    expect(page.locator("#app")).to_be_hidden()


def test_a_token_the_server_rejects_keeps_you_at_sign_in(page: Page, console_site: Site) -> None:
    good = console_site.token("mallory", "ADMIN_READ")
    header, payload, signature = good.split(".")
    forged = f"{header}.{payload}.{signature[:-6]}AAAAAA"
    page.goto(console_site.console)
    page.get_by_label("Bearer token").fill(f"Bearer {forged}")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("The server rejected this token")
    expect(page.locator("#app")).to_be_hidden()
    assert page.evaluate("() => sessionStorage.length") == 0


def test_an_expired_token_is_refused_with_its_expiry(page: Page, console_site: Site) -> None:
    token = console_site.token("bob", "ADMIN_READ", ttl=60)
    page.clock.install(time=datetime.now().astimezone() + timedelta(hours=2))
    page.goto(console_site.console)
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#signin-message")).to_contain_text("This token expired at")


def test_a_401_mid_session_leads_back_to_sign_in(page: Page, console_site: Site) -> None:
    sign_in(page, console_site, console_site.token("carol", "ADMIN_READ"))
    # The server stops accepting the session's token (e.g. revoked, or the key rotated).
    page.evaluate(
        """() => {
        const t = sessionStorage.getItem("bo.console.token").split(".");
        sessionStorage.setItem("bo.console.token", `${t[0]}.${t[1]}.${t[2].slice(0, -6)}AAAAAA`);
      }"""
    )
    page.reload()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-message")).to_contain_text("the server did not accept your token")
    assert page.evaluate("() => sessionStorage.getItem('bo.console.token')") is None


def test_signing_out_forgets_the_token(page: Page, console_site: Site) -> None:
    sign_in(page, console_site, console_site.token("dave", "ADMIN_READ"))
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-message")).to_have_text("You signed out.")
    assert page.evaluate("() => sessionStorage.getItem('bo.console.token')") is None
    page.reload()  # and a reload does not bring the session back
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


# ---------------------------------------------------------------- transaction, order


def test_looking_up_a_complete_pair_shows_both_legs(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, PAYMENT_TX)

    expect(page.get_by_role("heading", name=f"Transaction {PAYMENT_TX}")).to_be_visible()
    expect(page.locator(".view-head [data-pairing]")).to_have_text("COMPLETE")
    payment = page.locator('.pair-side[data-side="PAYMENT"]')
    receive = page.locator('.pair-side[data-side="RECEIVE"]')
    expect(payment.locator(f'[data-tx-id="{PAYMENT_TX}"]')).to_be_visible()
    expect(receive.locator(f'[data-tx-id="{RECEIVE_TX}"]')).to_be_visible()
    expect(receive.locator('[data-field="wallet_id"]')).to_have_text("W-2")
    expect(page.locator('[data-field="paired_tx_id"]').first).to_have_text(RECEIVE_TX)
    expect(page.locator('[data-field="order_id"]').first).to_have_text(PAIR_ORDER)
    expect(page.locator("[data-freshness]")).to_contain_text("synced through")
    # Side by side on a desktop: the RECEIVE column is right of the PAYMENT column.
    assert receive.bounding_box()["x"] > payment.bounding_box()["x"]  # type: ignore[index]
    shot(page, artifacts_dir, "transaction-1280x800")

    # Follow the other leg by keyboard: its link opens its own view.
    receive.get_by_role("link", name=RECEIVE_TX).focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name=f"Transaction {RECEIVE_TX}")).to_be_focused()


def test_replaying_a_transaction_as_of_an_earlier_log_position(
    page: Page, console_site: Site
) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, PAYMENT_TX, "tx")
    expect(page.locator(".view-head [data-pairing]")).to_have_text("COMPLETE")
    # Positions: 1 the order, 2 the PAYMENT leg, 3 the RECEIVE leg.
    page.get_by_text("Replay as the back office knew it earlier").click()
    page.get_by_label("or at log position").fill("2")
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status").filter(has_text="Historical view")).to_contain_text(
        "log position 2"
    )
    expect(page.locator(".view-head [data-pairing]")).to_have_text("INCOMPLETE")
    expect(page.locator('.pair-side[data-side="RECEIVE"]')).to_contain_text("No RECEIVE leg")
    assert page.url.endswith(f"#/tx/{PAYMENT_TX}?as_of_position=2")

    # Before its own event the transaction was not known at all.
    page.get_by_label("or at log position").fill("1")
    page.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("alert")).to_have_text(
        f"No transaction with id “{PAYMENT_TX}” was known at that point in the log."
    )

    page.get_by_role("link", name="Back to the current state").click()
    expect(page.locator(".view-head [data-pairing]")).to_have_text("COMPLETE")
    expect(page.get_by_text("Historical view")).to_have_count(0)


def test_order_view_lists_all_legs(page: Page, console_site: Site, artifacts_dir: Path) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, PAIR_ORDER, "order")
    expect(page.get_by_role("heading", name=f"Payment order {PAIR_ORDER}")).to_be_visible()
    rows = page.get_by_role("region", name=f"Legs of order {PAIR_ORDER}").locator("tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.locator('[data-field="tx_id"]')).to_have_text([PAYMENT_TX, RECEIVE_TX])
    expect(page.locator('[data-field="status"]').first).to_have_text("SETTLED")
    shot(page, artifacts_dir, "order-1280x800")


def test_kst_toggle_moves_every_time_by_nine_hours(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, PAYMENT_TX, "tx")
    created = page.locator('[data-view="tx"] dd[data-field="created_at"] time').first
    expect(created).to_have_text(SHOWN)
    stored = created.get_attribute("datetime")
    utc_text = created.inner_text()

    page.get_by_label("KST").check()
    expect(created).to_contain_text("KST")
    kst_at, kst_zone = parse_shown(created.inner_text())
    utc_at, utc_zone = parse_shown(utc_text)
    assert (utc_zone, kst_zone) == ("UTC", "KST")
    assert kst_at - utc_at == timedelta(hours=9)
    assert created.get_attribute("datetime") == stored  # the stored value stays UTC
    # Every time on the page follows the toggle, including the header's expiry.
    assert all(t.endswith("KST") for t in page.locator("time").all_inner_texts())

    # The choice survives a navigation and goes back to UTC.
    search(page, RECEIVE_TX, "tx")
    expect(page.locator('[data-view="tx"] dd[data-field="created_at"] time').first).to_contain_text(
        "KST"
    )
    page.get_by_label("UTC").check()
    assert all(t.endswith("UTC") for t in page.locator("time").all_inner_texts())


TIME_CASES = [
    # (stored value, zone, shown)
    ("2026-01-01T00:00:00.000000Z", "UTC", "2026-01-01 00:00:00 UTC"),
    ("2026-01-01T00:00:00.000000Z", "KST", "2026-01-01 09:00:00 KST"),
    ("2026-12-31T23:30:00.123456Z", "KST", "2027-01-01 08:30:00.123456 KST"),
    ("2026-03-01T06:00:00+09:00", "UTC", "2026-02-28 21:00:00 UTC"),
    ("2026-01-01T00:00:00", "UTC", "2026-01-01 00:00:00 UTC"),  # no offset: UTC
    ("not a time", "KST", "not a time"),
]


def test_time_formatting_edge_cases(page: Page, console_site: Site) -> None:
    page.goto(console_site.console)
    shown = page.evaluate(
        """async (cases) => {
        const t = await import("./time.js");
        return cases.map(([value, zone]) => t.formatInstant(value, zone));
      }""",
        [[value, zone] for value, zone, _ in TIME_CASES],
    )
    assert shown == [expected for *_, expected in TIME_CASES]
    # A range typed in KST is sent as UTC, nine hours earlier.
    sent = page.evaluate(
        """async () => {
        const t = await import("./time.js");
        t.setZone("KST");
        return [t.fromInputValue("2026-01-02T08:00"), t.toInputValue("2026-01-01T23:00:00Z")];
      }"""
    )
    assert sent == ["2026-01-01T23:00:00Z", "2026-01-02T08:00:00"]


def test_unknown_and_invalid_ids_read_as_sentences(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, "NO-SUCH-ID")
    expect(page.get_by_role("alert")).to_contain_text(
        "Nothing is known with id “NO-SUCH-ID”: it is not a transaction, a payment order"
    )
    search(page, "NO-SUCH-TX", "tx")
    expect(page.get_by_role("alert")).to_have_text(
        re.compile(r"^No transaction with id “NO-SUCH-TX” is known\.")
    )
    search(page, "bad id!", "tx")
    expect(page.get_by_role("alert")).to_have_text(
        "“bad id!” is not a valid transaction id: use 1 to 128 letters, digits, dots, "
        "underscores, colons or hyphens."
    )


def test_an_invalid_filter_is_not_blamed_on_the_id(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    page.evaluate(f"() => {{ location.hash = '#/tx/{PAYMENT_TX}?as_of=yesterday'; }}")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("The request was not accepted: query.as_of")
    expect(alert).not_to_contain_text("is not a valid transaction id")


def test_an_incomplete_pair_says_what_is_missing(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, "H-001", "tx")  # a PAYMENT leg of order O-201, which was never seen
    expect(page.locator(".view-head [data-pairing]")).to_have_text("INCOMPLETE")
    expect(page.locator('.pair-side[data-side="RECEIVE"]')).to_have_text(
        "RECEIVENo RECEIVE leg is known yet."
    )
    expect(page.get_by_text("No payment order with id “O-201” is known yet.")).to_be_visible()

    page.get_by_role("link", name="O-201").first.click()
    expect(page.get_by_role("heading", name="Payment order O-201")).to_be_focused()
    expect(page.get_by_text("The order itself has not been seen yet")).to_be_visible()


def test_a_conflict_shows_every_leg_on_its_side(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, "C-1", "tx")
    expect(page.locator(".view-head [data-pairing]")).to_have_text("CONFLICT")
    payment = page.locator('.pair-side[data-side="PAYMENT"] [data-tx-id]')
    expect(payment).to_have_count(2)
    assert [leg.get_attribute("data-tx-id") for leg in payment.all()] == ["C-1", "C-2"]
    expect(page.locator('.pair-side[data-side="RECEIVE"] [data-tx-id]')).to_have_count(1)
    expect(page.locator('[data-view="tx"] dd[data-field="paired_tx_id"]')).to_have_text("—")
    shot(page, artifacts_dir, "transaction-conflict-1280x800")

    page.get_by_role("link", name=CONFLICT_ORDER).first.click()
    expect(page.get_by_role("heading", name=f"Payment order {CONFLICT_ORDER}")).to_be_visible()
    expect(page.locator(".view-head [data-pairing]")).to_have_text("CONFLICT")


def test_deleted_entries_only_with_include_deleted(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, CONFLICT_WALLET, "wallet")
    region = page.get_by_role("region", name=re.compile(f"^Entries of wallet {CONFLICT_WALLET}"))
    expect(region.locator("tbody tr")).to_have_count(3)
    page.get_by_label("Include deleted entries").check()
    page.get_by_role("button", name="Apply").click()
    expect(region.locator("tbody tr")).to_have_count(4)
    deleted = region.locator(f'tr[data-tx-id="{DELETED_TX}"] td[data-field="deleted"]')
    expect(deleted).to_have_text("yes")

    region.get_by_role("link", name=DELETED_TX).click()
    expect(page.locator(".view-head")).to_contain_text("DELETED")


def test_markup_in_data_is_shown_as_text_and_never_runs(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, MARKUP_TX, "tx")
    status = page.locator('[data-view="tx"] dd[data-field="status"]').first
    expect(status).to_have_text(MARKUP_STATUS)
    assert page.locator("#view img, #view b").count() == 0
    assert page.evaluate("() => window.__pwned") is None


def test_bidirectional_controls_in_data_are_shown_not_obeyed(
    page: Page, console_site: Site
) -> None:
    """An override in a value must not reorder what is drawn (Trojan Source): the console
    writes each bidirectional control out as ⟨U+XXXX⟩."""
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, BIDI_TX, "tx")
    status = page.locator('[data-view="tx"] dd[data-field="status"]').first
    expect(status).to_have_text("DONE⟨U+202E⟩DEIRTER")


def test_a_reader_without_admin_read_gets_a_403_sentence(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("audrey", "ADMIN_AUDIT"))
    search(page, PAYMENT_TX, "tx")
    expect(page.get_by_role("alert")).to_have_text(
        "Your roles (ADMIN_AUDIT) do not allow you to look up transactions. "
        "It needs the ADMIN_READ role."
    )


def test_an_unavailable_audit_store_reads_as_503(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    with audit_store_down(console_site):
        search(page, PAYMENT_TX, "tx")
        expect(page.get_by_role("alert")).to_have_text(
            "The service cannot answer right now (its database or audit log is unavailable), "
            "so nothing was shown. Try again in a moment."
        )
        expect(page.locator('[data-field="tx_id"]')).to_have_count(0)
    search(page, PAYMENT_TX, "tx")
    expect(page.locator(".view-head [data-pairing]")).to_have_text("COMPLETE")


def test_the_session_ends_when_the_token_expires(page: Page, console_site: Site) -> None:
    page.clock.install()
    sign_in(page, console_site, console_site.token("erin", "ADMIN_READ", ttl=120))
    page.clock.fast_forward("03:00")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.locator("#signin-message")).to_contain_text(
        "Your session ended: the token expired at"
    )
    assert page.evaluate("() => sessionStorage.getItem('bo.console.token')") is None


# ---------------------------------------------------------------- wallet


def wallet_page_ids(page: Page) -> list[str]:
    rows = page.get_by_role("region", name=re.compile(f"^Entries of wallet {WALLET_ID}"))
    return rows.locator('tbody td[data-field="tx_id"]').all_inner_texts()


def test_paging_through_a_wallet(page: Page, console_site: Site, artifacts_dir: Path) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, WALLET_ID)  # "Any" falls through tx and order to the wallet
    expect(page.get_by_role("heading", name=f"Wallet {WALLET_ID}")).to_be_visible()
    page.get_by_label("Rows per page").select_option("5")
    page.get_by_role("button", name="Apply").click()
    status = page.locator(".page-status")
    expect(status).to_have_text("Page 1 · 5 rows")
    shot(page, artifacts_dir, "wallet-1280x800")

    previous = page.get_by_role("button", name="← Previous page")
    following = page.get_by_role("button", name="Next page →")
    expect(previous).to_be_disabled()
    pages = [wallet_page_ids(page)]
    following.click()
    expect(status).to_have_text("Page 2 · 5 rows")
    pages.append(wallet_page_ids(page))
    # By keyboard: focus stays on the pager, and moves to Previous at the last page.
    following.focus()
    page.keyboard.press("Enter")
    expect(status).to_have_text("Page 3 · 2 rows")
    pages.append(wallet_page_ids(page))
    expect(following).to_be_disabled()
    expect(previous).to_be_focused()

    seen = [tx for ids in pages for tx in ids]
    assert len(seen) == len(set(seen)) == WALLET_ENTRIES
    shown = page.locator('tbody td[data-field="created_at"] time')
    assert shown.count() == 2

    previous.click()
    expect(status).to_have_text("Page 2 · 5 rows")
    assert wallet_page_ids(page) == pages[1]
    previous.click()
    expect(status).to_have_text("Page 1 · 5 rows")
    assert wallet_page_ids(page) == pages[0]
    expect(previous).to_be_disabled()


def test_wallet_date_range_filters_entries(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    search(page, WALLET_ID, "wallet")
    # W-1's history entries H-001..H-011 are at 2026-01-02 01:00 … 11:00 UTC.
    page.get_by_label(re.compile("^From")).fill("2026-01-02T03:00:00")
    page.get_by_label(re.compile("^Until")).fill("2026-01-02T06:00:00")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".page-status")).to_have_text(re.compile(r"^Page 1"))
    # From is inclusive, Until exclusive: 03:00, 04:00 and 05:00, newest first.
    assert wallet_page_ids(page) == ["H-005", "H-004", "H-003"]
    assert "since=2026-01-02T03%3A00%3A00Z" in page.url

    # In KST the same wall-clock input means nine hours earlier in UTC.
    page.get_by_label("KST").check()
    expect(page.get_by_label(re.compile("^From"))).to_have_value(
        re.compile(r"^2026-01-02T12:00(:00)?$")
    )
    page.get_by_label(re.compile("^Until")).fill("2026-01-02T11:00:00")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator(".form-message")).to_contain_text("must be later than")


# ---------------------------------------------------------------- audit, projections


def test_audit_view_says_403_in_plain_words_for_admin_read(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_role("alert")).to_have_text(
        "Your roles (ADMIN_READ) do not allow you to view the audit log. "
        "It needs the ADMIN_AUDIT role."
    )
    shot(page, artifacts_dir, "audit-forbidden-1280x800")


def test_audit_view_lists_records_for_an_auditor(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    # An earlier lookup by someone else, so there is something to filter for.
    reader = console_site.token("alice", "ADMIN_READ")
    open_signed_in(page, console_site, reader)
    search(page, PAYMENT_TX, "tx")
    expect(page.get_by_role("heading", name=f"Transaction {PAYMENT_TX}")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()

    open_signed_in(page, console_site, console_site.token("auditor", "ADMIN_AUDIT"))
    page.get_by_role("link", name="Audit", exact=True).click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    page.get_by_label("Actor").fill("alice")
    page.get_by_label("Resource id").fill(PAYMENT_TX)
    page.get_by_role("button", name="Apply").click()
    records = page.get_by_role("region", name=re.compile("^Audit records"))
    expect(records.locator("tbody tr").first).to_be_visible()
    actors = set(records.locator('td[data-field="actor"]').all_inner_texts())
    assert actors == {"alice"}
    expect(records.locator('td[data-field="resource_id"]').first).to_have_text(PAYMENT_TX)
    shot(page, artifacts_dir, "audit-1280x800")
    # The looked-up id links to its view.
    records.get_by_role("link", name=PAYMENT_TX).first.click()
    expect(page.get_by_role("heading", name=f"Transaction {PAYMENT_TX}")).to_be_visible()


def test_projections_view_shows_versions_states_and_checksums(
    page: Page, console_site: Site, artifacts_dir: Path
) -> None:
    open_signed_in(page, console_site, console_site.token("auditor", "ADMIN_AUDIT"))
    page.get_by_role("link", name="Projections", exact=True).click()
    table = page.get_by_role("region", name="Projection versions")
    for name in ("ledger_entries", "payment_orders", "pairs"):
        row = table.locator(f'tr[data-projection="{name}"]').first
        expect(row.locator('[data-field="state"]')).to_contain_text("serving")
        expect(row.locator('[data-field="lag"]')).to_have_text("0")
        expect(row.locator('[data-field="checksum"] code')).to_have_text(
            re.compile(r"^[0-9a-f]{12}…$")
        )
    shot(page, artifacts_dir, "projections-1280x800")


# ---------------------------------------------------------------- access and layout


def test_keyboard_only_search_with_visible_focus(page: Page, console_site: Site) -> None:
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ"))
    page.reload()  # a fresh load: focus starts at the top of the document
    expect(page.locator("#who")).to_be_visible()
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.is_visible()
    assert skip.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    page.keyboard.press("Enter")  # skips to the view, without leaving it
    expect(page.get_by_role("heading", name="Find a transaction, order or wallet")).to_be_focused()

    page.get_by_label("Transaction, order or wallet id").focus()
    page.keyboard.type(PAYMENT_TX)
    page.keyboard.press("Enter")
    heading = page.get_by_role("heading", name=f"Transaction {PAYMENT_TX}")
    expect(heading).to_be_focused()
    page.keyboard.press("Tab")
    tag, outline = page.evaluate(
        "() => [document.activeElement.tagName,"
        " getComputedStyle(document.activeElement).outlineStyle]"
    )
    assert tag == "A"  # the first link of the view
    assert outline != "none"


UNNAMED_CONTROLS = """() => [...document.querySelectorAll("input, select, textarea, button, a")]
  .filter((el) => el.getClientRects().length > 0)
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute("aria-label")
                    || (el.tagName === "BUTTON" || el.tagName === "A") && el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""

VIEWS = {  # screenshot name → (data-view of the rendered view, URL fragment)
    "transaction": ("tx", f"#/tx/{PAYMENT_TX}"),
    "order": ("order", f"#/order/{PAIR_ORDER}"),
    "wallet": ("wallet", f"#/wallet/{WALLET_ID}?limit=5"),
    "audit": ("audit", "#/audit"),
    "projections": ("projections", "#/projections"),
}


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["1280x800", "390x844"])
def test_every_view_reads_at_both_sizes(
    browser: Browser, console_site: Site, artifacts_dir: Path, size: ViewportSize
) -> None:
    context = browser.new_context(viewport=size)
    page = context.new_page()
    label = f"{size['width']}x{size['height']}"
    page.goto(console_site.console)
    expect(page.get_by_label("Bearer token")).to_be_visible()
    shot(page, artifacts_dir, f"signin-{label}")
    open_signed_in(page, console_site, console_site.token("alice", "ADMIN_READ", "ADMIN_AUDIT"))
    for name, (view, fragment) in VIEWS.items():
        page.goto(f"{console_site.console}{fragment}")
        expect(page.locator(f'#view [data-view="{view}"]')).to_be_visible()
        expect(page.locator(".loading")).to_have_count(0)
        expect(page.locator(".page-status:text-matches('Loading')")).to_have_count(0)
        # Every control has a name a screen reader can say.
        unnamed = page.evaluate(UNNAMED_CONTROLS)
        assert unnamed == [], f"{name}: controls without a label: {unnamed}"
        # Nothing spills sideways: wide tables scroll inside their own region.
        overflow = page.evaluate("() => document.documentElement.scrollWidth - innerWidth")
        assert overflow <= 0, f"{name} at {label} is {overflow}px too wide"
        shot(page, artifacts_dir, f"{name}-{label}")
    context.close()
