"""OAuth2 bearer tokens (JWT) beside the API keys, over a real uvicorn server: keys made
here (RSA and EC), a JWKS as a file and as a URL served by a real HTTP server in a
thread (fetch, cache, refresh on an unknown kid, at most once per refresh interval),
each refusal with its exact problem and RFC 6750 challenge, and the audit naming the
token's subject."""

from __future__ import annotations

import base64
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.serving._server import serving
from tests.serving.test_api import make_key

ISS = "https://idp.example.test/realms/plant"
AUD = "asset-twin"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KEY_2 = ec.generate_private_key(ec.SECP256R1())


def jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
    return {**algorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}


def token(key: Any, kid: str | None, alg: str | None = None, **claims: Any) -> str:
    body = {"iss": ISS, "aud": AUD, "sub": "alice", "exp": int(time.time()) + 300,
            "scope": "work-orders openid", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    alg = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def refused(client: httpx.Client, credential: str, detail: str) -> None:
    """``credential`` gets a 401 with exactly ``detail`` and its challenge, and is not
    echoed."""
    r = client.get("/v1/assets", headers={"Authorization": f"Bearer {credential}"})
    assert r.status_code == 401, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == detail
    assert r.headers["www-authenticate"] == (
        f'Bearer error="invalid_token", error_description="{detail}"')
    assert credential not in r.text


@pytest.fixture(scope="module")
def file_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from serving._settings import Settings

    root = tmp_path_factory.mktemp("jwt")
    jwks = root / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1")]}))
    db = f"sqlite:///{root / 'twin.db'}"
    settings = Settings(database_url=db, webhooks=False, jwks=str(jwks), jwt_issuer=ISS,
                        jwt_audience=AUD)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield {"client": client, "db": db}


def test_a_token_with_the_scope_reaches_assets_and_one_without_it_gets_403(
    file_service: dict[str, Any],
) -> None:
    client = file_service["client"]
    for credential in (token(RSA_KEY, "rsa-1"), token(EC_KEY, "ec-1")):
        r = client.get("/v1/assets", headers={"Authorization": f"Bearer {credential}"})
        assert r.status_code == 200, r.text
        assert r.json()["assets"] == []
    r = client.get("/v1/assets", headers={
        "Authorization": f"Bearer {token(EC_KEY, 'ec-1', scope='predict openid')}"})
    assert r.status_code == 403
    detail = ("this route needs scope 'work-orders'; the token 'alice' has predict "
              "(claim 'scope' is 'predict openid')")
    assert r.json()["detail"] == detail
    assert r.headers["www-authenticate"] == (
        f'Bearer error="insufficient_scope", scope="work-orders", '
        f'error_description="{detail}"')
    # a scope this service does not know grants nothing
    r = client.get("/v1/models", headers={
        "Authorization": f"Bearer {token(RSA_KEY, 'rsa-1', scope='read:all')}"})
    assert r.status_code == 403
    assert r.json()["detail"] == ("this route needs scope 'predict'; the token 'alice' has "
                                  "none (claim 'scope' is 'read:all')")


def test_each_bad_token_is_a_401_that_says_why(file_service: dict[str, Any]) -> None:
    client = file_service["client"]
    good = token(RSA_KEY, "rsa-1")
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    tampered = f"{header}.{b64({**claims, 'scope': 'admin'})}.{signature}"
    unsigned = f"{b64({'alg': 'none', 'typ': 'JWT'})}.{payload}."
    public_pem = RSA_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    # HS256 with the public key as the shared secret: the classic algorithm confusion
    signed = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa-1'})}.{payload}"
    mac = hmac.new(public_pem, signed.encode(), "sha256").digest()
    confused = f"{signed}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"
    cases = {
        token(RSA_KEY, "rsa-1", exp=1_700_000_000):
            "the token expired at 2023-11-14T22:13:20+00:00 (claim 'exp', leeway 30 s)",
        token(RSA_KEY, "rsa-1", aud="billing"):
            "the token's audience 'billing' is not 'asset-twin' (claim 'aud')",
        token(EC_KEY, "ec-1", iss="https://evil.example.test"):
            "the token's issuer 'https://evil.example.test' is not "
            "'https://idp.example.test/realms/plant' (claim 'iss')",
        tampered: "the token's signature does not verify with key 'rsa-1'",
        token(EC_KEY_2, "ec-1"): "the token's signature does not verify with key 'ec-1'",
        token(RSA_KEY, "rsa-9"): "unknown key id 'rsa-9': the JWKS holds 'rsa-1', 'ec-1'",
        token(RSA_KEY, None): "the token has no 'kid' header and the JWKS holds 2 keys "
                              "('rsa-1', 'ec-1'): name one",
        token(EC_KEY, "rsa-1"): "the token's algorithm 'ES256' does not fit key 'rsa-1' (RSA)",
        unsigned: "the token's algorithm 'none' is not accepted: expected one of RS256, ES256",
        confused: "the token's algorithm 'HS256' is not accepted: expected one of RS256, ES256",
        token(RSA_KEY, "rsa-1", scope=None):
            "the token has no 'scope' claim, the one that carries its scopes "
            "(TWIN_JWT_SCOPE_CLAIM)",
        token(RSA_KEY, "rsa-1", exp=None): "the token has no 'exp' claim",
        token(RSA_KEY, "rsa-1", sub=None):
            "the token names no caller: it has no 'sub', 'client_id' or 'azp' claim",
        token(RSA_KEY, "rsa-1", scope=42): "the token's claim 'scope' is 42: expected a "
                                           "space-separated string or a list of strings",
        "a.b.c": "malformed bearer token: Invalid header padding",
    }
    for credential, detail in cases.items():
        refused(client, credential, detail)


def test_api_keys_work_beside_tokens_and_the_audit_names_the_token_subject(
    file_service: dict[str, Any],
) -> None:
    client, db = file_service["client"], file_service["db"]
    api_key = make_key(db, "admin")
    r = client.get("/v1/assets", headers={"X-API-Key": api_key})
    assert r.status_code == 200 and r.json()["assets"] == []
    r = client.get("/v1/assets", headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 200
    r = client.get("/v1/assets")
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    refused(client, "twk_nope_secret", "unknown or revoked API key")

    # a client-credentials token names its client in client_id, not sub
    machine = token(EC_KEY, "ec-1", sub=None, client_id="mes-line-7", scope="admin")
    r = client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook"},
                    headers={"Authorization": f"Bearer {machine}"})
    assert r.status_code == 201, r.text
    hook = r.json()["id"]
    r = client.get("/v1/audit", params={"subject": f"webhook/{hook}"},
                   headers={"X-API-Key": api_key})
    assert r.status_code == 200, r.text
    records = r.json()["records"]
    assert [(x["kind"], x["caller"]) for x in records] == [("webhook", "mes-line-7")]


# ---- a JWKS URL -----------------------------------------------------------------------------


class _Jwks:
    """A JWKS served over HTTP on 127.0.0.1, counting the fetches."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys, self.fetches = keys, 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.fetches += 1
                body = json.dumps({"keys": outer.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/realms/plant/certs"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_jwks_url_is_fetched_once_cached_and_read_again_for_a_new_kid(
    tmp_path: Path,
) -> None:
    from serving._settings import Settings

    idp = _Jwks([jwk(RSA_KEY, "rsa-1")])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'twin.db'}", webhooks=False, jwks=idp.url,
        jwt_issuer=ISS, jwt_audience=AUD, jwt_scope_claim="scp", jwks_refresh_s=1.0,
        jwt_scope_map={"twin.orders": "work-orders", "twin.admin": "admin"})
    try:
        with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
            def get(credential: str) -> httpx.Response:
                return client.get("/v1/assets",
                                  headers={"Authorization": f"Bearer {credential}"})

            assert idp.fetches == 0  # read on first use, not at start-up
            orders = token(RSA_KEY, "rsa-1", scope=None, scp=["twin.orders", "profile"])
            assert get(orders).status_code == 200
            assert get(orders).status_code == 200
            assert idp.fetches == 1

            # the identity provider rotates in a new key
            idp.keys = [jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY_2, "ec-2")]
            rotated = token(EC_KEY_2, "ec-2", scope=None, scp=["twin.orders"])
            refused(client, rotated, "unknown key id 'ec-2': the JWKS holds 'rsa-1'")
            assert idp.fetches == 1  # read less than jwks_refresh_s ago: not again
            time.sleep(1.05)
            assert get(rotated).status_code == 200
            assert idp.fetches == 2
            refused(client, token(RSA_KEY, "rsa-7", scope=None, scp=["twin.orders"]),
                    "unknown key id 'rsa-7': the JWKS holds 'rsa-1', 'ec-2'")
            assert idp.fetches == 2

            # the mapping names which token scopes count; the 403 shows the claim
            r = get(token(RSA_KEY, "rsa-1", scope=None, scp=["work-orders"]))
            assert r.status_code == 403
            assert r.json()["detail"] == (
                "this route needs scope 'work-orders'; the token 'alice' has none "
                "(claim 'scp' is 'work-orders')")
            assert get(token(RSA_KEY, "rsa-1", scope=None, scp="twin.admin")).status_code == 200
    finally:
        idp.close()


def test_an_unreachable_jwks_is_a_503_and_a_token_needs_the_setting() -> None:
    from serving._auth import InvalidCredentials, JwksUnavailable
    from serving._bearer import Jwks, token_checker
    from serving._settings import Settings
    from tests.serving._server import _free_port

    url = f"http://127.0.0.1:{_free_port()}/certs"
    dead = Jwks(url, timeout_s=2, refresh_s=60, max_age_s=3600)
    with pytest.raises(JwksUnavailable) as caught:
        dead.key_for("rsa-1", "RS256")
    assert caught.value.status == 503
    assert caught.value.detail == (
        f"cannot read the JWKS at {url}: <urlopen error [Errno 111] Connection refused>")
    with pytest.raises(JwksUnavailable) as again:  # answered again, not tried again at once
        dead.key_for("rsa-1", "RS256")
    assert again.value is caught.value

    with pytest.raises(InvalidCredentials) as no_jwks:
        token_checker(Settings(), {})
    assert no_jwks.value.detail == ("this service takes no bearer tokens (JWT): TWIN_JWKS is "
                                    "not set; send an API key (twk_...)")
    with pytest.raises(ValueError) as bad:
        Settings.from_env({"TWIN_JWKS": url, "TWIN_JWT_ISSUER": ISS})
    assert str(bad.value) == (
        f"invalid settings:\n  TWIN_JWKS={url!r}: Value error, bearer tokens need "
        "TWIN_JWT_AUDIENCE as well (else a token meant for another service would be "
        "accepted)")


def test_a_service_whose_jwks_cannot_be_read_answers_503_with_retry_after(
    tmp_path: Path,
) -> None:
    """Over HTTP: the 503 problem carries Retry-After, the seconds before the service
    tries the key set again (as the OpenAPI document declares for every 503)."""
    from serving._auth import JWKS_RETRY_S
    from serving._settings import Settings
    from tests.serving._server import _free_port

    dead = f"http://127.0.0.1:{_free_port()}/certs"
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'twin.db'}", webhooks=False,
                        jwks=dead, jwt_issuer=ISS, jwt_audience=AUD)
    with serving(settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.get("/v1/assets",
                       headers={"Authorization": f"Bearer {token(RSA_KEY, 'rsa-1')}"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == str(JWKS_RETRY_S) == "5"
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == (
        f"cannot read the JWKS at {dead}: <urlopen error [Errno 111] Connection refused>")


def test_a_jwks_file_is_read_again_after_its_max_age_and_a_withdrawn_key_stops_working(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    from serving._auth import InvalidCredentials
    from serving._bearer import Jwks

    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(RSA_KEY, "rsa-1"), {"kty": "oct", "k": "c2VjcmV0",
                                                                 "kid": "shared"}]}))
    keys = Jwks(str(path), timeout_s=1, refresh_s=0, max_age_s=0.2)
    assert keys.key_for("rsa-1", "PS256").kid == "rsa-1"  # one RSA key serves RS* and PS*
    assert keys.reads == 1
    with pytest.raises(InvalidCredentials) as oct_key:  # a shared secret is never a key
        keys.key_for("shared", "RS256")
    assert oct_key.value.detail == "unknown key id 'shared': the JWKS holds 'rsa-1'"
    assert keys.reads == 2  # read again for the unknown kid (refresh_s 0)

    path.unlink()  # the source goes away: the keys read before stay
    time.sleep(0.25)
    assert keys.key_for("rsa-1", "RS256").kid == "rsa-1"
    assert keys.reads == 2
    assert f"cannot read the JWKS at {path}: [Errno 2] No such file or directory" in caplog.text

    path.write_text(json.dumps({"keys": [jwk(EC_KEY, "ec-1")]}))  # rsa-1 withdrawn
    time.sleep(0.25)
    assert keys.key_for("ec-1", "ES256").kid == "ec-1"
    with pytest.raises(InvalidCredentials) as withdrawn:
        keys.key_for("rsa-1", "RS256")
    assert withdrawn.value.detail == "unknown key id 'rsa-1': the JWKS holds 'ec-1'"
    assert keys.reads == 4  # the max age, then the unknown kid
