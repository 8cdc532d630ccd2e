// The console's shell: sign-in, routing (#/tx/ID, #/order/ID, #/wallet/ID, #/audit,
// #/projections), search and the paged views. Rendering lives in views.js.

import { ApiError, describeError, getJson } from "./api.js";
import { h, replace, visible } from "./dom.js";
import { cleanToken, decodeClaims, expiryMs, rolesOf } from "./jwt.js";
import { formatInstant, fromInputValue, setZone, timeEl, timeInput, zone } from "./time.js";
import {
  AUDIT_COLUMNS,
  WALLET_COLUMNS,
  auditRows,
  errorBox,
  heading,
  infoBox,
  orderView,
  projectionRows,
  projectionsTable,
  section,
  table,
  transactionView,
} from "./views.js";

const TOKEN_KEY = "bo.console.token";
const ZONE_KEY = "bo.console.zone";
const PAGE_SIZES = ["5", "10", "25", "50", "100", "200"];
const DEFAULT_PAGE_SIZE = "25";
const MAX_TIMER_MS = 2_147_000_000; // setTimeout's limit (~24.8 days)

const $ = (id) => document.getElementById(id);

const state = {
  token: null,
  roles: [],
  expiryTimer: null,
  renderSeq: 0,
  prefetched: null, // { hash, data } from an "Any" search, so the view does not ask twice
};

class SignedOut extends Error {}

// ---------------------------------------------------------------- API calls

/** GET with the session token; a 401 signs out (and throws SignedOut). */
async function call(path, params) {
  try {
    return await getJson(path, params, state.token);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      signOut(describeError(error));
      throw new SignedOut();
    }
    throw error;
  }
}

const enc = encodeURIComponent;

// ---------------------------------------------------------------- sign-in

function showSignIn(message = "", { focus = true, kind = "error" } = {}) {
  $("app").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  replace($("signin-message"), message);
  $("signin-message").classList.toggle("message-error", Boolean(message) && kind === "error");
  $("signin-message").classList.toggle("message-info", Boolean(message) && kind === "info");
  if (focus) $("token").focus();
}

function signOut(message = "", kind = "error") {
  sessionStorage.removeItem(TOKEN_KEY);
  clearTimeout(state.expiryTimer);
  state.token = null;
  state.roles = [];
  state.renderSeq += 1; // drop any answer still on its way
  replace($("view"));
  showSignIn(message, { kind });
}

function signedIn(token, claims, { focus = true } = {}) {
  state.token = token;
  state.roles = rolesOf(claims);
  $("who-sub").textContent = claims.sub ? visible(claims.sub) : "(no subject)";
  $("who-roles").textContent = state.roles.length ? visible(state.roles.join(", ")) : "none";
  const exp = expiryMs(claims);
  const expEl = $("who-exp");
  expEl.parentElement.hidden = exp === null;
  clearTimeout(state.expiryTimer);
  if (exp !== null) {
    const utc = new Date(exp).toISOString();
    expEl.dateTime = utc;
    expEl.dataset.utc = utc;
    expEl.textContent = formatInstant(utc);
    state.expiryTimer = setTimeout(
      () => signOut(`Your session ended: the token expired at ${formatInstant(utc)}. Sign in again with a fresh token.`),
      Math.min(Math.max(exp - Date.now(), 0), MAX_TIMER_MS),
    );
  }
  $("signin").hidden = true;
  $("app").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  route({ focus });
}

async function onSignIn(event) {
  event.preventDefault();
  const token = cleanToken($("token").value);
  const say = (message) => showSignIn(message);
  if (!token) return say("Paste a token first.");
  const claims = decodeClaims(token);
  if (!claims) {
    return say("This is not a bearer token: a token is three base64url parts separated by dots.");
  }
  const exp = expiryMs(claims);
  if (exp !== null && exp <= Date.now()) {
    return say(`This token expired at ${formatInstant(new Date(exp).toISOString())}. Get a fresh one and sign in again.`);
  }
  const button = $("signin-submit");
  button.disabled = true;
  try {
    // Ask the server: only it can tell whether the token is genuine.
    await getJson("/admin/projections", {}, token);
  } catch (error) {
    // 403: a genuine token without a role for this call; it may still open other views.
    if (!(error instanceof ApiError && error.status === 403)) {
      const sentence =
        error instanceof ApiError && error.status === 401
          ? "The server rejected this token (wrong signature, issuer or audience, or expired). Get a fresh one and sign in again."
          : describeError(error);
      return say(sentence);
    }
  } finally {
    button.disabled = false;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("token").value = "";
  signedIn(token, claims);
}

// ---------------------------------------------------------------- routing

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, search = ""] = raw.split("?", 2);
  const parts = path.split("/").map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  return { parts, params: new URLSearchParams(search) };
}

function go(hash) {
  if (location.hash === hash) route({ focus: true });
  else location.hash = hash;
}

function markNav(view) {
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.dataset.view === view) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

async function route({ focus = true } = {}) {
  if (!state.token) return;
  const seq = ++state.renderSeq;
  const { parts, params } = parseHash();
  const [view, id] = parts;
  const views = {
    tx: () => showTransaction(id, params, seq),
    order: () => showOrder(id, params, seq),
    wallet: () => showWallet(id, params, seq),
    audit: () => showAudit(params, seq),
    projections: () => showProjections(seq),
  };
  const needsId = view === "tx" || view === "order" || view === "wallet";
  const known = view in views && (!needsId || Boolean(id));
  markNav(known ? (view === "audit" || view === "projections" ? view : "search") : "search");
  if (known && needsId) {
    $("search-q").value = id;
  }
  try {
    await (known ? views[view]() : showHome(seq));
  } catch (error) {
    if (error instanceof SignedOut) return;
    if (seq === state.renderSeq) render(seq, errorBox(describeError(error)));
  }
  if (focus && seq === state.renderSeq) {
    const title = document.querySelector("#view .view-title");
    (title ?? $("search-q")).focus();
  }
}

/** Put `nodes` in the view area, unless a newer navigation has started meanwhile. */
function render(seq, ...nodes) {
  if (seq !== state.renderSeq) return false;
  replace($("view"), ...nodes);
  return true;
}

function loading(seq, what) {
  render(seq, h("p", { class: "loading", role: "status" }, `Loading ${what}…`));
}

function takePrefetched() {
  const hit = state.prefetched;
  state.prefetched = null;
  return hit && hit.hash === location.hash ? hit.data : null;
}

// ---------------------------------------------------------------- views

async function showHome(seq) {
  const summary = h("p", { class: "hint", role: "status" }, "Checking the projections…");
  render(
    seq,
    h(
      "div",
      { class: "view-body", "data-view": "home" },
      heading("Find a transaction, order or wallet"),
      h("p", {}, "Type an id in the box above. Every time is shown in the zone chosen at the top (UTC or KST); stored values stay UTC."),
      summary,
      state.roles.includes("ADMIN_AUDIT") ? h("p", {}, h("a", { href: "#/audit" }, "Open the audit log")) : "",
      h("p", {}, h("a", { href: "#/projections" }, "See the projections and their freshness")),
    ),
  );
  try {
    // Also checks the session's token at once: a 401 here signs out.
    const all = projectionRows(await call("/admin/projections"));
    const serving = all.filter((r) => r.serving !== false);
    const failed = all.filter((r) => r.state === "failed").map((r) => `${r.projection} v${r.version}`);
    const behind = Math.max(0, ...serving.map((r) => Number(r.lag) || 0));
    summary.textContent = failed.length
      ? `Projection failed: ${failed.join(", ")}. Answers from it may be out of date; see Projections.`
      : `${serving.length} serving projection versions, at most ${behind} event${behind === 1 ? "" : "s"} behind the log.`;
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    summary.textContent = "";
  }
}

/** The as_of / as_of_position query of a lookup, from the hash (only one of them). */
function asOfParams(params) {
  if (params.get("as_of")) return { as_of: params.get("as_of") };
  if (params.get("as_of_position")) return { as_of_position: params.get("as_of_position") };
  return {};
}

/**
 * "Replay as of": look at a transaction or order as the back office knew it at a
 * time (events ingested by then) or at a log position — the API replays the log.
 */
function asOfForm(base, params) {
  const at = timeInput({ id: "asof-at", name: "as_of" }, params.get("as_of"));
  const position = h("input", {
    id: "asof-position",
    name: "as_of_position",
    type: "number",
    min: "1",
    step: "1",
    inputmode: "numeric",
    value: params.get("as_of_position") ?? "",
  });
  const formMessage = h("div", { class: "form-message" });
  const historical = Boolean(params.get("as_of") || params.get("as_of_position"));
  const form = h(
    "form",
    { class: "filters", "aria-label": "Replay as of", novalidate: true },
    h("div", { class: "field" }, h("label", { for: at.id }, "Known at ", h("span", { class: "hint" }, "(", zoneHint(), ")")), at),
    field("or at log position", position),
    h("button", { type: "submit" }, "Replay"),
    historical ? h("a", { href: base, class: "button-link" }, "Back to the current state") : "",
    formMessage,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const when = fromInputValue(at.value);
    const pos = position.value.trim();
    if (at.value && !when) return replace(formMessage, errorBox("The “Known at” time is not a valid date and time."));
    if (when && pos) return replace(formMessage, errorBox("Give a time or a log position, not both."));
    if (pos && !/^[1-9][0-9]*$/.test(pos)) return replace(formMessage, errorBox("A log position is a whole number from 1."));
    go(hashWith(base, { as_of: when, as_of_position: pos }));
  });
  return h(
    "details",
    { class: "card asof", open: historical },
    h("summary", {}, "Replay as the back office knew it earlier"),
    h("p", { class: "hint" }, "Rebuilt from the event log: only events ingested by that time (or up to that position) count."),
    form,
  );
}

function historicalNote(data) {
  return infoBox(["Historical view: this is what the back office knew at ", timeEl(data.as_of), ` (log position ${data.log_position}).`]);
}

async function showTransaction(id, params, seq) {
  const asOf = asOfParams(params);
  const historical = Object.keys(asOf).length > 0;
  const context = { what: "transaction", id, historical, roles: state.roles, action: "look up transactions", needs: "ADMIN_READ" };
  const base = `#/tx/${enc(id)}`;
  loading(seq, `transaction ${id}`);
  let tx;
  try {
    tx = takePrefetched() ?? (await call(`/admin/tx/${enc(id)}`, asOf));
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    render(seq, heading(`Transaction ${id}`), errorBox(describeError(error, context)), asOfForm(base, params));
    return;
  }
  let orderLookup = null;
  if (tx.related_id) {
    try {
      orderLookup = await call(`/admin/payment-orders/${enc(tx.related_id)}`, asOf);
    } catch (error) {
      if (error instanceof SignedOut) throw error;
      // The entry itself is shown; the pair falls back to this one leg.
    }
  }
  const view = transactionView(tx, orderLookup);
  if (tx.as_of) view.insertBefore(historicalNote(tx), view.children[1]);
  view.append(asOfForm(base, params));
  render(seq, view);
}

async function showOrder(id, params, seq) {
  const historical = Object.keys(asOfParams(params)).length > 0;
  const context = { what: "payment order", id, historical, roles: state.roles, action: "look up payment orders", needs: "ADMIN_READ" };
  const base = `#/order/${enc(id)}`;
  loading(seq, `payment order ${id}`);
  try {
    const data = takePrefetched() ?? (await call(`/admin/payment-orders/${enc(id)}`, asOfParams(params)));
    const view = orderView(data);
    if (data.as_of) view.insertBefore(historicalNote(data), view.children[1]);
    view.append(asOfForm(base, params));
    render(seq, view);
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    render(seq, heading(`Payment order ${id}`), errorBox(describeError(error, context)), asOfForm(base, params));
  }
}

/**
 * A list with Previous/Next over keyset pages. The API only knows "next", so the
 * cursors of the pages already seen are kept on a stack: page i was fetched with
 * stack[i] (null for the first page).
 */
function pagedList({ label, fetchPage, renderItems, emptyText, errorContext, onError = () => false }) {
  const stack = [null];
  let index = 0;
  const results = h("div", { class: "results" });
  const status = h("p", { class: "page-status", role: "status", "aria-live": "polite" });
  const prev = h("button", { type: "button", class: "pager-prev", disabled: true }, "← Previous page");
  const next = h("button", { type: "button", class: "pager-next", disabled: true }, "Next page →");
  const pager = h("nav", { class: "pager", "aria-label": `${label} pages` }, prev, status, next);
  const seq = state.renderSeq;

  // While a page loads the buttons stay enabled (disabling the focused one would drop
  // keyboard focus to the page body); clicks are ignored until the answer is in.
  let busy = false;

  async function load(pressed) {
    busy = true;
    results.setAttribute("aria-busy", "true");
    status.textContent = `Loading page ${index + 1}…`;
    let data;
    try {
      data = await call(fetchPage.path, { ...fetchPage.params, cursor: stack[index] });
    } catch (error) {
      if (error instanceof SignedOut || seq !== state.renderSeq) return;
      if (onError(error)) return;
      replace(results, errorBox(describeError(error, errorContext)));
      status.textContent = "";
      settle(pressed, false);
      return;
    } finally {
      busy = false;
      results.removeAttribute("aria-busy");
    }
    if (seq !== state.renderSeq) return;
    const items = Array.isArray(data.items) ? data.items : [];
    stack.length = index + 1;
    if (data.next_cursor) stack.push(data.next_cursor);
    replace(results, items.length ? renderItems(items) : h("p", { class: "empty" }, emptyText(index)));
    status.textContent = `Page ${index + 1}${items.length ? ` · ${items.length} row${items.length === 1 ? "" : "s"}` : ""}`;
    settle(pressed, Boolean(data.next_cursor));
  }

  /** Enable what can be used; if the pressed button just became disabled, focus the other. */
  function settle(pressed, hasNext) {
    prev.disabled = index === 0;
    next.disabled = !hasNext;
    if (pressed?.disabled) (pressed === next ? prev : next).focus();
  }

  prev.addEventListener("click", () => {
    if (busy || index === 0) return;
    index -= 1;
    load(prev);
  });
  next.addEventListener("click", () => {
    if (busy || index + 1 >= stack.length) return;
    index += 1;
    load(next);
  });
  return { node: h("div", { class: "paged" }, results, pager), load };
}

function field(labelText, control, hint) {
  const id = control.id;
  return h("div", { class: "field" }, h("label", { for: id }, labelText, hint ? h("span", { class: "hint" }, ` (${hint})`) : ""), control);
}

function zoneHint() {
  return h("span", { "data-zone-label": true }, zone());
}

function rangeFields(prefix, params) {
  const since = timeInput({ id: `${prefix}-since`, name: "since" }, params.get("since"));
  const until = timeInput({ id: `${prefix}-until`, name: "until" }, params.get("until"));
  return {
    since,
    until,
    nodes: [
      h("div", { class: "field" }, h("label", { for: since.id }, "From ", h("span", { class: "hint" }, "(", zoneHint(), ", inclusive)")), since),
      h("div", { class: "field" }, h("label", { for: until.id }, "Until ", h("span", { class: "hint" }, "(", zoneHint(), ", exclusive)")), until),
    ],
  };
}

/** Read a range's inputs as UTC; returns an error sentence or the values. */
function readRange(since, until) {
  const values = { since: fromInputValue(since.value), until: fromInputValue(until.value) };
  if (since.value && !values.since) return { error: "The “From” time is not a valid date and time." };
  if (until.value && !values.until) return { error: "The “Until” time is not a valid date and time." };
  if (values.since && values.until && values.since >= values.until) {
    return { error: "The “Until” time must be later than the “From” time." };
  }
  return values;
}

function hashWith(base, params) {
  const search = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) search.set(k, v);
  const text = search.toString();
  return text ? `${base}?${text}` : base;
}

function pageSizeSelect(id, value) {
  const select = h("select", { id, name: "limit" });
  for (const size of PAGE_SIZES) select.append(h("option", { value: size, selected: size === value }, size));
  return select;
}

async function showWallet(id, params, seq) {
  const limit = PAGE_SIZES.includes(params.get("limit")) ? params.get("limit") : DEFAULT_PAGE_SIZE;
  const includeDeleted = params.get("include_deleted") === "true";
  const range = rangeFields("wallet", params);
  const sizeSelect = pageSizeSelect("wallet-limit", limit);
  const deletedBox = h("input", { type: "checkbox", id: "wallet-deleted", name: "include_deleted", checked: includeDeleted });
  const formMessage = h("div", { class: "form-message" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Wallet history filters", novalidate: true },
    range.nodes,
    field("Rows per page", sizeSelect),
    h("div", { class: "field checkbox" }, deletedBox, h("label", { for: deletedBox.id }, "Include deleted entries")),
    h("button", { type: "submit" }, "Apply"),
    formMessage,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = readRange(range.since, range.until);
    if (values.error) return replace(formMessage, errorBox(values.error));
    go(hashWith(`#/wallet/${enc(id)}`, {
      since: values.since,
      until: values.until,
      limit: sizeSelect.value === DEFAULT_PAGE_SIZE ? "" : sizeSelect.value,
      include_deleted: deletedBox.checked ? "true" : "",
    }));
  });
  const list = pagedList({
    label: `Wallet ${id} history`,
    fetchPage: {
      path: `/admin/wallets/${enc(id)}/tx`,
      params: { limit, since: params.get("since"), until: params.get("until"), include_deleted: includeDeleted ? "true" : "" },
    },
    renderItems: (items) => table(`Entries of wallet ${id}, newest first`, WALLET_COLUMNS, items, (row) => ({ "data-tx-id": row.tx_id })),
    emptyText: (index) => (index === 0 ? "No entries for this wallet in this range." : "No more entries."),
    errorContext: { what: "wallet", id, roles: state.roles, action: "see wallet histories", needs: "ADMIN_READ" },
  });
  if (
    !render(
      seq,
      h(
        "div",
        { class: "view-body", "data-view": "wallet" },
        heading(`Wallet ${id}`),
        h("p", { class: "hint" }, "Newest first. Times in the range are read in the zone chosen at the top."),
        section("Filters", form),
        section("History", list.node),
      ),
    )
  ) {
    return;
  }
  await list.load();
}

async function showAudit(params, seq) {
  const actor = h("input", { id: "audit-actor", name: "actor", type: "text", value: params.get("actor") ?? "", autocomplete: "off" });
  const resource = h("input", { id: "audit-resource", name: "resource_id", type: "text", value: params.get("resource_id") ?? "", autocomplete: "off" });
  const range = rangeFields("audit", params);
  const limit = PAGE_SIZES.includes(params.get("limit")) ? params.get("limit") : "50";
  const sizeSelect = pageSizeSelect("audit-limit", limit);
  const formMessage = h("div", { class: "form-message" });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Audit filters", novalidate: true },
    field("Actor", actor),
    field("Resource id", resource),
    range.nodes,
    field("Rows per page", sizeSelect),
    h("button", { type: "submit" }, "Apply"),
    formMessage,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const values = readRange(range.since, range.until);
    if (values.error) return replace(formMessage, errorBox(values.error));
    go(hashWith("#/audit", {
      actor: actor.value.trim(),
      resource_id: resource.value.trim(),
      since: values.since,
      until: values.until,
      limit: sizeSelect.value === "50" ? "" : sizeSelect.value,
    }));
  });
  const list = pagedList({
    label: "Audit log",
    fetchPage: {
      path: "/admin/audit",
      params: {
        actor: params.get("actor"),
        resource_id: params.get("resource_id"),
        since: params.get("since"),
        until: params.get("until"),
        limit,
      },
    },
    renderItems: (items) => table("Audit records, newest first", AUDIT_COLUMNS, auditRows(items)),
    emptyText: (index) => (index === 0 ? "No audit records match these filters." : "No more records."),
    errorContext: { what: "audit log", roles: state.roles, action: "view the audit log", needs: "ADMIN_AUDIT" },
    // Without the role, filters and pages are of no use: show the sentence alone.
    onError: (error) =>
      error instanceof ApiError &&
      error.status === 403 &&
      render(
        seq,
        h(
          "div",
          { class: "view-body", "data-view": "audit" },
          heading("Audit log"),
          errorBox(describeError(error, { what: "audit log", roles: state.roles, action: "view the audit log", needs: "ADMIN_AUDIT" })),
        ),
      ),
  });
  if (
    !render(
      seq,
      h(
        "div",
        { class: "view-body", "data-view": "audit" },
        heading("Audit log"),
        h("p", { class: "hint" }, "Every admin request, including refused ones. Needs the ADMIN_AUDIT role."),
        section("Filters", form),
        section("Records", list.node),
      ),
    )
  ) {
    return;
  }
  await list.load();
}

async function showProjections(seq) {
  loading(seq, "projections");
  const refresh = h("button", { type: "button", class: "secondary" }, "Refresh");
  refresh.addEventListener("click", () => route({ focus: false }));
  let body;
  try {
    body = await call("/admin/projections");
  } catch (error) {
    if (error instanceof SignedOut) throw error;
    const context = { what: "projections", roles: state.roles, action: "see the projections", needs: "ADMIN_READ or ADMIN_AUDIT" };
    render(seq, heading("Projections"), errorBox(describeError(error, context)));
    return;
  }
  const rows = projectionRows(body);
  const head = body?.log_head ?? rows.find((r) => r.log_head !== undefined)?.log_head;
  render(
    seq,
    h(
      "div",
      { class: "view-body", "data-view": "projections" },
      heading("Projections", refresh),
      h(
        "p",
        { class: "hint" },
        head !== undefined ? `Log head: position ${head}. ` : "",
        "Lag counts events in the log not yet applied by that version. Fetched ",
        timeEl(new Date().toISOString()),
        ".",
      ),
      rows.length ? projectionsTable(rows) : infoBox("No projection versions are known yet."),
    ),
  );
}

// ---------------------------------------------------------------- search

async function onSearch(event) {
  event.preventDefault();
  const q = $("search-q").value.trim();
  const kind = $("search-kind").value;
  if (!q) {
    replace($("view"), errorBox("Type a transaction, order or wallet id to search."));
    $("search-q").focus();
    return;
  }
  if (kind === "tx") return go(`#/tx/${enc(q)}`);
  if (kind === "order") return go(`#/order/${enc(q)}`);
  if (kind === "wallet") return go(`#/wallet/${enc(q)}`);
  const seq = ++state.renderSeq;
  loading(seq, `“${q}”`);
  try {
    const hash = await resolveAny(q);
    if (seq !== state.renderSeq) return;
    if (hash) return go(hash);
    render(
      seq,
      errorBox(`Nothing is known with id “${q}”: it is not a transaction, a payment order or a wallet with entries.`),
    );
  } catch (error) {
    if (error instanceof SignedOut) return;
    render(seq, errorBox(describeError(error, { what: "transaction, order or wallet", id: q, roles: state.roles, action: "look up ids", needs: "ADMIN_READ" })));
  }
}

/** "Any": try the id as a transaction, then an order, then a wallet; 404 moves on. */
async function resolveAny(q) {
  const attempts = [
    [`#/tx/${enc(q)}`, `/admin/tx/${enc(q)}`, {}, () => true],
    [`#/order/${enc(q)}`, `/admin/payment-orders/${enc(q)}`, {}, () => true],
    [`#/wallet/${enc(q)}`, `/admin/wallets/${enc(q)}/tx`, { limit: 1 }, (d) => d.items?.length > 0],
  ];
  for (const [hash, path, params, found] of attempts) {
    try {
      const data = await call(path, params);
      if (found(data)) {
        state.prefetched = hash.startsWith("#/wallet/") ? null : { hash, data };
        return hash;
      }
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 404)) throw error;
    }
  }
  return null;
}

// ---------------------------------------------------------------- start

function start() {
  const savedZone = sessionStorage.getItem(ZONE_KEY);
  for (const radio of document.querySelectorAll('input[name="zone"]')) {
    if (savedZone && radio.value === savedZone) radio.checked = true;
    radio.addEventListener("change", () => {
      if (!radio.checked) return;
      sessionStorage.setItem(ZONE_KEY, radio.value);
      setZone(radio.value);
    });
  }
  setZone(document.querySelector('input[name="zone"]:checked')?.value ?? "UTC");

  $("signin-form").addEventListener("submit", onSignIn);
  $("search-form").addEventListener("submit", onSearch);
  $("sign-out").addEventListener("click", () => signOut("You signed out.", "info"));
  // The skip link must not touch location.hash, which is the router's.
  $("skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    const target = $("signin").hidden ? document.querySelector("#view .view-title") : $("token");
    (target ?? $("main")).focus();
  });
  window.addEventListener("hashchange", () => route({ focus: true }));

  const saved = sessionStorage.getItem(TOKEN_KEY);
  const claims = saved ? decodeClaims(saved) : null;
  if (saved && claims && (expiryMs(claims) ?? Infinity) > Date.now()) {
    signedIn(saved, claims, { focus: false }); // a fresh load keeps focus at the top
  } else if (saved) {
    signOut("Your session ended: the saved token has expired. Sign in again with a fresh token.");
  } else {
    showSignIn("", { focus: false });
  }
}

start();
