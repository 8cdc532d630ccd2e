// Every time the API returns is UTC (RFC 3339). The console shows it in UTC or in
// KST (UTC+9, no daylight saving) — display only: what is sent back is always UTC.
// Each shown time is a <time datetime="…UTC…" data-utc> element, so switching the
// zone rewrites the text in place without asking the server again.

import { h } from "./dom.js";

export const ZONES = Object.freeze({
  UTC: { label: "UTC", offsetMinutes: 0 },
  KST: { label: "KST", offsetMinutes: 9 * 60 },
});

let currentZone = "UTC";

export function zone() {
  return currentZone;
}

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?\s*([Zz]|[+-]\d{2}:?\d{2})?$/;

/** Parse an RFC 3339 text into { ms, fraction } (fraction kept as text: µs survive). */
export function parseInstant(text) {
  const m = RFC3339.exec(String(text ?? "").trim());
  if (!m) return null;
  const [, y, mo, d, hh, mi, ss = "00", fraction = "", off = "Z"] = m;
  let offsetMinutes = 0;
  if (off.toUpperCase() !== "Z") {
    const sign = off[0] === "-" ? -1 : 1;
    const digits = off.slice(1).replace(":", "");
    offsetMinutes = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2)));
  }
  const ms = Date.UTC(+y, +mo - 1, +d, +hh, +mi, +ss) - offsetMinutes * 60_000;
  return Number.isNaN(ms) ? null : { ms, fraction };
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

function wallClock(ms, zoneName) {
  const d = new Date(ms + ZONES[zoneName].offsetMinutes * 60_000);
  return {
    date: `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`,
    time: `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`,
  };
}

/** "2026-01-01 09:00:00 KST" (sub-second digits shown only when not all zero). */
export function formatInstant(text, zoneName = currentZone) {
  const p = parseInstant(text);
  if (!p) return String(text);
  const { date, time } = wallClock(p.ms, zoneName);
  const fraction = /^\.0*$/.test(p.fraction) ? "" : p.fraction;
  return `${date} ${time}${fraction} ${ZONES[zoneName].label}`;
}

/** A <time> element for an API timestamp, or an em dash for none. */
export function timeEl(text) {
  if (text === null || text === undefined || text === "") {
    return h("span", { class: "none", title: "not set" }, "—");
  }
  const el = h("time", { datetime: String(text), "data-utc": String(text) });
  el.textContent = formatInstant(text);
  el.title = `${formatInstant(text, "UTC")} (stored value ${text})`;
  return el;
}

/** Switch the display zone and rewrite every shown time and time input. */
export function setZone(zoneName, root = document) {
  if (!(zoneName in ZONES)) return;
  currentZone = zoneName;
  for (const el of root.querySelectorAll("time[data-utc]")) {
    el.textContent = formatInstant(el.dataset.utc);
  }
  for (const input of root.querySelectorAll("input[data-utc-input]")) {
    input.value = input.dataset.utcValue ? toInputValue(input.dataset.utcValue) : "";
  }
  for (const label of root.querySelectorAll("[data-zone-label]")) {
    label.textContent = ZONES[currentZone].label;
  }
}

/** UTC RFC 3339 → the value of a datetime-local input, in the shown zone. */
export function toInputValue(utcText) {
  const p = parseInstant(utcText);
  if (!p) return "";
  const { date, time } = wallClock(p.ms, currentZone);
  return `${date}T${time}`;
}

/** A datetime-local value read in the shown zone → UTC RFC 3339 ("…Z"), or null. */
export function fromInputValue(value) {
  if (!value) return null;
  const p = parseInstant(`${value}Z`);
  if (!p) return null;
  const utc = new Date(p.ms - ZONES[currentZone].offsetMinutes * 60_000);
  return utc.toISOString().replace(/\.000Z$/, "Z");
}

/** A datetime-local input bound to a UTC value that follows the zone toggle. */
export function timeInput(attrs, utcValue) {
  const input = h("input", { type: "datetime-local", step: "1", "data-utc-input": true, ...attrs });
  input.dataset.utcValue = utcValue ?? "";
  input.value = utcValue ? toInputValue(utcValue) : "";
  input.addEventListener("change", () => {
    input.dataset.utcValue = fromInputValue(input.value) ?? "";
  });
  return input;
}

/** "0.4 s", "2 min 5 s", "3 h 12 min". */
export function formatDuration(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s)) return "unknown";
  if (s > 0 && s < 0.1) return "under 0.1 s";
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}
