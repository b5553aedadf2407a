"""Every route of the app, walked from its route table (a new route is covered without
editing this file): with authentication on, each non-public route refuses a missing,
expired, revoked and forged token (401) and a cookie-authenticated state-changing
request without a valid CSRF token (403), and accepts a valid token."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import BaseRoute, Route
from web_support import USERNAME, Rig

from ofelia_core.web.auth import AUTH_COOKIE, CSRF_HEADER, SAFE_METHODS
from ofelia_core.web.guard import METRICS_PATH, is_public

EXPECTED_PUBLIC = {
    ("GET", "/"), ("GET", "/static/app.js"), ("GET", "/static/app.css"), ("GET", "/health"), ("GET", "/ready"),
    ("POST", "/api/login"), ("GET", "/api/csrf-token"), ("GET", "/api/auth/status"),
}


def route_table(app: FastAPI) -> list[tuple[BaseRoute, set[str], str]]:
    """``(route, methods, path)`` for every route of ``app.routes``, included routers flattened."""
    try:
        from fastapi.routing import iter_route_contexts  # FastAPI versions that include routers lazily
    except ImportError:
        return [(r, set(getattr(r, "methods", None) or ()), str(getattr(r, "path", ""))) for r in app.routes]
    return [(c.original_route, set(c.methods or ()), str(c.path)) for c in iter_route_contexts(app.routes)]


def endpoints(rig: Rig) -> list[tuple[str, str]]:
    found = []
    for route, methods, path in route_table(rig.app):
        # Only plain HTTP routes exist; a Mount or a websocket route would need its own walk.
        assert isinstance(route, Route), f"route {route!r} is not an HTTP Route: extend this test"
        for method in sorted(methods):
            if method != "HEAD":
                found.append((method, re.sub(r"\{[^}]+\}", "hello", path)))
    assert len(found) > 10
    return found


def call(client: TestClient, method: str, path: str, headers: dict[str, str] | None = None) -> int:
    body = {"name": "hello"} if method == "POST" else None
    return client.request(method, path, json=body, headers=headers or {}).status_code


def cookie_client(rig: Rig, token: str) -> TestClient:
    client = rig.client()
    client.cookies.set(AUTH_COOKIE, token)
    return client


def test_every_non_public_route_refuses_bad_tokens_and_missing_csrf(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    routes = endpoints(rig)
    assert {(m, p) for m, p in routes if is_public(p)} == EXPECTED_PUBLIC
    assert ("GET", "/openapi.json") in routes and ("POST", "/api/jobs/run") in routes
    expired = rig.tokens.issue(USERNAME, 60)
    rig.clock.advance(61)
    revoked = rig.tokens.issue(USERNAME, 3600)
    assert rig.tokens.revoke(revoked)
    accepted_not = {401, 403, *range(500, 600)}  # a valid caller is neither refused nor failed
    bad_tokens = {"expired": expired, "revoked": revoked, "forged": secrets.token_urlsafe(32), "empty": ""}
    plain = rig.client()
    failures: list[str] = []

    def expect(what: str, got: int, want: set[int] | None = None, refuse: set[int] | None = None) -> None:
        if (want is not None and got not in want) or (refuse is not None and got in refuse):
            failures.append(f"{what}: got {got}")

    for method, path in routes:
        if is_public(path) or path == METRICS_PATH:
            expect(f"{method} {path} without a token", call(plain, method, path), refuse={401, 403})
            continue
        expect(f"{method} {path} without a token", call(plain, method, path), {401})
        for name, token in bad_tokens.items():
            expect(f"{method} {path} {name} bearer", call(plain, method, path, {"Authorization": f"Bearer {token}"}),
                   {401})
            with cookie_client(rig, token) as client:
                csrf = rig.app.state.ctx.auth.csrf_token(token)
                expect(f"{method} {path} {name} cookie", call(client, method, path, {CSRF_HEADER: csrf}), {401})
        expect(f"{method} {path} Basic auth", call(plain, method, path, {"Authorization": "Basic YWRtaW46eA=="}),
               {401})
        token = rig.login(rig.client())["token"]
        expect(f"{method} {path} valid bearer", call(plain, method, path, {"Authorization": f"Bearer {token}"}),
               refuse=accepted_not)
        session = rig.login(rig.client())
        with cookie_client(rig, session["token"]) as client:
            if method not in SAFE_METHODS:
                expect(f"{method} {path} cookie without CSRF", call(client, method, path), {403})
                other = rig.login(rig.client())["csrf_token"]  # another session's token
                expect(f"{method} {path} cookie with another session's CSRF",
                       call(client, method, path, {CSRF_HEADER: other}), {403})
            expect(f"{method} {path} cookie with CSRF",
                   call(client, method, path, {CSRF_HEADER: session["csrf_token"]}), refuse=accepted_not)
    assert not failures, "\n".join(failures)


def test_unknown_paths_answer_401_before_routing(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    assert rig.client().get("/api/nothing-here").status_code == 401
    token = rig.login(rig.client())["token"]
    assert rig.client().get("/api/nothing-here", headers={"Authorization": f"Bearer {token}"}).status_code == 404


def test_a_token_in_the_query_string_is_never_accepted(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    token = rig.login(rig.client())["token"]
    client = rig.client()
    for name in ("token", "auth_token", "access_token"):
        assert client.get(f"/api/jobs?{name}={token}").status_code == 401


def test_with_authentication_off_everything_is_open(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(auth=False)
    client = rig.client()
    for method, path in endpoints(rig):
        if path == "/api/login":
            assert call(client, method, path) in {400, 422}  # nothing to log in to
            continue
        assert call(client, method, path) not in {401, 403}, (method, path)


def test_with_authentication_off_a_cross_site_form_post_cannot_run_a_job(make_rig: Callable[..., Rig]) -> None:
    """A page on another site can send a "simple" request (a form, or fetch without CORS) but
    not a JSON one: the job routes take only application/json bodies."""
    rig = make_rig(auth=False)
    client = rig.client()
    for content_type, body in (("text/plain", '{"name": "hello"}'),
                               ("application/x-www-form-urlencoded", "name=hello"),
                               ("multipart/form-data; boundary=x", '--x\r\nContent-Disposition: form-data; '
                                'name="name"\r\n\r\nhello\r\n--x--\r\n')):
        response = client.post("/api/jobs/run", content=body, headers={"Content-Type": content_type})
        assert response.status_code == 422, (content_type, response.text)
    assert rig.daemon.runtime is not None and rig.daemon.runtime.history.recent("hello") == []
