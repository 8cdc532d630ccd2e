// Read a JWT's payload for display only (who is signed in, roles, expiry).
// The page never trusts it: the server verifies every request.

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.([A-Za-z0-9_-]+)\.[A-Za-z0-9_-]*$/;

function decodeBase64Url(part) {
  const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
  const padded = b64 + "=".repeat((4 - (b64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
}

/** Strip whitespace and an optional "Bearer " prefix from pasted text. */
export function cleanToken(text) {
  return String(text ?? "").trim().replace(/^bearer\s+/i, "").replace(/\s+/g, "");
}

/** The payload object of a JWT, or null when `token` is not one. */
export function decodeClaims(token) {
  const match = JWT_SHAPE.exec(token);
  if (!match) return null;
  try {
    const claims = JSON.parse(decodeBase64Url(match[1]));
    return claims && typeof claims === "object" && !Array.isArray(claims) ? claims : null;
  } catch {
    return null;
  }
}

function at(obj, path) {
  return path.split(".").reduce((o, k) => (o && typeof o === "object" ? o[k] : undefined), obj);
}

/**
 * Roles from the usual claims (`roles`, then Keycloak's `realm_access.roles`).
 * The server may be configured with another claim (BO_OIDC_ROLES_CLAIM); then the
 * page shows no roles but the server still authorises correctly.
 */
export function rolesOf(claims) {
  for (const path of ["roles", "realm_access.roles"]) {
    const value = at(claims, path);
    if (Array.isArray(value)) return value.map(String);
    if (typeof value === "string" && value) return value.split(/[\s,]+/).filter(Boolean);
  }
  return [];
}

/** Expiry as epoch milliseconds, or null when the token has no numeric `exp`. */
export function expiryMs(claims) {
  return typeof claims.exp === "number" && Number.isFinite(claims.exp) ? claims.exp * 1000 : null;
}
