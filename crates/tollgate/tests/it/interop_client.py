#!/usr/bin/env python3
"""Interoperability check: standard third-party OAuth 2.0 and JWT libraries against Tollgate.

(a) authlib's OAuth2Session gets a token from <base>/t/<tenant>/oauth/token with the client
    credentials grant, once with client_secret_basic and once with client_secret_post,
    passing `audience` as an extra parameter; the RFC 8414 metadata is read and checked.
(b) PyJWT's PyJWKClient verifies each token through <base>/t/<tenant>/.well-known/jwks.json
    (the metadata's jwks_uri names the issuer host, e.g. acme.hub.localhost:8080, which need
    not resolve), and every header member and claim is checked exactly.

Run by crates/tollgate/tests/it/interop.rs; by hand:

    pip install authlib 'pyjwt[crypto]' requests
    python3 interop_client.py --base-url http://127.0.0.1:8080 --tenant acme \\
        --client-id ID --client-secret SECRET --audience https://archive.example.com/ \\
        --issuer http://acme.hub.localhost:8080/ --tenant-id TENANT_ID

Every option also reads an environment variable (INTEROP_BASE_URL, INTEROP_TENANT, ...).
Exits 0 with a one-line summary per token, or 1 with a message naming the mismatch.
"""

import argparse
import os
import sys
import time

try:
    import jwt
    import requests
    from authlib.integrations.requests_client import OAuth2Session
except ImportError as error:  # pragma: no cover - reported by the Rust test as a skip
    sys.exit(f"interop: missing Python package ({error}); "
             "pip install authlib 'pyjwt[crypto]' requests")

ALGORITHMS = ["ES256", "EdDSA", "RS256"]
REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
EVERY_CLAIM = {"iss", "sub", "aud", "iat", "nbf", "exp", "jti", "cid", "sid", "scp", "scope",
               "client_id", "gty"}
AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


class Mismatch(Exception):
    """A check that failed; the message says what was expected and what came."""


def expect(condition, message):
    if not condition:
        raise Mismatch(message)


def expect_eq(what, actual, expected):
    expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def option(name, help_text, required=True, default=None):
        env = "INTEROP_" + name.upper().replace("-", "_")
        value = os.environ.get(env, default)
        parser.add_argument(f"--{name}", default=value,
                            required=required and value is None,
                            help=f"{help_text} (env {env})")

    option("base-url", "gateway base URL, e.g. http://127.0.0.1:8080")
    option("tenant", "tenant name")
    option("client-id", "the app's client id")
    option("client-secret", "the app's client secret")
    option("audience", "API identifier to ask a token for")
    option("issuer", "expected issuer (iss)")
    option("tenant-id", "expected tenant id (cid)")
    option("expect-alg", "expected JWS alg of the token", required=False)
    option("expect-scope", "expected space-delimited scope", required=False)
    option("expect-ttl", "expected expires_in, seconds", required=False)
    args = parser.parse_args(argv)
    args.base_url = args.base_url.rstrip("/")
    if args.expect_ttl is not None:
        args.expect_ttl = int(args.expect_ttl)
    return args


def check_discovery(args, tenant_url):
    """RFC 8414 metadata, at both well-known paths."""
    documents = []
    for name in ["oauth-authorization-server", "openid-configuration"]:
        response = requests.get(f"{tenant_url}/.well-known/{name}", timeout=10)
        expect_eq(f"GET .well-known/{name} status", response.status_code, 200)
        documents.append(response.json())
    metadata = documents[0]
    expect_eq("openid-configuration (same document as oauth-authorization-server)",
              documents[1], metadata)
    expect_eq("metadata issuer", metadata.get("issuer"), args.issuer)
    expect_eq("metadata token_endpoint", metadata.get("token_endpoint"),
              f"{args.issuer}oauth/token")
    expect_eq("metadata jwks_uri", metadata.get("jwks_uri"),
              f"{args.issuer}.well-known/jwks.json")
    expect_eq("metadata grant_types_supported", metadata.get("grant_types_supported"),
              ["client_credentials"])
    methods = metadata.get("token_endpoint_auth_methods_supported") or []
    for method in AUTH_METHODS:
        expect(method in methods,
               f"metadata token_endpoint_auth_methods_supported {methods!r} lacks {method}")


def fetch_token(args, token_url, method):
    """A token from authlib's OAuth2Session; returns (token response, HTTP response)."""
    responses = []
    session = OAuth2Session(client_id=args.client_id, client_secret=args.client_secret,
                            token_endpoint_auth_method=method)
    session.hooks["response"].append(lambda response, *_, **__: responses.append(response))
    try:
        token = session.fetch_token(token_url, grant_type="client_credentials",
                                    audience=args.audience)
    except Exception as error:
        detail = f": {responses[-1].status_code} {responses[-1].text}" if responses else ""
        raise Mismatch(f"{method}: authlib fetch_token failed: {error!r}{detail}") from error
    finally:
        session.close()
    expect(responses, f"{method}: no HTTP response seen")
    http = responses[-1]
    # What was sent: the method authlib was asked for, and only that.
    sent = http.request
    body = sent.body.decode() if isinstance(sent.body, bytes) else (sent.body or "")
    has_basic = sent.headers.get("Authorization", "").startswith("Basic ")
    expect_eq(f"{method}: Authorization: Basic sent", has_basic, method == "client_secret_basic")
    expect_eq(f"{method}: client_secret in the body", "client_secret=" in body,
              method == "client_secret_post")
    expect_eq(f"{method}: token response Cache-Control", http.headers.get("Cache-Control"),
              "no-store")
    return token


def verify(args, jwks_client, method, token_response, before, after):
    """Verifies the access token with PyJWT through the JWKS; returns its claims."""
    what = f"{method} token"
    expect_eq(f"{what}: token_type", token_response.get("token_type"), "Bearer")
    expires_in = token_response.get("expires_in")
    expect(isinstance(expires_in, int) and expires_in > 0,
           f"{what}: expires_in {expires_in!r} is not a positive integer")
    if args.expect_ttl is not None:
        expect_eq(f"{what}: expires_in", expires_in, args.expect_ttl)
    token = token_response.get("access_token")
    expect(isinstance(token, str) and token.count(".") == 2,
           f"{what}: access_token {token!r} is not a compact JWS")

    try:
        signing_key = jwks_client.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key.key, algorithms=ALGORITHMS,
                            audience=args.audience, issuer=args.issuer,
                            options={"require": REQUIRED_CLAIMS})
    except jwt.PyJWTError as error:
        raise Mismatch(f"{what}: PyJWT rejected it: {type(error).__name__}: {error}") from error

    header = jwt.get_unverified_header(token)
    expect_eq(f"{what}: header typ", header.get("typ"), "at+jwt")
    expect(isinstance(header.get("kid"), str) and header["kid"],
           f"{what}: header kid {header.get('kid')!r}")
    expect_eq(f"{what}: header kid = the JWK's kid", header["kid"], signing_key.key_id)
    expect_eq(f"{what}: header alg = the JWK's alg", header.get("alg"),
              signing_key.algorithm_name)
    if args.expect_alg is not None:
        expect_eq(f"{what}: header alg", header.get("alg"), args.expect_alg)
    expect_eq(f"{what}: header members", set(header), {"alg", "typ", "kid"})

    expect_eq(f"{what}: claim names", set(claims), EVERY_CLAIM)
    iat = claims["iat"]
    expect(isinstance(iat, int) and before <= iat <= after,
           f"{what}: iat {iat!r} not within the request [{before}, {after}]")
    jti, sid, scp = claims["jti"], claims["sid"], claims["scp"]
    expect(isinstance(jti, str) and len(jti) == 22,
           f"{what}: jti {jti!r} is not 22 characters (128 bits, base64url)")
    expect(isinstance(sid, str) and sid.startswith("sec_"),
           f"{what}: sid {sid!r} does not start with sec_")
    expect(isinstance(scp, list) and scp and all(isinstance(s, str) for s in scp),
           f"{what}: scp {scp!r} is not a non-empty list of strings")
    scope = " ".join(scp)
    if args.expect_scope is not None:
        expect_eq(f"{what}: scope", scope, args.expect_scope)
    expect_eq(f"{what}: token response scope", token_response.get("scope"), scope)
    expected = {
        "iss": args.issuer,
        "sub": f"{args.client_id}@client",
        "aud": args.audience,
        "iat": iat,
        "nbf": iat,
        "exp": iat + expires_in,
        "jti": jti,
        "cid": args.tenant_id,
        "sid": sid,
        "scp": scp,
        "scope": scope,
        "client_id": args.client_id,
        "gty": "client_credentials",
    }
    for name, value in expected.items():
        expect_eq(f"{what}: claim {name}", claims[name], value)
    return header, claims


def run(args):
    tenant_url = f"{args.base_url}/t/{args.tenant}"
    check_discovery(args, tenant_url)
    jwks_client = jwt.PyJWKClient(f"{tenant_url}/.well-known/jwks.json")
    seen = []
    for method in AUTH_METHODS:
        before = int(time.time())
        token_response = fetch_token(args, f"{tenant_url}/oauth/token", method)
        after = int(time.time()) + 1
        header, claims = verify(args, jwks_client, method, token_response, before, after)
        seen.append(claims)
        print(f"ok {args.tenant} {method}: {header['alg']} kid={header['kid']} "
              f"aud={claims['aud']} scope={claims['scope']!r} ttl={claims['exp'] - claims['iat']}s")
    expect(seen[0]["jti"] != seen[1]["jti"], f"two tokens share jti {seen[0]['jti']!r}")
    expect_eq("sid of both tokens (the same secret)", seen[1]["sid"], seen[0]["sid"])


def main(argv):
    args = parse_args(argv)
    try:
        run(args)
    except Mismatch as error:
        print(f"interop FAILED ({args.tenant}, {args.audience}): {error}", file=sys.stderr)
        return 1
    except requests.RequestException as error:
        print(f"interop FAILED ({args.tenant}): HTTP error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
