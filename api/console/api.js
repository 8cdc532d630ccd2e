// Calls to the admin API and the plain sentences shown when one fails.

import { formatDuration } from "./time.js";

/** A failed API call: HTTP status (0 when the server could not be reached) and problem body. */
export class ApiError extends Error {
  constructor(status, problem = {}) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.problem = problem && typeof problem === "object" ? problem : {};
  }
}

function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) {
    if (value !== null && value !== undefined && value !== "" && value !== false) {
      search.set(key, String(value));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/**
 * The API's URL for `path` ("/admin/…"), relative to the page's own folder, so a
 * proxy that serves everything under a prefix (/bo/console/ → /bo/admin/…) just works.
 */
export function apiUrl(path) {
  return new URL(`..${path}`, document.baseURI).href;
}

/** GET a JSON document from the API with the bearer token; throws ApiError. */
export async function getJson(path, params, token) {
  let response;
  try {
    response = await fetch(apiUrl(path) + query(params), {
      headers: { Accept: "application/json", Authorization: `Bearer ${token}` },
      cache: "no-store",
      credentials: "omit",
    });
  } catch {
    throw new ApiError(0, {});
  }
  let body = {};
  try {
    body = await response.json();
  } catch {
    body = {};
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function lagSentence(problem) {
  const lag = Number(problem.data_lag_sec);
  if (!Number.isFinite(lag) || lag < 1) return "";
  return ` The back office may be up to ${formatDuration(lag)} behind, so a very recent change may not be visible yet.`;
}

/**
 * One readable sentence for a failed call.
 * `context`: { what: "transaction", id?: "T1", action?: "view the audit log", needs?: "ADMIN_AUDIT", roles?: [...] }.
 */
export function describeError(error, context = {}) {
  if (!(error instanceof ApiError)) {
    return "Something went wrong in the page itself. Reload it and try again.";
  }
  const { status, problem } = error;
  const what = context.what ?? "record";
  const quoted = context.id !== undefined ? `“${context.id}”` : "";
  switch (status) {
    case 0:
      return "The server could not be reached. Check your connection and try again.";
    case 401:
      return "You are signed out: the server did not accept your token (it may have expired or been revoked). Sign in again with a fresh token.";
    case 403: {
      const roles = context.roles?.length ? context.roles.join(", ") : "none";
      const needs = context.needs ? ` It needs the ${context.needs} role.` : "";
      return `Your roles (${roles}) do not allow you to ${context.action ?? `see this ${what}`}.${needs}`;
    }
    case 404:
      if (context.historical) {
        return `No ${what} ${quoted ? `with id ${quoted} ` : ""}was known at that point in the log.`;
      }
      return `No ${what} ${quoted ? `with id ${quoted} ` : ""}is known.${lagSentence(problem)}`;
    case 422:
      // the id is at fault only when the problem says so (a path error, or none named)
      if (context.id !== undefined && !onlyQueryErrors(problem)) {
        return `${quoted} is not a valid ${what} id: use 1 to 128 letters, digits, dots, underscores, colons or hyphens.`;
      }
      return `The request was not accepted: ${plainDetail(problem) || "check the filters and try again."}`;
    case 503:
      return "The service cannot answer right now (its database or audit log is unavailable), so nothing was shown. Try again in a moment.";
    default:
      return `The server failed to answer (HTTP ${status}). Try again, and tell the platform team if it keeps happening.`;
  }
}

function onlyQueryErrors(problem) {
  const errors = Array.isArray(problem.errors) ? problem.errors : [];
  return errors.length > 0 && errors.every((e) => Array.isArray(e.loc) && e.loc[0] === "query");
}

function plainDetail(problem) {
  if (typeof problem.detail === "string" && problem.detail.length <= 300) return problem.detail;
  const first = Array.isArray(problem.errors) ? problem.errors[0] : null;
  if (first && typeof first.msg === "string") {
    const where = Array.isArray(first.loc) ? first.loc[first.loc.length - 1] : "";
    return where ? `${where}: ${first.msg}` : first.msg;
  }
  return typeof problem.title === "string" ? problem.title : "";
}
