"""Bearer-token authentication (SPEC §7): OIDC with a cached JWKS, or a local dev key pair.

Both modes run the same checks: the header's ``alg`` must be one of the pinned
asymmetric algorithms (never ``none``, never HS*), the key is chosen by ``kid`` from
keys *we* hold (``jku``/``x5u``/``jwk`` headers are never consulted), and ``iss``,
``aud``, ``exp`` and ``nbf`` are checked with 30 s leeway. Roles come from a dotted
claim path.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from loguru import logger

from eventlog.errors import ConfigError, UsageError
from eventlog.settings import Settings

LEEWAY_SECONDS = 30
MAX_CLAIM_SECONDS = 253_402_300_799.0  # 9999-12-31T23:59:59Z: exp/nbf beyond it are invalid
DEV_ISSUER = "bo-dev"
DEV_AUDIENCE = "bo-admin"
DEV_ALGORITHM = "RS256"
DEV_KEY_FILE = "dev-jwt-private.pem"
REFETCH_INTERVAL = 60.0  # an unknown kid refetches the JWKS at most this often
EMPTY_RETRY_INTERVAL = 5.0  # while no keys were ever fetched
MAX_KEY_AGE = 3600.0  # keys older than this are refreshed at the next (throttled) chance
MAX_TTL = 30 * 24 * 3600
CACHE_SECONDS = 60.0  # a verified token is trusted without re-checking its signature this long
CACHE_SIZE = 10_000


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller."""

    sub: str
    roles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    exp: float
    nbf: float
    cached_until: float


class AuthError(Exception):
    """The token is missing or does not verify (401)."""


class KeysUnavailable(Exception):
    """No signing keys could be obtained at all (503): not the caller's fault."""


@dataclass(frozen=True, slots=True)
class _Key:
    key: Any
    alg: str | None


class JwksCache:
    """Signing keys from a JWKS URL, by ``kid``.

    1. Keys are fetched on first use and kept.
    2. A ``kid`` we do not hold triggers a refetch, at most once per ``REFETCH_INTERVAL``.
    3. A failed fetch keeps the last good keys (an outage of the IdP does not log anyone out).
    4. Keys older than ``MAX_KEY_AGE`` are refreshed at the next throttled chance, so a
       key the IdP removed stops working.
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        fetch: Callable[[str], Mapping[str, Any]] | None = None,
    ) -> None:
        self.url = url
        self._clock = clock or _monotonic
        self._fetch = fetch or _http_fetch
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def get(self, kid: str | None) -> _Key:
        with self._lock:
            if self._should_fetch(kid):
                self._refresh()
            if not self._keys:
                raise KeysUnavailable("signing keys unavailable (JWKS cannot be fetched)")
            if kid is None:
                if len(self._keys) == 1:
                    return next(iter(self._keys.values()))
                raise AuthError("token has no kid")
            found = self._keys.get(kid)
            if found is None:
                raise AuthError("unknown signing key (kid)")
            return found

    def _should_fetch(self, kid: str | None) -> bool:
        now = self._clock()
        since_attempt = None if self._attempted_at is None else now - self._attempted_at
        if self._fetched_at is None:
            return since_attempt is None or since_attempt >= EMPTY_RETRY_INTERVAL
        assert since_attempt is not None
        if since_attempt < REFETCH_INTERVAL:
            return False
        unknown = kid is not None and kid not in self._keys
        return unknown or now - self._fetched_at >= MAX_KEY_AGE

    def _refresh(self) -> None:
        self._attempted_at = self._clock()
        self.fetches += 1
        try:
            document = self._fetch(self.url)
            keys = parse_jwks(document)
        except (httpx.HTTPError, ValueError, TypeError, KeyError) as exc:
            logger.warning("JWKS fetch failed, keeping {} cached keys: {}", len(self._keys), exc)
            return
        if not keys:
            logger.warning(
                "JWKS at {} holds no usable signing keys; keeping the old ones", self.url
            )
            return
        self._keys = keys
        self._fetched_at = self._attempted_at


def _monotonic() -> float:
    return time.monotonic()


JWKS_FETCH_SECONDS = 5.0  # the whole fetch, not each read: lookups wait behind it
JWKS_MAX_BYTES = 1 << 20  # a JWKS is a few kB; more is not a key set


def _http_fetch(url: str) -> Mapping[str, Any]:
    """GET the JWKS within :data:`JWKS_FETCH_SECONDS` in all and :data:`JWKS_MAX_BYTES`.

    httpx's timeout bounds each read, so a server sending a byte every few seconds would
    hold the cache's lock — and every token lookup behind it — for as long as it liked.
    """
    deadline = time.monotonic() + JWKS_FETCH_SECONDS
    body = bytearray()
    with httpx.stream("GET", url, timeout=JWKS_FETCH_SECONDS, follow_redirects=False) as response:
        response.raise_for_status()
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > JWKS_MAX_BYTES:
                raise ValueError(f"JWKS larger than {JWKS_MAX_BYTES} bytes")
            if time.monotonic() > deadline:
                raise ValueError(f"JWKS not received within {JWKS_FETCH_SECONDS:.0f} s")
    document = json.loads(body)
    if not isinstance(document, dict):
        raise ValueError("JWKS is not a JSON object")
    return document


def parse_jwks(document: Mapping[str, Any]) -> dict[str, _Key]:
    """Usable signature keys of a JWKS by kid; symmetric (``oct``) and non-``sig`` keys skipped."""
    keys: dict[str, _Key] = {}
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("JWKS has no 'keys' list")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC", "OKP"):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            parsed = jwt.PyJWK(entry)
        except Exception as exc:  # one odd entry (alg "none", a list) must not void the rest
            logger.warning("JWKS entry {} skipped: {}", entry.get("kid", f"#{index}"), exc)
            continue
        kid = str(entry.get("kid") or f"#{index}")
        alg = entry.get("alg")
        keys[kid] = _Key(parsed.key, alg if isinstance(alg, str) else None)
    return keys


_MISSING = object()


def claim_path(claims: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path (``realm_access.roles``). A top-level key spelled with the
    dots (a namespaced claim, ``https://example.com/roles``) is read only when the path
    leads nowhere: a claim named ``realm_access.roles`` must not override the provider's
    nested ``realm_access`` object (a user-editable custom claim could be so named)."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            value = _MISSING
            break
        value = value[part]
    if value is not _MISSING:
        return value
    return claims.get(path)


def roles_of(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(r for r in value.split() if r)
    if isinstance(value, list):
        return tuple(r for r in value if isinstance(r, str) and r)
    return ()


class Verifier:
    """Verify bearer tokens against keys found by ``kid``."""

    def __init__(
        self,
        *,
        keys: Callable[[str | None], _Key],
        issuer: str,
        audience: str,
        algorithms: list[str],
        roles_claim: str,
    ) -> None:
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.algorithms = algorithms
        self.roles_claim = roles_claim
        self._verified: dict[str, _Verified] = {}

    def verify(self, token: str) -> Principal:
        """The principal of a valid token; :class:`AuthError` otherwise.

        A token that verified is remembered for at most ``CACHE_SECONDS`` (the signature
        check is the costliest step of a request); ``exp``/``nbf`` are re-checked on every
        use, and a key the IdP withdraws stops being honoured within that time.
        """
        now = time.time()
        hit = self._verified.get(token)
        if hit is not None and now < hit.cached_until:
            if now > hit.exp + LEEWAY_SECONDS:
                raise AuthError("token expired")
            if now < hit.nbf - LEEWAY_SECONDS:
                raise AuthError("token not yet valid (nbf)")
            return hit.principal
        principal, claims = self._verify(token)
        if len(self._verified) >= CACHE_SIZE:
            self._verified.clear()
        self._verified[token] = _Verified(
            principal,
            exp=float(claims["exp"]),
            nbf=float(claims.get("nbf") or 0),
            cached_until=now + CACHE_SECONDS,
        )
        return principal

    def cached(self, token: str) -> Principal | None:
        """The principal of a token verified recently and still within exp/nbf; no key fetch."""
        hit = self._verified.get(token)
        now = time.time()
        if hit is None or now >= hit.cached_until:
            return None
        if not hit.nbf - LEEWAY_SECONDS <= now <= hit.exp + LEEWAY_SECONDS:
            return None
        return hit.principal

    def _verify(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthError("malformed token") from exc
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise AuthError("token algorithm not allowed")
        kid = header.get("kid")
        key = self._keys(kid if isinstance(kid, str) else None)
        if key.alg is not None and key.alg != alg:
            raise AuthError("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token expired") from exc
        except jwt.ImmatureSignatureError as exc:  # nbf, or iat, in the future
            claim = "iat" if "(iat)" in str(exc) else "nbf"
            raise AuthError(f"token not yet valid ({claim})") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("token issuer not accepted") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("token signature invalid") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError("token invalid") from exc
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise AuthError("token subject invalid")
        for name in ("exp", "nbf"):
            value = claims.get(name)
            if name == "nbf" and value is None:
                continue
            # a number a float holds: a 400-digit exp must not crash the request
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise AuthError(f"token {name} invalid")
            try:
                seconds = float(value)
            except OverflowError as exc:
                raise AuthError(f"token {name} out of range") from exc
            if not -MAX_CLAIM_SECONDS <= seconds <= MAX_CLAIM_SECONDS:
                raise AuthError(f"token {name} out of range")
        return Principal(sub=sub, roles=roles_of(claim_path(claims, self.roles_claim))), claims


def make_verifier(settings: Settings) -> Verifier:
    """The verifier for ``settings.auth_mode``; keys are loaded lazily, not here."""
    if settings.auth_mode == "oidc":
        if not (settings.oidc_jwks_url and settings.oidc_issuer and settings.oidc_audience):
            raise ConfigError("BO_AUTH_MODE=oidc needs BO_OIDC_JWKS_URL, _ISSUER and _AUDIENCE")
        cache = JwksCache(settings.oidc_jwks_url)
        return Verifier(
            keys=cache.get,
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            algorithms=settings.algorithms,
            roles_claim=settings.oidc_roles_claim,
        )
    dev = DevKeys(settings.var_dir)
    return Verifier(
        keys=dev.get,
        issuer=DEV_ISSUER,
        audience=DEV_AUDIENCE,
        algorithms=[DEV_ALGORITHM],
        roles_claim="roles",
    )


class DevKeys:
    """The local RSA key pair for dev mode, created on first use (private key mode 0600)."""

    def __init__(self, var_dir: Path) -> None:
        self.path = Path(var_dir) / DEV_KEY_FILE
        self._lock = threading.Lock()
        self._loaded: tuple[rsa.RSAPrivateKey, str] | None = None

    def private(self) -> tuple[rsa.RSAPrivateKey, str]:
        """The private key and its kid."""
        with self._lock:
            if self._loaded is None:
                key = _load_or_create(self.path)
                self._loaded = (key, _kid(key.public_key()))
            return self._loaded

    def get(self, kid: str | None) -> _Key:
        key, own_kid = self.private()
        if kid is not None and kid != own_kid:
            raise AuthError("unknown signing key (kid)")
        return _Key(key.public_key(), DEV_ALGORITHM)


def _kid(public: rsa.RSAPublicKey) -> str:
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:16]


def _load_or_create(path: Path) -> rsa.RSAPrivateKey:
    """Load the PEM key; create it atomically if absent (two processes agree on one key).
    A directory it cannot use is a configuration error naming ``BO_VAR_DIR``."""
    try:
        return _load_or_create_in(path)
    except OSError as exc:
        raise ConfigError(
            f"BO_VAR_DIR: cannot keep the dev signing key at {path}: {exc.strerror or exc}"
        ) from exc


def _load_or_create_in(path: Path) -> rsa.RSAPrivateKey:
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(tmp, path)  # fails if another process won the race: use theirs
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"dev signing key {path} is unreadable: {exc}") from exc
    if not isinstance(loaded, rsa.RSAPrivateKey):
        raise ConfigError(f"dev signing key {path} is not an RSA key")
    return loaded


def dev_token(settings: Settings, sub: str, roles: list[str], ttl: int) -> str:
    """A signed dev-mode token; refused in OIDC mode (tokens come from the IdP there)."""
    if settings.auth_mode != "dev":
        raise UsageError("tokens are issued by the identity provider in OIDC mode (BO_AUTH_MODE)")
    if not sub.strip():
        raise UsageError("--sub must not be empty")
    if not 1 <= ttl <= MAX_TTL:
        raise UsageError(f"--ttl must be between 1 and {MAX_TTL} seconds")
    key, kid = DevKeys(settings.var_dir).private()
    now = int(time.time())
    claims = {
        "iss": DEV_ISSUER,
        "aud": DEV_AUDIENCE,
        "sub": sub,
        "roles": roles,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, key, algorithm=DEV_ALGORITHM, headers={"kid": kid})
