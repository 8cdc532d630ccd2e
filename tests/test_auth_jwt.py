"""Authentication (SPEC §7): a local JWKS server over real HTTP, key rotation, outages,
and the attack suite — every forged or invalid token gets 401, a valid token without a
role gets 403."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from freezegun import freeze_time
from sqlalchemy import Engine

from api.auth import REFETCH_INTERVAL, AuthError, JwksCache, Verifier, dev_token
from eventlog.errors import UsageError
from eventlog.settings import load_settings
from tests.fixtures_api import ApiEnv, client, make_env

ISSUER = "https://idp.example.test/realms/bo"
AUDIENCE = "bo-admin-api"
READ = "ADMIN_READ"


@dataclass
class Jwks:
    """A JWKS endpoint we control: its document, its health, how often it was asked."""

    url: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    healthy: bool = True
    hits: int = 0


@dataclass
class SigningKey:
    kid: str
    private: Any
    alg: str

    def jwk(self) -> dict[str, Any]:
        algo: Any = (
            jwt.algorithms.RSAAlgorithm if self.alg[:2] == "RS" else jwt.algorithms.ECAlgorithm
        )
        data: dict[str, Any] = json.loads(algo.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, alg=self.alg, use="sig")
        return data

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(
            claims, self.private, algorithm=self.alg, headers={"kid": self.kid, **headers}
        )


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


@contextmanager
def jwks_server(state: Jwks) -> Iterator[Jwks]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            if not state.healthy:
                self.send_response(503)
                self.end_headers()
                return
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": [AUDIENCE, "other"],
        "sub": "alice",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "realm_access": {"roles": [READ]},
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


@dataclass
class Oidc:
    env: ApiEnv
    idp: Jwks
    key: SigningKey


@pytest.fixture
def oidc(sqlite_url: str, engine_factory: Any, tmp_path: Path) -> Iterator[Oidc]:
    key = rsa_key("k1")
    with jwks_server(Jwks(keys=[key.jwk()])) as idp:
        engine: Engine = engine_factory(sqlite_url)
        env = make_env(
            engine,
            tmp_path,
            auth_mode="oidc",
            oidc_jwks_url=idp.url,
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
            oidc_roles_claim="realm_access.roles",
        )
        yield Oidc(env, idp, key)


def oidc_verifier(cache: JwksCache) -> Verifier:
    """The OIDC verifier of these tests (RS256, roles at ``realm_access.roles``) on ``cache``."""
    return Verifier(
        keys=cache.get,
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        roles_claim="realm_access.roles",
    )


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"


def attack_tokens(key: SigningKey, attacker: SigningKey, attacker_url: str) -> dict[str, str]:
    good = key.sign(claims())
    head, _payload, signature = good.split(".")
    forged_payload = _b64(
        json.dumps(claims(sub="root", realm_access={"roles": ["ADMIN_AUDIT"]})).encode()
    )
    hs_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims())
    hs_sig = _b64(hmac.new(key.public_pem(), hs_input.encode(), hashlib.sha256).digest())
    now = datetime.now(UTC)
    with freeze_time(now - timedelta(hours=2)):
        expired = key.sign(claims())
    with freeze_time(now + timedelta(hours=1)):
        future = key.sign(claims())
    return {
        "alg none": _unsigned({"alg": "none", "typ": "JWT"}, claims()) + ".",
        "alg none with kid": _unsigned({"alg": "none", "kid": key.kid}, claims()) + ".",
        "HS256 signed with the RSA public key": f"{hs_input}.{hs_sig}",
        "claims altered under a reused signature": f"{head}.{forged_payload}.{signature}",
        "wrong iss": key.sign(claims(iss="https://evil.example.test")),
        "wrong aud": key.sign(claims(aud="someone-else")),
        "no aud": key.sign(claims(aud=None)),
        "no exp": key.sign(claims(exp=None)),
        "expired": expired,
        "nbf in the future": future,
        "unknown kid": attacker.sign(claims(), kid="nobody-knows-me"),
        "jku to attacker key": attacker.sign(claims(), jku=attacker_url),
        "x5u to attacker key": attacker.sign(claims(), x5u=attacker_url),
        "jwk header with attacker key": attacker.sign(claims(), jwk=attacker.jwk()),
        "attacker key under our kid": SigningKey(key.kid, attacker.private, "RS256").sign(claims()),
        "exp past any date (400 digits)": key.sign(claims(exp=10**400)),
        "nbf before any date (400 digits)": key.sign(claims(nbf=-(10**400))),
        "garbage": "not.a.token",
        "empty segments": "..",
    }


def test_attack_suite_is_401(oidc: Oidc) -> None:
    attacker = rsa_key("evil")
    with jwks_server(Jwks(keys=[attacker.jwk()])) as evil, client(oidc.env.app()) as c:
        ok = c.get(
            "/admin/projections", headers={"Authorization": f"Bearer {oidc.key.sign(claims())}"}
        )
        assert ok.status_code == 200, ok.text
        for name, token in attack_tokens(oidc.key, attacker, evil.url).items():
            r = c.get("/admin/projections", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 401, (name, r.status_code, r.text)
            assert r.headers["content-type"] == "application/problem+json", name
            assert r.headers["www-authenticate"].startswith("Bearer"), name
        assert evil.hits == 0  # jku/x5u are never followed
    assert oidc.idp.hits <= 2  # the initial fetch and at most one refetch for the unknown kids


def test_missing_or_malformed_authorization_is_401(oidc: Oidc) -> None:
    with client(oidc.env.app()) as c:
        for headers in ({}, {"Authorization": "Basic YWxpY2U6cHc="}, {"Authorization": "Bearer"}):
            r = c.get("/admin/tx/T1", headers=headers)
            assert r.status_code == 401, headers
            assert "Bearer" in r.headers["www-authenticate"]


def test_valid_token_without_role_is_403(oidc: Oidc) -> None:
    no_roles = oidc.key.sign(claims(realm_access=None))
    wrong_role = oidc.key.sign(claims(realm_access={"roles": ["SOMETHING_ELSE"]}))
    top_level = oidc.key.sign(claims(realm_access=None, roles=[READ]))  # not at the claim path
    with client(oidc.env.app()) as c:
        for token in (no_roles, wrong_role, top_level):
            r = c.get("/admin/projections", headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 403
            assert r.headers["content-type"] == "application/problem+json"


def test_a_claim_named_like_the_path_does_not_override_the_nested_roles(oidc: Oidc) -> None:
    """``realm_access.roles`` is a path: a top-level claim literally so named (a custom claim
    a user might edit) is not read while the provider's nested object is there."""
    forged = {"realm_access.roles": ["ADMIN_AUDIT"]}
    escalated = oidc.key.sign(claims(**forged))  # nested: ADMIN_READ
    emptied = oidc.key.sign(claims(realm_access={"roles": []}, **forged))
    with client(oidc.env.app()) as c:

        def status(token: str, path: str) -> int:
            headers = {"Authorization": f"Bearer {token}"}
            return int(c.get(path, headers=headers).status_code)

        assert status(escalated, "/admin/audit") == 403
        assert status(escalated, "/admin/projections") == 200  # ADMIN_READ: the nested roles
        assert status(emptied, "/admin/audit") == 403


def test_a_namespaced_roles_claim_is_read_by_its_literal_name() -> None:
    from api.auth import claim_path

    found = {"https://example.com/roles": ["ADMIN_READ"]}
    assert claim_path(found, "https://example.com/roles") == ["ADMIN_READ"]
    assert claim_path({"a": {"b": [1]}, "a.b": [2]}, "a.b") == [1]


def test_es256_tokens_verify(oidc: Oidc) -> None:
    es = ec_key("ec1")
    oidc.idp.keys = [oidc.key.jwk(), es.jwk()]
    with client(oidc.env.app()) as c:
        r = c.get("/admin/projections", headers={"Authorization": f"Bearer {es.sign(claims())}"})
    assert r.status_code == 200


def test_key_rotation_refetches_at_most_once_per_minute(oidc: Oidc) -> None:
    now = [1000.0]
    cache = JwksCache(oidc.idp.url, clock=lambda: now[0])
    verifier = oidc_verifier(cache)
    assert verifier.verify(oidc.key.sign(claims())).sub == "alice"
    assert oidc.idp.hits == 1
    new = rsa_key("k2")
    oidc.idp.keys = [oidc.key.jwk(), new.jwk()]
    now[0] += 5  # rotation just after a fetch: wait out the throttle
    with pytest.raises(AuthError, match="unknown signing key"):
        verifier.verify(new.sign(claims()))
    assert oidc.idp.hits == 1
    now[0] += REFETCH_INTERVAL
    assert verifier.verify(new.sign(claims())).roles == (READ,)
    assert oidc.idp.hits == 2
    for _ in range(5):  # a flood of unknown kids costs one fetch per minute, not one each
        with pytest.raises(AuthError):
            verifier.verify(rsa_key("random").sign(claims()))
    assert oidc.idp.hits == 2
    # the IdP drops k1: after the next refetch, k1 tokens are refused
    oidc.idp.keys = [new.jwk()]
    now[0] += REFETCH_INTERVAL
    with pytest.raises(AuthError):
        verifier.verify(rsa_key("another").sign(claims()))
    assert oidc.idp.hits == 3
    with pytest.raises(AuthError, match="unknown signing key"):
        verifier.verify(oidc.key.sign(claims(jti="signed-after-the-drop")))


def test_last_good_keys_survive_a_jwks_outage(oidc: Oidc) -> None:
    now = [0.0]
    cache = JwksCache(oidc.idp.url, clock=lambda: now[0])
    verifier = oidc_verifier(cache)
    verifier.verify(oidc.key.sign(claims(jti="1")))
    oidc.idp.healthy = False
    now[0] += 7200  # keys are old: a refresh is attempted, fails, and the old keys stay
    assert verifier.verify(oidc.key.sign(claims(jti="2"))).sub == "alice"
    assert oidc.idp.hits == 2
    assert verifier.verify(oidc.key.sign(claims(jti="3"))).sub == "alice"
    assert oidc.idp.hits == 2  # not retried until the throttle allows


def test_no_keys_at_all_is_503_not_401(
    sqlite_url: str, engine_factory: Any, tmp_path: Path
) -> None:
    with jwks_server(Jwks(healthy=False)) as idp:
        env = make_env(
            engine_factory(sqlite_url),
            tmp_path,
            auth_mode="oidc",
            oidc_jwks_url=idp.url,
            oidc_issuer=ISSUER,
            oidc_audience=AUDIENCE,
        )
        with client(env.app()) as c:
            r = c.get(
                "/admin/tx/T1", headers={"Authorization": f"Bearer {rsa_key('k').sign(claims())}"}
            )
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"


def test_symmetric_keys_in_the_jwks_are_ignored(oidc: Oidc) -> None:
    secret = b"shared-secret"
    oidc.idp.keys = [{"kty": "oct", "kid": "hs", "k": _b64(secret), "alg": "HS256"}, oidc.key.jwk()]
    token = jwt.encode(claims(), secret, algorithm="HS256", headers={"kid": "hs"})
    with client(oidc.env.app()) as c:
        r = c.get("/admin/projections", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_leeway_is_30_seconds(oidc: Oidc) -> None:
    cache = JwksCache(oidc.idp.url)
    verifier = oidc_verifier(cache)
    t0 = datetime(2026, 6, 1, tzinfo=UTC)
    stamp = int(t0.timestamp())
    expires = oidc.key.sign(claims(iat=stamp - 600, nbf=stamp - 600, exp=stamp))
    starts = oidc.key.sign(claims(iat=stamp, nbf=stamp, exp=stamp + 600))
    with freeze_time(t0 + timedelta(seconds=29)):
        verifier.verify(expires)  # 29 s past exp: within leeway
    with freeze_time(t0 + timedelta(seconds=31)), pytest.raises(AuthError, match="expired"):
        verifier.verify(expires)
    with freeze_time(t0 - timedelta(seconds=29)):
        verifier.verify(starts)  # nbf 29 s ahead: within leeway
    with freeze_time(t0 - timedelta(seconds=31)), pytest.raises(AuthError, match="nbf"):
        verifier.verify(starts)
    issued_later = oidc.key.sign(claims(iat=stamp + 3600, nbf=stamp - 600, exp=stamp + 7200))
    with freeze_time(t0), pytest.raises(AuthError, match=r"not yet valid \(iat\)"):
        verifier.verify(issued_later)  # a valid nbf: the reason names the claim at fault


def test_dev_mode_tokens(sqlite_url: str, engine_factory: Any, tmp_path: Path) -> None:
    env = make_env(engine_factory(sqlite_url), tmp_path)
    token = env.token(READ)
    key_file = env.settings.var_dir / "dev-jwt-private.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    other = make_env(engine_factory(sqlite_url), tmp_path / "elsewhere")
    foreign = other.token(READ)  # signed by a different dev key pair
    with client(env.app()) as c:
        assert (
            c.get("/admin/projections", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert (
            c.get("/admin/projections", headers={"Authorization": f"Bearer {foreign}"}).status_code
            == 401
        )
        with freeze_time(datetime.now(UTC) - timedelta(seconds=120)):
            stale = dev_token(env.settings, "bob", [READ], 60)  # expired 60 s ago
        header = {"Authorization": f"Bearer {stale}"}
        assert c.get("/admin/projections", headers=header).status_code == 401


def test_dev_token_refused_in_oidc_mode(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'x.db'}",
        auth_mode="oidc",
        oidc_jwks_url="http://127.0.0.1:1/jwks",
        oidc_issuer=ISSUER,
        oidc_audience=AUDIENCE,
        var_dir=tmp_path,
    )
    with pytest.raises(UsageError, match="OIDC"):
        dev_token(settings, "alice", [READ], 60)
    assert not (tmp_path / "dev-jwt-private.pem").exists()


def test_dev_token_rejects_bad_input(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'x.db'}", var_dir=tmp_path)
    for sub, ttl in (("alice", 0), ("alice", -5), ("alice", 10**9), ("  ", 60)):
        with pytest.raises(UsageError):
            dev_token(settings, sub, [READ], ttl)


def test_bo_token_cli(tmp_path: Path) -> None:
    bo = str(Path(sys.executable).parent / "bo")
    env = {
        **os.environ,
        "BO_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
        "BO_VAR_DIR": str(tmp_path),
    }
    out = subprocess.run(
        [
            bo,
            "token",
            "--sub",
            "carol",
            "--role",
            READ,
            "--role",
            "ADMIN_AUDIT",
            "--ttl",
            "60",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    settings = load_settings(database_url=env["BO_DATABASE_URL"], var_dir=tmp_path)
    from api.auth import make_verifier

    principal = make_verifier(settings).verify(data["token"])
    assert principal.sub == "carol"
    assert principal.roles == (READ, "ADMIN_AUDIT")
    oidc_env = {
        **env,
        "BO_AUTH_MODE": "oidc",
        "BO_OIDC_JWKS_URL": "http://127.0.0.1:1/jwks",
        "BO_OIDC_ISSUER": ISSUER,
        "BO_OIDC_AUDIENCE": AUDIENCE,
    }
    refused = subprocess.run(
        [bo, "token", "--sub", "carol", "--role", READ],
        capture_output=True,
        text=True,
        env=oidc_env,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stdout == ""
    assert refused.stderr.count("\n") == 1
    assert "OIDC" in refused.stderr


def test_verified_tokens_are_cached_but_expiry_still_applies(oidc: Oidc) -> None:
    hits: list[str | None] = []
    cache = JwksCache(oidc.idp.url)

    def keys(kid: str | None) -> Any:
        hits.append(kid)
        return cache.get(kid)

    verifier = Verifier(
        keys=keys,
        issuer=ISSUER,
        audience=AUDIENCE,
        algorithms=["RS256"],
        roles_claim="realm_access.roles",
    )
    t0 = datetime.now(UTC)
    stamp = int(t0.timestamp())
    token = oidc.key.sign(claims(iat=stamp, nbf=stamp, exp=stamp + 40))
    verifier.verify(token)
    verifier.verify(token)
    assert len(hits) == 1  # the second use did not re-verify the signature
    with freeze_time(t0 + timedelta(seconds=40 + 31)), pytest.raises(AuthError, match="expired"):
        verifier.verify(token)  # still cached, but past exp + leeway


def test_unknown_admin_routes_answer_401_without_a_verified_token(oidc: Oidc) -> None:
    from sqlalchemy import select

    from eventlog.schema import audit_log

    token = oidc.key.sign(claims(jti="attrib"))
    stranger = rsa_key("x").sign(claims(sub="mallory"))
    with client(oidc.env.app()) as c:
        assert (
            c.get("/admin/projections", headers={"Authorization": f"Bearer {token}"}).status_code
            == 200
        )
        assert c.get("/admin/nope", headers={"Authorization": f"Bearer {token}"}).status_code == 404
        # without a valid token nobody learns which paths or methods exist: 401
        stranger_answer = c.get("/admin/nope", headers={"Authorization": f"Bearer {stranger}"})
        assert stranger_answer.status_code == 401
        assert stranger_answer.headers["www-authenticate"].startswith("Bearer")
        assert c.post("/admin/tx/T1").status_code == 401
        # the same words as a real route's 401: the answer does not tell which paths exist
        for headers in ({}, {"Authorization": f"Bearer {stranger}"}, {"Authorization": "Bearer x"}):
            real = c.get("/admin/projections", headers=headers)
            fake = c.get("/admin/nope", headers=headers)
            assert (fake.status_code, fake.json()["detail"]) == (401, real.json()["detail"])
            assert fake.headers["www-authenticate"] == real.headers["www-authenticate"]
        huge = oidc.key.sign(claims(exp=10**400))  # must not crash the audit gate (was a 500)
        assert c.get("/admin/nope", headers={"Authorization": f"Bearer {huge}"}).status_code == 401
        assert c.get("/admin/tx/T1/", follow_redirects=False).status_code == 401
        bearer = {"Authorization": f"Bearer {token}"}
        assert c.post("/admin/tx/T1", headers=bearer).status_code == 405
        # an id with a slash (or %2F) is an invalid id, not an unknown path: 422
        assert c.get("/admin/tx/T1/", headers=bearer, follow_redirects=False).status_code == 422
        assert c.get("/admin/tx/a%2Fb", headers=bearer).status_code == 422
    with oidc.env.engine.connect() as conn:
        rows = list(conn.execute(select(audit_log).order_by(audit_log.c.id)))
    assert [(r.actor, r.status) for r in rows] == [
        ("alice", 200),
        ("alice", 404),
        (None, 401),
        (None, 401),
        (None, 401),
        *[(None, 401)] * 6,
        (None, 401),
        ("alice", 405),
        ("alice", 422),
        ("alice", 422),
    ]


def test_one_unusable_jwks_entry_does_not_void_a_rotation(oidc: Oidc) -> None:
    """A key the IdP publishes next to an entry PyJWT cannot load (``alg: none`` raised
    NotImplementedError: a 500, and the whole new set thrown away) is used; the odd entry
    alone is skipped."""
    now = [0.0]
    cache = JwksCache(oidc.idp.url, clock=lambda: now[0])
    verifier = oidc_verifier(cache)
    verifier.verify(oidc.key.sign(claims(jti="before")))
    rotated = rsa_key("k2")
    odd = dict(rsa_key("odd").jwk(), alg="none")
    listed = dict(rsa_key("listed").jwk(), alg=["RS256"])
    oidc.idp.keys = [odd, listed, oidc.key.jwk(), rotated.jwk()]
    now[0] += REFETCH_INTERVAL
    assert verifier.verify(rotated.sign(claims(jti="after"))).sub == "alice"
    assert verifier.verify(oidc.key.sign(claims(jti="old"))).sub == "alice"
    with pytest.raises(AuthError, match="unknown signing key"):
        verifier.verify(rsa_key("odd").sign(claims(jti="odd")))


def test_a_dripping_jwks_endpoint_is_given_up_on_as_a_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpx's timeout is per read: an endpoint sending a byte at a time held the cache's
    lock, and every token lookup behind it, for as long as it dripped. The fetch now has
    one deadline in all (here 1 s against a 30 s drip); the lookup then fails as an
    outage does (no keys yet: 503), long before the drip would end."""
    import api.auth as auth

    monkeypatch.setattr(auth, "JWKS_FETCH_SECONDS", 1.0)
    done = threading.Event()

    class Drip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                if done.wait(0.3):
                    return
                try:
                    self.wfile.write(b" ")
                    self.wfile.flush()
                except OSError:
                    return

        def log_message(self, *_args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Drip)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cache = JwksCache(f"http://127.0.0.1:{server.server_address[1]}/jwks.json")
        started = time.monotonic()
        with pytest.raises(auth.KeysUnavailable):
            cache.get("k1")
        assert time.monotonic() - started < 15  # the drip lasts 30 s
    finally:
        done.set()
        server.shutdown()
        server.server_close()
