// Pure renderers: API JSON in, DOM nodes out. No fetching and no state here.

import { h, viewLink } from "./dom.js";
import { formatDuration, timeEl } from "./time.js";

const PAIRING = ["COMPLETE", "INCOMPLETE", "CONFLICT", "UNKNOWN"];

const PAIRING_HELP = {
  COMPLETE: "exactly one PAYMENT and one RECEIVE leg",
  INCOMPLETE: "a leg is still missing",
  CONFLICT: "more than one PAYMENT or RECEIVE leg",
  UNKNOWN: "not part of a payment pair",
};

/** Pairing badge: colour plus the word, never colour alone. */
export function pairingBadge(status) {
  const value = PAIRING.includes(status) ? status : "UNKNOWN";
  return h(
    "span",
    { class: `badge badge-${value.toLowerCase()}`, "data-pairing": value, title: PAIRING_HELP[value] },
    value,
  );
}

function flagBadge(text, kind) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

const FRESHNESS = [
  { upTo: 5, level: "fresh", label: "Up to date" },
  { upTo: 60, level: "behind", label: "Slightly behind" },
  { upTo: Infinity, level: "stale", label: "Behind" },
];

/** Freshness from data_lag_sec (an upper bound on staleness) and synced_through. */
export function freshness(data) {
  const lag = Number(data?.data_lag_sec);
  const known = data?.data_lag_sec !== null && data?.data_lag_sec !== undefined && Number.isFinite(lag);
  const step = known ? FRESHNESS.find((f) => lag <= f.upTo) : null;
  const level = step?.level ?? "unknown";
  return h(
    "p",
    { class: `freshness freshness-${level}`, "data-freshness": level },
    h("span", { class: "dot", "aria-hidden": "true" }),
    h("strong", {}, step?.label ?? "Freshness unknown"),
    known ? (lag > 0 ? ` — answers may be up to ${formatDuration(lag)} old` : " — caught up with the log") : "",
    data?.synced_through ? [", synced through ", timeEl(data.synced_through)] : "",
    data?.log_position !== undefined && data?.log_position !== null
      ? `, log position ${data.log_position}`
      : "",
    data?.as_of ? [", as of ", timeEl(data.as_of)] : "",
  );
}

function money(amount, currency) {
  if (amount === null || amount === undefined) return h("span", { class: "none" }, "—");
  return h("span", { class: "amount" }, `${amount}${currency ? ` ${currency}` : ""}`);
}

const RESOURCE_VIEWS = { ledger_entry: "tx", payment_order: "order", wallet: "wallet" };

function valueNode(kind, value, record) {
  if (kind === "time") return timeEl(value);
  if (value === null || value === undefined || value === "") {
    return h("span", { class: "none", title: "not set" }, "—");
  }
  switch (kind) {
    case "tx":
      return viewLink("tx", String(value));
    case "order":
      return viewLink("order", String(value));
    case "wallet":
      return viewLink("wallet", String(value));
    case "money":
      return money(value, record.currency);
    case "bool":
      return value ? "yes" : "no";
    case "pairing":
      return pairingBadge(value);
    case "resource": {
      // Audit records name what was looked up: link it to the matching view.
      const view = RESOURCE_VIEWS[record.resource_type];
      return view ? viewLink(view, String(value)) : String(value);
    }
    default:
      return String(value);
  }
}

/** A definition list of `fields`: [key, label, kind?]. */
export function fieldList(record, fields) {
  return h(
    "dl",
    { class: "fields" },
    fields.map(([key, label, kind]) =>
      h("div", {}, h("dt", {}, label), h("dd", { "data-field": key }, valueNode(kind, record?.[key], record))),
    ),
  );
}

/**
 * A data table. Wide screens: a table that scrolls sideways inside its own keyboard-
 * focusable region. Narrow screens (CSS): each row becomes a card of label/value lines,
 * from the cells' data-label. Explicit ARIA roles keep the table semantics either way.
 */
export function table(caption, columns, rows, rowAttrs = () => ({})) {
  const head = h(
    "thead",
    { role: "rowgroup" },
    h("tr", { role: "row" }, columns.map(([, label]) => h("th", { scope: "col", role: "columnheader" }, label))),
  );
  const body = h(
    "tbody",
    { role: "rowgroup" },
    rows.map((row) =>
      h(
        "tr",
        { role: "row", ...rowAttrs(row) },
        columns.map(([key, label, kind]) =>
          h("td", { role: "cell", "data-field": key, "data-label": label }, valueNode(kind, row[key], row)),
        ),
      ),
    ),
  );
  return tableWrap(caption, head, body);
}

function tableWrap(caption, head, body) {
  return h(
    "div",
    { class: "table-wrap stack", role: "region", "aria-label": caption, tabindex: "0" },
    h("table", { role: "table" }, h("caption", { class: "visually-hidden" }, caption), head, body),
  );
}

export function heading(text, ...extra) {
  return h("div", { class: "view-head" }, h("h1", { tabindex: "-1", class: "view-title" }, text), ...extra);
}

export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

const ENTRY_FIELDS = [
  ["tx_id", "tx_id"],
  ["type", "Type"],
  ["wallet_id", "Wallet", "wallet"],
  ["amount", "Amount", "money"],
  ["amount_signed", "Signed amount", "money"],
  ["status", "Status"],
  ["related_id", "Related id", "order"],
  ["related_type", "Related type"],
  ["created_at", "Created", "time"],
  ["updated_at", "Updated", "time"],
  ["deleted", "Deleted", "bool"],
  ["paired_tx_id", "Paired with", "tx"],
  ["payer_wallet_id", "Payer wallet", "wallet"],
  ["receiver_wallet_id", "Receiver wallet", "wallet"],
];

const ORDER_FIELDS = [
  ["order_id", "order_id", "order"],
  ["status", "Status"],
  ["status_group", "Status group"],
  ["amount", "Amount", "money"],
  ["payer_wallet_id", "Payer wallet", "wallet"],
  ["receiver_wallet_id", "Receiver wallet", "wallet"],
  ["created_at", "Created", "time"],
  ["updated_at", "Updated", "time"],
  ["settled_at", "Settled", "time"],
  ["failed_at", "Failed", "time"],
];

const LEG_FIELDS = [
  ["tx_id", "tx_id", "tx"],
  ["wallet_id", "Wallet", "wallet"],
  ["amount", "Amount", "money"],
  ["amount_signed", "Signed amount", "money"],
  ["status", "Status"],
  ["created_at", "Created", "time"],
];

const LEG_COLUMNS = [
  ["tx_id", "tx_id", "tx"],
  ["type", "Type"],
  ["wallet_id", "Wallet", "wallet"],
  ["amount", "Amount", "money"],
  ["amount_signed", "Signed", "money"],
  ["status", "Status"],
  ["created_at", "Created", "time"],
  ["deleted", "Deleted", "bool"],
];

function legCard(leg, currentTxId) {
  const current = leg.tx_id === currentTxId;
  return h(
    "article",
    { class: `leg${current ? " leg-current" : ""}`, "data-tx-id": leg.tx_id, "aria-label": `${leg.type} leg ${leg.tx_id}` },
    current ? h("p", { class: "leg-note" }, "This entry") : "",
    leg.deleted ? flagBadge("DELETED", "deleted") : "",
    fieldList(leg, LEG_FIELDS),
  );
}

function pairColumn(side, legs, currentTxId) {
  const mine = legs.filter((leg) => leg.type === side && !leg.deleted);
  return h(
    "div",
    { class: "pair-side", "data-side": side },
    h("h3", {}, side),
    mine.length ? mine.map((leg) => legCard(leg, currentTxId)) : h("p", { class: "empty" }, `No ${side} leg is known yet.`),
  );
}

/** The PAYMENT | RECEIVE columns for the legs of one payment order. */
export function pairColumns(legs, currentTxId) {
  return h(
    "div",
    { class: "pair", "data-testid": "pair" },
    pairColumn("PAYMENT", legs, currentTxId),
    pairColumn("RECEIVE", legs, currentTxId),
  );
}

/** Transaction view: the entry, its pair side by side, the payment order, freshness. */
export function transactionView(tx, orderLookup) {
  const legs = orderLookup?.legs?.length ? orderLookup.legs : [tx];
  const isLeg = tx.type === "PAYMENT" || tx.type === "RECEIVE";
  let pairBody;
  if (!tx.related_id) {
    pairBody = h("p", { class: "empty" }, "This entry has no related id, so it has no pair.");
  } else if (!isLeg) {
    pairBody = h("p", { class: "empty" }, `Type ${tx.type ?? "(none)"} is neither PAYMENT nor RECEIVE, so it is not a pair leg.`);
  } else {
    pairBody = pairColumns(legs, tx.tx_id);
  }
  const order = tx.payment_order
    ? [fieldList(tx.payment_order, ORDER_FIELDS)]
    : h(
        "p",
        { class: "empty" },
        tx.related_id ? `No payment order with id “${tx.related_id}” is known yet.` : "No payment order is related to this entry.",
      );
  return h(
    "div",
    { class: "view-body", "data-view": "tx" },
    heading(`Transaction ${tx.tx_id}`, pairingBadge(tx.pairing_status), tx.deleted ? flagBadge("DELETED", "deleted") : ""),
    freshness(tx),
    section("Entry", fieldList(tx, ENTRY_FIELDS)),
    section(tx.related_id ? ["Pair for order ", viewLink("order", tx.related_id)] : "Pair", pairBody),
    section("Payment order", order),
  );
}

/** Order view: the order and all its legs. */
export function orderView(data) {
  const legs = data.legs ?? [];
  return h(
    "div",
    { class: "view-body", "data-view": "order" },
    heading(`Payment order ${data.order_id}`, pairingBadge(data.pairing_status)),
    freshness(data),
    section(
      "Order",
      data.order
        ? fieldList(data.order, ORDER_FIELDS)
        : h("p", { class: "empty" }, "The order itself has not been seen yet; only ledger legs that name it are known."),
      fieldList(data, [
        ["payment_tx_id", "PAYMENT leg", "tx"],
        ["receive_tx_id", "RECEIVE leg", "tx"],
      ]),
    ),
    section("Pair", pairColumns(legs, null)),
    section(
      `All legs (${legs.length})`,
      legs.length ? table(`Legs of order ${data.order_id}`, LEG_COLUMNS, legs) : h("p", { class: "empty" }, "No ledger entry names this order yet."),
    ),
  );
}

export const WALLET_COLUMNS = [
  ["created_at", "Created", "time"],
  ["tx_id", "tx_id", "tx"],
  ["type", "Type"],
  ["amount", "Amount", "money"],
  ["amount_signed", "Signed", "money"],
  ["status", "Status"],
  ["related_id", "Order", "order"],
  ["deleted", "Deleted", "bool"],
];

export const AUDIT_COLUMNS = [
  ["at", "At", "time"],
  ["actor", "Actor"],
  ["roles", "Roles"],
  ["method", "Method"],
  ["path", "Path"],
  ["action", "Action"],
  ["resource_type", "Resource type"],
  ["resource_id", "Resource id", "resource"],
  ["status", "Status"],
  ["result_count", "Results"],
  ["ip", "IP"],
  ["request_id", "Request id"],
];

/** Audit rows with roles shown as text whatever their stored shape. */
export function auditRows(items) {
  return items.map((item) => ({
    ...item,
    roles: Array.isArray(item.roles) ? item.roles.join(", ") : item.roles,
  }));
}

/** Flatten /admin/projections into one row per (projection, version), tolerant of its shape. */
export function projectionRows(body) {
  let list = Array.isArray(body) ? body : (body?.projections ?? body?.items ?? []);
  if (!Array.isArray(list) && list && typeof list === "object") {
    list = Object.entries(list).map(([name, value]) =>
      Array.isArray(value) ? { projection: name, versions: value } : { projection: name, ...value },
    );
  }
  const rows = [];
  for (const item of list) {
    const name = item.projection ?? item.name;
    if (Array.isArray(item.versions)) {
      for (const version of item.versions) rows.push({ ...version, projection: version.projection ?? name });
    } else rows.push({ ...item, projection: name });
  }
  return rows;
}

const STATE_KIND = { serving: "complete", building: "incomplete", standby: "unknown", failed: "conflict", retired: "unknown" };

function shortHash(value, { tail = false } = {}) {
  if (!value) return h("span", { class: "none" }, "—");
  const text = String(value);
  // Fingerprints read "<projection>.v<N>.<hash>": the hash is the part that differs.
  const shown = tail ? text.split(".").slice(-1)[0] : text;
  return h("code", { title: text, class: "hash" }, shown.length > 16 ? `${shown.slice(0, 12)}…` : shown);
}

const PROJECTION_COLUMNS = [
  ["version", "Version"],
  ["state", "State"],
  ["position", "Position"],
  ["log_head", "Log head"],
  ["lag", "Lag (events)"],
  ["rows", "Rows"],
  ["checksum", "Checksum"],
  ["fingerprint", "Fingerprint"],
  ["last_error", "Last error"],
];

function projectionCell(row, key) {
  const state = String(row.state ?? "unknown");
  switch (key) {
    case "state":
      return [
        h("span", { class: `badge badge-${STATE_KIND[state] ?? "unknown"}` }, state),
        row.stale === true ? [" ", flagBadge("STALE", "deleted")] : "",
        row.state === "failed" && row.error_position ? ` at position ${row.error_position}` : "",
      ];
    case "checksum":
      return shortHash(row.checksum);
    case "fingerprint":
      return shortHash(row.fingerprint, { tail: true });
    case "last_error":
      return row.last_error ? String(row.last_error) : "—";
    default:
      return row[key] === null || row[key] === undefined ? "—" : String(row[key]);
  }
}

function projectionRow(row) {
  return h(
    "tr",
    { role: "row", "data-projection": row.projection, "data-version": row.version },
    h("th", { scope: "row", role: "rowheader", "data-label": "Projection" }, String(row.projection ?? "—")),
    PROJECTION_COLUMNS.map(([key, label]) =>
      h(
        "td",
        { role: "cell", "data-field": key, "data-label": label, class: key === "last_error" && row.last_error ? "error-text" : null },
        projectionCell(row, key),
      ),
    ),
  );
}

/** Projections view: versions, states, positions, lag, rows and checksums. */
export function projectionsTable(rows) {
  const head = h(
    "thead",
    { role: "rowgroup" },
    h(
      "tr",
      { role: "row" },
      h("th", { scope: "col", role: "columnheader" }, "Projection"),
      PROJECTION_COLUMNS.map(([, label]) => h("th", { scope: "col", role: "columnheader" }, label)),
    ),
  );
  return tableWrap("Projection versions", head, h("tbody", { role: "rowgroup" }, rows.map(projectionRow)));
}

/** A plain-sentence error box (announced to screen readers). */
export function errorBox(sentence) {
  return h("div", { class: "message message-error", role: "alert" }, sentence);
}

export function infoBox(sentence) {
  return h("div", { class: "message message-info", role: "status" }, sentence);
}
